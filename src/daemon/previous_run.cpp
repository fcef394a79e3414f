#include "daemon/previous_run.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "common/exit_codes.hpp"
#include "common/log.hpp"
#include "common/startup_error.hpp"
#include "daemon/instance_lock.hpp"
#include "daemon/kernel_device.hpp"
#include "kernel/nbd_netlink.hpp"
#include "status/instance_status.hpp"
#include "systemd/notify.hpp"
#include "systemd/unit_job.hpp"
#include "systemd/unit_name.hpp"

namespace vramswap::daemon {
namespace {

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

// The daemon died while serving: it handed nothing over and its VRAM went
// with it. Its device is released now, not when (and if) systemd starts the
// next daemon: the swap unit no longer goes down with the service (so that a
// restart can leave swap on), and until then the kernel would queue its
// requests for a daemon that cannot serve them. The owners of its pages get
// SIGBUS at once instead of waiting; the next daemon makes a new device.
void release_devices_left(const std::string& instance, const std::string& cause) {
  std::optional<kernel::NbdNetlink> netlink;
  try {
    netlink.emplace(kernel::NbdNetlink::open());
  } catch (const StartupError&) {
    return;  // no nbd driver: no device either
  }
  try {
    const std::string why = "the daemon serving it ended" + (cause.empty() ? "" : ", " + cause) +
                            ", without handing it over";
    for (const uint32_t index : netlink->find_by_backend(systemd::backend_identifier(instance)))
      release_left_device(*netlink, index, why);
  } catch (const StartupError& e) {
    log_error("cannot release the device of %s: %s", instance.c_str(), e.what());
  }
}

// After a daemon that kept its VRAM in systemd's file descriptor store
// died: whether a new one is coming for it. Run from ExecStopPost=, where a
// crash that Restart= answers has no job (systemd restarts the unit once
// this returns) and anything else (systemctl stop, a shutdown) has a stop
// job: then systemd empties the store and the VRAM goes with it, so the
// device must go now too. When systemd cannot be asked, the device is
// released: SIGBUS now rather than requests queued for a daemon that may
// never come.
bool systemd_restarts_it() {
  const std::optional<std::string> unit = systemd::own_unit();
  if (!unit) return false;
  std::string why;
  const std::optional<std::string> job = systemd::unit_job_type(*unit, why);
  if (!job) {
    log_warning("cannot tell whether systemd restarts %s (%s)", unit->c_str(), why.c_str());
    return false;
  }
  return job->empty() || *job == "restart" || *job == "start";
}

}  // namespace

std::optional<status::PreviousCrash> take_previous_crash(const std::string& instance) {
  return status::crash_from_leftover(status::read_status_file(instance), getpid());
}

void log_previous_crash(const std::optional<status::PreviousCrash>& crash) {
  if (!crash) return;
  const std::string text = status::describe_crash(*crash);
  if (crash->taken_over) {
    log_warning("%s", text.c_str());
  } else {
    log_error("%s", text.c_str());
  }
}

int record_exit(const std::string& instance) {
  log_init("vramswapd", instance);
  // Under the lock, the file's writer is gone; without it a daemon serves
  // the instance (a manual one, or a restart already under way) and its file
  // is its own.
  std::optional<InstanceLock> lock;
  try {
    lock.emplace(instance, /*attach=*/true);  // required here: never run without it
  } catch (const StartupError&) {
    return exit_code::ok;
  }
  std::optional<status::InstanceStatus> left = status::read_status_file(instance);
  if (!left) return exit_code::ok;  // a clean stop, or it ended before serving
  const std::string cause =
      status::describe_exit(environment("EXIT_CODE"), environment("EXIT_STATUS"));
  if (!status::mark_ended(*left, cause, time(nullptr))) return exit_code::ok;
  if (!status::write_status_file(*left)) {
    log_warning("cannot write %s: %s", status::status_path(instance).c_str(), std::strerror(errno));
  }
  // The same words a new daemon will use, from the file as now marked.
  const std::optional<status::PreviousCrash> crash = status::crash_from_leftover(left, getpid());
  const std::string what = status::describe_crash(*crash, "vramswapd");
  log_error("%s", what.c_str());
  systemd::notify::status("DIED: " + what);
  if (left->device.empty()) return exit_code::ok;
  if (left->fd_store_handover && systemd_restarts_it()) {
    log_notice(
        "%s stays configured: systemd restarts vramswapd, which takes it over with the VRAM and "
        "block map kept in systemd's file descriptor store; the kernel queues its requests "
        "meanwhile",
        left->device.c_str());
    return exit_code::ok;
  }
  release_devices_left(instance, cause);
  return exit_code::ok;
}

}  // namespace vramswap::daemon
