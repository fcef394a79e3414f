#pragma once

// Splits an INI text into section headers, key = value entries and line
// errors, each with its line number. libinih does the key = value lines
// (name/value split, ';' inline comments, trimming); our line reader in front
// of it counts lines and handles what inih cannot report: over-long lines
// (inih would silently split them), control characters, section headers
// (inih does not tell its handler about them, so empty or repeated sections
// would go unseen), and lines that are no key = value (inih reports only the
// first such line).

#include <string>
#include <string_view>
#include <vector>

#include "config/types.hpp"

namespace vramswap::config {

struct IniItem {
  enum class Kind {
    section,  // `name` is the text between the brackets, trimmed
    entry,    // `name` = `value`, both trimmed, inline comment removed
    error,    // `value` is the problem: cause and fix, without file or line
  };
  Kind kind;
  int line;
  std::string name;
  std::string value;
  // For errors: the broken line was (or may have been) a section header, so
  // the lines after it belong to no known section.
  bool section_lost = false;
};

// Items in line order. Never throws for the content of `text`.
std::vector<IniItem> scan_ini(std::string_view text);

}  // namespace vramswap::config
