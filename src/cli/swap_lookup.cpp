#include "cli/swap_lookup.hpp"

#include <string_view>

namespace vramswap::cli {
namespace {

std::string_view base_name(std::string_view path) {
  constexpr std::string_view deleted = " (deleted)";
  if (path.ends_with(deleted)) path.remove_suffix(deleted.size());
  const size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

}  // namespace

std::optional<kernel::SwapEntry> find_device_swap(
    const std::vector<kernel::SwapEntry>& entries, const std::string& device,
    const std::function<bool(const std::string&)>& exists) {
  if (auto found = kernel::find_swap_for_device(entries, device)) return found;
  const std::string_view name = base_name(device);
  if (name.empty()) return std::nullopt;
  for (const kernel::SwapEntry& entry : entries) {
    if (entry.type == "partition" && base_name(entry.path) == name && !exists(entry.path)) {
      return entry;
    }
  }
  return std::nullopt;
}

}  // namespace vramswap::cli
