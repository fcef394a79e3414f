#pragma once

// A parking socket: the receiving end of an AF_UNIX datagram socketpair
// whose one queued datagram carries descriptors (SCM_RIGHTS), the sending end
// closed. Kept in systemd's file descriptor store, it holds any number of
// descriptors (up to SCM_MAX_FD per datagram) as one stored descriptor.
//
// What it relies on (tests/unit/parking_socket_test.cpp checks each on the
// running kernel):
//   - a datagram queued before the peer closed stays readable;
//   - descriptors in flight keep what they reach alive (VRAM included), with
//     no process holding them in its table;
//   - recvmsg(MSG_PEEK) installs duplicates of the descriptors and leaves the
//     datagram queued, so a later run (after a later crash) finds it again;
//   - the sender's user may have at most RLIMIT_NOFILE descriptors in flight
//     without CAP_SYS_RESOURCE or CAP_SYS_ADMIN (ETOOMANYREFS): the daemon
//     has both in its unit's bounding set, and raises its limit for its own
//     exported descriptors anyway.

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "common/unique_fd.hpp"

namespace vramswap::store::parking {

// A new parking socket holding `datagram` with `fds` (duplicated into the
// message; the caller keeps its own). Invalid, with `why` (one line), when a
// socket call fails.
UniqueFd park(const std::vector<unsigned char>& datagram, const std::vector<int>& fds,
              std::string& why);

struct Peeked {
  std::vector<unsigned char> bytes;
  std::vector<UniqueFd> fds;  // close-on-exec duplicates
};
// The datagram queued in parking socket `socket`, left there; nullopt with
// `why` when there is none, it is longer than `max_bytes`, or its
// descriptors did not all arrive (MSG_CTRUNC: more than `max_fds`, or no
// room in this process's descriptor table).
std::optional<Peeked> peek(int socket, size_t max_bytes, size_t max_fds, std::string& why);

}  // namespace vramswap::store::parking
