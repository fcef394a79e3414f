#pragma once

#include <string>
#include <string_view>

namespace vramswap {

// `text` safe to put in a log line or a terminal: valid UTF-8 stays as it is;
// every byte that is not part of a valid UTF-8 sequence, and every control
// character (newline and escape included), becomes \xNN. Messages that quote
// what a file or a user wrote pass it through this, so a stray Latin-1 byte
// or an escape sequence reaches the journal as text, not raw.
std::string escape_unprintable(std::string_view text);

}  // namespace vramswap
