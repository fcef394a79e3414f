#include "engine/descriptor_budget.hpp"

#include <dirent.h>
#include <sys/resource.h>

#include <algorithm>

namespace vramswap::engine {

size_t clients_within(size_t wanted, size_t limit, size_t open, size_t reserve) noexcept {
  const size_t needed = open + reserve;
  return limit > needed ? std::min(wanted, limit - needed) : 0;
}

size_t open_descriptors() noexcept {
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return 0;
  size_t count = 0;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count > 0 ? count - 1 : 0;  // less the directory's own descriptor
}

size_t descriptors_needed(unsigned workers, unsigned kernel_connections, bool listen) noexcept {
  constexpr size_t per_worker = 2;             // epoll + wake-up eventfd
  constexpr size_t server_descriptors = 1;     // the kernel-connection-closed eventfd
  constexpr size_t per_kernel_connection = 2;  // both ends of its socket pair, while handed over
  constexpr size_t listen_descriptors = 3;     // socket, stop eventfd, one client
  return daemon_descriptor_reserve + server_descriptors + per_worker * workers +
         per_kernel_connection * kernel_connections + (listen ? listen_descriptors : 0);
}

size_t descriptor_limit() noexcept {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return 0;
  return static_cast<size_t>(limit.rlim_cur);
}

size_t clients_within_descriptor_limit(size_t wanted, size_t reserve) noexcept {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return wanted;
  return clients_within(wanted, static_cast<size_t>(limit.rlim_cur), open_descriptors(), reserve);
}

}  // namespace vramswap::engine
