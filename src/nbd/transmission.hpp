#pragma once

// Transmission phase, server side: decoding request headers, judging them
// against the export, and encoding simple replies. Pure functions: the engine
// does the I/O, these only say what the bytes mean and what to do.

#include <cstddef>
#include <cstdint>

#include "nbd/export_description.hpp"
#include "nbd/protocol.hpp"

namespace vramswap::nbd {

struct Request {
  uint16_t flags;  // command_flag::*
  uint16_t type;   // command::*
  uint64_t cookie;
  uint64_t offset;
  uint32_t length;
};

// `header` holds request_header_size (28) bytes. False when the magic is
// wrong: the stream cannot be resynchronised, so drop the connection.
bool decode_request(const std::byte* header, Request& out) noexcept;

// Writes simple_reply_size (16) bytes to `out`. For a successful READ the
// `length` bytes of data follow; after an error nothing follows.
void encode_simple_reply(std::byte* out, uint32_t error, uint64_t cookie) noexcept;

enum class Action : uint8_t {
  read,           // reply success, then `length` bytes from `offset`
  write,          // receive `length` payload bytes, store them at `offset`, reply
  write_zeroes,   // zero [offset, offset+length), reply
  trim,           // may drop [offset, offset+length) (must read back as anything), reply
  flush,          // reply once every write already replied to is stored
  reply_success,  // nothing to do but reply success (zero-length READ, WRITE, TRIM, ...)
  reply_error,    // reply `error`; no payload follows the request
  discard_payload_then_reply_error,  // a refused WRITE: read and drop its `length`
                                     // payload bytes first, then reply `error`
  disconnect,                        // NBD_CMD_DISC: finish in-flight requests, close; no reply
  drop_connection,                   // the client broke the protocol beyond recovery: close now
};

struct Decision {
  Action action;
  uint32_t error;  // error::* for reply_error and discard_payload_then_reply_error, else 0
};

// A refused WRITE's payload is read and dropped to keep the stream in step, up
// to this many bytes (or max_payload if larger). The spec lets a server treat
// any payload beyond 32 MiB as denial of service; twice that is still
// discarded so a client off by a little gets an error, not a hang-up.
inline constexpr uint32_t write_discard_limit = 64u << 20;

// What to do with a decoded request. Checks, in order: DISC; unknown type;
// a WRITE too long to discard (drop); command flags; FLUSH's reserved fields;
// READ/WRITE payload limit; alignment to min_block; range within the export
// (overflow-safe). Never reads beyond `request` and `geometry`.
Decision decide(const Request& request, const ExportGeometry& geometry) noexcept;

}  // namespace vramswap::nbd
