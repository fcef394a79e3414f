#include "cli/hibernate_plan.hpp"

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>

#include "common/byte_size.hpp"
#include "common/text_lines.hpp"
#include "systemd/unit_name.hpp"

namespace vramswap::cli {
namespace {

using nlohmann::json;

constexpr int record_format = 1;

bool is_zram(const std::string& path) {
  return path.starts_with("/dev/zram");
}

std::optional<uint64_t> meminfo_kib(std::string_view text, std::string_view key) {
  std::optional<uint64_t> found;
  for_each_line(text, [&](std::string_view line) {
    if (!line.starts_with(key) || line.size() <= key.size() || line[key.size()] != ':') return true;
    line.remove_prefix(key.size() + 1);
    while (!line.empty() && line.front() == ' ')
      line.remove_prefix(1);
    uint64_t kib = 0;
    const auto [end_of_number, error] =
        std::from_chars(line.data(), line.data() + line.size(), kib);
    if (error == std::errc{} && end_of_number != line.data()) found = kib;
    return false;
  });
  return found;
}

}  // namespace

std::string record_to_json(const HibernateRecord& record) {
  json devices = json::array();
  for (const HibernateSwap& swap : record.devices) {
    devices.push_back({{"instance", swap.instance},
                       {"device", swap.device},
                       {"backend", swap.backend},
                       {"priority", swap.priority},
                       {"discard", swap.discard},
                       {"used_bytes", swap.used_bytes}});
  }
  return json{{"format", record_format}, {"devices", devices}}.dump(2) + "\n";
}

std::optional<HibernateRecord> record_from_json(const std::string& text, std::string& why) {
  try {
    const json j = json::parse(text);
    if (!j.is_object() || j.value("format", 0) != record_format) {
      why = "not format " + std::to_string(record_format) + " of a hibernation record";
      return std::nullopt;
    }
    HibernateRecord record;
    for (const json& d : j.at("devices")) {
      HibernateSwap swap;
      swap.instance = d.at("instance").get<std::string>();
      swap.device = d.at("device").get<std::string>();
      swap.backend = d.at("backend").get<std::string>();
      swap.priority = d.at("priority").get<int>();
      swap.discard = d.at("discard").get<bool>();
      swap.used_bytes = d.value("used_bytes", uint64_t{0});
      if (!swap.device.starts_with("/dev/") || swap.instance.empty() || swap.priority < -1 ||
          swap.priority > 32767) {
        why = "a device entry is out of range";
        return std::nullopt;
      }
      record.devices.push_back(std::move(swap));
    }
    return record;
  } catch (const json::exception& e) {
    why = e.what();
    return std::nullopt;
  }
}

HibernateRecord merge_records(const HibernateRecord& current, const HibernateRecord& earlier) {
  HibernateRecord merged = current;
  for (const HibernateSwap& old : earlier.devices) {
    const bool replaced =
        std::any_of(current.devices.begin(), current.devices.end(),
                    [&](const HibernateSwap& now) { return now.device == old.device; });
    if (!replaced) merged.devices.push_back(old);
  }
  return merged;
}

std::optional<MemoryState> parse_meminfo(std::string_view text) {
  const auto total = meminfo_kib(text, "MemTotal");
  const auto available = meminfo_kib(text, "MemAvailable");
  if (!total || !available) return std::nullopt;
  return MemoryState{*total * 1024, *available * 1024};
}

bool resume_device_configured(std::string_view sys_power_resume) {
  while (!sys_power_resume.empty() &&
         (sys_power_resume.back() == '\n' || sys_power_resume.back() == ' '))
    sys_power_resume.remove_suffix(1);
  return !sys_power_resume.empty() && sys_power_resume != "0:0";
}

uint64_t hibernate_headroom_bytes(uint64_t total_ram_bytes) {
  return std::max<uint64_t>(uint64_t{64} << 20, total_ram_bytes / 16);
}

PreparePlan plan_prepare(const std::vector<VramSwap>& vram,
                         const std::vector<kernel::SwapEntry>& swaps, const MemoryState& memory,
                         bool resume_configured) {
  PreparePlan plan;
  if (vram.empty()) return plan;
  std::string names;
  uint64_t needed = 0;
  for (const VramSwap& v : vram) {
    names += (names.empty() ? "" : ", ") + v.device;
    needed += v.swap.used_bytes;
  }
  const auto is_vram = [&](const kernel::SwapEntry& entry) {
    return std::any_of(vram.begin(), vram.end(),
                       [&](const VramSwap& v) { return v.swap.path == entry.path; });
  };
  uint64_t other_free = 0;
  bool image_place = resume_configured;
  for (const kernel::SwapEntry& entry : swaps) {
    if (is_vram(entry)) continue;
    other_free += entry.size_bytes > entry.used_bytes ? entry.size_bytes - entry.used_bytes : 0;
    if (!is_zram(entry.path)) image_place = true;
  }
  if (!image_place) {
    plan.refusal = "hibernation refused: no swap area but VRAM swap (" + names +
                   ") and zram, which cannot hold a hibernation image; add a swap partition or "
                   "file for it (and resume= on the kernel command line), then hibernate again";
    return plan;
  }
  const uint64_t headroom = hibernate_headroom_bytes(memory.total_bytes);
  const uint64_t room = memory.available_bytes + other_free;
  if (needed + headroom > room) {
    plan.refusal = "hibernation refused: " + format_byte_size(needed) + " swapped to VRAM (" +
                   names +
                   ") must come back to RAM or other swap before the image is written, "
                   "but they have room for " +
                   format_byte_size(room) + " (" + format_byte_size(headroom) +
                   " must stay free); close programs or add disk swap, then hibernate again";
    return plan;
  }
  for (const VramSwap& v : vram) {
    HibernateSwap swap;
    swap.instance = v.instance;
    swap.device = v.device;
    swap.backend = systemd::backend_identifier(v.instance);
    swap.priority = v.swap.priority < 0 ? -1 : v.swap.priority;
    swap.discard = v.discard;
    swap.used_bytes = v.swap.used_bytes;
    plan.swap_off.push_back(std::move(swap));
  }
  return plan;
}

std::vector<ResumeAction> plan_resume(
    const HibernateRecord& record,
    const std::function<std::optional<std::string>(const std::string& device)>& backend_of,
    const std::function<bool(const std::string& device)>& is_swap) {
  std::vector<ResumeAction> actions;
  for (const HibernateSwap& swap : record.devices) {
    ResumeAction action;
    action.swap = swap;
    const std::optional<std::string> backend = backend_of(swap.device);
    if (!backend) {
      action.step = ResumeStep::not_the_same;
      action.why = "it is no longer connected";
    } else if (*backend != swap.backend) {
      action.step = ResumeStep::not_the_same;
      action.why = "its backend is now \"" + *backend + "\"";
    } else if (is_swap(swap.device)) {
      action.step = ResumeStep::already_on;
    }
    actions.push_back(std::move(action));
  }
  return actions;
}

}  // namespace vramswap::cli
