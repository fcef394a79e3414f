#include "config/config.hpp"

namespace vramswap::config {

std::string key_place(const ConfigReport& report, const DeviceConfig& device,
                      std::string_view key) {
  const auto it = device.origins.find(key);
  if (it == device.origins.end()) {
    return report.file(device.source) + ":" + std::to_string(device.line);
  }
  return report.file(it->second.source) + ":" + std::to_string(it->second.line);
}

}  // namespace vramswap::config
