#include "cli/probe_report.hpp"

#include <map>

#include "common/byte_size.hpp"
#include "common/exit_codes.hpp"
#include "common/startup_error.hpp"
#include "config/size.hpp"

namespace vramswap::cli {
namespace {

using Level = Message::Level;

GpuView describe_gpu(const cuda::DeviceInfo& gpu, const std::string& free_error,
                     const config::DeviceConfig& defaults) {
  GpuView view;
  view.info = gpu;
  if (!gpu.free_bytes) {
    view.messages.push_back(
        {Level::warning, free_error.empty()
                             ? "free VRAM of GPU " + std::to_string(gpu.index) + " unknown"
                             : free_error});
    return view;
  }
  const config::SizeSpec automatic{config::SizeKind::automatic};
  view.auto_bytes = config::resolve_size(automatic, defaults.reserve, *gpu.free_bytes);
  view.auto_ok = *view.auto_bytes > 0 && *view.auto_bytes >= defaults.min_size;
  if (!view.auto_ok) {
    view.messages.push_back(
        {Level::warning, "size = auto would leave " + format_byte_size(*view.auto_bytes) +
                             " (free VRAM " + format_byte_size(*gpu.free_bytes) +
                             " minus reserve " + format_byte_size(defaults.reserve) +
                             "), less than min_size " + format_byte_size(defaults.min_size) +
                             "; free some VRAM, or lower reserve or min_size"});
  }
  return view;
}

const status::InstanceStatus* find_running(const ProbeInputs& inputs, const std::string& name) {
  for (const auto& running : inputs.running) {
    if (running.instance == name) return &running;
  }
  return nullptr;
}

DeviceView describe_device(const config::DeviceResult& result, const ProbeInputs& inputs) {
  DeviceView view;
  view.name = result.name;
  for (const auto& error : result.errors)
    view.messages.push_back({Level::error, error.message});
  if (!result.config) {
    view.messages.push_back(
        {Level::error, "[device." + result.name + "] cannot start until its errors are fixed"});
    return view;
  }
  const config::DeviceConfig& device = *result.config;
  view.gpu = device.gpu.text;
  view.size = config::describe_size(device.size);

  const cuda::DeviceInfo* gpu = nullptr;
  try {
    gpu = &cuda::select_device(inputs.driver.gpus, device.gpu.text);
    view.gpu_index = gpu->index;
  } catch (const StartupError& error) {
    view.messages.push_back(
        {Level::error, "[device." + result.name + "]: " + std::string(error.what())});
    return view;
  }

  if (const status::InstanceStatus* running = find_running(inputs, result.name)) {
    view.running = true;
    view.ok = true;
    view.size_bytes = running->size_bytes;
    view.messages.push_back({Level::note, "vramswap@" + result.name + " runs and holds " +
                                              format_byte_size(running->size_bytes) + " of GPU " +
                                              std::to_string(running->gpu_index) +
                                              "; the free VRAM shown does not count it"});
    return view;
  }
  if (!gpu->free_bytes) {
    view.messages.push_back({Level::warning, "free VRAM of GPU " + std::to_string(gpu->index) +
                                                 " unknown: cannot tell what it would get"});
    return view;
  }
  config::SwapSize wanted;
  try {
    wanted = config::choose_swap_size(device, *gpu->free_bytes, gpu->total_bytes);
  } catch (const StartupError& error) {
    view.messages.push_back({Level::error, error.what()});
    return view;
  }
  // What the daemon will say when it takes less than the size asked for.
  if (!wanted.lowered.empty()) view.messages.push_back({Level::warning, wanted.lowered});
  view.size_bytes = wanted.bytes;
  view.ok = true;
  return view;
}

// Devices that share a GPU and size themselves from its free VRAM each see
// what the others left: the first to start takes its share of all of it.
void warn_about_shared_gpus(ProbeReport& report, const ProbeInputs& inputs) {
  if (!inputs.config.report) return;
  std::map<int, std::vector<std::string>> relative_by_gpu;
  for (size_t i = 0; i < report.devices.size(); ++i) {
    const DeviceView& view = report.devices[i];
    const auto* result = inputs.config.report->find(view.name);
    if (!view.gpu_index || !result || !result->config) continue;
    relative_by_gpu[*view.gpu_index].push_back(view.name);
  }
  for (const auto& [index, names] : relative_by_gpu) {
    if (names.size() < 2) continue;
    std::string list;
    bool relative = false;
    for (const std::string& name : names) {
      list += (list.empty() ? "" : ", ") + name;
      relative |= inputs.config.report->find(name)->config->size.kind != config::SizeKind::bytes;
    }
    if (!relative) continue;
    report.messages.push_back(
        {Level::warning, "devices " + list + " all use GPU " + std::to_string(index) +
                             ", and sizes from free VRAM are computed as each starts: the sizes "
                             "above assume each one alone; give them fixed sizes or percentages "
                             "that add up"});
  }
}

}  // namespace

ProbeReport build_probe_report(const ProbeInputs& inputs) {
  ProbeReport report;
  report.driver = inputs.driver;
  report.config = inputs.config;
  const config::ConfigReport* config = inputs.config.report ? &*inputs.config.report : nullptr;
  const config::DeviceConfig defaults = config ? config->defaults : config::default_device_config();
  report.reserve_bytes = defaults.reserve;
  report.min_size_bytes = defaults.min_size;

  if (!inputs.config.unreadable.empty()) {
    report.messages.push_back(
        inputs.config.missing
            ? Message{Level::note, "no " + inputs.config.path +
                                       ": the sizes use the default reserve and min_size"}
            : Message{Level::error, inputs.config.unreadable});
  }
  if (config) {
    for (const auto& error : config->file_errors) {
      report.messages.push_back({Level::error, error.message});
    }
  }

  if (!inputs.driver.error.empty()) {
    report.messages.push_back({Level::error, inputs.driver.error});
    report.exit_status = exit_code::unavailable;
    return report;
  }

  for (size_t i = 0; i < inputs.driver.gpus.size(); ++i) {
    const std::string free_error =
        i < inputs.driver.free_errors.size() ? inputs.driver.free_errors[i] : std::string();
    report.gpus.push_back(describe_gpu(inputs.driver.gpus[i], free_error, defaults));
  }
  bool trouble = (config && !config->file_errors.empty()) ||
                 (!inputs.config.unreadable.empty() && !inputs.config.missing);
  if (config) {
    for (const auto& result : config->devices) {
      report.devices.push_back(describe_device(result, inputs));
      if (!report.devices.back().ok) trouble = true;
    }
  }
  warn_about_shared_gpus(report, inputs);
  report.exit_status = trouble ? probe_exit::trouble : probe_exit::ok;
  return report;
}

}  // namespace vramswap::cli
