#pragma once

// Pieces both commands' outputs share.

#include <nlohmann/json.hpp>
#include <string>

#include "cli/message.hpp"

namespace vramswap::cli {

// Keys in the order written, so that the documents read like the man page.
using Json = nlohmann::ordered_json;

inline constexpr size_t text_width = 80;

// [{"level": "warning", "text": "..."}]
Json messages_json(const Messages& messages);

// "  warning: text", wrapped to 80 columns under the text.
std::string format_message(const Message& message, size_t indent);

// "  label    value", the value wrapped to 80 columns under itself.
std::string format_field(const std::string& label, const std::string& value);

// A string, or null when empty.
Json string_or_null(const std::string& text);

}  // namespace vramswap::cli
