#pragma once

#include <functional>
#include <string>
#include <thread>

#include "common/unique_fd.hpp"
#include "engine/connection_pool.hpp"

namespace vramswap::engine {

// Accepts userspace clients on the listen socket and hands each to a worker.
// When every client slot is taken it stops accepting, so later clients wait
// in the kernel's listen backlog instead of being refused (said once, rate-
// limited, in the log); it resumes as soon as a client slot is released.
class Listener {
 public:
  Listener(UniqueFd socket, std::string path, ConnectionPool& pool,
           std::function<void(Connection*)> assign);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  void start();
  void stop_and_join();
  const std::string& path() const noexcept { return path_; }

 private:
  void run() noexcept;
  void accept_all() noexcept;
  void note_client_waiting() noexcept;

  UniqueFd socket_;
  std::string path_;
  ConnectionPool& pool_;
  std::function<void(Connection*)> assign_;
  UniqueFd stop_;
  std::thread thread_;
};

}  // namespace vramswap::engine
