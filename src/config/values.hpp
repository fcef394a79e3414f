#pragma once

// Parsers for the values of /etc/vramswap.conf, one per kind of value. They
// are public so that command-line options taking the same values (a GPU, a
// size) accept the same spellings and give the same advice.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "config/types.hpp"

namespace vramswap::config {

// A parsed value, or the problem with it: "not a size; use ..." (cause, then
// the fix after "; "), ready to follow `key = "value": ` in a message.
template <class T>
struct Parsed {
  std::optional<T> value;
  std::string problem;

  static Parsed ok(T v) { return Parsed{std::move(v), {}}; }
  static Parsed fail(std::string why) { return Parsed{std::nullopt, std::move(why)}; }
};

// Explicit sizes below this are refused outright: "size = 4096" almost
// certainly means 4096M, not 4 KiB of swap.
inline constexpr uint64_t min_explicit_size = uint64_t{1} << 20;

// NAME of [device.NAME]: 1..max_device_name_length of [A-Za-z0-9_-].
bool is_valid_device_name(std::string_view name);

// yes/no, true/false, on/off, 1/0 (any case).
Parsed<bool> parse_bool(std::string_view text);

// CUDA index ("0"), UUID ("GPU-…"/"MIG-…") or PCI bus id ("0000:01:00.0", "01:00.0").
Parsed<GpuSelector> parse_gpu_selector(std::string_view text);

// "16G" (at least min_explicit_size), "50%" (1..100) or "auto".
Parsed<SizeSpec> parse_size_spec(std::string_view text);

// An amount of memory such as "1G" or "0"; `example` shows a sensible value
// in the advice.
Parsed<uint64_t> parse_byte_amount(std::string_view text, std::string_view example);

// How a range is put into words beyond its bounds: the unit its numbers are
// in, and what may be written besides a number. {"seconds", ", or auto"}
// says "use seconds from 1 to 60, or auto".
struct RangeWords {
  std::string_view unit;
  std::string_view note;
};

// A whole number in [min, max]. A refusal says what to write instead, from
// the bounds themselves: "use 1 to 64".
Parsed<long long> parse_integer(std::string_view text, long long min, long long max,
                                RangeWords words = {});

// An absolute path that fits a Unix socket address; "" means none.
Parsed<std::string> parse_socket_path(std::string_view text);

// A group name (not checked for existence here: the group may be created
// after the configuration is read); "" means none.
Parsed<std::string> parse_group_name(std::string_view text);

// "auto", "no" (any spelling parse_bool takes for no) or an absolute file
// name for the spill area.
Parsed<SpillSpec> parse_spill_spec(std::string_view text);

// "release" (true) or "keep" (false).
Parsed<bool> parse_on_battery(std::string_view text);

}  // namespace vramswap::config
