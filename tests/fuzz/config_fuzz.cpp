// Fuzzes the /etc/vramswap.conf parser with arbitrary text. Checks what
// config.hpp promises: parse_config_report never throws for content; every
// error is one line that starts with "<path>:" (and "<path>:<line>: " when it
// is about a line that exists); a device gets a configuration exactly when
// neither its section nor the file has an error, and that configuration
// holds only values the daemon accepts; parse_config and select_device throw
// StartupError(exit_code::config) with the first relevant error, and only then.
//
// Input layout: the file's text, as is.

#include <algorithm>
#include <cstring>
#include <set>
#include <string>
#include <string_view>

#include "common/exit_codes.hpp"
#include "common/startup_error.hpp"
#include "config/config.hpp"
#include "config/values.hpp"
#include "fuzz_check.hpp"

namespace {

using namespace vramswap;
using namespace vramswap::config;

const std::string path = "/etc/vramswap.conf";

// Lines as an editor counts them: a last line without '\n' still counts.
int lines_in(std::string_view text) {
  const auto newlines = std::count(text.begin(), text.end(), '\n');
  return static_cast<int>(newlines) + (!text.empty() && text.back() != '\n' ? 1 : 0);
}

void check_message(const std::string& message, int line, int lines) {
  const char* m = message.c_str();
  FUZZ_CHECK(message.starts_with(path + ":"), "message: %s", m);
  // One line, and no terminal escapes from the file: no control character
  // but the tab, which the file may hold (quoted back in a message).
  const auto control = std::find_if(message.begin(), message.end(), [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return (byte < 0x20 && c != '\t') || byte == 0x7f;
  });
  FUZZ_CHECK(control == message.end(), "control character 0x%02x at %zu in: %s",
             static_cast<unsigned>(static_cast<unsigned char>(*control)),
             static_cast<size_t>(control - message.begin()), m);
  FUZZ_CHECK(line >= 0 && line <= lines, "line %d of %d: %s", line, lines, m);
  if (line > 0) {
    const std::string prefix = path + ":" + std::to_string(line) + ": ";
    FUZZ_CHECK(message.starts_with(prefix) && message.size() > prefix.size(), "message: %s", m);
  }
}

void check_sorted(const std::vector<ConfigError>& errors) {
  FUZZ_CHECK(
      std::is_sorted(errors.begin(), errors.end(),
                     [](const ConfigError& a, const ConfigError& b) { return a.line < b.line; }));
}

const char* const known_keys[] = {"gpu",       "size",    "reserve",  "min_size",    "connections",
                                  "listen",    "attach",  "priority", "discard",     "swap",
                                  "nbd_index", "timeout", "verify",   "socket_group"};

// Only values the daemon can act on reach a DeviceConfig.
void check_device_config(const DeviceConfig& c, const DeviceResult& device, int lines) {
  const char* name = c.name.c_str();
  FUZZ_CHECK(c.name == device.name && c.line == device.line, "device %s", name);
  FUZZ_CHECK(c.connections >= 1 && c.connections <= max_connections, "connections %u",
             c.connections);
  FUZZ_CHECK(c.priority >= -1 && c.priority <= 32767, "priority %d", c.priority);
  if (c.timeout_s) FUZZ_CHECK(*c.timeout_s <= max_timeout_s, "timeout %u", *c.timeout_s);
  if (c.nbd_index) FUZZ_CHECK(*c.nbd_index <= max_nbd_index, "nbd_index %u", *c.nbd_index);
  switch (c.size.kind) {
    case SizeKind::bytes:
      FUZZ_CHECK(c.size.bytes >= min_explicit_size && c.size.bytes >= c.min_size,
                 "size %llu min_size %llu", static_cast<unsigned long long>(c.size.bytes),
                 static_cast<unsigned long long>(c.min_size));
      break;
    case SizeKind::percent_of_free:
      FUZZ_CHECK(c.size.percent >= 1 && c.size.percent <= 100, "size %u%%", c.size.percent);
      break;
    case SizeKind::automatic:
      break;
  }
  if (!c.listen.empty()) {
    FUZZ_CHECK(c.listen.front() == '/' && c.listen.size() <= max_socket_path_length, "listen %s",
               c.listen.c_str());
  }
  FUZZ_CHECK(c.attach || !c.listen.empty(), "device %s serves nothing", name);
  FUZZ_CHECK(!c.swap || c.attach, "device %s: swap without attach", name);
  FUZZ_CHECK(c.socket_group.size() <= 32, "socket_group %s", c.socket_group.c_str());
  FUZZ_CHECK(!c.gpu.text.empty());
  if (c.gpu.kind == GpuKind::pci_bus_id) FUZZ_CHECK(!c.gpu.pci_bus_id.empty());
  for (const auto& [key, origin] : c.origins) {
    FUZZ_CHECK(std::find(std::begin(known_keys), std::end(known_keys), key) != std::end(known_keys),
               "origin of unknown key %s", key.c_str());
    FUZZ_CHECK(origin.line >= 1 && origin.line <= lines, "%s at line %d", key.c_str(), origin.line);
  }
}

void check_report(const ConfigReport& report, int lines) {
  FUZZ_CHECK(report.path == path);
  const std::vector<ConfigError> all = report.all_errors();
  check_sorted(all);
  check_sorted(report.file_errors);
  size_t counted = report.file_errors.size();
  for (const ConfigError& e : all)
    check_message(e.message, e.line, lines);
  FUZZ_CHECK(report.ok() == all.empty());

  std::set<std::string> names;
  std::set<std::string> listeners;
  std::set<unsigned> nbd_indexes;
  for (const DeviceResult& device : report.devices) {
    const char* name = device.name.c_str();
    FUZZ_CHECK(is_valid_device_name(device.name), "device name \"%s\"", name);
    FUZZ_CHECK(names.insert(device.name).second, "device %s listed twice", name);
    FUZZ_CHECK(device.line >= 1 && device.line <= lines, "device %s at line %d", name, device.line);
    FUZZ_CHECK(report.find(device.name) == &device);
    check_sorted(device.errors);
    counted += device.errors.size();
    FUZZ_CHECK(device.config.has_value() == (device.errors.empty() && report.file_errors.empty()),
               "device %s: config %d with %zu own and %zu file errors", name,
               device.config.has_value(), device.errors.size(), report.file_errors.size());
    FUZZ_CHECK(report.errors_for(device).size() ==
               report.file_errors.size() + device.errors.size());
    if (!device.config) continue;
    check_device_config(*device.config, device, lines);
    // Two daemons can share neither a socket nor an nbd device.
    if (!device.config->listen.empty())
      FUZZ_CHECK(listeners.insert(device.config->listen).second, "socket %s shared",
                 device.config->listen.c_str());
    if (device.config->nbd_index)
      FUZZ_CHECK(nbd_indexes.insert(*device.config->nbd_index).second, "nbd_index %u shared",
                 *device.config->nbd_index);
  }
  FUZZ_CHECK(counted == all.size(), "%zu errors, %zu listed", counted, all.size());
}

void check_startup_error(const StartupError& error, int lines) {
  FUZZ_CHECK(error.exit_status() == exit_code::config, "exit status %d", error.exit_status());
  // The thrown message carries its line in the text only; 0 skips the line check.
  check_message(error.what(), 0, lines);
}

void check_parse_config(std::string_view text, const ConfigReport& report, int lines) {
  const ParseOptions options{4};
  try {
    const Config config = parse_config(text, path, options);
    FUZZ_CHECK(report.ok(), "parse_config accepted a file with errors");
    FUZZ_CHECK(config.path == path && config.devices.size() == report.devices.size());
    for (size_t i = 0; i < config.devices.size(); ++i) {
      FUZZ_CHECK(config.devices[i] == *report.devices[i].config, "device %zu differs", i);
      FUZZ_CHECK(&find_device(config, config.devices[i].name) == &config.devices[i]);
    }
    try {
      find_device(config, "no-such-device-in-any-file-0123456789");
      FUZZ_CHECK(false, "find_device found a device that cannot exist");
    } catch (const StartupError& error) {
      check_startup_error(error, lines);
    }
  } catch (const StartupError& error) {
    check_startup_error(error, lines);
    const auto all = report.all_errors();
    FUZZ_CHECK(!all.empty(), "parse_config refused a clean file: %s", error.what());
    FUZZ_CHECK(all.front().message == error.what(), "threw \"%s\", first error \"%s\"",
               error.what(), all.front().message.c_str());
  }
}

void check_select_device(const ConfigReport& report, std::string_view instance, int lines) {
  const DeviceResult* device = report.find(instance);
  try {
    const DeviceConfig config = select_device(report, instance);
    FUZZ_CHECK(device != nullptr && device->config && config == *device->config);
  } catch (const StartupError& error) {
    check_startup_error(error, lines);
    FUZZ_CHECK(device == nullptr || !device->config, "select_device refused usable device %.*s",
               static_cast<int>(instance.size()), instance.data());
    // A file-wide error stops every device, and comes first.
    const std::vector<ConfigError>& errors =
        !report.file_errors.empty() || device == nullptr ? report.file_errors : device->errors;
    if (!errors.empty()) {
      FUZZ_CHECK(errors.front().message == error.what(), "threw \"%s\", expected \"%s\"",
                 error.what(), errors.front().message.c_str());
    } else {
      FUZZ_CHECK(device == nullptr, "device %s refused without an error", device->name.c_str());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const int lines = lines_in(text);
  // A fixed CPU count: the default of `connections` must not depend on the host.
  const ConfigReport report = parse_config_report(text, path, ParseOptions{4});
  check_report(report, lines);
  check_parse_config(text, report, lines);
  for (const DeviceResult& device : report.devices)
    check_select_device(report, device.name, lines);
  check_select_device(report, "no-such-device-in-any-file-0123456789", lines);  // 37 > 32 chars
  return 0;
}
