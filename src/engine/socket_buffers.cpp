#include "engine/socket_buffers.hpp"

#include <sys/socket.h>

#include "common/byte_size.hpp"
#include "engine/limits.hpp"

namespace vramswap::engine {

void enlarge_socket_buffers(int fd) noexcept {
  const int size = static_cast<int>(socket_buffer_bytes);
  // SO_*BUFFORCE passes net.core.[rw]mem_max (we run as root); fall back.
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  }
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  }
}

}  // namespace vramswap::engine
