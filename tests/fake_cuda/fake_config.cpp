#include "fake_config.hpp"

#include <charconv>
#include <cstdlib>
#include <optional>
#include <string_view>

#include "common/byte_size.hpp"

namespace vramswap::fake_cuda {
namespace {

// The variable's value, or nothing when it is unset or empty.
std::optional<std::string_view> variable(const char* name) {
  const char* value = std::getenv(name);
  if (!value || !*value) return std::nullopt;
  return std::string_view(value);
}

bool read_integer(const char* name, uint64_t minimum, uint64_t maximum, uint64_t& out,
                  std::string& error) {
  const auto text = variable(name);
  if (!text) return true;
  uint64_t value = 0;
  const auto [end, problem] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (problem != std::errc() || end != text->data() + text->size() || value < minimum ||
      value > maximum) {
    error = std::string(name) + "='" + std::string(*text) + "' is not an integer from " +
            std::to_string(minimum) + " to " + std::to_string(maximum);
    return false;
  }
  out = value;
  return true;
}

bool read_size(const char* name, uint64_t& out, std::string& error) {
  const auto text = variable(name);
  if (!text) return true;
  const auto value = parse_byte_size(*text);
  if (!value) {
    error = std::string(name) + "='" + std::string(*text) + "' is not a byte size like 16G";
    return false;
  }
  out = *value;
  return true;
}

}  // namespace

bool read_config(Config& config, std::string& error) {
  config = Config{};
  uint64_t devices = static_cast<uint64_t>(config.devices);
  uint64_t init_error = 0;
  uint64_t no_kernel = 0;
  uint64_t no_shareable = 0;
  if (!read_integer("VRAMSWAP_FAKE_DEVICES", 0, max_devices, devices, error) ||
      !read_size("VRAMSWAP_FAKE_MEMORY", config.memory, error) ||
      !read_size("VRAMSWAP_FAKE_RESERVED", config.reserved, error) ||
      !read_size("VRAMSWAP_FAKE_ALLOC_FAIL_ABOVE", config.alloc_fail_above, error) ||
      !read_integer("VRAMSWAP_FAKE_FAIL_COPY", 1, unlimited, config.fail_copy, error) ||
      !read_integer("VRAMSWAP_FAKE_FAIL_COPY_COUNT", 1, unlimited, config.fail_copy_count, error) ||
      !read_integer("VRAMSWAP_FAKE_LOSE_DEVICE_AFTER", 0, unlimited, config.lose_device_after,
                    error) ||
      !read_integer("VRAMSWAP_FAKE_INIT_ERROR", 0, 1000000, init_error, error) ||
      !read_integer("VRAMSWAP_FAKE_NO_KERNEL", 0, 1, no_kernel, error) ||
      !read_integer("VRAMSWAP_FAKE_NO_SHAREABLE", 0, 1, no_shareable, error) ||
      !read_integer("VRAMSWAP_FAKE_COPY_LATENCY_US", 0, 1000000, config.copy_latency_us, error)) {
    return false;
  }
  config.devices = static_cast<int>(devices);
  config.init_error = static_cast<int>(init_error);
  config.no_kernel = no_kernel != 0;
  config.no_shareable = no_shareable != 0;
  if (config.reserved > config.memory) {
    error = "VRAMSWAP_FAKE_RESERVED is larger than VRAMSWAP_FAKE_MEMORY";
    return false;
  }
  if (const auto name = variable("VRAMSWAP_FAKE_NAME")) config.name = *name;
  if (const auto dir = variable("VRAMSWAP_FAKE_BACKING_DIR")) config.backing_dir = *dir;
  if (const auto control = variable("VRAMSWAP_FAKE_CONTROL")) config.control_path = *control;
  return true;
}

}  // namespace vramswap::fake_cuda
