#include "cli/status_report.hpp"

#include <string.h>  // sigabbrev_np

#include <algorithm>
#include <set>

#include "cli/text.hpp"
#include "common/byte_size.hpp"
#include "common/exit_codes.hpp"
#include "common/startup_error.hpp"
#include "systemd/unit_name.hpp"

namespace vramswap::cli {
namespace {

using Level = Message::Level;
using systemd::service_unit_name;
using systemd::UnitState;

const char* exit_status_meaning(int status) {
  switch (status) {
    case exit_code::usage:
      return "bad command line";
    case exit_code::unavailable:
      return "no driver, GPU, nbd module or enough VRAM";
    case exit_code::software:
      return "internal error";
    case exit_code::os_error:
      return "a system call failed";
    case exit_code::in_use:
      return "another vramswapd serves this instance";
    case exit_code::no_permission:
      return "permission denied";
    case exit_code::config:
      return "configuration error";
    default:
      return nullptr;
  }
}

std::string signal_name(int number) {
  const char* abbreviation = sigabbrev_np(number);
  return abbreviation ? std::string("SIG") + abbreviation : "signal " + std::to_string(number);
}

// How the unit's last run ended, in words: "vramswapd exited with status 69
// (no driver, GPU, nbd module or enough VRAM)".
std::string describe_end(const UnitState& unit) {
  if (unit.result == "exit-code" || (unit.result.empty() && unit.exit_code == 1)) {
    std::string text = "vramswapd exited with status " + std::to_string(unit.exit_status);
    if (const char* meaning = exit_status_meaning(unit.exit_status)) {
      text += std::string(" (") + meaning + ")";
    }
    return text;
  }
  if (unit.result == "signal") return "vramswapd was killed by " + signal_name(unit.exit_status);
  if (unit.result == "core-dump") {
    return "vramswapd crashed (" + signal_name(unit.exit_status) + ", core dumped)";
  }
  if (unit.result == "timeout") return "vramswapd timed out";
  if (unit.result == "start-limit-hit") return "it failed too often and systemd stopped trying";
  if (unit.result == "oom-kill") return "the OOM killer killed vramswapd";
  if (unit.result == "resources") return "systemd could not set up its resources";
  if (unit.result == "watchdog") return "its watchdog fired";
  return "Result=" + unit.result;
}

std::string with_last_error(std::string text, const UnitState& unit) {
  if (!unit.last_error.empty()) text += "; its last error: " + unit.last_error;
  return text;
}

// The unit was skipped at its last start: say what the condition means.
std::string describe_skip(const std::string& name, const std::string& condition) {
  const std::string unit = service_unit_name(name);
  if (condition.find("nvidia") != std::string::npos) {
    return unit + " was skipped: the NVIDIA kernel driver is not loaded (" + condition +
           " is not met); install the NVIDIA driver: swap then starts by itself once it loads";
  }
  return unit + " was skipped: " + condition + " is not met; see systemctl status " + unit;
}

struct Classified {
  std::string state;
  Verdict verdict = Verdict::not_running;
  Message message;
};

// An instance without a live daemon, as systemd sees its unit.
Classified classify_unit(const std::string& name, const UnitState& unit) {
  const std::string service = service_unit_name(name);
  if (unit.load_state == "masked") {
    return {"not-running",
            Verdict::not_running,
            {Level::note, service + " is masked; systemctl unmask " + service + " to use it"}};
  }
  if (unit.load_state == "not-found") {
    return {"not-running",
            Verdict::not_running,
            {Level::warning, "systemd has no " + service +
                                 " (vramswap@.service is not installed); reinstall the vramswap "
                                 "package, or start vramswapd yourself"}};
  }
  if (unit.active_state == "failed") {
    const std::string fix =
        unit.result == "start-limit-hit"
            ? "fix the cause, then systemctl reset-failed " + service + " && systemctl start " +
                  service
            : "see journalctl -u " + service + "; fix the cause, then systemctl restart " + service;
    return {"failed",
            Verdict::trouble,
            {Level::error,
             with_last_error(service + " failed: " + describe_end(unit), unit) + "; " + fix}};
  }
  if (unit.active_state == "activating" && unit.sub_state == "auto-restart") {
    return {"restarting",
            Verdict::trouble,
            {Level::error, with_last_error(service + " stopped: " + describe_end(unit), unit) +
                               "; systemd restarts it shortly; see journalctl -u " + service}};
  }
  if (unit.active_state == "activating") {
    return {"starting", Verdict::not_running, {Level::note, service + " is starting"}};
  }
  if (unit.active_state == "deactivating") {
    return {"stopping", Verdict::not_running, {Level::note, service + " is stopping"}};
  }
  if (unit.active_state == "active" || unit.active_state == "reloading") {
    return {"unknown",
            Verdict::trouble,
            {Level::warning, "systemd says " + service +
                                 " is active, but its daemon published no status file; see "
                                 "journalctl -u " +
                                 service}};
  }
  if (!unit.failed_condition.empty()) {
    return {
        "skipped", Verdict::not_running, {Level::note, describe_skip(name, unit.failed_condition)}};
  }
  const std::string start = "systemctl start " + service;
  switch (unit.history) {
    case UnitState::History::started: {
      std::string text = service + " was stopped";
      if (unit.result != "success" && !unit.result.empty()) {
        text += " (" + describe_end(unit) + ")";
      }
      return {"not-running",
              Verdict::not_running,
              {Level::note, text + "; " + start + " to start it again"}};
    }
    case UnitState::History::not_started:
      return {"not-running",
              Verdict::not_running,
              {Level::note, service + " has not been started since boot; " + start +
                                " (after adding a device to the configuration, run systemctl "
                                "daemon-reload first)"}};
    case UnitState::History::unknown:
      break;
  }
  return {"not-running",
          Verdict::not_running,
          {Level::note, service + " is inactive; " + start + " to start it"}};
}

void add(InstanceView& view, Level level, std::string text) {
  view.messages.push_back({level, std::move(text)});
}

void raise(Verdict& verdict, Verdict to) {
  auto rank = [](Verdict v) {
    return v == Verdict::trouble ? 2 : v == Verdict::not_running ? 1 : 0;
  };
  if (rank(to) > rank(verdict)) verdict = to;
}

// What /proc/swaps says about the device, checked against the file's claim.
void fill_swap(InstanceView& view, const DaemonObservation& observed, const StatusInputs& inputs,
               bool live) {
  const status::InstanceStatus& file = observed.file;
  if (file.device.empty()) return;
  if (!inputs.proc_swaps_readable) {
    if (!live) return;
    view.swap = {file.swap_active, file.swap_size_bytes, file.swap_used_bytes,
                 file.swap_active ? std::optional<int>(file.swap_priority) : std::nullopt,
                 "status-file"};
    return;
  }
  view.swap.source = "proc-swaps";
  if (observed.live_swap) {
    view.swap.active = true;
    view.swap.size_bytes = observed.live_swap->size_bytes;
    view.swap.used_bytes = observed.live_swap->used_bytes;
    view.swap.priority = observed.live_swap->priority;
  }
  if (!live) return;
  // The daemon looks at /proc/swaps every few seconds; when it disagrees
  // with the kernel now, the kernel is right.
  if (file.swap_active && !observed.live_swap) {
    add(view, Level::warning,
        "the status file says " + file.device +
            " is swap, but /proc/swaps does not list it "
            "(showing /proc/swaps)");
  } else if (!file.swap_active && observed.live_swap) {
    add(view, Level::note,
        "the status file says " + file.device +
            " is not swap, but /proc/swaps lists it "
            "(showing /proc/swaps; the file is refreshed every few seconds)");
  } else if (file.swap_active && observed.live_swap &&
             file.swap_priority != observed.live_swap->priority) {
    add(view, Level::note,
        "the status file says swap priority " + std::to_string(file.swap_priority) +
            ", /proc/swaps says " + std::to_string(observed.live_swap->priority) +
            " (showing /proc/swaps)");
  }
}

void describe_live(InstanceView& view, const DaemonObservation& observed,
                   const StatusInputs& inputs) {
  const status::InstanceStatus& file = observed.file;
  const std::string service = service_unit_name(view.name);
  view.state = file.state.empty() ? "unknown" : file.state;
  view.health = file.health.empty() ? std::string("unknown") : file.health;
  view.daemon = file;
  view.status_age_s = std::max<int64_t>(0, inputs.now_unix - file.updated_unix);
  fill_swap(view, observed, inputs, true);

  view.verdict = view.state == "serving" ? Verdict::ok : Verdict::not_running;
  if (view.state == "stopping") {
    add(view, Level::note, "vramswapd is stopping: " + file.status_line);
  } else if (view.state != "serving") {
    add(view, Level::warning,
        "vramswapd reports state \"" + file.state +
            "\", which this vramswap does not know; update vramswap");
  }

  if (file.device_lost || view.health == "failed") {
    raise(view.verdict, Verdict::trouble);
    add(view, Level::error,
        "the GPU was lost: every request to this device fails, and what was swapped to it is "
        "gone; check dmesg and nvidia-smi, then systemctl restart " +
            service);
  } else if (file.copy_failures != 0 || file.checksum_failures != 0) {
    raise(view.verdict, Verdict::trouble);
    add(view, Level::error,
        std::to_string(file.copy_failures) +
            (file.copy_failures == 1 ? " VRAM copy failed and " : " VRAM copies failed and ") +
            std::to_string(file.checksum_failures) +
            (file.checksum_failures == 1 ? " block" : " blocks") +
            " failed the checksum: the requests they touched got I/O errors; check dmesg and "
            "nvidia-smi for GPU errors");
  }

  if (file.previous_crash) {
    // A crash whose pages were taken over lost nothing, but still wants a
    // look at why the daemon died.
    raise(view.verdict, Verdict::trouble);
    add(view, file.previous_crash->taken_over ? Level::warning : Level::error,
        status::describe_crash(*file.previous_crash) + "; see journalctl -u " + service +
            " for why (this is said until the instance is stopped cleanly or the machine "
            "reboots)");
  } else if (view.health != "ok" && view.health != "failed" && file.copy_failures == 0 &&
             file.checksum_failures == 0) {
    raise(view.verdict, Verdict::trouble);
    add(view, Level::error,
        "vramswapd says its health is \"" + *view.health + "\"; see journalctl -u " + service);
  }

  if (view.state == "serving" && view.status_age_s > stuck_after_s) {
    raise(view.verdict, Verdict::trouble);
    add(view, Level::error,
        "vramswapd has not refreshed its status for " + format_age(*view.status_age_s) +
            " (it does every 5 s): it may be stuck; see journalctl -u " + service);
  }

  if (!file.device.empty() && view.state == "serving" && !view.swap.active) {
    raise(view.verdict, Verdict::trouble);
    add(view, Level::error,
        file.device + " is not in use as swap; see systemctl status " +
            systemd::swap_unit_name(view.name) +
            " (or set swap = yes to let the daemon swapon itself)");
  }

  switch (observed.link) {
    case LinkState::missing:
      add(view, Level::warning,
          file.link +
              " does not exist (udev makes it, and the swap unit uses it); check "
              "that 60-vramswap.rules is installed, then udevadm trigger");
      break;
    case LinkState::elsewhere:
      add(view, Level::warning,
          file.link + " points to another device than " + file.device +
              "; udevadm trigger should fix it");
      break;
    case LinkState::ok:
    case LinkState::not_checked:
      break;
  }

  if (!file.memory_locked) {
    add(view, Level::warning,
        "vramswapd's memory is not locked: under memory pressure it can wait on its own swap "
        "and hang the machine; give it LimitMEMLOCK=infinity (or CAP_IPC_LOCK)");
  }
  if (!file.oom_protected) {
    add(view, Level::warning,
        "vramswapd is not protected from the OOM killer, which would take everything swapped "
        "to it; give it OOMScoreAdjust=-1000 (or CAP_SYS_RESOURCE)");
  }
  if (!file.io_flusher) {
    add(view, Level::warning,
        "its I/O threads are not marked PR_SET_IO_FLUSHER, so memory reclaim may recurse into "
        "this device; that needs CAP_SYS_RESOURCE and Linux 5.6 (some hosts refuse it even to "
        "root)");
  }
}

std::string stale_reason(DaemonProcess process) {
  switch (process) {
    case DaemonProcess::other_program:
      return " (its pid is now another program)";
    case DaemonProcess::newer_process:
      return " (its pid is now another vramswapd)";
    case DaemonProcess::gone:
    case DaemonProcess::running:
      break;
  }
  return "";
}

void describe_stale(InstanceView& view, const DaemonObservation& observed,
                    const StatusInputs& inputs) {
  const status::InstanceStatus& file = observed.file;
  view.stale_status_file = true;
  raise(view.verdict, Verdict::trouble);
  const std::string restart = inputs.systemd
                                  ? "see journalctl -u " + service_unit_name(view.name) +
                                        ", then systemctl restart " + service_unit_name(view.name)
                                  : "start vramswapd again";
  if (const auto crash = status::crash_from_leftover(file, 0); crash && crash->end_seen) {
    // systemd saw it end (vramswapd --record-exit): say how and when.
    add(view, Level::error, status::describe_crash(*crash, "vramswapd") + "; " + restart);
  } else {
    add(view, Level::error,
        "vramswapd (pid " + std::to_string(file.pid) + ") is gone" +
            stale_reason(observed.process) + " but left " + status::status_path(view.name) +
            " (written " + format_age(inputs.now_unix - file.updated_unix) +
            " ago): it crashed or was killed, and what was swapped to it is lost; " + restart);
  }
  fill_swap(view, observed, inputs, false);
  if (view.swap.active) {
    add(view, Level::error,
        file.device +
            " is still swap although its daemon is gone: pages there cannot be read "
            "back; restarting the instance releases the dead device");
  }
}

void check_configured_gpu(InstanceView& view, const config::DeviceConfig& device,
                          const DriverObservation& driver) {
  if (!driver.checked || !driver.error.empty()) return;
  try {
    (void)cuda::select_device(driver.gpus, device.gpu.text);
  } catch (const StartupError& error) {
    raise(view.verdict, Verdict::trouble);
    add(view, Level::error, std::string(error.what()) + " (in [device." + view.name + "])");
  }
}

bool is_live(const DaemonObservation* observed) {
  return observed && observed->process == DaemonProcess::running;
}

const DaemonObservation* find_daemon(const StatusInputs& inputs, const std::string& name) {
  for (const auto& observed : inputs.daemons) {
    if (observed.file.instance == name) return &observed;
  }
  return nullptr;
}

InstanceView describe_instance(const std::string& name, const StatusInputs& inputs) {
  InstanceView view;
  view.name = name;
  const config::DeviceResult* configured =
      inputs.config.report ? inputs.config.report->find(name) : nullptr;
  view.configured = configured != nullptr;
  const DaemonObservation* observed = find_daemon(inputs, name);
  if (const auto unit = inputs.units.find(name); unit != inputs.units.end()) {
    view.unit = unit->second;
  }

  if (is_live(observed)) {
    describe_live(view, *observed, inputs);
    if (!view.configured && inputs.config.report) {
      add(view, Level::note,
          "not in " + inputs.config.path +
              ": this daemon was started with another configuration, or its section was "
              "removed since");
    }
  } else {
    view.state = "not-running";
    view.verdict = Verdict::not_running;
    if (observed) describe_stale(view, *observed, inputs);
    if (view.unit) {
      Classified classified = classify_unit(name, *view.unit);
      view.state = classified.state;
      raise(view.verdict, classified.verdict);
      view.messages.push_back(std::move(classified.message));
    } else if (!observed && inputs.systemd) {
      add(view, Level::note, "vramswapd is not running");
    } else if (!observed) {
      add(view, Level::note,
          "vramswapd is not running; start it with vramswapd --config " + inputs.config.path +
              " --instance " + name);
    }
    if (configured && configured->config)
      check_configured_gpu(view, *configured->config, inputs.driver);
  }

  if (configured) {
    for (const auto& error : configured->errors)
      add(view, Level::error, error.message);
    if (!configured->errors.empty() ||
        (inputs.config.report && !inputs.config.report->file_errors.empty())) {
      raise(view.verdict, Verdict::trouble);
      add(view, Level::error,
          std::string(is_live(observed) ? "the running daemon started before these errors; it "
                                          "will not start again"
                                        : "it cannot start") +
              " until the configuration errors are fixed");
    }
  }
  return view;
}

}  // namespace

const char* const kernel_module_message =
    "the nvidia kernel module is not loaded (no /proc/driver/nvidia); install the NVIDIA "
    "driver, or load it with modprobe nvidia";

std::vector<std::string> instance_names(const StatusInputs& inputs) {
  std::vector<std::string> names;
  std::set<std::string> seen;
  if (inputs.config.report) {
    for (const auto& device : inputs.config.report->devices) {
      if (seen.insert(device.name).second) names.push_back(device.name);
    }
  }
  std::vector<std::string> others;
  for (const auto& observed : inputs.daemons) {
    if (seen.insert(observed.file.instance).second) others.push_back(observed.file.instance);
  }
  std::sort(others.begin(), others.end());
  names.insert(names.end(), others.begin(), others.end());
  return names;
}

bool needs_driver_check(const StatusInputs& inputs) {
  // Nothing at all runs: the driver may be why, even with nothing configured.
  if (inputs.daemons.empty()) return true;
  for (const std::string& name : instance_names(inputs)) {
    if (!is_live(find_daemon(inputs, name))) return true;
  }
  return false;
}

StatusReport build_status_report(const StatusInputs& inputs) {
  StatusReport report;
  report.config = inputs.config;
  report.runtime_dir = inputs.runtime_dir;
  report.systemd = inputs.systemd;
  bool trouble = false;
  auto say = [&](Level level, std::string text) {
    report.messages.push_back({level, std::move(text)});
    if (level == Level::error) trouble = true;
  };

  const config::ConfigReport* config = inputs.config.report ? &*inputs.config.report : nullptr;
  if (config) report.configured = config->devices.size();
  if (!inputs.config.unreadable.empty()) {
    say(inputs.config.missing ? Level::warning : Level::error, inputs.config.unreadable);
  } else if (config && config->devices.empty()) {
    say(Level::warning, inputs.config.path +
                            " configures no device; add a [device.NAME] section (see "
                            "vramswap.conf(5)), then systemctl daemon-reload");
  }
  if (config) {
    for (const auto& error : config->file_errors)
      say(Level::error, error.message);
  }
  for (const std::string& file : inputs.unreadable_status_files)
    say(Level::warning, file);
  if (!inputs.proc_swaps_readable) {
    say(Level::warning, inputs.proc_swaps_error + " (swap shown as the daemons last saw it)");
  }

  bool any_down = false;
  for (const std::string& name : instance_names(inputs)) {
    InstanceView view = describe_instance(name, inputs);
    if (view.verdict == Verdict::trouble) trouble = true;
    if (!view.daemon) any_down = true;
    report.instances.push_back(std::move(view));
  }

  if ((any_down || report.instances.empty()) && inputs.driver.checked &&
      !inputs.driver.error.empty()) {
    say(Level::warning, inputs.driver.error);
    if (inputs.driver.kernel_module_missing) say(Level::warning, kernel_module_message);
  }
  if (any_down) {
    if (!inputs.systemd) {
      say(Level::note,
          "this system does not run systemd (no /run/systemd/system): nothing starts vramswapd "
          "at boot; start each device with vramswapd --instance NAME");
    } else if (!inputs.systemd_error.empty()) {
      say(Level::warning, "cannot ask systemd about the units: " + inputs.systemd_error);
    }
  }

  bool not_running = report.instances.empty();
  for (const auto& view : report.instances) {
    if (view.verdict == Verdict::not_running) not_running = true;
  }
  report.exit_status = trouble       ? status_exit::trouble
                       : not_running ? status_exit::not_running
                                     : status_exit::ok;
  return report;
}

}  // namespace vramswap::cli
