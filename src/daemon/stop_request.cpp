#include "daemon/stop_request.hpp"

#include <optional>

#include "common/log.hpp"
#include "common/startup_error.hpp"
#include "config/config.hpp"
#include "systemd/unit_job.hpp"

namespace vramswap::daemon {
namespace {

// Whether a daemon started now would take `instance` from `config_path`;
// `why` is its one-line refusal when not.
bool next_daemon_can_start(const std::string& config_path, const std::string& instance,
                           std::string& why) {
  try {
    const config::ConfigReport report = config::load_trusted_config_report(config_path);
    (void)config::select_device(report, instance);
    return true;
  } catch (const StartupError& e) {
    why = e.what();
    return false;
  }
}

}  // namespace

StopRequest judge_sigterm(const std::string& config_path, const std::string& instance) {
  StopRequest request;
  const std::optional<std::string> unit = systemd::own_unit();
  if (!unit) {
    log_info("stop requested");
    return request;
  }
  request.under_systemd = true;
  std::string why;
  const std::optional<std::string> job = systemd::unit_job_type(*unit, why);
  if (!job) {
    log_warning(
        "stop requested; cannot tell whether systemd restarts %s (%s): stopping, swap off "
        "first",
        unit->c_str(), why.c_str());
    return request;
  }
  if (*job != "restart") {
    log_info("stop requested (%s job of %s): swap off first, then release",
             job->empty() ? "no" : job->c_str(), unit->c_str());
    return request;
  }
  if (!next_daemon_can_start(config_path, instance, why)) {
    log_warning(
        "systemd restarts %s, but the next vramswapd would refuse to start (%s): stopping as "
        "for a stop, swap off first",
        unit->c_str(), why.c_str());
    return request;
  }
  log_info("systemd restarts %s: handing the device over to the next vramswapd", unit->c_str());
  request.restart = true;
  return request;
}

bool may_hand_over_on_sigusr2() {
  const std::optional<std::string> unit = systemd::own_unit();
  if (!unit) return true;
  log_warning(
      "SIGUSR2 ignored: nothing would start the next vramswapd of %s; run systemctl "
      "restart %s, which hands the device over",
      unit->c_str(), unit->c_str());
  return false;
}

}  // namespace vramswap::daemon
