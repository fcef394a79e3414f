#include "cli/daemon_process.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <fstream>
#include <sstream>

namespace vramswap::cli {
namespace {

// The kernel's name of the daemon (comm, at most 15 characters).
constexpr std::string_view daemon_comm = "vramswapd";

// The clock counts whole seconds in the status file and in /proc/stat's
// btime, and ticks in the start time: allow for the rounding of both.
constexpr int64_t clock_slack_s = 2;

std::string read_small_file(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::optional<int64_t> boot_time_unix() {
  std::istringstream in(read_small_file("/proc/stat"));
  std::string key;
  while (in >> key) {
    if (key == "btime") {
      int64_t value = 0;
      if (in >> value) return value;
      return std::nullopt;
    }
    in.ignore(1 << 20, '\n');
  }
  return std::nullopt;
}

}  // namespace

std::optional<ProcessStat> parse_process_stat(std::string_view text) {
  // "PID (comm) S ppid ...": everything after the last ')' is space-separated.
  const size_t close = text.rfind(')');
  if (close == std::string_view::npos) return std::nullopt;
  std::string_view rest = text.substr(close + 1);
  // Fields after comm, counted from 1: state is 1, starttime is 20
  // (field 22 of proc(5), less pid and comm).
  ProcessStat stat;
  int field = 0;
  while (!rest.empty()) {
    while (!rest.empty() && rest.front() == ' ')
      rest.remove_prefix(1);
    if (rest.empty()) break;
    const size_t end = std::min(rest.find(' '), rest.size());
    const std::string_view value = rest.substr(0, end);
    ++field;
    if (field == 1) {
      stat.state = value.empty() ? '?' : value.front();
    } else if (field == 20) {
      const auto [ptr, error] =
          std::from_chars(value.data(), value.data() + value.size(), stat.start_ticks);
      if (error != std::errc() || ptr != value.data() + value.size()) return std::nullopt;
      return stat;
    }
    rest.remove_prefix(end);
  }
  return std::nullopt;
}

DaemonProcess classify_process(bool exists, const std::string& comm, const ProcessStat& stat,
                               int64_t start_unix, int64_t updated_unix) {
  if (!exists || stat.state == 'Z' || stat.state == 'X') return DaemonProcess::gone;
  std::string_view name = comm;
  while (!name.empty() && name.back() == '\n')
    name.remove_suffix(1);
  if (name != daemon_comm) return DaemonProcess::other_program;
  if (updated_unix > 0 && start_unix > updated_unix + clock_slack_s) {
    return DaemonProcess::newer_process;
  }
  return DaemonProcess::running;
}

DaemonProcess check_daemon_process(int64_t pid, int64_t updated_unix) {
  if (pid <= 0 || pid > INT32_MAX) return DaemonProcess::gone;
  // EPERM: it exists, but belongs to another user (we are not root).
  if (kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM) return DaemonProcess::gone;
  const std::string dir = "/proc/" + std::to_string(pid);
  const std::string comm = read_small_file(dir + "/comm");
  const auto stat = parse_process_stat(read_small_file(dir + "/stat"));
  // Gone between the calls above.
  if (comm.empty() || !stat) return DaemonProcess::gone;
  int64_t start_unix = 0;
  const long ticks_per_second = sysconf(_SC_CLK_TCK);
  if (const auto boot = boot_time_unix(); boot && ticks_per_second > 0) {
    start_unix = *boot + static_cast<int64_t>(stat->start_ticks / ticks_per_second);
  }
  return classify_process(true, comm, *stat, start_unix, updated_unix);
}

}  // namespace vramswap::cli
