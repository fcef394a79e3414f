#pragma once

// `vramswap status` as a pure function: what was observed on the machine
// (status files, whether their daemons live, /proc/swaps, the config file,
// systemd's units, the driver) goes in; one entry per instance, the reasons
// and the exit status come out. gather_status_inputs() (status_command.hpp)
// does the observing.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cli/daemon_process.hpp"
#include "cli/message.hpp"
#include "config/config.hpp"
#include "cuda/device.hpp"
#include "kernel/swaps.hpp"
#include "status/instance_status.hpp"
#include "systemd/unit_state.hpp"

namespace vramswap::cli {

// Exit statuses of `vramswap status` (see vramswap(8)).
namespace status_exit {
inline constexpr int ok = 0;  // every instance serving, healthy, swapping where attached
inline constexpr int trouble =
    1;  // something needs a person: failed, degraded, crashed, bad config
inline constexpr int not_running =
    3;  // nothing wrong, but not everything runs (or nothing is set up)
}  // namespace status_exit

// Where the daemon's /dev/vramswap/NAME link points.
enum class LinkState { not_checked, ok, missing, elsewhere };

// One status file, and what the system says about what it claims.
struct DaemonObservation {
  status::InstanceStatus file;
  DaemonProcess process = DaemonProcess::gone;
  // The device's line in /proc/swaps (compared by device number), when the
  // file names a device and /proc/swaps could be read.
  std::optional<kernel::SwapEntry> live_swap;
  LinkState link = LinkState::not_checked;
};

struct ConfigObservation {
  std::string path;
  // The file could not be read: why, in one line ("...: no such file; ...").
  std::string unreadable;
  bool missing = false;  // ... because it does not exist
  std::optional<config::ConfigReport> report;
};

struct DriverObservation {
  bool checked = false;
  std::string error;  // why the driver cannot be used; empty when it can
  std::vector<cuda::DeviceInfo> gpus;
  std::string library;  // what was loaded ("libcuda.so.1" or $VRAMSWAP_LIBCUDA)
  std::string version;  // the CUDA version the driver supports, "13.0"
  // With free memory asked for: why a GPU's free VRAM is unknown (by
  // position in `gpus`; empty where it is known).
  std::vector<std::string> free_errors;
  // The system's driver was to be used, and its kernel module is not loaded
  // (no /proc/driver/nvidia).
  bool kernel_module_missing = false;
};

struct StatusInputs {
  ConfigObservation config;
  std::vector<DaemonObservation> daemons;  // one per status file
  // Files in the runtime directory that look like status files but are not
  // of a format this program knows (a newer daemon?), with why.
  std::vector<std::string> unreadable_status_files;
  std::string runtime_dir;
  bool proc_swaps_readable = true;
  std::string proc_swaps_error;
  bool systemd = false;       // this machine runs systemd (/run/systemd/system)
  std::string systemd_error;  // systemd could not be asked: why
  std::map<std::string, systemd::UnitState> units;  // by instance name
  DriverObservation driver;
  int64_t now_unix = 0;
};

// What to show about the swap on an instance's device.
struct SwapView {
  bool active = false;
  uint64_t size_bytes = 0, used_bytes = 0;
  std::optional<int> priority;
  std::string source = "none";  // "proc-swaps", "status-file" or "none" (no device)
};

// How an instance counts for the exit status.
enum class Verdict { ok, not_running, trouble };

struct InstanceView {
  std::string name;
  bool configured = false;            // has a [device.NAME] section
  std::string state;                  // serving, stopping, starting, restarting, not-running,
                                      // failed, skipped, unknown
  std::optional<std::string> health;  // ok, degraded, failed: while a daemon runs
  std::optional<status::InstanceStatus> daemon;  // its status file, while its daemon runs
  std::optional<int64_t> status_age_s;
  bool stale_status_file = false;  // a dead daemon's file was found
  SwapView swap;
  std::optional<systemd::UnitState> unit;
  Messages messages;
  Verdict verdict = Verdict::ok;
};

struct StatusReport {
  ConfigObservation config;
  size_t configured = 0;  // [device.NAME] sections
  std::string runtime_dir;
  bool systemd = false;
  std::vector<InstanceView> instances;  // configured ones in file order, then the others by name
  Messages messages;                    // about the machine as a whole: why nothing runs
  int exit_status = status_exit::ok;
};

// Seconds without a refresh after which a serving daemon counts as stuck
// (it rewrites its file every 5 s).
inline constexpr int64_t stuck_after_s = 30;

// "the nvidia kernel module is not loaded ...; ...": said when the driver
// cannot be used and the kernel half of it is missing too.
extern const char* const kernel_module_message;

// Every instance to show: the configured ones in file order, then those
// only a status file knows, by name.
std::vector<std::string> instance_names(const StatusInputs& inputs);

// Whether an instance has no live daemon: the driver is then asked why.
bool needs_driver_check(const StatusInputs& inputs);

StatusReport build_status_report(const StatusInputs& inputs);

}  // namespace vramswap::cli
