#include "cli/output_common.hpp"

#include "cli/text.hpp"

namespace vramswap::cli {
namespace {

// "  label    " takes this many columns.
constexpr size_t field_indent = 11;

}  // namespace

Json messages_json(const Messages& messages) {
  Json list = Json::array();
  for (const Message& message : messages) {
    list.push_back({{"level", level_name(message.level)}, {"text", message.text}});
  }
  return list;
}

std::string format_message(const Message& message, size_t indent) {
  const std::string prefix = std::string(indent, ' ') + level_name(message.level) + ": ";
  return prefix + wrap(message.text, text_width, prefix.size(), prefix.size());
}

std::string format_field(const std::string& label, const std::string& value) {
  std::string prefix = "  " + label;
  prefix.append(prefix.size() < field_indent ? field_indent - prefix.size() : 1, ' ');
  return prefix + wrap(value, text_width, prefix.size(), prefix.size());
}

Json string_or_null(const std::string& text) {
  return text.empty() ? Json(nullptr) : Json(text);
}

}  // namespace vramswap::cli
