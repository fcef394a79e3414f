#include "systemd/unit_state.hpp"

#include <string_view>

namespace vramswap::systemd {

std::string skipped_condition(const std::string& message) {
  constexpr std::string_view marker = " was skipped because of an unmet condition check (";
  const size_t at = message.find(marker);
  if (at == std::string::npos) return {};
  std::string condition = message.substr(at + marker.size());
  if (condition.ends_with(").")) {
    condition.resize(condition.size() - 2);
  } else if (condition.ends_with(")")) {
    condition.pop_back();
  }
  return condition;
}

}  // namespace vramswap::systemd
