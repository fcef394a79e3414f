#include "generator/generator.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <string_view>

#include "common/exit_codes.hpp"
#include "common/startup_error.hpp"
#include "config/config.hpp"
#include "config/values.hpp"
#include "generator/output.hpp"

namespace vramswap::generator {
namespace {

// The configuration's plan, or the reason it cannot be read as a plan.
Plan plan_for(const Invocation& invocation) {
  const Settings settings{invocation.config_path, invocation.template_unit};
  const std::vector<std::string> running = running_devices(invocation.runtime_dir);
  try {
    // The daemon refuses a file that anyone but root can change (exit 77):
    // generating units that would then fail helps nobody.
    return plan_units(config::load_trusted_config_report(invocation.config_path), settings,
                      running);
  } catch (const StartupError& error) {
    return plan_unreadable(error.what(), running);
  }
}

}  // namespace

std::vector<std::string> running_devices(const std::string& runtime_dir) {
  std::vector<std::string> names;
  if (runtime_dir.empty()) return names;
  DIR* listing = ::opendir(runtime_dir.c_str());
  if (!listing) return names;
  while (const dirent* entry = ::readdir(listing)) {
    const std::string_view file = entry->d_name;
    if (!file.ends_with(".json")) continue;
    const std::string name(file.substr(0, file.size() - 5));
    // Only names a section could have: they become unit names unescaped.
    if (config::is_valid_device_name(name)) names.push_back(name);
  }
  ::closedir(listing);
  std::sort(names.begin(), names.end());
  return names;
}

namespace {

// Neither the file nor a fragment exists (an unreadable drop-in directory
// is something: plan_for says what).
bool nothing_configured(const std::string& path) {
  struct stat status {};
  if (::stat(path.c_str(), &status) == 0 || errno != ENOENT) return false;
  try {
    return config::config_fragments(path).empty();
  } catch (const StartupError&) {
    return false;
  }
}

}  // namespace

int run(const Invocation& invocation, const LogSink& log) {
  if (invocation.in_initrd) return exit_code::ok;
  // No configuration, nothing configured: not worth a line at every boot.
  if (nothing_configured(invocation.config_path) && running_devices(invocation.runtime_dir).empty())
    return exit_code::ok;
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
