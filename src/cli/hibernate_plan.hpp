#pragma once

// The decisions of `vramswap hibernate prepare|resume` (vramswap(8)), as pure
// functions of what the system says, so that unit tests can drive them: which
// VRAM swap areas go off before a hibernation, when a hibernation is refused
// instead, what is recorded, and what the record brings back after resume.
// hibernate_command.cpp gathers the inputs and does the system calls.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/swaps.hpp"

namespace vramswap::cli {

// One VRAM swap area that `prepare` swaps off, as the record keeps it.
struct HibernateSwap {
  std::string instance;
  std::string device;    // /dev/nbdX
  std::string backend;   // "vramswap/NAME": resume checks the device is still the instance's
  int priority = -1;     // as /proc/swaps showed it; -1: none was given, the kernel picks
  bool discard = false;  // the instance's `discard`
  uint64_t used_bytes = 0;
  bool operator==(const HibernateSwap&) const = default;
};

// What `prepare` swapped off and `resume` is to swap on again, in
// <runtime dir>/hibernate.json. A device whose prepare did not finish may be
// in it while still swap: resume then leaves it as it is.
struct HibernateRecord {
  std::vector<HibernateSwap> devices;
  bool operator==(const HibernateRecord&) const = default;
};

std::string record_to_json(const HibernateRecord& record);
// Nothing, and `why` says what is wrong, when `text` is not a record.
std::optional<HibernateRecord> record_from_json(const std::string& text, std::string& why);

// `current`, then the entries of `earlier` for devices not in `current`: a
// device an earlier prepare swapped off, whose resume never ran, stays to be
// swapped on.
HibernateRecord merge_records(const HibernateRecord& current, const HibernateRecord& earlier);

// A daemon's device that is active swap now.
struct VramSwap {
  std::string instance;
  std::string device;
  kernel::SwapEntry swap;  // its /proc/swaps entry
  bool discard = false;
};

// From /proc/meminfo.
struct MemoryState {
  uint64_t total_bytes = 0;
  uint64_t available_bytes = 0;  // MemAvailable
};
// Nothing when MemTotal or MemAvailable is missing.
std::optional<MemoryState> parse_meminfo(std::string_view text);

// Whether /sys/power/resume names a device ("0:0", or nothing, does not).
bool resume_device_configured(std::string_view sys_power_resume);

// What swapoff must leave free of RAM and other swap besides the pages it
// brings back: a sixteenth of RAM, at least 64 MiB. swapoff fails with ENOMEM
// only when the pages exceed all memory; short of that it takes RAM until
// the OOM killer runs, which the refusal avoids.
uint64_t hibernate_headroom_bytes(uint64_t total_ram_bytes);

struct PreparePlan {
  std::vector<HibernateSwap> swap_off;  // in this order
  // Not empty: refuse the hibernation, for this reason (cause and fix, one
  // line); nothing is swapped off.
  std::string refusal;
};

// `vram`: the daemons' devices that are swap now; `swaps`: all of
// /proc/swaps. Refuses when no other area could hold the hibernation image
// (zram cannot: systemd-sleep skips it) and /sys/power/resume names none, or
// when RAM and the other swap areas cannot take the pages back with the
// headroom left.
PreparePlan plan_prepare(const std::vector<VramSwap>& vram,
                         const std::vector<kernel::SwapEntry>& swaps, const MemoryState& memory,
                         bool resume_configured);

enum class ResumeStep {
  swap_on,      // swap it on at its priority, with its discard
  already_on,   // swap again already (prepare did not get to it, or someone did)
  not_the_same  // the device is gone, or is another instance's now: its own units see to it
};

struct ResumeAction {
  HibernateSwap swap;
  ResumeStep step = ResumeStep::swap_on;
  std::string why;  // not_the_same: what the device is now
};

// For each recorded device: `backend_of` gives the backend identifier the
// device has now (nothing: no such connected device), `is_swap` whether it
// is active swap.
std::vector<ResumeAction> plan_resume(
    const HibernateRecord& record,
    const std::function<std::optional<std::string>(const std::string& device)>& backend_of,
    const std::function<bool(const std::string& device)>& is_swap);

}  // namespace vramswap::cli
