#include "cli/status_command.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <stdexcept>

#include "cli/driver_check.hpp"
#include "cli/observe.hpp"
#include "cli/status_output.hpp"
#include "cli/swap_lookup.hpp"
#include "common/startup_error.hpp"
#include "systemd/unit_name.hpp"
#include "systemd/unit_query.hpp"

namespace vramswap::cli {
namespace {

void read_status_files(StatusInputs& inputs) {
  StatusDirectory directory = read_status_directory(inputs.runtime_dir);
  inputs.unreadable_status_files = std::move(directory.unreadable);
  for (auto& file : directory.files) {
    DaemonObservation observed;
    observed.file = std::move(file);
    inputs.daemons.push_back(std::move(observed));
  }
}

LinkState check_link(const std::string& link, const std::string& device) {
  if (link.empty() || device.empty()) return LinkState::not_checked;
  struct stat device_stat {
  }, link_stat{};
  if (stat(device.c_str(), &device_stat) != 0 || !S_ISBLK(device_stat.st_mode)) {
    return LinkState::not_checked;
  }
  if (stat(link.c_str(), &link_stat) != 0) return LinkState::missing;
  return S_ISBLK(link_stat.st_mode) && link_stat.st_rdev == device_stat.st_rdev
             ? LinkState::ok
             : LinkState::elsewhere;
}

void observe_daemons(StatusInputs& inputs) {
  std::vector<kernel::SwapEntry> swaps;
  try {
    swaps = kernel::read_proc_swaps();
  } catch (const StartupError& error) {
    inputs.proc_swaps_readable = false;
    inputs.proc_swaps_error = error.what();
  }
  for (DaemonObservation& observed : inputs.daemons) {
    const status::InstanceStatus& file = observed.file;
    observed.process = check_daemon_process(file.pid, file.updated_unix);
    if (!file.device.empty() && inputs.proc_swaps_readable) {
      observed.live_swap = find_device_swap(swaps, file.device, [](const std::string& path) {
        return access(path.c_str(), F_OK) == 0;
      });
    }
    if (observed.process == DaemonProcess::running) {
      observed.link = check_link(file.link, file.device);
    }
  }
}

void observe_units(StatusInputs& inputs) {
  inputs.systemd = systemd::systemd_running();
  if (!inputs.systemd) return;
  try {
    systemd::SystemdUnits units;
    for (const std::string& name : instance_names(inputs)) {
      inputs.units[name] = units.query(systemd::service_unit_name(name));
    }
  } catch (const std::exception& error) {
    inputs.systemd_error = error.what();
  }
}

}  // namespace

StatusInputs gather_status_inputs(const std::string& config_path) {
  StatusInputs inputs;
  inputs.config = observe_config(config_path);
  inputs.runtime_dir = status::runtime_directory();
  read_status_files(inputs);
  // After reading the files: their age is never negative.
  inputs.now_unix = time(nullptr);
  observe_daemons(inputs);
  observe_units(inputs);
  if (needs_driver_check(inputs)) inputs.driver = observe_driver(cuda::FreeMemory::skip);
  return inputs;
}

int run_status(const std::string& config_path, bool json) {
  const StatusReport report = build_status_report(gather_status_inputs(config_path));
  const std::string text = json ? format_status_json(report) : format_status_text(report);
  std::fputs(text.c_str(), stdout);
  return report.exit_status;
}

}  // namespace vramswap::cli
