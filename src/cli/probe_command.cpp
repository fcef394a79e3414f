#include "cli/probe_command.hpp"

#include <cstdio>

#include "cli/daemon_process.hpp"
#include "cli/driver_check.hpp"
#include "cli/observe.hpp"
#include "cli/probe_output.hpp"

namespace vramswap::cli {

ProbeInputs gather_probe_inputs(const std::string& config_path) {
  ProbeInputs inputs;
  inputs.config = observe_config(config_path);
  for (auto& file : read_status_directory(status::runtime_directory()).files) {
    if (check_daemon_process(file.pid, file.updated_unix) == DaemonProcess::running) {
      inputs.running.push_back(std::move(file));
    }
  }
  inputs.driver = observe_driver(cuda::FreeMemory::query);
  return inputs;
}

int run_probe(const std::string& config_path, bool json) {
  const ProbeReport report = build_probe_report(gather_probe_inputs(config_path));
  if (json) {
    std::fputs(format_probe_json(report).c_str(), stdout);
  } else if (!report.driver.error.empty()) {
    // Nothing to list: the cause and fix alone, in one line.
    std::fprintf(stderr, "vramswap: %s\n", report.driver.error.c_str());
  } else {
    std::fputs(format_probe_text(report).c_str(), stdout);
  }
  return report.exit_status;
}

}  // namespace vramswap::cli
