#pragma once

// The fixed newstyle handshake, server side, as a state machine with no I/O:
// the engine feeds it received bytes and sends what it queues. One object per
// connection; it never allocates, and its input and output are bounded, so a
// client cannot make it buffer or loop without limit.
//
// Use from an event loop:
//   Handshake hs(exported);                 // queues the greeting
//   loop:
//     send hs.output(), then hs.output_sent(bytes_sent);
//     append received bytes to a buffer of at least max_buffered_input bytes;
//     drop the first hs.input(buffer) bytes of it;
//     until hs.state() != negotiating.
// input() consumes nothing while output is pending (one option is answered at
// a time, which bounds the output), so call it again once output is sent.
// On `transmission`, bytes left unconsumed in the buffer are the first
// transmission requests. On `closed`, close the socket (close_reason() says
// why, for a debug log).

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "nbd/export_description.hpp"
#include "nbd/protocol.hpp"

namespace vramswap::nbd {

class Handshake {
 public:
  // Options answered per connection; the next one closes it, so a client
  // cannot hold a connection in the handshake by looping over options.
  static constexpr uint32_t max_options = 64;
  // NBD_OPT_INFO/GO data is buffered whole to be parsed: a 4-byte name length,
  // a name of up to 4096 bytes, a 2-byte count and this many 2-byte requests.
  // Only four information types exist; larger options get NBD_REP_ERR_TOO_BIG.
  static constexpr size_t max_info_requests = 256;
  static constexpr size_t max_option_data = 4 + max_string_length + 2 + 2 * max_info_requests;
  // The most unconsumed input input() may need before it can make progress.
  static constexpr size_t max_buffered_input = max_option_data;

  // Worst case output for one step: the INFO/GO answer with every item.
  static constexpr size_t max_output = [] {
    constexpr size_t h = option_reply_header_size;
    constexpr size_t info_answer = (h + 12) + (h + 14) + (h + 2 + max_export_name_length) +
                                   (h + 2 + max_export_description_length) + h;
    constexpr size_t list_answer =
        h + 4 + max_export_name_length + max_export_description_length + h;
    constexpr size_t export_name_answer = 8 + 2 + export_name_reply_zeroes;
    size_t most = greeting_size;
    for (size_t n : {info_answer, list_answer, export_name_answer})
      most = n > most ? n : most;
    return most;
  }();

  enum class State : uint8_t {
    negotiating,   // keep exchanging bytes
    transmission,  // the final reply was sent: serve requests
    closed,        // close the connection (after an error or NBD_OPT_ABORT)
  };

  // Queues the greeting. `exported`'s strings must outlive this object. A
  // description failing export_description_problem() closes at once.
  explicit Handshake(const ExportDescription& exported) noexcept;

  // Bytes to send now; empty when nothing is pending.
  std::span<const std::byte> output() const noexcept;
  // The caller sent the first `n` bytes of output().
  void output_sent(size_t n) noexcept;

  // Offers received bytes; returns how many were consumed. Bytes not consumed
  // must be offered again, with later ones appended. Consumes nothing while
  // output is pending, nor past the end of the option that ends negotiation.
  size_t input(std::span<const std::byte> received) noexcept;

  State state() const noexcept;
  // The client set NBD_FLAG_C_NO_ZEROES.
  bool no_zeroes() const noexcept { return no_zeroes_; }
  // Why the handshake closed; empty while it has not.
  const char* close_reason() const noexcept { return close_reason_; }

 private:
  enum class Phase : uint8_t {
    client_flags,
    option_header,
    option_data,    // waiting for the whole option data to parse it
    skipping_data,  // consuming option data without keeping it
    final_reply_then_close,
    final_reply_then_transmission,
    transmission,
    closed,
  };

  void on_client_flags(uint32_t flags) noexcept;
  void on_option_header(const std::byte* header) noexcept;
  void on_option_data(std::span<const std::byte> data) noexcept;
  void on_option_skipped() noexcept;
  void skip_then_reply(uint32_t reply_type) noexcept;
  void answer_export_name(std::span<const std::byte> name) noexcept;
  void answer_info_or_go(std::span<const std::byte> data) noexcept;
  void answer_list(std::span<const std::byte> data) noexcept;
  void close(const char* reason) noexcept;

  // Output composition; a reply that would not fit closes the connection
  // (cannot happen with a valid description: max_output is the worst case).
  void put(const void* bytes, size_t n) noexcept;
  void put16(uint16_t v) noexcept;
  void put32(uint32_t v) noexcept;
  void put64(uint64_t v) noexcept;
  void put_reply_header(uint32_t type, uint32_t length) noexcept;
  void put_reply(uint32_t type) noexcept;  // a reply without data

  ExportDescription export_;
  Phase phase_ = Phase::client_flags;
  bool no_zeroes_ = false;
  bool output_overflowed_ = false;
  uint32_t options_received_ = 0;
  uint32_t option_ = 0;         // the option being read
  uint32_t option_length_ = 0;  // its data length
  uint32_t skip_left_ = 0;      // data bytes still to skip
  uint32_t reply_after_skip_ = 0;
  const char* close_reason_ = "";
  size_t out_begin_ = 0;
  size_t out_end_ = 0;
  std::array<std::byte, max_output> out_;
};

}  // namespace vramswap::nbd
