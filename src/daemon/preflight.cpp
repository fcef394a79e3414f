#include "daemon/preflight.hpp"

#include "common/startup_error.hpp"
#include "daemon/connection_plan.hpp"
#include "engine/descriptor_budget.hpp"
#include "engine/unix_socket.hpp"

namespace vramswap::daemon {
namespace {

[[noreturn]] void refuse(const config::ConfigReport& report, const config::DeviceConfig& device,
                         std::string_view key, const std::string& value,
                         const std::string& problem) {
  throw StartupError(exit_code::config, config::key_place(report, device, key) + ": " +
                                            std::string(key) + " = " + value + ": " + problem);
}

void check_descriptors(const config::ConfigReport& report, const config::DeviceConfig& device) {
  const size_t limit = engine::descriptor_limit();
  if (limit == 0) return;
  const ConnectionPlan plan = plan_connections(device);
  const size_t needed =
      engine::open_descriptors() +
      engine::descriptors_needed(plan.workers, plan.kernel_connections, plan.listen);
  if (needed <= limit) return;
  refuse(report, device, "connections", std::to_string(device.connections),
         "needs at least " + std::to_string(needed) +
             " file descriptors, and the limit (RLIMIT_NOFILE) is " + std::to_string(limit) +
             "; raise LimitNOFILE= (ulimit -n) or lower connections");
}

}  // namespace

void check_before_allocating(const config::ConfigReport& report,
                             const config::DeviceConfig& device) {
  if (!device.listen.empty()) {
    if (auto problem = engine::listen_path_problem(device.listen)) {
      refuse(report, device, "listen", device.listen, *problem);
    }
    if (auto problem = engine::socket_group_problem(device.socket_group)) {
      refuse(report, device, "socket_group", device.socket_group, *problem);
    }
  }
  check_descriptors(report, device);
}

}  // namespace vramswap::daemon
