#include "generator/generator.hpp"

#include <sys/stat.h>

#include <cerrno>

#include "common/exit_codes.hpp"
#include "common/startup_error.hpp"
#include "config/config.hpp"
#include "config/trust.hpp"
#include "generator/output.hpp"

namespace vramswap::generator {
namespace {

// The configuration's plan, or the reason it cannot be read as a plan.
Plan plan_for(const Invocation& invocation) {
  const Settings settings{invocation.config_path, invocation.template_unit};
  try {
    // The daemon refuses a file that anyone but root can change (exit 77):
    // generating units that would then fail helps nobody.
    config::check_config_file_trusted(invocation.config_path);
    return plan_units(config::load_config_report(invocation.config_path), settings);
  } catch (const StartupError& error) {
    return plan_unreadable(error.what());
  }
}

}  // namespace

int run(const Invocation& invocation, const LogSink& log) {
  if (invocation.in_initrd) return exit_code::ok;
  // No configuration, nothing configured: not worth a line at every boot.
  struct stat status {};
  if (::stat(invocation.config_path.c_str(), &status) != 0 && errno == ENOENT) {
    return exit_code::ok;
  }
  const Plan plan = plan_for(invocation);
  for (const auto& line : plan.log)
    log(line.level, line.text);

  int status_code = exit_code::ok;
  for (const auto& device : plan.devices) {
    try {
      write_entries(invocation.output_dir, device.entries);
    } catch (const StartupError& error) {
      remove_entries(invocation.output_dir, device.entries);
      log(LogLevel::error,
          std::string(error.what()) + " ([device." + device.name + "] is not set up)");
      status_code = exit_code::os_error;
    }
  }
  return status_code;
}

}  // namespace vramswap::generator
