#include "systemd/unit_name.hpp"

#include <cstdio>
#include <vector>

namespace vramswap::systemd {
namespace {

bool is_plain(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' ||
         c == '_' || c == '.';
}

void append_escaped(std::string& out, char c) {
  char hex[5];
  std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned>(static_cast<unsigned char>(c)));
  out += hex;
}

}  // namespace

std::string escape_path(std::string_view path) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view part = path.substr(start, end - start);
    if (!part.empty() && part != ".") parts.push_back(part);
    start = end + 1;
  }
  if (parts.empty()) return "-";
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += '-';
    for (size_t j = 0; j < parts[i].size(); ++j) {
      const char c = parts[i][j];
      // A leading '.' would make a hidden file name.
      if (is_plain(c) && !(out.empty() && c == '.'))
        out += c;
      else
        append_escaped(out, c);
    }
  }
  return out;
}

std::string device_link(std::string_view device_name) {
  return "/dev/vramswap/" + std::string(device_name);
}

std::string device_unit_name(std::string_view device_name) {
  return escape_path(device_link(device_name)) + ".device";
}

std::string swap_unit_name(std::string_view device_name) {
  return escape_path(device_link(device_name)) + ".swap";
}

std::string service_unit_name(std::string_view device_name) {
  return "vramswap@" + std::string(device_name) + ".service";
}

std::string mkswap_unit_name(std::string_view device_name) {
  return "vramswap-mkswap@" + std::string(device_name) + ".service";
}

std::string backend_identifier(std::string_view instance) {
  return "vramswap/" + std::string(instance);
}

}  // namespace vramswap::systemd
