#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "config/types.hpp"

namespace vramswap::config {

// What is wrong with a value, in words; nothing when it is fine.
using Problem = std::optional<std::string>;

// One key of a device section (or of [global], as a default): how its value
// is parsed into a DeviceConfig, and whether [global] may hold it.
struct KeySpec {
  std::string_view name;
  Problem (*apply)(DeviceConfig& config, std::string_view value);
  // Why the key cannot be a [global] default; empty when it can.
  std::string_view device_only_reason;
};

// The key of this name; null for an unknown one.
const KeySpec* find_key(std::string_view name);
// For an unknown key: the nearest known one ("did you mean size?"), or the
// list of keys when none is near.
std::string unknown_key_advice(std::string_view key);

}  // namespace vramswap::config
