#pragma once

// systemd's side of the notify protocol, as far as the tests need it: the
// messages a service sends to $NOTIFY_SOCKET (READY=1, STATUS=, and the file
// descriptor store: FDSTORE=1, FDSTOREREMOVE=1, FDNAME=), and the stored
// descriptors handed to the next run. Used by the integration tests' daemon
// harness and by fd-store-keeper, which plays systemd's Restart= in the
// initramfs VM.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/unique_fd.hpp"

namespace vramswap::test {

// Descriptors handed to a started program the way systemd hands a service
// its sockets and its file descriptor store: from fd 3 on, named in
// $LISTEN_FDNAMES, counted in $LISTEN_FDS, for $LISTEN_PID. Made before
// fork(); install_in_child() runs between fork() and exec() and allocates
// nothing (the parent may have threads).
class PassedFds {
 public:
  // (name, descriptor) pairs; the descriptors stay the caller's.
  explicit PassedFds(const std::vector<std::pair<std::string, int>>& fds);
  void install_in_child() const noexcept;

 private:
  std::vector<int> fds_;
  mutable std::vector<int> moved_;  // scratch, sized before fork()
  std::string names_;
  std::string count_;
};

class FdStoreHost {
 public:
  // keep: store what FDSTORE=1 sends; false: close it (a unit without a
  // store).
  explicit FdStoreHost(bool keep) : keep_(keep) {}

  // What one notify message said.
  struct Message {
    bool ready = false;
    std::string status;  // empty when it set none
  };
  // Reads one message from the (nonblocking) notify socket, with any
  // descriptors it carries; false when none was waiting.
  bool receive(int notify_fd, Message& message);

  // The stored descriptors, in the order stored.
  const std::vector<std::pair<std::string, UniqueFd>>& stored() const { return stored_; }
  // The stored descriptors as a next start gets them.
  PassedFds passed() const;
  void clear() { stored_.clear(); }

 private:
  void apply(std::string_view text, std::vector<UniqueFd> fds, Message& message);

  bool keep_;
  std::vector<std::pair<std::string, UniqueFd>> stored_;
};

}  // namespace vramswap::test
