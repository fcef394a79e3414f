#include "cli/text.hpp"

#include "cli/message.hpp"

namespace vramswap::cli {

const char* level_name(Message::Level level) {
  switch (level) {
    case Message::Level::error:
      return "error";
    case Message::Level::warning:
      return "warning";
    case Message::Level::note:
      break;
  }
  return "note";
}

std::string format_age(int64_t seconds) {
  if (seconds < 0) seconds = 0;
  if (seconds < 120) return std::to_string(seconds) + " s";
  if (seconds < 2 * 3600) return std::to_string(seconds / 60) + " min";
  if (seconds < 2 * 86400) return std::to_string(seconds / 3600) + " h";
  return std::to_string(seconds / 86400) + " days";
}

std::string wrap(std::string_view text, size_t width, size_t first_column, size_t indent) {
  std::string out;
  size_t column = first_column;
  bool line_has_word = false;
  while (!text.empty()) {
    while (!text.empty() && text.front() == ' ')
      text.remove_prefix(1);
    if (text.empty()) break;
    const size_t end = std::min(text.find(' '), text.size());
    const std::string_view word = text.substr(0, end);
    text.remove_prefix(end);
    if (line_has_word && column + 1 + word.size() > width) {
      out += '\n';
      out.append(indent, ' ');
      column = indent;
      line_has_word = false;
    }
    if (line_has_word) {
      out += ' ';
      ++column;
    }
    out += word;
    column += word.size();
    line_has_word = true;
  }
  out += '\n';
  return out;
}

std::string format_count(uint64_t value) {
  const std::string digits = std::to_string(value);
  std::string grouped;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) grouped += ',';
    grouped += digits[i];
  }
  return grouped;
}

}  // namespace vramswap::cli
