#include "config/keys.hpp"

#include <algorithm>
#include <vector>

#include "config/config.hpp"
#include "config/values.hpp"

namespace vramswap::config {
namespace {

template <class Field, class Value>
Problem assign(Field& field, Parsed<Value> parsed) {
  if (!parsed.value) return std::move(parsed.problem);
  field = static_cast<Field>(std::move(*parsed.value));
  return std::nullopt;
}

// The keys, in the order the man page lists them.
const KeySpec key_specs[] = {
    {"gpu",
     [](DeviceConfig& c, std::string_view v) { return assign(c.gpu, parse_gpu_selector(v)); },
     {}},
    {"size",
     [](DeviceConfig& c, std::string_view v) { return assign(c.size, parse_size_spec(v)); },
     {}},
    {"reserve",
     [](DeviceConfig& c, std::string_view v) {
       return assign(c.reserve, parse_byte_amount(v, "1G"));
     },
     {}},
    {"min_size",
     [](DeviceConfig& c, std::string_view v) {
       return assign(c.min_size, parse_byte_amount(v, "256M"));
     },
     {}},
    {"connections",
     [](DeviceConfig& c, std::string_view v) {
       return assign(c.connections, parse_integer(v, 1, max_connections));
     },
     {}},
    {"listen",
     [](DeviceConfig& c, std::string_view v) { return assign(c.listen, parse_socket_path(v)); },
     "each device needs its own socket"},
    {"attach",
     [](DeviceConfig& c, std::string_view v) { return assign(c.attach, parse_bool(v)); },
     {}},
    {"priority",
     [](DeviceConfig& c, std::string_view v) {
       return assign(
           c.priority,
           parse_integer(v, -1, 32767, {{}, " (higher is used first; -1 lets the kernel choose)"}));
     },
     {}},
    {"discard",
     [](DeviceConfig& c, std::string_view v) { return assign(c.discard, parse_bool(v)); },
     {}},
    {"swap", [](DeviceConfig& c, std::string_view v) { return assign(c.swap, parse_bool(v)); }, {}},
    {"nbd_index",
     [](DeviceConfig& c, std::string_view v) -> Problem {
       if (v == "auto") {
         c.nbd_index.reset();
         return std::nullopt;
       }
       auto index = parse_integer(v, 0, max_nbd_index, {{}, ", or auto to let the kernel pick"});
       if (!index.value) return std::move(index.problem);
       c.nbd_index = static_cast<unsigned>(*index.value);
       return std::nullopt;
     },
     "each device needs its own nbd device"},
    {"timeout",
     [](DeviceConfig& c, std::string_view v) -> std::optional<std::string> {
       if (v == "auto") {
         c.timeout_s.reset();
         return std::nullopt;
       }
       if (parse_integer(v, 0, 0).value) {
         c.timeout_s = 0;  // no timeout
         return std::nullopt;
       }
       auto seconds =
           parse_integer(v, 1, max_timeout_s, {"seconds", ", 0 for no timeout, or auto"});
       if (!seconds.value) return std::move(seconds.problem);
       c.timeout_s = static_cast<unsigned>(*seconds.value);
       return std::nullopt;
     },
     {}},
    {"verify",
     [](DeviceConfig& c, std::string_view v) { return assign(c.verify, parse_bool(v)); },
     {}},
    {"socket_group",
     [](DeviceConfig& c, std::string_view v) {
       return assign(c.socket_group, parse_group_name(v));
     },
     {}},
    {"copy_kernel",
     [](DeviceConfig& c, std::string_view v) { return assign(c.copy_kernel, parse_bool(v)); },
     {}},
    {"busy_poll",
     [](DeviceConfig& c, std::string_view v) {
       return assign(c.busy_poll_us,
                     parse_integer(v, 0, max_busy_poll_us, {"microseconds", " (0: off)"}));
     },
     {}},
    {"spill",
     [](DeviceConfig& c, std::string_view v) { return assign(c.spill, parse_spill_spec(v)); },
     {}},
    {"on_battery",
     [](DeviceConfig& c, std::string_view v) {
       return assign(c.release_on_battery, parse_on_battery(v));
     },
     {}},
};

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

const KeySpec* find_key(std::string_view name) {
  for (const auto& spec : key_specs) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

std::string unknown_key_advice(std::string_view key) {
  const KeySpec* closest = nullptr;
  size_t best = 3;  // suggest only near misses
  for (const auto& spec : key_specs) {
    const size_t distance = edit_distance(key, spec.name);
    if (distance < best) {
      best = distance;
      closest = &spec;
    }
  }
  if (closest) return "did you mean " + std::string(closest->name) + "?";
  std::string all = "the keys are ";
  for (const auto& spec : key_specs) {
    if (&spec != &key_specs[0]) all += ", ";
    all += spec.name;
  }
  return all;
}

}  // namespace vramswap::config
