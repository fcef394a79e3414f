#include "config/size.hpp"

#include "common/byte_size.hpp"
#include "common/exit_codes.hpp"
#include "common/startup_error.hpp"

namespace vramswap::config {

uint64_t resolve_size(const SizeSpec& size, uint64_t reserve, uint64_t free_vram) {
  uint64_t bytes = 0;
  switch (size.kind) {
    case SizeKind::bytes:
      bytes = size.bytes;
      break;
    case SizeKind::percent_of_free:
      bytes = static_cast<uint64_t>(static_cast<unsigned __int128>(free_vram) * size.percent / 100);
      break;
    case SizeKind::automatic:
      bytes = free_vram > reserve ? free_vram - reserve : 0;
      break;
  }
  return bytes - bytes % swap_size_alignment;
}

std::string describe_size(const SizeSpec& size) {
  switch (size.kind) {
    case SizeKind::bytes:
      return format_byte_size(size.bytes);
    case SizeKind::percent_of_free:
      return std::to_string(size.percent) + "%";
    case SizeKind::automatic:
      break;
  }
  return "auto";
}

SwapSize choose_swap_size(const DeviceConfig& device, uint64_t free_vram, uint64_t total_vram) {
  const std::string section = "[device." + device.name + "]";
  if (device.size.kind == SizeKind::bytes && device.size.bytes > total_vram) {
    throw StartupError(exit_code::config,
                       section + ": size = " + format_byte_size(device.size.bytes) +
                           " is more than the GPU's total memory, " + format_byte_size(total_vram) +
                           "; lower size, or use size = auto or a percentage");
  }
  uint64_t bytes = resolve_size(device.size, device.reserve, free_vram);
  std::string lowered;
  // Whatever the size, `reserve` stays free for other programs: a size
  // above free VRAM minus the reserve takes what is left above it, and
  // says so, rather than backing off into the reserve.
  const uint64_t room = resolve_size(SizeSpec{}, device.reserve, free_vram);
  if (device.size.kind != SizeKind::automatic && bytes > room) {
    lowered = section + ": size = " + describe_size(device.size) + " is more than the " +
              format_byte_size(free_vram) +
              " of free VRAM minus reserve = " + format_byte_size(device.reserve) + ": taking " +
              format_byte_size(room) + "; lower size, or reserve to leave less to other programs";
    bytes = room;
  }
  if (bytes > 0 && bytes >= device.min_size) return {bytes, lowered};

  std::string how = "[device." + device.name + "]: size = " + describe_size(device.size);
  switch (device.size.kind) {
    case SizeKind::automatic:
      how += " leaves " + format_byte_size(bytes) + " (free VRAM " + format_byte_size(free_vram) +
             " minus reserve = " + format_byte_size(device.reserve) + ")";
      break;
    case SizeKind::percent_of_free:
      how += " gives " + format_byte_size(bytes) + " of " + format_byte_size(free_vram) +
             " free VRAM" +
             (bytes == room ? " minus reserve = " + format_byte_size(device.reserve) : "");
      break;
    case SizeKind::bytes:
      how += " gives " + format_byte_size(bytes) +
             (bytes == room && bytes < device.size.bytes - device.size.bytes % swap_size_alignment
                  ? " (free VRAM " + format_byte_size(free_vram) +
                        " minus reserve = " + format_byte_size(device.reserve) + ")"
                  : " in whole 2 MiB");
      break;
  }
  const std::string fix = device.size.kind == SizeKind::automatic
                              ? "free some VRAM, or lower reserve or min_size"
                          : device.size.kind == SizeKind::percent_of_free
                              ? "free some VRAM, or raise size or lower min_size"
                              : "raise size or lower min_size";
  throw StartupError(exit_code::unavailable,
                     how + ", less than min_size = " + format_byte_size(device.min_size) +
                         (bytes == 0 ? " and too little to swap on" : "") + "; " + fix);
}

}  // namespace vramswap::config
