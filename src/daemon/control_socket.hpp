#pragma once

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/unique_fd.hpp"
#include "daemon/elastic_control.hpp"

namespace vramswap::daemon {

// The instance's control socket, <runtime dir>/NAME.control: where root asks
// the elastic tier to release or restore VRAM (`vramswap release NAME`,
// `vramswap restore NAME`). The protocol is status/control_protocol.hpp.
//
// - Mode 0600 in the root-only runtime directory, and every client's
//   credentials (SO_PEERCRED) are checked as well: only root may ask; anyone
//   else who gets a connection gets an error line.
// - Its own thread, one client at a time: a request moves gigabytes and
//   takes minutes, and two at once would only compete for the same chunks.
//   Others wait in the listen backlog.
// - A client that sends nothing gets an error line after `request_timeout`
//   and is dropped; garbage gets an error line. No client can hold up the
//   daemon's stop: the thread waits on the client only in poll(), which
//   stop() wakes.
// - A stale socket (of a daemon that died) is replaced: the instance lock
//   keeps a second daemon of the name away, so whatever socket is at the
//   path is a dead one's. Anything else there (a symlink, a file) is refused.
// - Without an elastic tier (`spill = no`, or no spill area could be made)
//   the socket is made all the same and answers every request with one
//   error line saying so: that tells the admin why, where a missing socket
//   could mean a stopped daemon as well.
class ControlSocket {
 public:
  struct Options {
    std::string path;
    // Null: the device has no elastic tier.
    ElasticControl* elastic = nullptr;
    std::chrono::milliseconds request_timeout = std::chrono::seconds(5);
    // Who may ask (tests replace it: they run as root).
    std::function<bool(const ucred&)> may_ask = [](const ucred& peer) { return peer.uid == 0; };
  };

  // Throws StartupError naming the cause when the socket cannot be made.
  explicit ControlSocket(Options options);
  // stop()s.
  ~ControlSocket();
  ControlSocket(const ControlSocket&) = delete;
  ControlSocket& operator=(const ControlSocket&) = delete;

  // Stops accepting, drops a connected client, joins the thread and removes
  // the socket. Prompt, except while the elastic tier runs a request: the
  // call cannot be interrupted from here, so stop() waits until it returns
  // (the tier stops a move between chunks when the daemon stops; it says
  // so in the log); its client still gets the answer if it waits. Idempotent.
  void stop();

 private:
  void serve();
  void serve_client(int client);
  std::string answer(const std::string& line, const ucred& peer);

  Options options_;
  UniqueFd listener_;
  UniqueFd wake_;  // eventfd: stop() writes it, every poll() of the thread watches it
  std::atomic<bool> stopping_{false};
  std::atomic<bool> in_request_{false};
  std::thread thread_;
};

// The daemon's way in: the socket for `instance`, or nothing when it cannot be
// made (logged, with the cause: the device serves all the same, as without a
// status file; `vramswap release` then says the daemon has no control socket).
std::unique_ptr<ControlSocket> open_control_socket(const std::string& instance,
                                                   ElasticControl* elastic);

}  // namespace vramswap::daemon
