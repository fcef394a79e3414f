#include "engine/busy_poll_policy.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace vramswap::engine {
namespace {

// Reads a small file into `buffer` (NUL-terminated); false if it cannot.
bool read_small_file(const char* path, char* buffer, size_t size) noexcept {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const ssize_t n = ::read(fd, buffer, size - 1);
  ::close(fd);
  if (n <= 0) return false;
  buffer[n] = '\0';
  return true;
}

unsigned usable_cpus() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  return online > 0 ? static_cast<unsigned>(online) : 1;
}

}  // namespace

SystemLoad::SystemLoad(const std::string& power_supply_dir) : cpus_(usable_cpus()) {
  const std::string root = power_supply_dir + "/";
  DIR* dir = opendir(root.c_str());
  if (!dir) return;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    char type[32];
    const std::string base = root + entry->d_name;
    if (read_small_file((base + "/type").c_str(), type, sizeof type) &&
        std::strncmp(type, "Battery", 7) == 0) {
      battery_status_paths_.push_back(base + "/status");
    }
  }
  closedir(dir);
}

// The fourth field of /proc/loadavg, "runnable/total", counts the threads
// running or waiting for a CPU now (this one included).
std::optional<unsigned> SystemLoad::runnable_threads() noexcept {
  char text[128];
  if (!read_small_file("/proc/loadavg", text, sizeof text)) return std::nullopt;
  const char* field = text;
  for (int spaces = 0; spaces < 3; ++field) {
    if (*field == '\0') return std::nullopt;
    if (*field == ' ') ++spaces;
  }
  unsigned runnable = 0;
  bool digits = false;
  for (; *field >= '0' && *field <= '9'; ++field, digits = true)
    runnable = runnable * 10 + static_cast<unsigned>(*field - '0');
  if (!digits || *field != '/') return std::nullopt;
  return runnable;
}

// On battery while any battery discharges (what upower and the desktop say).
bool SystemLoad::on_battery() noexcept {
  for (const std::string& path : battery_status_paths_) {
    char status[32];
    if (read_small_file(path.c_str(), status, sizeof status) &&
        std::strncmp(status, "Discharging", 11) == 0) {
      return true;
    }
  }
  return false;
}

BusyPollPolicy::BusyPollPolicy(BusyPollMode mode, unsigned window_us, MachineLoad& load) noexcept
    : mode_(mode), window_ns_(int64_t{window_us} * 1000), load_(load) {}

void BusyPollPolicy::work_found(int64_t now_ns) noexcept {
  if (spinning_) backoff_ns_ = 0;  // the spin caught work: it pays
  spinning_ = false;
  last_gap_ns_ = now_ns - last_work_ns_;
  last_work_ns_ = now_ns;
}

bool BusyPollPolicy::spin(int64_t now_ns) noexcept {
  if (window_ns_ == 0) return false;
  const bool within_window = now_ns - last_work_ns_ < window_ns_;
  if (mode_ == BusyPollMode::fixed) return within_window;

  if (!within_window) {
    if (spinning_) {
      // A whole window of polling found nothing: spin less.
      spinning_ = false;
      backoff_ns_ = std::clamp(backoff_ns_ * 2, min_backoff_ns, max_backoff_ns);
      backoff_until_ns_ = now_ns + backoff_ns_;
    }
    return false;
  }
  if (spinning_) return true;  // decided at the start of this window
  if (last_gap_ns_ >= window_ns_ || now_ns < backoff_until_ns_ || !machine_has_spare_cpu(now_ns)) {
    return false;
  }
  spinning_ = true;
  return true;
}

bool BusyPollPolicy::machine_has_spare_cpu(int64_t now_ns) noexcept {
  if (now_ns - battery_checked_ns_ >= battery_recheck_ns) {
    battery_checked_ns_ = now_ns;
    on_battery_ = load_.on_battery();
  }
  if (now_ns - load_checked_ns_ >= load_recheck_ns) {
    load_checked_ns_ = now_ns;
    const std::optional<unsigned> runnable = load_.runnable_threads();
    oversubscribed_ = runnable && *runnable > load_.cpus();
  }
  return !on_battery_ && !oversubscribed_;
}

}  // namespace vramswap::engine
