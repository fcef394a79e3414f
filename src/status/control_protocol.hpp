#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

namespace vramswap::status {

// The control socket of a running daemon, <runtime dir>/NAME.control (next
// to its status file and lock), through which root asks the device's elastic
// tier to give VRAM back to the GPU or take it again (`vramswap release`,
// `vramswap restore`). The daemon serves it (daemon/control_socket.hpp), the
// CLI asks (cli/elastic_command.hpp); both meet here.
//
// The protocol is one request line and one reply line per connection, text,
// each ending in "\n":
//
//   request  "release all"     move all of the export's VRAM to the spill area
//            "release BYTES"   at least BYTES of it (a plain decimal number)
//            "restore"         bring every chunk back to VRAM
//   reply    "ok TEXT"         done; TEXT is the line for the admin
//            "error TEXT"      refused or failed; TEXT names cause and fix
//
// The daemon closes the connection after its reply. Lines are short (at most
// control_line_max bytes with the "\n"); TEXT never holds a newline.
//
// Versioning: requests are only ever added (a new word, or a new optional
// argument after the existing ones), never changed in meaning, and replies
// keep their two words. A daemon answers a request it does not know with
// "error unknown request ..." (see parse_control_request), so a newer CLI
// talking to an older daemon prints a line that says so rather than
// misbehaving. Should a reply ever need more structure, a new request (say
// "version") would come first, which an older daemon refuses the same way.

inline constexpr std::size_t control_line_max = 256;

std::string control_socket_path(const std::string& instance);

struct ControlRequest {
  static constexpr uint64_t all_bytes = std::numeric_limits<uint64_t>::max();
  enum class Verb { release, restore };

  Verb verb = Verb::restore;
  uint64_t bytes = all_bytes;  // release only: all_bytes is "all"

  bool operator==(const ControlRequest&) const = default;
};

// The request, or why the line is not one (`error` holds the reply's text).
// `line` is without its "\n".
struct ParsedRequest {
  std::optional<ControlRequest> request;
  std::string error;
};
ParsedRequest parse_control_request(std::string_view line);
std::string format_control_request(const ControlRequest& request);  // with the "\n"

struct ControlReply {
  bool ok = false;
  std::string text;

  bool operator==(const ControlReply&) const = default;
};
// Newlines (and other control characters) in `text` become spaces: one line.
std::string format_control_reply(const ControlReply& reply);  // with the "\n"
// Nothing when `line` (without its "\n") is neither "ok ..." nor "error ...".
std::optional<ControlReply> parse_control_reply(std::string_view line);

}  // namespace vramswap::status
