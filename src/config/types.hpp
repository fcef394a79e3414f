#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace vramswap::config {

// Device names become unit instances (vramswap@NAME.service), file names,
// /dev/vramswap/NAME links, default socket paths under /run and the kernel nbd
// backend identifier. Letters, digits, '_' and '-' need no escaping in any of
// them ('-' only with %i, not %I, in unit files); 32 characters keep a path
// such as /run/vramswap/NAME.sock far inside the 107 bytes of a Unix socket
// address and leave room in journal lines, while being plenty for a name a
// person types.
inline constexpr std::size_t max_device_name_length = 32;

// Longest line accepted, not counting the line end: what Debian's libinih
// (INI_MAX_LINE = 200) can hold with "\r\n" and the terminating NUL. A
// library built with a smaller buffer lowers the limit to what it can hold.
inline constexpr int max_line_length = 197;

// sockaddr_un.sun_path is 108 bytes including the terminating NUL.
inline constexpr std::size_t max_socket_path_length = 107;

enum class SizeKind {
  bytes,            // an explicit amount
  percent_of_free,  // a share of the VRAM free when the daemon starts
  automatic,        // free VRAM minus `reserve`
};

struct SizeSpec {
  SizeKind kind = SizeKind::automatic;
  uint64_t bytes = 0;    // kind == bytes
  unsigned percent = 0;  // kind == percent_of_free, 1..100
  bool operator==(const SizeSpec&) const = default;
};

// Where a device keeps the chunks it moves out of VRAM (elastic VRAM,
// src/store/ELASTIC.md).
enum class SpillKind {
  automatic,  // /var/lib/vramswap/NAME.spill, where that disk has room
  off,        // no spill area: the device keeps its VRAM whatever happens
  path,       // the file the administrator named
};

struct SpillSpec {
  SpillKind kind = SpillKind::automatic;
  std::string path;  // kind == path: an absolute file name
  bool operator==(const SpillSpec&) const = default;
};

enum class GpuKind { index, uuid, pci_bus_id };

struct PciAddress {
  uint32_t domain = 0;
  uint8_t bus = 0;
  uint8_t device = 0;
  uint8_t function = 0;
  bool operator==(const PciAddress&) const = default;
};

// Which GPU a device uses, as the user wrote it. The index is CUDA's device
// ordinal (the daemon must enumerate in PCI bus order, CUDA_DEVICE_ORDER=
// PCI_BUS_ID, so that it matches nvidia-smi); a UUID is what `nvidia-smi -L`
// prints ("GPU-…", or "MIG-…" for a MIG instance); a PCI bus id is what
// `lspci -D` or nvidia-smi print.
struct GpuSelector {
  GpuKind kind = GpuKind::index;
  std::string text = "0";          // as written in the file
  unsigned index = 0;              // kind == index
  std::array<uint8_t, 16> uuid{};  // kind == uuid: the bytes cuDeviceGetUuid returns
  PciAddress pci;                  // kind == pci_bus_id
  std::string pci_bus_id;          // kind == pci_bus_id: "0000:01:00.0", for cuDeviceGetByPCIBusId
  bool operator==(const GpuSelector&) const = default;
};

// Where a key's value came from, for messages that point at the line to edit.
struct KeyOrigin {
  int line = 0;            // line in the file
  bool inherited = false;  // set in [global], not in the device's own section
  int source = 0;          // the file: an index into the report's `files` (0: the main file)
  bool operator==(const KeyOrigin&) const = default;
};

// Everything one daemon instance needs to know, with [global] and built-in
// defaults already applied.
struct DeviceConfig {
  std::string name;  // NAME of [device.NAME] and of vramswap@NAME
  int line = 0;      // line of the (first) [device.NAME] header
  int source = 0;    // its file: an index into the report's `files` (0: the main file)

  GpuSelector gpu;
  SizeSpec size;
  uint64_t reserve = 0;   // VRAM left to other programs when size = auto
  uint64_t min_size = 0;  // refuse to run rather than make a smaller swap
  unsigned connections = 1;
  std::string listen;  // Unix socket serving NBD to userspace; empty: none
  bool attach = true;  // set up a kernel nbd device
  int priority = 0;    // swap priority, -1..32767
  bool discard = false;
  bool swap = false;                  // the daemon runs mkswap + swapon itself
  std::optional<unsigned> nbd_index;  // empty: the kernel picks
  std::optional<unsigned> timeout_s;  // kernel per-request timeout; 0: none; empty: auto
  bool verify = false;                // checksum every 4 KiB block
  bool copy_kernel = true;            // batch a round's small copies into one kernel launch
  unsigned busy_poll_us = 0;          // after work, poll the sockets this long before sleeping
  std::string socket_group;           // group allowed on `listen`; empty: none (mode 0600)
  SpillSpec spill;                    // the elastic tier's spill file
  bool release_on_battery = false;    // on_battery = release: give the VRAM back on battery

  // Keys set in the file (in the device section or [global]); keys left at
  // their built-in default are absent.
  std::map<std::string, KeyOrigin, std::less<>> origins;

  // Line of the key's value in the file, or 0 when it is the built-in default.
  int line_of(std::string_view key) const {
    const auto it = origins.find(key);
    return it == origins.end() ? 0 : it->second.line;
  }

  bool operator==(const DeviceConfig&) const = default;
};

}  // namespace vramswap::config
