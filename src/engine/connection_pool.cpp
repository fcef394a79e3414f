#include "engine/connection_pool.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/startup_error.hpp"

namespace vramswap::engine {

ConnectionPool::ConnectionPool(size_t slots)
    : slots_(slots),
      connections_(std::make_unique<Connection[]>(slots)),
      released_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (!released_) {
    throw StartupError(exit_code::os_error,
                       std::string("cannot create an eventfd: ") + std::strerror(errno));
  }
  free_.reserve(slots);
  for (size_t i = slots; i-- > 0;) free_.push_back(&connections_[i]);
}

Connection* ConnectionPool::acquire() noexcept {
  std::lock_guard lock(mutex_);
  if (free_.empty()) return nullptr;
  Connection* c = free_.back();
  free_.pop_back();
  return c;
}

void ConnectionPool::release(Connection* c) noexcept {
  c->handshake.reset();
  c->fd = -1;
  c->phase = Phase::closed;
  {
    std::lock_guard lock(mutex_);
    free_.push_back(c);  // capacity reserved for every slot: never allocates
  }
  const uint64_t one = 1;
  ssize_t ignored = ::write(released_.get(), &one, sizeof one);
  (void)ignored;
}

size_t ConnectionPool::in_use() const noexcept {
  std::lock_guard lock(mutex_);
  return slots_ - free_.size();
}

}  // namespace vramswap::engine
