#pragma once

#include <optional>
#include <string>

#include "common/unique_fd.hpp"

namespace vramswap::engine {

// Creates the listening Unix socket at `path` for userspace NBD clients.
//
// The socket is born with mode 0600 (or 0660 with `group`), in a directory
// that only root may write to, so no other user can reach the swap device's
// contents or race the daemon for the path. A symlink, a non-socket, or a
// socket some other daemon still serves at `path` is refused, never followed
// or deleted; only a stale socket of a dead daemon is replaced.
UniqueFd open_unix_listener(const std::string& path, const std::string& group);

// The checks open_unix_listener() makes before it touches anything, for the
// daemon to run before it commits VRAM: why `path` cannot take the socket
// (its directory is missing or writable by others, the name is a symlink, a
// non-socket, another user's socket or a live one), or nothing. A stale
// socket of ours is no problem: it is replaced.
std::optional<std::string> listen_path_problem(const std::string& path);
// Why `group` cannot own the socket (no such group), or nothing.
std::optional<std::string> socket_group_problem(const std::string& group);

}  // namespace vramswap::engine
