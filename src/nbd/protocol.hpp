#pragma once

// Wire constants of the NBD protocol (fixed newstyle handshake, simple
// replies). Each group is a namespace named after the spec's prefix, so
// `option::go` is NBD_OPT_GO and `error::einval` is NBD_EINVAL.

#include <cstddef>
#include <cstdint>

#include "nbd/byte_order.hpp"

namespace vramswap::nbd {

// Magic numbers.
inline constexpr uint64_t nbd_magic = 0x4e42444d41474943;           // "NBDMAGIC"
inline constexpr uint64_t ihaveopt_magic = 0x49484156454f5054;      // "IHAVEOPT"
inline constexpr uint64_t option_reply_magic = 0x0003e889045565a9;  // before each option reply
inline constexpr uint32_t request_magic = 0x25609513;               // NBD_REQUEST_MAGIC
inline constexpr uint32_t simple_reply_magic = 0x67446698;          // NBD_SIMPLE_REPLY_MAGIC
inline constexpr uint32_t structured_reply_magic = 0x668e33ef;      // never sent by this server
inline constexpr uint32_t extended_request_magic = 0x21e41c71;      // never accepted by this server

// Handshake flags, sent by the server after IHAVEOPT (16 bits).
namespace handshake_flag {
inline constexpr uint16_t fixed_newstyle = 1u << 0;  // NBD_FLAG_FIXED_NEWSTYLE
inline constexpr uint16_t no_zeroes = 1u << 1;       // NBD_FLAG_NO_ZEROES
}  // namespace handshake_flag

// Client flags, the client's answer to the handshake flags (32 bits).
namespace client_flag {
inline constexpr uint32_t fixed_newstyle = 1u << 0;  // NBD_FLAG_C_FIXED_NEWSTYLE
inline constexpr uint32_t no_zeroes = 1u << 1;       // NBD_FLAG_C_NO_ZEROES
}  // namespace client_flag

// Transmission flags, sent with the export size (16 bits).
namespace transmission_flag {
inline constexpr uint16_t has_flags = 1u << 0;              // NBD_FLAG_HAS_FLAGS
inline constexpr uint16_t read_only = 1u << 1;              // NBD_FLAG_READ_ONLY
inline constexpr uint16_t send_flush = 1u << 2;             // NBD_FLAG_SEND_FLUSH
inline constexpr uint16_t send_fua = 1u << 3;               // NBD_FLAG_SEND_FUA
inline constexpr uint16_t rotational = 1u << 4;             // NBD_FLAG_ROTATIONAL
inline constexpr uint16_t send_trim = 1u << 5;              // NBD_FLAG_SEND_TRIM
inline constexpr uint16_t send_write_zeroes = 1u << 6;      // NBD_FLAG_SEND_WRITE_ZEROES
inline constexpr uint16_t send_df = 1u << 7;                // NBD_FLAG_SEND_DF
inline constexpr uint16_t can_multi_conn = 1u << 8;         // NBD_FLAG_CAN_MULTI_CONN
inline constexpr uint16_t send_resize = 1u << 9;            // NBD_FLAG_SEND_RESIZE
inline constexpr uint16_t send_cache = 1u << 10;            // NBD_FLAG_SEND_CACHE
inline constexpr uint16_t send_fast_zero = 1u << 11;        // NBD_FLAG_SEND_FAST_ZERO
inline constexpr uint16_t block_status_payload = 1u << 12;  // NBD_FLAG_BLOCK_STATUS_PAYLOAD
}  // namespace transmission_flag

// Option codes (NBD_OPT_*), sent by the client during option haggling.
namespace option {
inline constexpr uint32_t export_name = 1;
inline constexpr uint32_t abort = 2;
inline constexpr uint32_t list = 3;
inline constexpr uint32_t peek_export = 4;
inline constexpr uint32_t starttls = 5;
inline constexpr uint32_t info = 6;
inline constexpr uint32_t go = 7;
inline constexpr uint32_t structured_reply = 8;
inline constexpr uint32_t list_meta_context = 9;
inline constexpr uint32_t set_meta_context = 10;
inline constexpr uint32_t extended_headers = 11;
}  // namespace option

// Option reply types (NBD_REP_*). Errors have bit 31 set.
namespace reply {
inline constexpr uint32_t ack = 1;
inline constexpr uint32_t server = 2;
inline constexpr uint32_t info = 3;
inline constexpr uint32_t meta_context = 4;
inline constexpr uint32_t error_bit = 1u << 31;
inline constexpr uint32_t err_unsup = error_bit + 1;
inline constexpr uint32_t err_policy = error_bit + 2;
inline constexpr uint32_t err_invalid = error_bit + 3;
inline constexpr uint32_t err_platform = error_bit + 4;
inline constexpr uint32_t err_tls_reqd = error_bit + 5;
inline constexpr uint32_t err_unknown = error_bit + 6;
inline constexpr uint32_t err_shutdown = error_bit + 7;
inline constexpr uint32_t err_block_size_reqd = error_bit + 8;
inline constexpr uint32_t err_too_big = error_bit + 9;
inline constexpr uint32_t err_ext_header_reqd = error_bit + 10;
}  // namespace reply

// Information types (NBD_INFO_*) requested by and replied to NBD_OPT_INFO/GO.
namespace info {
inline constexpr uint16_t export_ = 0;  // size and transmission flags
inline constexpr uint16_t name = 1;
inline constexpr uint16_t description = 2;
inline constexpr uint16_t block_size = 3;
}  // namespace info

// Request types (NBD_CMD_*).
namespace command {
inline constexpr uint16_t read = 0;
inline constexpr uint16_t write = 1;
inline constexpr uint16_t disc = 2;
inline constexpr uint16_t flush = 3;
inline constexpr uint16_t trim = 4;
inline constexpr uint16_t cache = 5;
inline constexpr uint16_t write_zeroes = 6;
inline constexpr uint16_t block_status = 7;
inline constexpr uint16_t resize = 8;
}  // namespace command

// Command flags (NBD_CMD_FLAG_*).
namespace command_flag {
inline constexpr uint16_t fua = 1u << 0;
inline constexpr uint16_t no_hole = 1u << 1;
inline constexpr uint16_t df = 1u << 2;
inline constexpr uint16_t req_one = 1u << 3;
inline constexpr uint16_t fast_zero = 1u << 4;
inline constexpr uint16_t payload_len = 1u << 5;
}  // namespace command_flag

// Error values of the reply's error field (NBD_E*). They match Linux errno
// numbers, but the protocol defines them, so they are spelled out here.
namespace error {
inline constexpr uint32_t none = 0;
inline constexpr uint32_t eperm = 1;
inline constexpr uint32_t eio = 5;
inline constexpr uint32_t enomem = 12;
inline constexpr uint32_t einval = 22;
inline constexpr uint32_t enospc = 28;
inline constexpr uint32_t eoverflow = 75;
inline constexpr uint32_t enotsup = 95;
inline constexpr uint32_t eshutdown = 108;
}  // namespace error

// Fixed sizes of wire messages.
inline constexpr size_t greeting_size = 8 + 8 + 2;  // NBDMAGIC, IHAVEOPT, flags
inline constexpr size_t client_flags_size = 4;
inline constexpr size_t option_header_size = 8 + 4 + 4;            // IHAVEOPT, option, length
inline constexpr size_t option_reply_header_size = 8 + 4 + 4 + 4;  // magic, option, type, length
inline constexpr size_t export_name_reply_zeroes = 124;
inline constexpr size_t request_header_size = 4 + 2 + 2 + 8 + 8 + 4;  // 28
inline constexpr size_t simple_reply_size = 4 + 4 + 8;                // 16

// Strings (export names, descriptions) are at most this long on the wire.
inline constexpr size_t max_string_length = 4096;

}  // namespace vramswap::nbd
