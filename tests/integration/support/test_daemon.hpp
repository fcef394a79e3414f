#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/unique_fd.hpp"
#include "fd_store_host.hpp"
#include "support/process.hpp"

namespace vramswap::test {

// The daemon and the CUDA driver library the tests run (the build tree's
// daemon and fake driver unless the environment says otherwise).
std::string vramswapd_binary();
std::string fake_libcuda();

struct DaemonSpec {
  std::string instance = "test";
  std::string size = "1G";
  unsigned connections = 4;
  std::string extra_config;  // more lines for the device section
  // The spill key: off unless a test asks, so that no test writes a spill
  // file under /var/lib/vramswap.
  std::string spill = "no";
  std::string listen;   // the socket; empty: socket_path() in the private directory
  bool attach = false;  // a kernel nbd device too (needs the nbd module and root)
  // Keep what the daemon puts in systemd's file descriptor store (FDSTORE=1)
  // and hand it to the next start(), as systemd does across a restart. Off:
  // the descriptors are closed as they arrive (a unit without a store).
  bool fd_store = false;
  Environment environment;  // e.g. VRAMSWAP_FAKE_* knobs of the fake driver
};

// vramswapd on the fake CUDA driver, serving NBD on a Unix socket in a
// private directory, with systemd's notify protocol to know when it is ready.
class TestDaemon {
 public:
  explicit TestDaemon(DaemonSpec spec = {});
  ~TestDaemon();
  TestDaemon(const TestDaemon&) = delete;
  TestDaemon& operator=(const TestDaemon&) = delete;

  // Starts it and waits for READY=1. False if it exited or timed out first
  // (log() then says why). May be called again once the last one has exited:
  // same configuration, runtime directory and log.
  bool start(std::chrono::seconds timeout = std::chrono::seconds(60));
  // Waits for the process to exit by itself; returns its exit status or -1.
  int wait(std::chrono::seconds timeout);
  // SIGTERM, then waits; returns its exit status, or -1 if it did not exit.
  int stop(std::chrono::seconds timeout = std::chrono::seconds(30));
  bool alive() const;
  pid_t pid() const { return pid_; }

  std::string socket_path() const { return dir_.file("nbd.sock"); }
  std::string uri() const { return "nbd+unix:///?socket=" + socket_path(); }
  std::string config_path() const { return dir_.file("vramswap.conf"); }
  std::string control_path() const { return dir_.file("fake-control"); }
  const TempDir& dir() const { return dir_; }
  std::string log() const { return read_file(dir_.file("daemon.log")); }
  // The last STATUS= line sent to the notify socket.
  std::string last_status();
  // Waits (the daemon refreshes its status every few seconds) for a STATUS=
  // line containing `text`.
  bool status_shows(const std::string& text,
                    std::chrono::seconds timeout = std::chrono::seconds(10));
  // The names in the file descriptor store now, one per stored descriptor,
  // sorted (with fd_store).
  std::vector<std::string> stored_fd_names();
  // Empties the store, as systemd does when a unit stops for good.
  void clear_fd_store();
  // The first descriptor stored under `name` (the store keeps it), or -1.
  int stored_fd(const std::string& name);

  // Where each of the running daemon's threads is: /proc's state, wait
  // channel and system call of each, and gdb's backtraces where gdb is
  // installed. For a test to print when the daemon stalls.
  std::string threads_report() const;

 private:
  void drain_notifications(int timeout_ms);
  void record_where_stuck();

  TempDir dir_;
  DaemonSpec spec_;
  UniqueFd notify_;
  pid_t pid_ = -1;
  std::atomic<bool> ready_{false};
  std::mutex status_mutex_;
  std::string status_;  // guarded by status_mutex_
  // systemd's side of the notify socket, with its file descriptor store;
  // guarded by status_mutex_.
  FdStoreHost fd_store_;
  std::thread drainer_;  // reads the notify socket while the daemon runs
  std::atomic<bool> stop_draining_{false};
};

}  // namespace vramswap::test
