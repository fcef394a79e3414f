#pragma once

#include <string>
#include <vector>

namespace vramswap::cli {

// One line the user reads: what is wrong (or worth knowing) and what to do,
// "cause; fix", as everywhere in vramswap.
struct Message {
  enum class Level { error, warning, note };
  Level level = Level::note;
  std::string text;
  bool operator==(const Message&) const = default;
};

// "error", "warning", "note": the words of the JSON documents and the text.
const char* level_name(Message::Level level);

using Messages = std::vector<Message>;

}  // namespace vramswap::cli
