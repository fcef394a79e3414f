#pragma once

namespace vramswap::engine {

// Gives a served socket deep buffers, so that a round's replies (up to a
// whole send arena of read data) go out in one call instead of a socket's
// default ~200 KiB at a time: a round stages no more read data than the
// socket has room for (ReplySender), so a shallow buffer costs rounds and
// wake-ups. Best effort: without CAP_NET_ADMIN the request is capped at
// net.core.[rw]mem_max.
void enlarge_socket_buffers(int fd) noexcept;

}  // namespace vramswap::engine
