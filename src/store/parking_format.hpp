#pragma once

// What a parking socket carries (store/vram_parking.hpp): one datagram per
// group of chunks, a self-describing header and the chunk index of each
// descriptor that rides along with it, in order. And the names the sockets
// are kept under in systemd's file descriptor store.
//
// Why self-describing: the restarted daemon may be another build, or
// configured for another instance or chunk size; it must recognize VRAM that
// is not what it thinks, and refuse it, rather than map it in the wrong place.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vramswap::store::parking {

// Chunks per parking socket: few enough sockets that systemd's O(n) check of
// each stored descriptor stays cheap (8192 chunks of a 16 GiB export are 128
// sockets), few enough descriptors per datagram for SCM_RIGHTS (at most
// SCM_MAX_FD, 253), and a rebuild after one chunk moved re-sends 64 at most.
inline constexpr size_t group_chunks = 64;
inline constexpr uint32_t format_version = 1;
// Instance names longer than this are refused (systemd's own limit for a
// unit name is 255).
inline constexpr size_t max_instance_bytes = 255;

struct Header {
  std::string instance;
  uint64_t chunk_bytes = 0;
  uint64_t group = 0;
  uint64_t generation = 0;
  std::vector<uint32_t> chunks;  // one per descriptor, in order
};

// The datagram's bytes for `header`.
std::vector<unsigned char> encode(const Header& header);
// The header in `bytes`; nullopt with `why` (one line) when they are not a
// whole header of this format.
std::optional<Header> decode(const unsigned char* bytes, size_t length, std::string& why);
// The most bytes a datagram of this format takes.
inline constexpr size_t max_encoded_bytes = 64 + max_instance_bytes + 4 * group_chunks;

// "vram-<group>-<generation>": a name systemd takes (fd_store::valid_name).
std::string name(uint64_t group, uint64_t generation);
// Whether `name` is a parking socket's name (begins with "vram-"), well
// formed or not.
bool is_parking_name(std::string_view name);
struct ParsedName {
  uint64_t group;
  uint64_t generation;
};
// The group and generation of a well-formed name; nullopt otherwise.
std::optional<ParsedName> parse_name(std::string_view name);

}  // namespace vramswap::store::parking
