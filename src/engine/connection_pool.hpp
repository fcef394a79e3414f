#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include "common/unique_fd.hpp"
#include "engine/connection.hpp"

namespace vramswap::engine {

// Every connection the daemon will ever hold at once, allocated at start, in
// two parts that never lend to each other: the kernel's slots, one per
// connection of its nbd device, and the listen socket's client slots. A client
// can therefore never take a kernel slot, not even in the moment between the
// kernel dropping a connection and the daemon handing it a new one. A client
// beyond its part waits in the listen backlog until a client slot frees.
class ConnectionPool {
 public:
  ConnectionPool(size_t kernel_slots, size_t client_slots);

  // A free slot of that origin's part, or nullptr when all are in use. Not on
  // the request path.
  Connection* acquire(Origin origin) noexcept;
  // Returns the slot to the part it came from (by its origin).
  void release(Connection* connection) noexcept;

  // Lowers the client part (never raises it): what the file descriptor limit
  // leaves for clients is known only once the daemon has opened the rest.
  void limit_client_slots(size_t slots) noexcept;

  size_t slots() const noexcept { return kernel_slots_ + client_slots_; }
  size_t kernel_slots() const noexcept { return kernel_slots_; }
  size_t client_slots() const noexcept;
  size_t clients_in_use() const noexcept;
  bool client_slot_free() const noexcept;
  // Becomes readable whenever a client slot is released (the listener waits on it).
  int released_fd() const noexcept { return released_.get(); }

 private:
  size_t kernel_slots_;
  size_t client_slots_;
  std::unique_ptr<Connection[]> connections_;
  mutable std::mutex mutex_;
  std::vector<Connection*> free_kernel_;
  std::vector<Connection*> free_clients_;
  size_t client_limit_;  // client slots that may be used at once (<= client_slots_)
  UniqueFd released_;
};

}  // namespace vramswap::engine
