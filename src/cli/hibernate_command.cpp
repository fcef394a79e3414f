#include "cli/hibernate_command.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "cli/hibernate_plan.hpp"
#include "cli/swap_lookup.hpp"
#include "common/byte_size.hpp"
#include "common/exit_codes.hpp"
#include "common/startup_error.hpp"
#include "config/config.hpp"
#include "kernel/nbd_netlink.hpp"
#include "kernel/swaps.hpp"
#include "status/instance_status.hpp"
#include "systemd/unit_name.hpp"

namespace vramswap::cli {
namespace {

constexpr int refused = 1;

bool exists(const std::string& path) {
  return access(path.c_str(), F_OK) == 0;
}

std::optional<std::string> read_text(const std::string& path) {
  std::ifstream file(path);
  if (!file) return std::nullopt;
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

// Atomically, as the status files are written; false with errno set.
bool write_record(const HibernateRecord& record) {
  const std::string dir = status::runtime_directory();
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return false;
  const std::string path = hibernate_record_path();
  const std::string temporary = path + ".tmp";
  const std::string text = record_to_json(record);
  const int fd = open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  const int saved = errno;
  const bool synced = written && fsync(fd) == 0;
  close(fd);
  if (!synced || rename(temporary.c_str(), path.c_str()) != 0) {
    unlink(temporary.c_str());
    errno = written ? errno : saved;
    return false;
  }
  return true;
}

void save_record(const HibernateRecord& record) {
  if (record.devices.empty()) {
    if (unlink(hibernate_record_path().c_str()) != 0 && errno != ENOENT) {
      throw StartupError(exit_code::os_error,
                         "cannot remove " + hibernate_record_path() + ": " + std::strerror(errno));
    }
    return;
  }
  if (!write_record(record)) {
    throw StartupError(exit_code::os_error, "cannot write " + hibernate_record_path() + ": " +
                                                std::strerror(errno) + "; is " +
                                                status::runtime_directory() + " writable?");
  }
}

// The record an earlier prepare left; nothing when there is none. Throws
// StartupError when it cannot be read or is not a record.
HibernateRecord load_record() {
  const std::string path = hibernate_record_path();
  const std::optional<std::string> text = read_text(path);
  if (!text) {
    if (!exists(path)) return {};
    throw StartupError(exit_code::os_error, "cannot read " + path + ": " + std::strerror(errno));
  }
  std::string why;
  std::optional<HibernateRecord> record = record_from_json(*text, why);
  if (!record) {
    throw StartupError(refused, path + " is not a record of vramswap hibernate prepare (" + why +
                                    "): remove it, and start the swap units of the devices it "
                                    "named (systemctl start dev-vramswap-NAME.swap)");
  }
  return *record;
}

// Each instance's `discard`; empty where the configuration cannot be read
// (said once: the devices then come back without discard).
std::map<std::string, bool> configured_discard(const std::string& config_path) {
  std::map<std::string, bool> discard;
  try {
    const config::ConfigReport report = config::load_config_report(config_path);
    for (const config::DeviceResult& device : report.devices) {
      if (device.config) discard[device.name] = device.config->discard;
    }
  } catch (const StartupError& e) {
    std::printf("hibernate: %s; the devices come back without discard\n", e.what());
  }
  return discard;
}

std::vector<VramSwap> active_vram_swap(const std::vector<kernel::SwapEntry>& swaps,
                                       const std::string& config_path) {
  std::vector<VramSwap> found;
  std::map<std::string, bool> discard;
  bool config_read = false;
  for (const status::InstanceStatus& file : status::read_status_files()) {
    if (file.device.empty()) continue;
    const std::optional<kernel::SwapEntry> swap = find_device_swap(swaps, file.device, exists);
    if (!swap) continue;
    if (!config_read) {
      discard = configured_discard(config_path);
      config_read = true;
    }
    const auto configured = discard.find(file.instance);
    found.push_back(
        {file.instance, file.device, *swap, configured != discard.end() && configured->second});
  }
  return found;
}

std::optional<std::string> backend_of(const std::string& device) {
  constexpr std::string_view prefix = "/dev/nbd";
  if (!device.starts_with(prefix)) return std::nullopt;
  uint32_t index = 0;
  const char* first = device.data() + prefix.size();
  const auto [end, error] = std::from_chars(first, device.data() + device.size(), index);
  if (error != std::errc{} || end != device.data() + device.size() || end == first) {
    return std::nullopt;
  }
  const std::optional<kernel::NbdSysfs> sysfs = kernel::read_nbd_sysfs(index);
  if (!sysfs || sysfs->size_bytes == 0 || sysfs->backend.empty()) return std::nullopt;
  return sysfs->backend;
}

std::string priority_text(int priority) {
  return priority < 0 ? "the priority the kernel picks" : "priority " + std::to_string(priority);
}

// Swaps `swap` on again after a refusal or at resume; false, with a line on
// standard error, when the kernel refuses.
bool swap_back_on(const HibernateSwap& swap, const char* when) {
  try {
    kernel::swap_on(swap.device, swap.priority, swap.discard);
  } catch (const StartupError& e) {
    std::fprintf(stderr, "vramswap: hibernate: %s of vramswap %s stays off %s: %s\n",
                 swap.device.c_str(), swap.instance.c_str(), when, e.what());
    return false;
  }
  std::printf("hibernate: swap on %s (vramswap %s) again %s at %s%s\n", swap.device.c_str(),
              swap.instance.c_str(), when, priority_text(swap.priority).c_str(),
              swap.discard ? " with discard" : "");
  return true;
}

int prepare(const std::string& config_path) {
  const std::vector<kernel::SwapEntry> swaps = kernel::read_proc_swaps();
  const std::vector<VramSwap> vram = active_vram_swap(swaps, config_path);
  if (vram.empty()) {
    std::printf("hibernate: no VRAM swap is active; nothing to swap off\n");
    return exit_code::ok;
  }
  const std::optional<std::string> meminfo = read_text("/proc/meminfo");
  const std::optional<MemoryState> memory = meminfo ? parse_meminfo(*meminfo) : std::nullopt;
  if (!memory) {
    throw StartupError(exit_code::os_error,
                       "hibernation refused: cannot read MemTotal and MemAvailable from "
                       "/proc/meminfo; is /proc mounted?");
  }
  const bool resume_configured =
      resume_device_configured(read_text("/sys/power/resume").value_or(""));
  const PreparePlan plan = plan_prepare(vram, swaps, *memory, resume_configured);
  if (!plan.refusal.empty()) {
    std::fprintf(stderr, "vramswap: %s\n", plan.refusal.c_str());
    return refused;
  }

  // A record an earlier prepare left names devices that are still off; one
  // that cannot be read must not stop this hibernation (those devices are
  // not swap, so nothing is at risk): it is replaced, and said so.
  HibernateRecord earlier;
  try {
    earlier = load_record();
  } catch (const StartupError& e) {
    std::printf("hibernate: %s; replacing it\n", e.what());
  }
  HibernateRecord done;
  for (const HibernateSwap& swap : plan.swap_off) {
    // Recorded before the swapoff: a prepare that is killed midway leaves
    // nothing off that resume does not know of (a device still on is left).
    HibernateRecord with_this = done;
    with_this.devices.push_back(swap);
    save_record(merge_records(with_this, earlier));
    const auto start = std::chrono::steady_clock::now();
    try {
      kernel::swap_off(swap.device);
    } catch (const StartupError& e) {
      std::fprintf(stderr,
                   "vramswap: hibernation refused: %s (vramswap %s); the swap on VRAM stays on\n",
                   e.what(), swap.instance.c_str());
      HibernateRecord still_off;
      for (const HibernateSwap& off : done.devices) {
        if (!swap_back_on(off, "after the refusal")) still_off.devices.push_back(off);
      }
      save_record(merge_records(still_off, earlier));
      return refused;
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    done.devices.push_back(swap);
    std::printf("hibernate: swap off %s (vramswap %s): %s back to RAM and other swap in %.1f s\n",
                swap.device.c_str(), swap.instance.c_str(),
                format_byte_size(swap.used_bytes).c_str(), seconds);
  }
  save_record(merge_records(done, earlier));
  return exit_code::ok;
}

int resume() {
  const HibernateRecord record = load_record();
  if (record.devices.empty()) {
    std::printf("hibernate: nothing to swap on (no %s)\n", hibernate_record_path().c_str());
    return exit_code::ok;
  }
  const std::vector<kernel::SwapEntry> swaps = kernel::read_proc_swaps();
  const auto is_swap = [&](const std::string& device) {
    return find_device_swap(swaps, device, exists).has_value();
  };
  HibernateRecord left;
  for (const ResumeAction& action : plan_resume(record, backend_of, is_swap)) {
    const HibernateSwap& swap = action.swap;
    switch (action.step) {
      case ResumeStep::not_the_same:
        std::printf(
            "hibernate: %s is not swapped on for vramswap %s: %s (its own units swap on "
            "its device)\n",
            swap.device.c_str(), swap.instance.c_str(), action.why.c_str());
        break;
      case ResumeStep::already_on:
        std::printf("hibernate: %s (vramswap %s) is swap already\n", swap.device.c_str(),
                    swap.instance.c_str());
        break;
      case ResumeStep::swap_on:
        if (!swap_back_on(swap, "after the hibernation")) left.devices.push_back(swap);
        break;
    }
  }
  save_record(left);
  if (!left.devices.empty()) {
    std::fprintf(stderr,
                 "vramswap: hibernate: %zu device%s could not be swapped on (above); fix the "
                 "cause and run vramswap hibernate resume again\n",
                 left.devices.size(), left.devices.size() == 1 ? "" : "s");
    return refused;
  }
  return exit_code::ok;
}

}  // namespace

std::string hibernate_record_path() {
  return status::runtime_directory() + "/hibernate.record";
}

int run_hibernate(HibernateStep step, const std::string& config_path) {
  const char* name = step == HibernateStep::prepare ? "prepare" : "resume";
  if (geteuid() != 0) {
    std::fprintf(stderr,
                 "vramswap: hibernate %s needs root (it swaps devices off and on); run it as "
                 "root (sudo vramswap hibernate %s)\n",
                 name, name);
    return exit_code::no_permission;
  }
  // Line by line into the journal, in order with systemd's own lines.
  setvbuf(stdout, nullptr, _IOLBF, 0);
  return step == HibernateStep::prepare ? prepare(config_path) : resume();
}

}  // namespace vramswap::cli
