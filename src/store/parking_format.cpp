#include "store/parking_format.hpp"

#include <charconv>
#include <cstring>

namespace vramswap::store::parking {
namespace {

// "VSWPPARK" as bytes: a datagram of something else is recognized at once.
constexpr unsigned char magic[8] = {'V', 'S', 'W', 'P', 'P', 'A', 'R', 'K'};
// magic, version, count, chunk_bytes, group, generation, instance length.
constexpr size_t fixed_bytes = 8 + 4 + 4 + 8 + 8 + 8 + 4;
constexpr std::string_view prefix = "vram-";

// Fields are host byte order: only this machine's next run reads them, and
// the magic and version catch anything else.
// Writes at `at` into a buffer sized beforehand (no growing insert: GCC 12
// misreads those as overflows).
void put(unsigned char*& at, const void* bytes, size_t length) {
  std::memcpy(at, bytes, length);
  at += length;
}

template <typename T>
void put(unsigned char*& at, T value) {
  put(at, &value, sizeof value);
}

template <typename T>
T get(const unsigned char*& at) {
  T value;
  std::memcpy(&value, at, sizeof value);
  at += sizeof value;
  return value;
}

bool parse_number(std::string_view text, uint64_t& value) {
  if (text.empty() || (text.size() > 1 && text[0] == '0')) return false;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  return error == std::errc() && end == text.data() + text.size();
}

}  // namespace

std::vector<unsigned char> encode(const Header& header) {
  std::vector<unsigned char> out(fixed_bytes + header.instance.size() + 4 * header.chunks.size());
  unsigned char* at = out.data();
  put(at, magic, sizeof magic);
  put<uint32_t>(at, format_version);
  put<uint32_t>(at, static_cast<uint32_t>(header.chunks.size()));
  put<uint64_t>(at, header.chunk_bytes);
  put<uint64_t>(at, header.group);
  put<uint64_t>(at, header.generation);
  put<uint32_t>(at, static_cast<uint32_t>(header.instance.size()));
  put(at, header.instance.data(), header.instance.size());
  for (const uint32_t chunk : header.chunks)
    put<uint32_t>(at, chunk);
  return out;
}

std::optional<Header> decode(const unsigned char* bytes, size_t length, std::string& why) {
  if (length < fixed_bytes) {
    why = "a parking datagram of " + std::to_string(length) + " bytes is shorter than its header";
    return std::nullopt;
  }
  if (std::memcmp(bytes, magic, sizeof magic) != 0) {
    why = "a parking datagram does not begin with vramswap's magic";
    return std::nullopt;
  }
  const unsigned char* at = bytes + sizeof magic;
  const auto version = get<uint32_t>(at);
  if (version != format_version) {
    why = "a parking datagram is of format " + std::to_string(version) + ", this build reads " +
          std::to_string(format_version);
    return std::nullopt;
  }
  Header header;
  const auto count = get<uint32_t>(at);
  header.chunk_bytes = get<uint64_t>(at);
  header.group = get<uint64_t>(at);
  header.generation = get<uint64_t>(at);
  const auto instance_bytes = get<uint32_t>(at);
  if (count > group_chunks || instance_bytes > max_instance_bytes ||
      length != fixed_bytes + instance_bytes + 4 * size_t{count}) {
    why = "a parking datagram of " + std::to_string(length) + " bytes does not hold the " +
          std::to_string(count) + " chunks and " + std::to_string(instance_bytes) +
          "-byte instance name it announces";
    return std::nullopt;
  }
  header.instance.assign(reinterpret_cast<const char*>(at), instance_bytes);
  at += instance_bytes;
  header.chunks.reserve(count);
  for (uint32_t i = 0; i < count; ++i)
    header.chunks.push_back(get<uint32_t>(at));
  return header;
}

std::string name(uint64_t group, uint64_t generation) {
  return std::string(prefix) + std::to_string(group) + "-" + std::to_string(generation);
}

bool is_parking_name(std::string_view name) {
  return name.substr(0, prefix.size()) == prefix;
}

std::optional<ParsedName> parse_name(std::string_view name) {
  if (!is_parking_name(name)) return std::nullopt;
  name.remove_prefix(prefix.size());
  const size_t dash = name.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  ParsedName parsed{};
  if (!parse_number(name.substr(0, dash), parsed.group) ||
      !parse_number(name.substr(dash + 1), parsed.generation)) {
    return std::nullopt;
  }
  return parsed;
}

}  // namespace vramswap::store::parking
