#include "config/values.hpp"

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdio>
#include <vector>

#include "common/byte_size.hpp"

namespace vramswap::config {
namespace {

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool is_hex(char c) {
  return std::isxdigit(static_cast<unsigned char>(c)) != 0;
}

unsigned hex_value(char c) {
  return is_digit(c) ? unsigned(c - '0')
                     : unsigned(std::tolower(static_cast<unsigned char>(c)) - 'a' + 10);
}

// 1..max_digits hex digits, no prefix.
std::optional<uint32_t> parse_hex_field(std::string_view text, size_t max_digits) {
  if (text.empty() || text.size() > max_digits) return std::nullopt;
  uint32_t value = 0;
  for (char c : text) {
    if (!is_hex(c)) return std::nullopt;
    value = value * 16 + hex_value(c);
  }
  return value;
}

// Plain decimal digits, no sign, no overflow.
std::optional<unsigned long long> parse_decimal(std::string_view text) {
  if (text.empty()) return std::nullopt;
  unsigned long long value = 0;
  for (char c : text) {
    if (!is_digit(c)) return std::nullopt;
    const unsigned digit = unsigned(c - '0');
    if (value > (ULLONG_MAX - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (;;) {
    const size_t end = text.find(separator, start);
    parts.push_back(text.substr(start, end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

constexpr std::string_view gpu_advice =
    "use a CUDA index (0), a UUID as nvidia-smi -L prints it (GPU-...) or a PCI bus id "
    "(0000:01:00.0)";

Parsed<GpuSelector> parse_gpu_uuid(std::string_view text) {
  // "GPU-" or "MIG-", then 8-4-4-4-12 hex digits.
  static constexpr std::string_view bad =
      "not a GPU UUID; copy it from nvidia-smi -L (GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)";
  const std::string_view body = text.substr(4);
  if (body.size() != 36) return Parsed<GpuSelector>::fail(std::string(bad));
  GpuSelector gpu;
  size_t byte = 0;
  for (size_t i = 0; i < body.size();) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (body[i] != '-') return Parsed<GpuSelector>::fail(std::string(bad));
      ++i;
      continue;
    }
    if (i + 1 >= body.size() || !is_hex(body[i]) || !is_hex(body[i + 1])) {
      return Parsed<GpuSelector>::fail(std::string(bad));
    }
    gpu.uuid[byte++] = uint8_t(hex_value(body[i]) * 16 + hex_value(body[i + 1]));
    i += 2;
  }
  gpu.kind = GpuKind::uuid;
  gpu.text = std::string(text);
  return Parsed<GpuSelector>::ok(std::move(gpu));
}

Parsed<GpuSelector> parse_gpu_pci_bus_id(std::string_view text) {
  static constexpr std::string_view bad =
      "not a PCI bus id; use domain:bus:device.function as lspci -D prints it (0000:01:00.0)";
  const auto fields = split(text, ':');
  if (fields.size() != 2 && fields.size() != 3) return Parsed<GpuSelector>::fail(std::string(bad));
  PciAddress pci;
  if (fields.size() == 3) {
    // nvidia-smi writes 8 digits of domain, lspci and CUDA 4.
    const auto domain = parse_hex_field(fields[0], 8);
    if (!domain) return Parsed<GpuSelector>::fail(std::string(bad));
    pci.domain = *domain;
  }
  const auto bus = parse_hex_field(fields[fields.size() - 2], 2);
  const auto device_function = split(fields.back(), '.');
  if (!bus || device_function.size() != 2) return Parsed<GpuSelector>::fail(std::string(bad));
  const auto device = parse_hex_field(device_function[0], 2);
  const auto function = parse_hex_field(device_function[1], 1);
  if (!device || *device > 0x1f || !function || *function > 7) {
    return Parsed<GpuSelector>::fail(std::string(bad));
  }
  pci.bus = uint8_t(*bus);
  pci.device = uint8_t(*device);
  pci.function = uint8_t(*function);

  GpuSelector gpu;
  gpu.kind = GpuKind::pci_bus_id;
  gpu.text = std::string(text);
  gpu.pci = pci;
  char normalized[32];
  std::snprintf(normalized, sizeof normalized, "%04x:%02x:%02x.%x", unsigned(pci.domain),
                unsigned(pci.bus), unsigned(pci.device), unsigned(pci.function));
  gpu.pci_bus_id = normalized;
  return Parsed<GpuSelector>::ok(std::move(gpu));
}

}  // namespace

bool is_valid_device_name(std::string_view name) {
  if (name.empty() || name.size() > max_device_name_length) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' || c == '-';
  });
}

Parsed<bool> parse_bool(std::string_view text) {
  for (std::string_view yes : {"yes", "true", "on", "1"}) {
    if (equals_ignoring_case(text, yes)) return Parsed<bool>::ok(true);
  }
  for (std::string_view no : {"no", "false", "off", "0"}) {
    if (equals_ignoring_case(text, no)) return Parsed<bool>::ok(false);
  }
  return Parsed<bool>::fail("not yes or no; use yes or no (true/false, on/off and 1/0 work too)");
}

Parsed<GpuSelector> parse_gpu_selector(std::string_view text) {
  if (text.size() >= 4 && (equals_ignoring_case(text.substr(0, 4), "GPU-") ||
                           equals_ignoring_case(text.substr(0, 4), "MIG-"))) {
    return parse_gpu_uuid(text);
  }
  if (text.find(':') != std::string_view::npos) return parse_gpu_pci_bus_id(text);
  if (!text.empty() && std::all_of(text.begin(), text.end(), is_digit)) {
    const auto index = parse_decimal(text);
    // cuDeviceGet takes an int.
    if (!index || *index > INT_MAX) {
      return Parsed<GpuSelector>::fail("GPU index too large; use the CUDA index (0, 1, ...)");
    }
    GpuSelector gpu;
    gpu.kind = GpuKind::index;
    gpu.text = std::string(text);
    gpu.index = unsigned(*index);
    return Parsed<GpuSelector>::ok(std::move(gpu));
  }
  return Parsed<GpuSelector>::fail("not a GPU; " + std::string(gpu_advice));
}

Parsed<SizeSpec> parse_size_spec(std::string_view text) {
  if (equals_ignoring_case(text, "auto")) return Parsed<SizeSpec>::ok(SizeSpec{});
  if (!text.empty() && text.back() == '%') {
    std::string_view number = text.substr(0, text.size() - 1);
    while (!number.empty() && number.back() == ' ')
      number.remove_suffix(1);
    if (number.empty() || !std::all_of(number.begin(), number.end(), is_digit)) {
      return Parsed<SizeSpec>::fail(
          "not a percentage; use a whole percentage of free VRAM from 1% to 100%");
    }
    const auto percent = parse_decimal(number);
    if (!percent || *percent < 1 || *percent > 100) {
      return Parsed<SizeSpec>::fail("out of range; use a percentage of free VRAM from 1% to 100%");
    }
    return Parsed<SizeSpec>::ok(SizeSpec{SizeKind::percent_of_free, 0, unsigned(*percent)});
  }
  const auto bytes = parse_byte_size(text);
  if (!bytes) {
    return Parsed<SizeSpec>::fail(
        "not a size; use bytes with a K/M/G/T suffix (16G), a percentage of free VRAM (50%), or "
        "auto");
  }
  if (*bytes < min_explicit_size) {
    return Parsed<SizeSpec>::fail(
        std::to_string(*bytes) +
        " bytes is under 1 MiB, surely a mistake; give a unit (4096M, 16G)");
  }
  return Parsed<SizeSpec>::ok(SizeSpec{SizeKind::bytes, *bytes, 0});
}

Parsed<uint64_t> parse_byte_amount(std::string_view text, std::string_view example) {
  const auto bytes = parse_byte_size(text);
  if (!bytes) {
    return Parsed<uint64_t>::fail("not a size; use bytes with a K/M/G/T suffix (" +
                                  std::string(example) + ")");
  }
  return Parsed<uint64_t>::ok(*bytes);
}

Parsed<long long> parse_integer(std::string_view text, long long min, long long max,
                                RangeWords words) {
  std::string range_advice = "use ";
  if (!words.unit.empty()) range_advice += std::string(words.unit) + " from ";
  range_advice += std::to_string(min) + " to " + std::to_string(max) + std::string(words.note);
  const bool negative = !text.empty() && text.front() == '-';
  const std::string_view digits = negative ? text.substr(1) : text;
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), is_digit)) {
    return Parsed<long long>::fail("not a whole number; " + std::string(range_advice));
  }
  const auto magnitude = parse_decimal(digits);
  if (!magnitude) return Parsed<long long>::fail("out of range; " + std::string(range_advice));
  // Compared in 128 bits, so that huge magnitudes are out of range, not wrapped.
  const __int128 value =
      negative ? -static_cast<__int128>(*magnitude) : static_cast<__int128>(*magnitude);
  if (value < min || value > max)
    return Parsed<long long>::fail("out of range; " + std::string(range_advice));
  return Parsed<long long>::ok(static_cast<long long>(value));
}

Parsed<std::string> parse_socket_path(std::string_view text) {
  if (text.empty()) return Parsed<std::string>::ok({});
  if (text.front() != '/') {
    return Parsed<std::string>::fail("not an absolute path; use one like /run/vramswap/NAME.sock");
  }
  if (text.back() == '/') {
    return Parsed<std::string>::fail(
        "names a directory; name the socket file (/run/vramswap/NAME.sock)");
  }
  if (text.size() > max_socket_path_length) {
    return Parsed<std::string>::fail(std::to_string(text.size()) + " bytes, more than the " +
                                     std::to_string(max_socket_path_length) +
                                     " a Unix socket address holds; use a shorter path");
  }
  return Parsed<std::string>::ok(std::string(text));
}

Parsed<std::string> parse_group_name(std::string_view text) {
  if (text.empty()) return Parsed<std::string>::ok({});
  // Portable user/group names (useradd, POSIX), with the '$' Samba machine
  // accounts use; all digits would be read as a gid by many tools.
  const std::string_view body = text.back() == '$' ? text.substr(0, text.size() - 1) : text;
  const bool valid = !body.empty() && text.size() <= 32 && body.front() != '-' &&
                     std::all_of(body.begin(), body.end(),
                                 [](char c) {
                                   return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                          is_digit(c) || c == '_' || c == '-' || c == '.';
                                 }) &&
                     !std::all_of(body.begin(), body.end(), is_digit);
  if (!valid) {
    return Parsed<std::string>::fail(
        "not a group name; use the name of an existing group (vramswap)");
  }
  return Parsed<std::string>::ok(std::string(text));
}

Parsed<SpillSpec> parse_spill_spec(std::string_view text) {
  if (text == "auto") return Parsed<SpillSpec>::ok({SpillKind::automatic, {}});
  if (const auto off = parse_bool(text); off.value && !*off.value)
    return Parsed<SpillSpec>::ok({SpillKind::off, {}});
  if (text.empty() || text.front() != '/') {
    return Parsed<SpillSpec>::fail(
        "not auto, no or an absolute path; use auto (/var/lib/vramswap/NAME.spill), no, or a "
        "file such as /var/lib/vramswap/NAME.spill");
  }
  if (text.back() == '/') {
    return Parsed<SpillSpec>::fail(
        "names a directory; name the spill file (/var/lib/vramswap/NAME.spill)");
  }
  return Parsed<SpillSpec>::ok({SpillKind::path, std::string(text)});
}

Parsed<bool> parse_on_battery(std::string_view text) {
  if (text == "release") return Parsed<bool>::ok(true);
  if (text == "keep") return Parsed<bool>::ok(false);
  return Parsed<bool>::fail(
      "not release or keep; use release (give the VRAM back while on battery) or keep");
}

}  // namespace vramswap::config
