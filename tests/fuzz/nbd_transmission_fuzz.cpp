// Fuzzes the transmission codec: request headers are decoded and judged
// against exports of several geometries, from empty to nearly 2^64 bytes, and
// every decision is checked against the guarantees of transmission.hpp and
// against an oracle written from the spec: a request the engine executes is
// aligned, in range (without overflow) and within the payload limit; a valid
// request is never refused; a refused WRITE's payload is discarded (bounded)
// or the connection dropped, so the stream stays in step. Replies round-trip.
//
// Input layout: 28-byte records, each a request header as a client sends it
// (magic, flags, type, cookie, offset, length; big-endian). A record with a
// wrong magic must be rejected; it is then judged with the magic set right,
// so the fuzzer need not find the magic. If 13 or more bytes are left over,
// they describe one more geometry: size (8 bytes), log2 of the minimum block
// (1 byte, modulo 17) and the maximum payload (4 bytes).

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "fuzz_check.hpp"
#include "nbd/transmission.hpp"

namespace {

using namespace vramswap::nbd;

constexpr uint64_t GiB = uint64_t{1} << 30;
constexpr uint64_t max_u64 = ~uint64_t{0};

// Exports as a vramswapd can describe them (each passes
// export_description_problem), with the edges that break naive range checks.
constexpr ExportGeometry fixed_geometries[] = {
    {0, 512, 32u << 20},                     // empty export
    {512, 512, 32u << 20},                   // one sector
    {4096, 4096, 4096},                      // one 4 KiB block, payload of one block
    {GiB, 512, 32u << 20},                   // ordinary
    {16 * GiB, 4096, 32u << 20},             // 4 KiB blocks
    {max_u64 - 511, 512, 32u << 20},         // the largest 512-aligned size
    {max_u64 - 4095, 4096, 32u << 20},       // the largest 4096-aligned size
    {max_u64, 1, 0xffffffff},                // byte granular, no payload limit
    {uint64_t{1} << 63, 65536, 128u << 20},  // largest block, payload above the discard limit
};

std::optional<ExportDescription> as_description(const ExportGeometry& g) {
  ExportDescription d;
  d.name = "fuzz";
  d.size = g.size;
  d.min_block = g.min_block;
  d.preferred_block = std::max<uint32_t>(g.min_block, 512);
  d.max_payload = g.max_payload;
  if (export_description_problem(d) != nullptr) return std::nullopt;
  return d;
}

uint64_t be(const uint8_t* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i)
    v = (v << 8) | p[i];
  return v;
}

constexpr uint32_t wire_request_magic = 0x25609513;  // from the spec
constexpr uint32_t wire_simple_reply_magic = 0x67446698;

// The spec's rules, restated independently of decide().
bool supported(uint16_t type) {
  return type == command::read || type == command::write || type == command::flush ||
         type == command::trim || type == command::write_zeroes;
}

bool oracle_valid(const Request& r, const ExportGeometry& g) {
  const uint16_t allowed =
      command_flag::fua | (r.type == command::write_zeroes ? command_flag::no_hole : 0);
  if ((r.flags & ~allowed) != 0) return false;
  if (r.type == command::flush) return r.offset == 0 && r.length == 0;
  if ((r.type == command::read || r.type == command::write) && r.length > g.max_payload)
    return false;
  if (r.offset % g.min_block != 0 || r.length % g.min_block != 0) return false;
  return static_cast<unsigned __int128>(r.offset) + r.length <= g.size;
}

Action executing_action(uint16_t type) {
  switch (type) {
    case command::read:
      return Action::read;
    case command::write:
      return Action::write;
    case command::trim:
      return Action::trim;
    case command::write_zeroes:
      return Action::write_zeroes;
    default:
      return Action::flush;
  }
}

bool is_error_action(Action a) {
  return a == Action::reply_error || a == Action::discard_payload_then_reply_error;
}

