#include "cli/probe_output.hpp"

#include "cli/output_common.hpp"
#include "cli/status_output.hpp"
#include "common/byte_size.hpp"

namespace vramswap::cli {
namespace {

std::string format_gpu_text(const GpuView& gpu, const ProbeReport& report) {
  const cuda::DeviceInfo& info = gpu.info;
  std::string out = "GPU " + std::to_string(info.index) + ": " + info.name + "\n";
  out += format_field("UUID", info.uuid);
  out += format_field("PCI", info.pci_bus_id);
  std::string vram = format_byte_size(info.total_bytes) + " total";
  if (info.free_bytes) vram += ", " + format_byte_size(*info.free_bytes) + " free";
  out += format_field("VRAM", vram);
  if (gpu.auto_bytes) {
    out += format_field("auto", format_byte_size(*gpu.auto_bytes) + " (free VRAM minus reserve " +
                                    format_byte_size(report.reserve_bytes) + ")" +
                                    (gpu.auto_ok ? "" : ", too small"));
  }
  for (const Message& message : gpu.messages)
    out += format_message(message, 2);
  return out;
}

std::string format_device_text(const DeviceView& device) {
  std::string line = "[device." + device.name + "]";
  if (!device.gpu.empty()) {
    line += ": gpu = " + device.gpu;
    if (device.gpu_index) line += " (GPU " + std::to_string(*device.gpu_index) + ")";
    line += ", size = " + device.size;
    if (device.size_bytes) {
      line += device.running ? ": running, holds " : ": would get ";
      line += format_byte_size(*device.size_bytes);
    } else {
      line += ": would not start";
    }
  }
  std::string out = line + "\n";
  for (const Message& message : device.messages)
    out += format_message(message, 2);
  return out;
}

Json gpu_json(const GpuView& gpu) {
  const cuda::DeviceInfo& info = gpu.info;
  return {{"index", info.index},
          {"name", info.name},
          {"uuid", info.uuid},
          {"pci_bus_id", info.pci_bus_id},
          {"total_bytes", info.total_bytes},
          {"free_bytes", info.free_bytes ? Json(*info.free_bytes) : Json(nullptr)},
          {"auto_size_bytes", gpu.auto_bytes ? Json(*gpu.auto_bytes) : Json(nullptr)},
          {"auto_ok", gpu.auto_ok},
          {"messages", messages_json(gpu.messages)}};
}

Json device_json(const DeviceView& device) {
  return {{"name", device.name},
          {"gpu", string_or_null(device.gpu)},
          {"gpu_index", device.gpu_index ? Json(*device.gpu_index) : Json(nullptr)},
          {"size", string_or_null(device.size)},
          {"size_bytes", device.size_bytes ? Json(*device.size_bytes) : Json(nullptr)},
          {"running", device.running},
          {"ok", device.ok},
          {"messages", messages_json(device.messages)}};
}

}  // namespace

std::string format_probe_text(const ProbeReport& report) {
  std::string out;
  if (report.driver.error.empty()) {
    out += "NVIDIA driver: " + report.driver.library + ", CUDA " + report.driver.version + "\n";
  }
  for (const GpuView& gpu : report.gpus)
    out += "\n" + format_gpu_text(gpu, report);
  if (!report.devices.empty()) {
    out += "\nConfigured in " + report.config.path + ":\n";
    for (const DeviceView& device : report.devices)
      out += format_device_text(device);
  }
  if (!report.messages.empty() && !out.empty()) out += "\n";
  for (const Message& message : report.messages)
    out += format_message(message, 0);
  return out;
}

std::string format_probe_json(const ProbeReport& report) {
  Json j;
  j["format"] = json_format;
  j["driver"] = {{"library", report.driver.library},
                 {"cuda_version", string_or_null(report.driver.version)},
                 {"error", string_or_null(report.driver.error)}};
  j["config"] = {{"path", report.config.path},
                 {"found", !report.config.missing && report.config.unreadable.empty()},
                 {"devices", report.config.report ? report.config.report->devices.size() : 0},
                 {"errors", report.config.report ? report.config.report->all_errors().size() : 0}};
  j["reserve_bytes"] = report.reserve_bytes;
  j["min_size_bytes"] = report.min_size_bytes;
  j["gpus"] = Json::array();
  for (const GpuView& gpu : report.gpus)
    j["gpus"].push_back(gpu_json(gpu));
  j["devices"] = Json::array();
  for (const DeviceView& device : report.devices)
    j["devices"].push_back(device_json(device));
  j["messages"] = messages_json(report.messages);
  j["exit_status"] = report.exit_status;
  return j.dump(2) + "\n";
}

}  // namespace vramswap::cli
