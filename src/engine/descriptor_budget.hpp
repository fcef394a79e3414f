#pragma once

#include <cstddef>

namespace vramswap::engine {

// Descriptors the daemon keeps for itself whatever the listen clients do: the
// status file and its temporary, /proc and /sys reads, the notify socket,
// netlink, a log line's pipe... Well above what any of them holds at once.
inline constexpr size_t daemon_descriptor_reserve = 32;

// How many listen clients the file descriptor limit (RLIMIT_NOFILE) leaves
// room for: the limit, less the descriptors open now, less `reserve`. A client
// takes one descriptor; the listener takes no more than this, so the daemon's
// own files never meet EMFILE. Returns `wanted` when the limit is no obstacle.
size_t clients_within_descriptor_limit(size_t wanted, size_t reserve) noexcept;

// The arithmetic alone, for tests: `limit` descriptors, `open` in use.
size_t clients_within(size_t wanted, size_t limit, size_t open, size_t reserve) noexcept;

// The fewest descriptors a daemon needs beyond those open before it starts
// serving: its reserve, an epoll and an eventfd per worker, the server's
// eventfd, a socket pair per kernel connection, and with a listen socket the
// listener, its eventfd and room for one client. The CUDA driver's own files
// come out of the reserve. Below this the daemon would fail part-way through
// starting, or serve a listen socket no client can use.
size_t descriptors_needed(unsigned workers, unsigned kernel_connections, bool listen) noexcept;

// RLIMIT_NOFILE's soft limit; 0 when there is none (or it cannot be read).
size_t descriptor_limit() noexcept;

// Descriptors this process has open now (/proc/self/fd); 0 if unknown.
size_t open_descriptors() noexcept;

}  // namespace vramswap::engine