void check_decision(const Request& r, const ExportGeometry& g) {
  const Decision d = decide(r, g);
  const auto action = static_cast<unsigned>(d.action);
  // Context for every failure below.
#define CONTEXT                                                                          \
  "type %u flags 0x%x offset %llu length %u | size %llu min_block %u max_payload %u -> " \
  "action %u error %u",                                                                  \
      r.type, r.flags, static_cast<unsigned long long>(r.offset), r.length,              \
      static_cast<unsigned long long>(g.size), g.min_block, g.max_payload, action, d.error
  FUZZ_CHECK(action <= static_cast<unsigned>(Action::drop_connection), CONTEXT);

  // An error is given exactly when one is replied, and it is one the spec defines.
  FUZZ_CHECK(is_error_action(d.action) == (d.error != error::none), CONTEXT);
  if (d.error != error::none) {
    FUZZ_CHECK(d.error == error::einval || d.error == error::enospc ||
                   d.error == error::eoverflow || d.error == error::enotsup ||
                   d.error == error::eperm,
               CONTEXT);
    // ENOSPC is for writing past the end; a read past it is invalid.
    if (d.error == error::enospc)
      FUZZ_CHECK(r.type == command::write || r.type == command::write_zeroes, CONTEXT);
  }

  FUZZ_CHECK((d.action == Action::disconnect) == (r.type == command::disc), CONTEXT);
  if (r.type == command::disc) return;
  if (!supported(r.type)) {
    // No payload follows an unknown command (without extended headers): reply, stay in step.
    FUZZ_CHECK(d.action == Action::reply_error, CONTEXT);
    return;
  }

  // Only a WRITE has a payload: only it can be discarded, or be too long to.
  const bool write = r.type == command::write;
  const uint64_t discard_limit = std::max(g.max_payload, write_discard_limit);
  if (d.action == Action::discard_payload_then_reply_error)
    FUZZ_CHECK(write && r.length > 0 && r.length <= discard_limit, CONTEXT);
  if (d.action == Action::drop_connection) FUZZ_CHECK(write && r.length > discard_limit, CONTEXT);
  if (write && r.length > 0) {
    // The payload is stored, or read and dropped, or the connection ends.
    FUZZ_CHECK(d.action == Action::write || d.action == Action::discard_payload_then_reply_error ||
                   d.action == Action::drop_connection,
               CONTEXT);
  }

  if (oracle_valid(r, g)) {
    const bool nothing_to_do = r.length == 0 && r.type != command::flush;
    FUZZ_CHECK(d.action == (nothing_to_do ? Action::reply_success : executing_action(r.type)),
               CONTEXT);
  } else {
    FUZZ_CHECK(is_error_action(d.action) || d.action == Action::drop_connection, CONTEXT);
  }

  // What the engine relies on when it touches the store.
  switch (d.action) {
    case Action::read:
    case Action::write:
    case Action::write_zeroes:
    case Action::trim:
      FUZZ_CHECK(d.action == executing_action(r.type), CONTEXT);
      FUZZ_CHECK(r.length > 0, CONTEXT);
      FUZZ_CHECK(r.offset % g.min_block == 0 && r.length % g.min_block == 0, CONTEXT);
      FUZZ_CHECK(r.offset <= g.size && r.length <= g.size - r.offset, CONTEXT);
      if (d.action == Action::read || d.action == Action::write)
        FUZZ_CHECK(r.length <= g.max_payload, CONTEXT);
      break;
    case Action::flush:
      FUZZ_CHECK(r.type == command::flush && r.offset == 0 && r.length == 0, CONTEXT);
      break;
    case Action::reply_success:
      FUZZ_CHECK(r.length == 0 && r.type != command::flush, CONTEXT);
      break;
    default:
      break;
  }
#undef CONTEXT
}

void check_reply(uint32_t error, uint64_t cookie) {
  // Exactly 16 bytes on the heap: AddressSanitizer catches a write past them.
  const auto out = std::make_unique<std::byte[]>(simple_reply_size);
  encode_simple_reply(out.get(), error, cookie);
  const auto* bytes = reinterpret_cast<const uint8_t*>(out.get());
  FUZZ_CHECK(be(bytes, 4) == wire_simple_reply_magic);
  FUZZ_CHECK(be(bytes + 4, 4) == error);
  FUZZ_CHECK(be(bytes + 8, 8) == cookie);
}

// Decodes a header, which must give back exactly its fields.
std::optional<Request> check_decode(const uint8_t* record) {
  Request r{};
  const bool ok = decode_request(reinterpret_cast<const std::byte*>(record), r);
  FUZZ_CHECK(ok == (be(record, 4) == wire_request_magic), "magic 0x%08llx, decoded %d",
             static_cast<unsigned long long>(be(record, 4)), ok);
  if (!ok) return std::nullopt;
  FUZZ_CHECK(r.flags == be(record + 4, 2));
  FUZZ_CHECK(r.type == be(record + 6, 2));
  FUZZ_CHECK(r.cookie == be(record + 8, 8));
  FUZZ_CHECK(r.offset == be(record + 16, 8));
  FUZZ_CHECK(r.length == be(record + 24, 4));
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool geometries_valid = [] {
    for (const ExportGeometry& g : fixed_geometries)
      FUZZ_CHECK(as_description(g).has_value(), "size %llu min_block %u max_payload %u",
                 static_cast<unsigned long long>(g.size), g.min_block, g.max_payload);
    return true;
  }();
  (void)geometries_valid;

  std::vector<ExportGeometry> geometries(std::begin(fixed_geometries), std::end(fixed_geometries));
  const size_t records = size / request_header_size;
  const uint8_t* rest = data + records * request_header_size;
  if (size % request_header_size >= 13) {
    const uint32_t min_block = uint32_t{1} << (rest[8] % 17);
    const ExportGeometry g{be(rest, 8) / min_block * min_block, min_block,
                           static_cast<uint32_t>(be(rest + 9, 4))};
    if (as_description(g)) geometries.push_back(g);
  }

  for (size_t i = 0; i < records; ++i) {
    std::array<uint8_t, request_header_size> record;
    std::memcpy(record.data(), data + i * request_header_size, record.size());
    std::optional<Request> request = check_decode(record.data());
    if (!request) {
      record[0] = 0x25, record[1] = 0x60, record[2] = 0x95, record[3] = 0x13;
      request = check_decode(record.data());
      FUZZ_CHECK(request.has_value());
    }
    for (const ExportGeometry& g : geometries)
      check_decision(*request, g);
    check_reply(static_cast<uint32_t>(be(record.data() + 4, 4)), request->cookie);
    check_reply(decide(*request, geometries.front()).error, request->cookie);
  }
  return 0;
}
