#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vramswap::cli {

// Whether the process a status file names is still the daemon that wrote it.
// A daemon removes its file when it exits cleanly; one that crashed or was
// killed leaves it behind, and its pid may since belong to someone else.
enum class DaemonProcess {
  running,        // alive, a vramswapd, started before the file was last written
  gone,           // no such process (or a zombie)
  other_program,  // the pid is now another program
  newer_process,  // a vramswapd, but started after the file was last written
};

// The parts of /proc/PID/stat this needs.
struct ProcessStat {
  char state = '?';          // R, S, D, Z, ...
  uint64_t start_ticks = 0;  // start time, clock ticks after boot
};

// Parses /proc/PID/stat, whose second field (the name, in parentheses) may
// hold spaces and parentheses itself.
std::optional<ProcessStat> parse_process_stat(std::string_view text);

// The decision, from what /proc says. `start_unix` is the process's start
// time in seconds since the epoch; `updated_unix` the file's last write.
DaemonProcess classify_process(bool exists, const std::string& comm, const ProcessStat& stat,
                               int64_t start_unix, int64_t updated_unix);

// Looks at /proc/PID: comm, stat and the boot time in /proc/stat.
DaemonProcess check_daemon_process(int64_t pid, int64_t updated_unix);

}  // namespace vramswap::cli
