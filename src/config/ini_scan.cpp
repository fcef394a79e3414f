#include "config/ini_scan.hpp"

#include <ini.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>

namespace vramswap::config {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

bool is_control(char c) {
  const auto byte = static_cast<unsigned char>(c);
  return (byte < 0x20 && c != '\t') || byte == 0x7f;
}

std::string quoted(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

// Feeds inih one physical line at a time and watches what it does with them.
// inih calls the handler for a line before it asks for the next one, so the
// current line number is always the line of the entry being handled.
class LineFeeder {
 public:
  explicit LineFeeder(std::string_view text) : rest_(text) {
    // A UTF-8 byte order mark, as some Windows editors write.
    if (rest_.starts_with("\xEF\xBB\xBF")) rest_.remove_prefix(3);
  }

  static char* read(char* buffer, int size, void* self) {
    auto& feeder = *static_cast<LineFeeder*>(self);
    try {
      return feeder.next_line(buffer, size);
    } catch (...) {
      // Never unwind through inih's C frames.
      feeder.failure_ = std::current_exception();
      feeder.exhausted_ = true;
      return nullptr;
    }
  }

  static int on_entry(void* self, const char* /*section*/, const char* name, const char* value) {
    auto& feeder = *static_cast<LineFeeder*>(self);
    try {
      feeder.add_entry(name, value);
    } catch (...) {
      feeder.failure_ = std::current_exception();
      feeder.exhausted_ = true;
    }
    return 1;  // inih keeps only the first failing line; we keep our own list
  }

  // Called after the last line: reports a last line that inih rejected.
  void finish() {
    finish_line();
    if (failure_) std::rethrow_exception(failure_);
  }

  bool exhausted() const { return exhausted_; }
  int line() const { return line_; }
  std::vector<IniItem>& items() { return items_; }

  void add_error(int line, std::string problem, bool section_lost = false) {
    items_.push_back({IniItem::Kind::error, line, {}, std::move(problem), section_lost});
  }

 private:
  char* next_line(char* buffer, int size) {
    finish_line();
    if (rest_.empty() || exhausted_) {
      exhausted_ = true;
      return nullptr;
    }
    const size_t end = rest_.find('\n');
    std::string_view raw = rest_.substr(0, end);
    rest_ = end == std::string_view::npos ? std::string_view{} : rest_.substr(end + 1);
    ++line_;
    if (raw.ends_with('\r')) raw.remove_suffix(1);  // CRLF line ends
    current_ = trim(raw);

    // What inih's buffer holds: the line, "\n" and NUL (and "\r" in its own
    // count, which we strip).
    const int limit = std::clamp(size - 3, 0, max_line_length);
    const bool maybe_header = current_.starts_with('[');
    if (raw.size() > static_cast<size_t>(limit)) {
      add_error(line_,
                "line is " + std::to_string(raw.size()) + " characters long, over the limit of " +
                    std::to_string(limit) + "; shorten it",
                maybe_header);
      return blank_line(buffer);
    }
    if (const auto bad = std::find_if(raw.begin(), raw.end(), is_control); bad != raw.end()) {
      char problem[96];
      std::snprintf(problem, sizeof problem,
                    "line contains the control character 0x%02x; remove it (is this a text file?)",
                    static_cast<unsigned>(static_cast<unsigned char>(*bad)));
      add_error(line_, problem, maybe_header);
      return blank_line(buffer);
    }
    if (current_.empty() || current_.starts_with(';') || current_.starts_with('#')) {
      return blank_line(buffer);
    }
    if (maybe_header) {
      scan_section_header(current_);
      return blank_line(buffer);
    }
    // A key = value line. It goes to inih without its indentation: an
    // indented line would otherwise silently continue the previous value.
    awaiting_entry_ = true;
    entry_seen_ = false;
    std::memcpy(buffer, current_.data(), current_.size());
    buffer[current_.size()] = '\n';
    buffer[current_.size() + 1] = '\0';
    return buffer;
  }

  // Section headers never reach inih: its handler is not told about them.
  void scan_section_header(std::string_view text) {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) {
      add_error(line_,
                "section header " + quoted(text) +
                    " has no closing ']'; write it as [global] or [device.NAME]",
                true);
      return;
    }
    items_.push_back(
        {IniItem::Kind::section, line_, std::string(trim(text.substr(1, close - 1))), {}, false});
    const std::string_view after = trim(text.substr(close + 1));
    if (!after.empty() && !after.starts_with(';')) {
      add_error(line_, "unexpected text " + quoted(after) + " after " +
                           std::string(text.substr(0, close + 1)) +
                           "; comments start with ';' (or a line of their own starting with '#')");
    }
  }

  void add_entry(const char* name, const char* value) {
    if (!awaiting_entry_ || entry_seen_) return;  // cannot happen: one line, one entry
    entry_seen_ = true;
    if (value == nullptr) {  // an inih built to allow keys without '='
      entry_seen_ = false;
      return;
    }
    if (*name == '\0') {
      add_error(line_, quoted(current_) + " has no key before '='; write key = value");
      return;
    }
    items_.push_back({IniItem::Kind::entry, line_, name, value, false});
  }

  // inih does not call the handler for a line with no '=' (or ':').
  void finish_line() {
    if (awaiting_entry_ && !entry_seen_) {
      add_error(line_,
                quoted(current_) +
                    " is not a key = value line, a [section] or a comment; fix or remove it");
    }
    awaiting_entry_ = false;
  }

  static char* blank_line(char* buffer) {
    buffer[0] = '\n';
    buffer[1] = '\0';
    return buffer;
  }

  std::string_view rest_;
  std::string_view current_;  // the line last handed out, trimmed
  int line_ = 0;
  bool exhausted_ = false;
  bool awaiting_entry_ = false;  // the line handed out is a key = value line
  bool entry_seen_ = false;      // and inih passed it to the handler
  std::vector<IniItem> items_;
  std::exception_ptr failure_;
};

}  // namespace

std::vector<IniItem> scan_ini(std::string_view text) {
  LineFeeder feeder(text);
  std::vector<int> rejected_lines;
  // inih built to stop at the first error returns early: carry on from the
  // next line, so that every line is seen.
  while (!feeder.exhausted()) {
    const int first_line = feeder.line();
    const int status = ini_parse_stream(&LineFeeder::read, &feeder, &LineFeeder::on_entry, &feeder);
    // -1 (cannot open) does not apply to a stream; -2 is inih's malloc failing.
    if (status < 0) throw std::bad_alloc();
    if (status > 0) rejected_lines.push_back(first_line + status);
  }
  feeder.finish();

  // Every line inih rejected must carry an error of ours already; should a
  // different inih build reject something we let through, still say so.
  auto& items = feeder.items();
  for (const int line : rejected_lines) {
    const bool known = std::any_of(items.begin(), items.end(), [&](const IniItem& item) {
      return item.kind == IniItem::Kind::error && item.line == line;
    });
    if (!known)
      feeder.add_error(line, "line cannot be parsed; write key = value, [section] or a comment");
  }
  std::stable_sort(items.begin(), items.end(),
                   [](const IniItem& a, const IniItem& b) { return a.line < b.line; });
  return std::move(items);
}

}  // namespace vramswap::config
