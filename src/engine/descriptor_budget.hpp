#pragma once

#include <cstddef>

namespace vramswap::engine {

// Descriptors the daemon keeps for itself whatever the listen clients do: the
// status file and its temporary, /proc and /sys reads, the notify socket,
// netlink, a log line's pipe... Well above what any of them holds at once.
inline constexpr size_t kDaemonDescriptorReserve = 32;

// How many listen clients the file descriptor limit (RLIMIT_NOFILE) leaves
// room for: the limit, less the descriptors open now, less `reserve`. A client
// takes one descriptor; the listener takes no more than this, so the daemon's
// own files never meet EMFILE. Returns `wanted` when the limit is no obstacle.
size_t clients_within_descriptor_limit(size_t wanted, size_t reserve) noexcept;

// The arithmetic alone, for tests: `limit` descriptors, `open` in use.
size_t clients_within(size_t wanted, size_t limit, size_t open, size_t reserve) noexcept;

// Descriptors this process has open now (/proc/self/fd); 0 if unknown.
size_t open_descriptors() noexcept;

}  // namespace vramswap::engine
