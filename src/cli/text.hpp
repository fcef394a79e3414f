#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace vramswap::cli {

// "4 s", "12 min", "3 h", "2 days": how long ago, for messages.
std::string format_age(int64_t seconds);

// Breaks `text`, which starts at column `first_column` (after a prefix the
// caller writes), into lines of at most `width` columns at spaces; lines
// after the first are indented by `indent` spaces, and each ends in '\n'. A
// word longer than a line (a path) is left whole on a line of its own.
std::string wrap(std::string_view text, size_t width, size_t first_column, size_t indent);

// "1,234,567": counts are easier to read with thousands separated.
std::string format_count(uint64_t value);

}  // namespace vramswap::cli
