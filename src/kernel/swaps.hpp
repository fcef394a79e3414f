#pragma once

// Swap state and control: /proc/swaps, swapon(2), swapoff(2), mkswap.
//
// Everything here that touches the device (swap_on reads its header,
// swap_off reads back every swapped page, make_swap writes) is served by the
// daemon when the device is /dev/nbdX: call it from a thread that no I/O of
// the device waits on, never from an I/O worker.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vramswap::kernel {

struct SwapEntry {
  std::string path;  // octal escapes (\040 for a space) already decoded
  std::string type;  // "partition" (block device) or "file"
  uint64_t size_bytes = 0;
  uint64_t used_bytes = 0;
  int priority = 0;  // negative when none was given at swapon
};

// Parses the text of /proc/swaps: a header line, then one line per area with
// the sizes in KiB. Lines that do not have that shape are left out, so a
// future extra column does not break us.
std::vector<SwapEntry> parse_proc_swaps(std::string_view text);

// The areas the kernel swaps to now. Throws StartupError(exit_code::os_error)
// when /proc/swaps cannot be read.
std::vector<SwapEntry> read_proc_swaps();

// The entry of `entries` that is the block device `device_path` (any path or
// symlink to it, e.g. /dev/vramswap/NAME), compared by device number so that
// the name swapon saw does not matter. Nothing when `device_path` is not a
// block device or is not among them.
std::optional<SwapEntry> find_swap_for_device(const std::vector<SwapEntry>& entries,
                                              const std::string& device_path);

// find_swap_for_device(read_proc_swaps(), device_path).
std::optional<SwapEntry> active_swap_for_device(const std::string& device_path);

// The longest label mkswap stores whole: the header has 16 bytes for it,
// and mkswap keeps one for the terminating NUL (and warns when it cuts).
inline constexpr size_t swap_label_max = 15;

// Runs util-linux's `mkswap -L LABEL PATH` (the label cut to 15 bytes). Throws
// StartupError with mkswap's own last line of error output when it fails.
void make_swap(const std::string& path, std::string_view label);

// swapon(2) with SWAP_FLAG_PREFER | priority (0..32767; higher is used
// first; -1: no preference, the kernel picks a priority) and, with `discard`, SWAP_FLAG_DISCARD
// (the kernel then discards freed swap clusters, and the whole area once at swapon; it quietly does
// neither when the device cannot discard). Throws StartupError with the cause
// and fix.
void swap_on(const std::string& path, int priority, bool discard);

// swapoff(2): the kernel reads every page swapped to `path` back into memory
// first, which can take long and fails with ENOMEM when they do not fit.
// Throws StartupError with the cause and fix.
void swap_off(const std::string& path);

// swap_off() for a device that may or may not be swap: false when the kernel
// says it is not an active swap area (EINVAL), which /proc/swaps alone
// cannot always tell: it shows each area by the path its swapon resolved,
// as seen from the reader's mount namespace, and a path resolved in a
// namespace that is gone (a sandboxed daemon's, after it exited) reads
// "/nbd0", not "/dev/nbd0". swapoff(2) matches the device itself.
bool swap_off_if_swap(const std::string& path);

}  // namespace vramswap::kernel
