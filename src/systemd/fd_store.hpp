#pragma once

// systemd's file descriptor store (sd_pid_notify_with_fds(3), FDSTORE=1):
// descriptors the service hands to systemd outlive the process, and come back
// to the next run of the unit as passed descriptors with their names
// (sd_listen_fds_with_names(3)). What keeps a live restart's state: the VRAM
// (store/vram_parking.hpp) and the block map.
//
// The unit must allow it (FileDescriptorStoreMax=), or systemd drops what it
// is sent. Outside systemd (no $NOTIFY_SOCKET) nothing can be kept.

#include <string_view>
#include <vector>

#include "common/fd_store_sink.hpp"

namespace vramswap::systemd::fd_store {

// Whether systemd gave us a notification socket to store descriptors through.
bool available();

// Whether systemd takes `name` as an FDNAME: 1 to 255 characters, printable
// ASCII without ':' (it separates names in $LISTEN_FDNAMES).
bool valid_name(std::string_view name);

// Hands a duplicate of `fd` to systemd under `name` (FDSTORE=1, FDNAME=,
// FDPOLL=0: kept even when the descriptor reports POLLHUP, as a socket whose
// peer is closed does). The caller keeps `fd`. 0, or -errno: -EINVAL for a
// bad name, -ENOTCONN outside systemd.
int store(int fd, std::string_view name);

// Makes systemd close what it keeps under `name` (FDSTOREREMOVE=1). 0 or
// -errno as store(). Removing a name systemd does not hold is no error.
int remove(std::string_view name);

// The descriptors systemd passed to this run (the store's and any sockets'),
// each with its name, close-on-exec; empty when none. Takes them: the
// environment that names them is unset, so a second call finds none.
using PassedFd = NamedFd;
std::vector<PassedFd> take_passed();

// The production sink for the parts that park descriptors: store() and
// remove() above.
class Sink final : public FdStoreSink {
 public:
  int store(int fd, std::string_view name) override { return fd_store::store(fd, name); }
  int remove(std::string_view name) override { return fd_store::remove(name); }
};

}  // namespace vramswap::systemd::fd_store
