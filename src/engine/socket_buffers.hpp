#pragma once

namespace vramswap::engine {

// Gives a served socket deep buffers, so that a round's replies (up to a
// whole send arena of read data) go out in one call instead of a socket's
// default ~200 KiB at a time: read data that does not fit is dropped at the
// end of the round and copied from VRAM again later, so a shallow buffer
// costs PCIe bandwidth as well as wake-ups. Best effort: without
// CAP_NET_ADMIN the request is capped at net.core.[rw]mem_max.
void enlarge_socket_buffers(int fd) noexcept;

}  // namespace vramswap::engine
