#include "nbd/transmission.hpp"

#include <algorithm>

namespace vramswap::nbd {

bool decode_request(const std::byte* header, Request& out) noexcept {
  if (load_be32(header) != request_magic) return false;
  out.flags = load_be16(header + 4);
  out.type = load_be16(header + 6);
  out.cookie = load_be64(header + 8);
  out.offset = load_be64(header + 16);
  out.length = load_be32(header + 24);
  return true;
}

void encode_simple_reply(std::byte* out, uint32_t error, uint64_t cookie) noexcept {
  store_be32(out, simple_reply_magic);
  store_be32(out + 4, error);
  store_be64(out + 8, cookie);
}

namespace {

// FUA is accepted on every command: the spec says a server that advertises
// NBD_FLAG_SEND_FUA MUST accept it on all of them, and clients are known to
// set it on reads and flushes. NO_HOLE is the only other flag we advertise
// support for. DF (no structured replies) and FAST_ZERO (not advertised) are
// invalid here.
constexpr uint16_t allowed_flags(uint16_t type) {
  return type == command::write_zeroes ? command_flag::fua | command_flag::no_hole
                                       : command_flag::fua;
}

constexpr bool is_aligned(uint64_t value, uint32_t min_block) {
  return min_block <= 1 || value % min_block == 0;
}

// offset + length <= size, without the sum overflowing 64 bits.
constexpr bool within_export(uint64_t offset, uint32_t length, uint64_t size) {
  return offset <= size && length <= size - offset;
}

// Zero when the request may run, else the error to reply.
uint32_t refusal(const Request& r, const ExportGeometry& g) {
  if ((r.flags & ~allowed_flags(r.type)) != 0) return error::einval;
  if (r.type == command::flush) {
    // Offset and length are reserved and MUST be zero.
    return r.offset == 0 && r.length == 0 ? error::none : error::einval;
  }
  const bool has_payload = r.type == command::read || r.type == command::write;
  if (has_payload && r.length > g.max_payload) return error::einval;
  if (!is_aligned(r.offset, g.min_block) || !is_aligned(r.length, g.min_block))
    return error::einval;
  if (!within_export(r.offset, r.length, g.size)) {
    // The spec's choice: writing past the end is "no space", reading or
    // trimming past it is an invalid argument.
    const bool writes = r.type == command::write || r.type == command::write_zeroes;
    return writes ? error::enospc : error::einval;
  }
  return error::none;
}

constexpr Action action_of(uint16_t type) {
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

}  // namespace

Decision decide(const Request& r, const ExportGeometry& g) noexcept {
  switch (r.type) {
    case command::disc:
      return {Action::disconnect, error::none};
    case command::read:
    case command::write:
    case command::flush:
    case command::trim:
    case command::write_zeroes:
      break;
    default:
      // CACHE, BLOCK_STATUS, RESIZE and anything unknown carry no payload
      // without extended headers, so the stream stays in step.
      return {Action::reply_error, error::einval};
  }

  const bool write = r.type == command::write;
  if (write && r.length > std::max(g.max_payload, write_discard_limit))
    return {Action::drop_connection, error::none};

  if (const uint32_t refused = refusal(r, g); refused != error::none) {
    if (write && r.length > 0) return {Action::discard_payload_then_reply_error, refused};
    return {Action::reply_error, refused};
  }
  // The spec leaves zero-length requests unspecified but asks servers not to
  // disconnect; succeeding without touching the store is the harmless answer.
  if (r.length == 0 && r.type != command::flush) return {Action::reply_success, error::none};
  return {action_of(r.type), error::none};
}

}  // namespace vramswap::nbd
