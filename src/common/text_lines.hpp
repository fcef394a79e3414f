#pragma once

#include <string_view>

namespace vramswap {

// Calls visit(line) for each line of `text` ('\n' ends a line; the last one
// may lack it), without the '\n', until visit returns false. For the
// one-record-a-line files of /proc.
template <typename Visit>
void for_each_line(std::string_view text, Visit&& visit) {
  while (!text.empty()) {
    const size_t end = text.find('\n');
    if (!visit(text.substr(0, end)) || end == std::string_view::npos) return;
    text.remove_prefix(end + 1);
  }
}

}  // namespace vramswap
