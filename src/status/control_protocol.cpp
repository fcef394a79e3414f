#include "status/control_protocol.hpp"

#include "common/byte_size.hpp"
#include "common/printable.hpp"
#include "status/instance_status.hpp"

namespace vramswap::status {
namespace {

constexpr std::string_view usage = "send \"release all\", \"release BYTES\" or \"restore\"";

// The request as the admin sent it, quoted and cut short, for an error line.
std::string quoted(std::string_view line) {
  constexpr std::size_t shown = 40;
  return "\"" + escape_unprintable(line.substr(0, shown)) + (line.size() > shown ? "...\"" : "\"");
}

// One line: any control character (a newline above all) becomes a space.
std::string one_line(std::string_view text) {
  std::string line(text);
  for (char& c : line) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return line;
}

}  // namespace

std::string control_socket_path(const std::string& instance) {
  return runtime_directory() + "/" + instance + ".control";
}

ParsedRequest parse_control_request(std::string_view line) {
  if (line == "restore") return {ControlRequest{ControlRequest::Verb::restore}, {}};
  constexpr std::string_view release = "release ";
  if (line.starts_with(release)) {
    const std::string_view size = line.substr(release.size());
    if (size == "all") return {ControlRequest{ControlRequest::Verb::release}, {}};
    // The CLI sends a plain number; the byte-size parser also takes "2G",
    // which is what an admin typing into the socket by hand would write.
    const std::optional<uint64_t> bytes = parse_byte_size(size);
    if (!bytes || *bytes == 0 || *bytes == ControlRequest::all_bytes) {
      return {std::nullopt, "bad size " + quoted(size) + " in release; " + std::string(usage)};
    }
    return {ControlRequest{ControlRequest::Verb::release, *bytes}, {}};
  }
  return {std::nullopt, "unknown request " + quoted(line) + "; " + std::string(usage) +
                            " (a newer vramswap talking to an older vramswapd? restart it)"};
}

std::string format_control_request(const ControlRequest& request) {
  if (request.verb == ControlRequest::Verb::restore) return "restore\n";
  if (request.bytes == ControlRequest::all_bytes) return "release all\n";
  return "release " + std::to_string(request.bytes) + "\n";
}

std::string format_control_reply(const ControlReply& reply) {
  return (reply.ok ? "ok " : "error ") + one_line(reply.text) + "\n";
}

std::optional<ControlReply> parse_control_reply(std::string_view line) {
  if (line.starts_with("ok ")) return ControlReply{true, std::string(line.substr(3))};
  if (line.starts_with("error ")) return ControlReply{false, std::string(line.substr(6))};
  return std::nullopt;
}

}  // namespace vramswap::status
