#include "engine/connection_pool.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/startup_error.hpp"

namespace vramswap::engine {

ConnectionPool::ConnectionPool(size_t kernel_slots, size_t client_slots)
    : kernel_slots_(kernel_slots),
      client_slots_(client_slots),
      connections_(std::make_unique<Connection[]>(kernel_slots + client_slots)),
      client_limit_(client_slots),
      released_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (!released_) {
    throw StartupError(exit_code::os_error,
                       std::string("cannot create an eventfd: ") + std::strerror(errno));
  }
  free_kernel_.reserve(kernel_slots);
  free_clients_.reserve(client_slots);
  for (size_t i = kernel_slots; i-- > 0;) {
    connections_[i].origin = Origin::kernel;
    free_kernel_.push_back(&connections_[i]);
  }
  for (size_t i = kernel_slots + client_slots; i-- > kernel_slots;) {
    connections_[i].origin = Origin::client;
    free_clients_.push_back(&connections_[i]);
  }
}

Connection* ConnectionPool::acquire(Origin origin) noexcept {
  std::lock_guard lock(mutex_);
  if (origin == Origin::client) {
    if (free_clients_.empty() || client_slots_ - free_clients_.size() >= client_limit_) {
      return nullptr;
    }
    Connection* c = free_clients_.back();
    free_clients_.pop_back();
    return c;
  }
  if (free_kernel_.empty()) return nullptr;
  Connection* c = free_kernel_.back();
  free_kernel_.pop_back();
  return c;
}

void ConnectionPool::release(Connection* c) noexcept {
  c->handshake.reset();
  c->fd = -1;
  c->phase = Phase::closed;
  // A slot's part is fixed by its place in the array, whatever was done with it.
  const bool kernel = c < &connections_[kernel_slots_];
  c->origin = kernel ? Origin::kernel : Origin::client;
  {
    std::lock_guard lock(mutex_);
    // Capacity reserved for every slot: never allocates.
    (kernel ? free_kernel_ : free_clients_).push_back(c);
  }
  if (kernel) return;
  const uint64_t one = 1;
  ssize_t ignored = ::write(released_.get(), &one, sizeof one);
  (void)ignored;
}

void ConnectionPool::limit_client_slots(size_t slots) noexcept {
  std::lock_guard lock(mutex_);
  client_limit_ = std::min(client_limit_, slots);
}

size_t ConnectionPool::client_slots() const noexcept {
  std::lock_guard lock(mutex_);
  return client_limit_;
}

size_t ConnectionPool::clients_in_use() const noexcept {
  std::lock_guard lock(mutex_);
  return client_slots_ - free_clients_.size();
}

bool ConnectionPool::client_slot_free() const noexcept {
  std::lock_guard lock(mutex_);
  return !free_clients_.empty() && client_slots_ - free_clients_.size() < client_limit_;
}

}  // namespace vramswap::engine
