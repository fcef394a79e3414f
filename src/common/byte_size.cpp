#include "common/byte_size.hpp"

#include <cctype>
#include <cstdio>

namespace vramswap {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::optional<unsigned> unit_shift(std::string_view unit) {
  if (unit.empty()) return 0;
  unsigned shift = 0;
  switch (std::toupper(static_cast<unsigned char>(unit.front()))) {
    case 'B': return unit.size() == 1 ? std::optional<unsigned>(0) : std::nullopt;
    case 'K': shift = 10; break;
    case 'M': shift = 20; break;
    case 'G': shift = 30; break;
    case 'T': shift = 40; break;
    default: return std::nullopt;
  }
  unit.remove_prefix(1);
  if (unit.empty() || unit == "B" || unit == "b" || unit == "iB" || unit == "ib" || unit == "IB") {
    return shift;
  }
  return std::nullopt;
}

}  // namespace

std::optional<uint64_t> parse_byte_size(std::string_view text) {
  text = trim(text);
  uint64_t whole = 0;
  size_t i = 0;
  for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i) {
    const uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (whole > (UINT64_MAX - digit) / 10) return std::nullopt;
    whole = whole * 10 + digit;
  }
  if (i == 0) return std::nullopt;
  // Up to 9 fraction digits, kept as an exact decimal numerator.
  uint64_t fraction = 0, scale = 1;
  if (i < text.size() && text[i] == '.') {
    ++i;
    const size_t start = i;
    for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i) {
      if (scale >= 1'000'000'000) return std::nullopt;
      fraction = fraction * 10 + static_cast<uint64_t>(text[i] - '0');
      scale *= 10;
    }
    if (i == start) return std::nullopt;
  }
  const auto shift = unit_shift(trim(text.substr(i)));
  if (!shift) return std::nullopt;
  if (*shift > 0 && whole > (UINT64_MAX >> *shift)) return std::nullopt;
  uint64_t bytes = whole << *shift;
  const uint64_t fraction_bytes = static_cast<uint64_t>(
      (static_cast<unsigned __int128>(fraction) << *shift) / scale);
  if (bytes > UINT64_MAX - fraction_bytes) return std::nullopt;
  if (*shift == 0 && fraction != 0) return std::nullopt;  // "1.5" bytes means nothing
  return bytes + fraction_bytes;
}

std::string format_byte_size(uint64_t bytes) {
  static constexpr const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < KiB) return std::to_string(bytes) + " B";
  double value = static_cast<double>(bytes) / KiB;
  size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < std::size(units)) {
    value /= 1024.0;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, "%.1f %s", value, units[unit]);
  return text;
}

}  // namespace vramswap
