#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include "common/unique_fd.hpp"
#include "engine/connection.hpp"

namespace vramswap::engine {

// Every connection the daemon will ever hold at once, allocated at start. A
// client beyond the pool waits in the listen backlog until a slot frees.
class ConnectionPool {
 public:
  explicit ConnectionPool(size_t slots);

  // A free slot, or nullptr when all are in use. Not on the request path.
  Connection* acquire() noexcept;
  void release(Connection* connection) noexcept;

  size_t slots() const noexcept { return slots_; }
  size_t in_use() const noexcept;
  // Becomes readable whenever a slot is released (the listener waits on it).
  int released_fd() const noexcept { return released_.get(); }

 private:
  size_t slots_;
  std::unique_ptr<Connection[]> connections_;
  mutable std::mutex mutex_;
  std::vector<Connection*> free_;
  UniqueFd released_;
};

}  // namespace vramswap::engine
