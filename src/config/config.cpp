#include "config/config.hpp"

#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>

#include "common/byte_size.hpp"
#include "common/exit_codes.hpp"
#include "common/printable.hpp"
#include "common/startup_error.hpp"
#include "config/ini_scan.hpp"
#include "config/keys.hpp"
#include "config/values.hpp"

namespace vramswap::config {
namespace {

bool is_quoted(std::string_view value) {
  return value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
         value.back() == value.front();
}

std::string quoted(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

std::string device_label(std::string_view name) {
  return "[device." + std::string(name) + "]";
}

struct Entry {
  int source;  // the file
  int line;
  std::string key;
  std::string value;
};

struct DeviceDraft {
  std::string name;
  int source;  // file and line of the first header
  int line;
  std::vector<Entry> entries;  // from every file, in the order they apply
  std::vector<ConfigError> errors;
};

// A place in the configuration: which file, which line.
struct Place {
  int source = 0;
  int line = 0;
};

void sort_by_place(std::vector<ConfigError>& errors) {
  std::stable_sort(errors.begin(), errors.end(), [](const ConfigError& a, const ConfigError& b) {
    return a.source != b.source ? a.source < b.source : a.line < b.line;
  });
}

class ReportBuilder {
 public:
  explicit ReportBuilder(const ParseOptions& options) : base_(default_device_config(options)) {}

  ConfigReport build(const std::vector<ConfigText>& texts) {
    for (const auto& text : texts) {
      // Each file starts outside any section, with its own sections.
      source_ = static_cast<int>(paths_.size());
      paths_.push_back(text.path);
      scope_ = Scope::none;
      global_line_ = 0;
      sections_here_.clear();
      for (const auto& item : scan_ini(text.text))
        take(item);
    }

    std::set<std::string> global_failed;
    apply_entries(global_entries_, "[global]", true, base_, file_errors_, global_failed);
    for (auto& [key, origin] : base_.origins)
      origin.inherited = true;

    ConfigReport report;
    report.path = paths_.empty() ? std::string() : paths_.front();
    report.files = paths_;
    report.defaults = base_;
    std::map<std::string, const DeviceConfig*> listeners;
    std::map<unsigned, const DeviceConfig*> nbd_indexes;
    std::vector<DeviceConfig> configs;
    configs.reserve(devices_.size());  // the maps above point into it
    for (auto& draft : devices_) {
      DeviceConfig& config = configs.emplace_back(base_);
      config.name = draft.name;
      config.line = draft.line;
      config.source = draft.source;
      std::set<std::string> failed = global_failed;
      apply_entries(draft.entries, device_label(draft.name), false, config, draft.errors, failed);
      check_consistency(config, failed, draft.errors);
      check_unique(config, failed, listeners, nbd_indexes, draft.errors);
      sort_by_place(draft.errors);
    }
    sort_by_place(file_errors_);
    report.file_errors = std::move(file_errors_);
    for (size_t i = 0; i < devices_.size(); ++i) {
      DeviceResult result{devices_[i].name, devices_[i].line, devices_[i].source, std::nullopt,
                          std::move(devices_[i].errors)};
      if (result.errors.empty() && report.file_errors.empty())
        result.config = std::move(configs[i]);
      report.devices.push_back(std::move(result));
    }
    return report;
  }

 private:
  enum class Scope {
    none,    // before the first section
    global,  // in [global]
    device,  // in devices_.back() ... or devices_[device_]
    lost,    // in a section that is reported already (unknown, misnamed, broken header)
  };

  std::string at(Place place) const {
    return paths_[size_t(place.source)] + ":" + std::to_string(place.line) + ": ";
  }

  // Every error goes through here: whatever of the file it quotes (a key, a
  // value, a whole line) reaches the journal escaped, never as raw bytes.
  ConfigError error_at(Place place, const std::string& text) const {
    return {place.line, escape_unprintable(at(place) + text), place.source};
  }

  // "line 3" in the same file as `from`, "/etc/vramswap.conf.d/x.conf:3" in another.
  std::string refer_to(Place place, int from) const {
    if (place.source == from) return "line " + std::to_string(place.line);
    return paths_[size_t(place.source)] + ":" + std::to_string(place.line);
  }

  void file_error(int line, const std::string& text) {
    file_errors_.push_back(error_at({source_, line}, text));
  }

  // Errors inside a device's section belong to it; any other breaks them all.
  std::vector<ConfigError>& errors_here() {
    return scope_ == Scope::device ? devices_[device_].errors : file_errors_;
  }

  void take(const IniItem& item) {
    switch (item.kind) {
      case IniItem::Kind::section:
        enter_section(item);
        break;
      case IniItem::Kind::entry:
        add_entry(item);
        break;
      case IniItem::Kind::error:
        // A broken header may have opened any section: the file's problem.
        if (item.section_lost) scope_ = Scope::lost;
        errors_here().push_back(error_at({source_, item.line}, item.value));
        break;
    }
  }

  void enter_section(const IniItem& item) {
    const std::string& name = item.name;
    if (name == "global") {
      if (global_line_) {
        file_error(item.line, "duplicate section [global] (first at line " +
                                  std::to_string(global_line_) + "); merge them into one");
      } else {
        global_line_ = item.line;
      }
      scope_ = Scope::global;
      return;
    }
    if (!name.starts_with("device.")) {
      file_error(item.line,
                 "unknown section [" + name + "]; sections are [global] and [device.NAME]");
      scope_ = Scope::lost;
      return;
    }
    const std::string device = name.substr(7);
    if (!is_valid_device_name(device)) {
      file_error(item.line, "invalid device name " + quoted(device) + " in [" + name +
                                "]; use 1 to " + std::to_string(max_device_name_length) +
                                " letters, digits, '_' or '-'");
      scope_ = Scope::lost;
      return;
    }
    scope_ = Scope::device;
    const auto [here, first_here] = sections_here_.emplace(device, item.line);
    const auto existing = std::find_if(devices_.begin(), devices_.end(),
                                       [&](const DeviceDraft& d) { return d.name == device; });
    if (existing != devices_.end()) {
      // In an earlier file: this one adds to it or overrides its keys.
      device_ = static_cast<size_t>(existing - devices_.begin());
      if (!first_here) {
        existing->errors.push_back(error_at(
            {source_, item.line}, "duplicate section [" + name + "] (first at line " +
                                      std::to_string(here->second) + "); merge them into one"));
      }
      return;
    }
    device_ = devices_.size();
    devices_.push_back({device, source_, item.line, {}, {}});
  }

  void add_entry(const IniItem& item) {
    Entry entry{source_, item.line, item.name, item.value};
    switch (scope_) {
      case Scope::none:
        file_error(item.line, item.name + " = " + quoted(item.value) +
                                  " is outside any section; put it under [global] or a "
                                  "[device.NAME] section");
        break;
      case Scope::global:
        global_entries_.push_back(std::move(entry));
        break;
      case Scope::device:
        devices_[device_].entries.push_back(std::move(entry));
        break;
      case Scope::lost:
        break;  // its section is reported; its keys would only add noise
    }
  }

  // Applies one section's keys onto `config`; keys whose value is unusable
  // go into `failed`, so that checks between keys skip them.
  void apply_entries(const std::vector<Entry>& entries, const std::string& section, bool is_global,
                     DeviceConfig& config, std::vector<ConfigError>& errors,
                     std::set<std::string>& failed) const {
    // Where each key was first set in each file: set again in the same file
    // is an error, in a later file an override.
    std::map<std::pair<int, std::string>, int> first_line;
    for (const auto& entry : entries) {
      const auto error = [&](const std::string& text) {
        errors.push_back(error_at({entry.source, entry.line}, text));
      };
      const KeySpec* spec = find_key(entry.key);
      if (!spec) {
        error("unknown key " + quoted(entry.key) + " in " + section + "; " +
              unknown_key_advice(entry.key));
        continue;
      }
      if (is_global && !spec->device_only_reason.empty()) {
        error(entry.key + " cannot be in [global]: " + std::string(spec->device_only_reason) +
              "; move it to a [device.NAME] section");
        failed.insert(entry.key);
        continue;
      }
      if (const auto [it, first] =
              first_line.emplace(std::pair(entry.source, entry.key), entry.line);
          !first) {
        error(entry.key + " is set twice in " + section + " (first at line " +
              std::to_string(it->second) + "); keep one");
        continue;
      }
      if (is_quoted(entry.value)) {
        // Quotes would be taken as part of the value and draw a puzzling
        // "not a size" for size = "4G".
        error(entry.key + " = " + entry.value + ": values take no quotes; remove them");
        failed.insert(entry.key);
        continue;
      }
      if (auto problem = spec->apply(config, entry.value)) {
        error(entry.key + " = " + quoted(entry.value) + ": " + *problem);
        failed.insert(entry.key);
        continue;
      }
      config.origins[entry.key] = KeyOrigin{entry.line, false, entry.source};
    }
  }

  // "attach = no" or "attach = no (set in [global])".
  static std::string setting(const DeviceConfig& config, std::string_view key,
                             std::string_view value) {
    const auto it = config.origins.find(key);
    const bool inherited = it != config.origins.end() && it->second.inherited;
    return std::string(key) + " = " + std::string(value) + (inherited ? " (set in [global])" : "");
  }

  // Where to point for a check between keys: the first key's line, or the
  // section header when both are defaults.
  static Place place_for(const DeviceConfig& config, std::string_view key) {
    const auto it = config.origins.find(key);
    if (it == config.origins.end()) return {config.source, config.line};
    return {it->second.source, it->second.line};
  }

  void check_consistency(const DeviceConfig& config, const std::set<std::string>& failed,
                         std::vector<ConfigError>& errors) const {
    const auto usable = [&](std::initializer_list<const char*> keys) {
      return std::none_of(keys.begin(), keys.end(),
                          [&](const char* key) { return failed.count(key); });
    };
    const auto error = [&](std::string_view key, const std::string& text) {
      errors.push_back(error_at(place_for(config, key), device_label(config.name) + ": " + text));
    };
    if (!config.attach && config.listen.empty() && usable({"attach", "listen"})) {
      error("attach", setting(config, "attach", "no") +
                          " and no listen socket: the daemon would serve nothing; set listen = "
                          "/run/vramswap/" +
                          config.name + ".sock or attach = yes");
    }
    if (config.swap && !config.attach && usable({"swap", "attach"})) {
      error("swap", setting(config, "swap", "yes") + " cannot work with " +
                        setting(config, "attach", "no") +
                        ": swap goes on the kernel's nbd device; set attach = yes or swap = no");
    }
    if (config.size.kind == SizeKind::bytes && config.size.bytes < config.min_size &&
        usable({"size", "min_size"})) {
      error("size", "size = " + format_byte_size(config.size.bytes) + " is below min_size = " +
                        format_byte_size(config.min_size) + "; raise size or lower min_size");
    }
  }

  // Two daemons cannot share one socket or one nbd device; the later
  // section is the one in error.
  void check_unique(const DeviceConfig& config, const std::set<std::string>& failed,
                    std::map<std::string, const DeviceConfig*>& listeners,
                    std::map<unsigned, const DeviceConfig*>& nbd_indexes,
                    std::vector<ConfigError>& errors) const {
    if (!config.listen.empty() && !failed.count("listen")) {
      const auto [it, first] = listeners.emplace(config.listen, &config);
      if (!first) {
        const Place place = place_for(config, "listen");
        errors.push_back(
            error_at(place, "listen = " + quoted(config.listen) + " is also the socket of " +
                                device_label(it->second->name) + " (" +
                                refer_to(place_for(*it->second, "listen"), place.source) +
                                "); give each device its own socket"));
      }
    }
    if (config.nbd_index && !failed.count("nbd_index")) {
      const auto [it, first] = nbd_indexes.emplace(*config.nbd_index, &config);
      if (!first) {
        const Place place = place_for(config, "nbd_index");
        errors.push_back(
            error_at(place, "nbd_index = " + std::to_string(*config.nbd_index) +
                                " is also used by " + device_label(it->second->name) + " (" +
                                refer_to(place_for(*it->second, "nbd_index"), place.source) +
                                "); pick another or use auto"));
      }
    }
  }

  std::vector<std::string> paths_;  // the files, in the order they apply
  int source_ = 0;                  // the file being read
  DeviceConfig base_;               // built-in defaults, then [global]
  Scope scope_ = Scope::none;
  size_t device_ = 0;                         // with Scope::device
  int global_line_ = 0;                       // in this file
  std::map<std::string, int> sections_here_;  // device sections of this file: their line
  std::vector<Entry> global_entries_;
  std::vector<DeviceDraft> devices_;
  std::vector<ConfigError> file_errors_;
};

[[noreturn]] void throw_config_error(const std::string& message) {
  throw StartupError(exit_code::config, message);
}

std::string configured_names(const std::vector<std::string>& names) {
  std::string list;
  for (const auto& name : names)
    list += (list.empty() ? "" : ", ") + name;
  return list;
}

[[noreturn]] void throw_no_such_device(std::string_view path, std::string_view instance,
                                       const std::vector<std::string>& names) {
  const std::string wanted = device_label(instance);
  if (names.empty()) {
    throw_config_error(std::string(path) + ": no " + wanted +
                       " section, and no devices are configured; add a " + wanted +
                       " section (see vramswap.conf(5))");
  }
  throw_config_error(std::string(path) + ": no " + wanted +
                     " section; configured devices: " + configured_names(names) + "; add " +
                     wanted + " or use one of those names (vramswap@NAME)");
}

}  // namespace

unsigned effective_timeout_s(const DeviceConfig& device) {
  if (device.timeout_s) return *device.timeout_s;
  return device.connections > 1 ? auto_timeout_several_connections_s : 0;
}

unsigned default_connections(long online_cpus) {
  return static_cast<unsigned>(std::clamp<long>(online_cpus, 1, max_default_connections));
}

DeviceConfig default_device_config(const ParseOptions& options) {
  DeviceConfig config;
  config.gpu = GpuSelector{};
  config.size = SizeSpec{};
  config.reserve = GiB;
  config.min_size = 256 * MiB;
  config.connections = default_connections(
      options.online_cpus >= 1 ? options.online_cpus : sysconf(_SC_NPROCESSORS_ONLN));
  config.attach = true;
  config.priority = default_priority;
  config.discard = false;
  config.swap = false;
  config.timeout_s.reset();  // auto
  config.verify = false;
  config.copy_kernel = true;
  config.busy_poll_us = default_busy_poll_us;
  config.spill = SpillSpec{};
  config.release_on_battery = false;
  return config;
}

bool ConfigReport::ok() const {
  return file_errors.empty() && std::all_of(devices.begin(), devices.end(),
                                            [](const DeviceResult& d) { return d.errors.empty(); });
}

std::vector<ConfigError> ConfigReport::all_errors() const {
  std::vector<ConfigError> errors = file_errors;
  for (const auto& device : devices)
    errors.insert(errors.end(), device.errors.begin(), device.errors.end());
  sort_by_place(errors);
  return errors;
}

const DeviceResult* ConfigReport::find(std::string_view name) const {
  const auto it = std::find_if(devices.begin(), devices.end(),
                               [&](const DeviceResult& device) { return device.name == name; });
  return it == devices.end() ? nullptr : &*it;
}

std::vector<ConfigError> ConfigReport::errors_for(const DeviceResult& device) const {
  std::vector<ConfigError> errors = file_errors;
  errors.insert(errors.end(), device.errors.begin(), device.errors.end());
  sort_by_place(errors);
  return errors;
}

ConfigReport parse_config_texts(const std::vector<ConfigText>& texts, const ParseOptions& options) {
  return ReportBuilder(options).build(texts);
}

ConfigReport parse_config_report(std::string_view text, std::string_view path,
                                 const ParseOptions& options) {
  return parse_config_texts({{std::string(path), std::string(text)}}, options);
}

Config parse_config(std::string_view text, std::string_view path, const ParseOptions& options) {
  return valid_config(parse_config_report(text, path, options));
}

Config valid_config(ConfigReport report) {
  if (const auto errors = report.all_errors(); !errors.empty())
    throw_config_error(errors.front().message);
  Config config{report.path, {}};
  for (auto& device : report.devices)
    config.devices.push_back(std::move(*device.config));
  return config;
}

const DeviceConfig& find_device(const Config& config, std::string_view instance) {
  for (const auto& device : config.devices) {
    if (device.name == instance) return device;
  }
  std::vector<std::string> names;
  for (const auto& device : config.devices)
    names.push_back(device.name);
  throw_no_such_device(config.path, instance, names);
}

DeviceConfig select_device(const ConfigReport& report, std::string_view instance) {
  if (!report.file_errors.empty()) throw_config_error(report.file_errors.front().message);
  const DeviceResult* device = report.find(instance);
  if (!device) {
    std::vector<std::string> names;
    for (const auto& d : report.devices)
      names.push_back(d.name);
    throw_no_such_device(report.path, instance, names);
  }
  if (!device->errors.empty()) throw_config_error(device->errors.front().message);
  return *device->config;
}

}  // namespace vramswap::config
