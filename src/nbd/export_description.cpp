#include "nbd/export_description.hpp"

#include <algorithm>

namespace vramswap::nbd {
namespace {

constexpr bool is_power_of_two(uint32_t v) {
  return v != 0 && (v & (v - 1)) == 0;
}

constexpr bool has_nul(std::string_view s) {
  return s.find('\0') != std::string_view::npos;
}

}  // namespace

// The rules are the spec's ("Size constraints" and the string rules); a
// description breaking them would make clients misbehave or refuse us.
const char* export_description_problem(const ExportDescription& d) noexcept {
  if (d.name.size() > max_export_name_length) return "export name longer than 256 bytes";
  if (has_nul(d.name)) return "export name contains a NUL byte";
  if (d.description.size() > max_export_description_length)
    return "export description longer than 256 bytes";
  if (has_nul(d.description)) return "export description contains a NUL byte";
  if ((d.transmission_flags & transmission_flag::has_flags) == 0)
    return "transmission flags lack NBD_FLAG_HAS_FLAGS";
  if (!is_power_of_two(d.min_block) || d.min_block > 65536)
    return "minimum block size is not a power of two up to 65536";
  if (!is_power_of_two(d.preferred_block) ||
      d.preferred_block < std::max<uint32_t>(d.min_block, 512))
    return "preferred block size is not a power of two at least the minimum block size and 512";
  if (d.max_payload < d.preferred_block)
    return "maximum payload is smaller than the preferred block size";
  if (d.size % d.min_block != 0) return "export size is not a multiple of the minimum block size";
  return nullptr;
}

}  // namespace vramswap::nbd
