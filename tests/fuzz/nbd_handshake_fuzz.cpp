// Fuzzes the NBD handshake the way the engine drives it: client bytes arrive
// in chunks of any size into a buffer of Handshake::max_buffered_input bytes
// (the least the engine may provide), and output leaves in chunks of any size. Checks what
// handshake.hpp promises: input() never consumes more than offered, nor anything while output is
// pending or once negotiation is over; output never exceeds max_output; the handshake never stalls
// with a full buffer and the exchange always ends; the server's bytes are well-formed replies that
// describe the export truthfully; and neither chunking nor a larger buffer changes what the server
// says.
//
// Input layout:
//   byte 0       bits 0-1: which export is served (see `exports`);
//                bits 2-7: length of the schedule that follows (0 to 63)
//   schedule     one byte per turn of the event loop, repeated: the low
//                nibble says how many bytes arrive, the high nibble how many
//                output bytes are sent (see `arriving`, `leaving`; 0 is all)
//   the rest     what the client sends
// A captured client stream with a 0 byte in front is a seed.

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "nbd/handshake.hpp"

namespace {

using namespace vramswap::nbd;
using Bytes = std::vector<std::byte>;

const std::string long_name(max_export_name_length, 'n');
const std::string long_description(max_export_description_length, 'd');

// Exports a vramswapd may be configured with, from the usual to the extremes:
// the longest strings give the largest replies (max_output's worst case).
const std::array<ExportDescription, 4> exports = {
    ExportDescription{.name = "vramswap", .description = "", .size = uint64_t{1} << 30},
    ExportDescription{.name = "", .description = "", .size = 0},
    ExportDescription{
        .name = long_name, .description = long_description, .size = ~uint64_t{0} - 511},
    ExportDescription{.name = "swap0",
                      .description = "VRAM swap on GPU 0",
                      .size = uint64_t{16} << 30,
                      .transmission_flags = transmission_flag::has_flags |
                                            transmission_flag::send_flush |
                                            transmission_flag::read_only,
                      .min_block = 4096,
                      .preferred_block = 4096,
                      .max_payload = 4096},
};

constexpr size_t all = std::numeric_limits<size_t>::max();

size_t arriving(uint8_t step) {
  constexpr size_t sizes[16] = {all, 1, 2, 3, 4, 5, 7, 8, 13, 16, 20, 28, 100, 512, 4096, 4100};
  return sizes[step & 0x0f];
}

size_t leaving(uint8_t step) {
  constexpr size_t sizes[16] = {all, 1, 2, 3, 5, 8, 13, 16, 18, 20, 40, 100, 128, 200, 300, 1000};
  return sizes[step >> 4];
}

// Everything observable about one run.
struct Transcript {
  Bytes output;  // every byte the server sent, in order
  Handshake::State state = Handshake::State::negotiating;
  std::string close_reason;
  size_t consumed = 0;  // client bytes consumed
  bool no_zeroes = false;
};

const char* state_name(Handshake::State s) {
  switch (s) {
    case Handshake::State::negotiating:
      return "negotiating";
    case Handshake::State::transmission:
      return "transmission";
    case Handshake::State::closed:
      return "closed";
  }
  return "invalid";
}

void check_output_bound(const Handshake& hs) {
  const size_t pending = hs.output().size();
  FUZZ_CHECK(pending <= Handshake::max_output, "%zu bytes pending", pending);
  // The final reply is sent before transmission starts, and a closing
  // handshake has nothing left to say.
  if (hs.state() != Handshake::State::negotiating)
    FUZZ_CHECK(pending == 0, "%zu bytes pending in state %s", pending, state_name(hs.state()));
}

// Runs the exchange until negotiation ends or neither side can go on, with a
// receive buffer of `capacity` bytes.
Transcript drive(const ExportDescription& exported, std::span<const uint8_t> schedule,
                 std::span<const std::byte> client, size_t capacity) {
  Handshake hs(exported);
  Transcript t;
  Bytes buffer;  // received, not yet consumed
  buffer.reserve(std::min(capacity, client.size()));
  size_t arrived = 0;

  // Every turn moves at least one byte in or out; the output is bounded by the
  // options the client may send. Beyond this, the exchange is looping.
  const size_t turn_limit =
      2 * client.size() + 2 * (Handshake::max_options + 2) * Handshake::max_output + 64;
  for (size_t turn = 0;; ++turn) {
    FUZZ_CHECK(turn < turn_limit, "no end after %zu turns, %zu of %zu bytes consumed", turn,
               t.consumed, client.size());
    check_output_bound(hs);
    if (hs.state() != Handshake::State::negotiating) break;
    const uint8_t step = schedule.empty() ? 0 : schedule[turn % schedule.size()];
    bool progress = false;

    if (const auto out = hs.output(); !out.empty()) {
      // Input offered while output is pending is left alone.
      const size_t used = hs.input(buffer);
      FUZZ_CHECK(used == 0, "consumed %zu bytes with %zu output bytes pending", used, out.size());
      FUZZ_CHECK(hs.output().data() == out.data() && hs.output().size() == out.size());
      FUZZ_CHECK(hs.state() == Handshake::State::negotiating);

      const size_t n = std::min(leaving(step), out.size());
      t.output.insert(t.output.end(), out.begin(), out.begin() + static_cast<ptrdiff_t>(n));
      hs.output_sent(n);
      progress = true;
      check_output_bound(hs);
      if (hs.state() != Handshake::State::negotiating) break;
    }

    const size_t room = capacity - buffer.size();
    const size_t n = std::min({arriving(step), room, client.size() - arrived});
    buffer.insert(buffer.end(), client.begin() + static_cast<ptrdiff_t>(arrived),
                  client.begin() + static_cast<ptrdiff_t>(arrived + n));
    arrived += n;
    progress = progress || n > 0;

    const bool output_pending = !hs.output().empty();
    const size_t used = hs.input(buffer);
    FUZZ_CHECK(used <= buffer.size(), "consumed %zu of %zu bytes", used, buffer.size());
    if (output_pending) FUZZ_CHECK(used == 0, "consumed %zu bytes with output pending", used);
    buffer.erase(buffer.begin(), buffer.begin() + static_cast<ptrdiff_t>(used));
    t.consumed += used;
    progress = progress || used > 0;

    if (!progress) {
      // The client has said all it will; a real server would wait for more.
      // Waiting with a full buffer would be a hang: max_buffered_input lied.
      FUZZ_CHECK(buffer.size() < capacity, "stalled with a full buffer of %zu bytes",
                 buffer.size());
      break;
    }
  }

  if (hs.state() != Handshake::State::negotiating) {
    // Over: whatever else arrives is the next phase's (or nobody's), and
    // nothing more is said.
    Bytes more = buffer;
    more.insert(more.end(), client.begin() + static_cast<ptrdiff_t>(arrived), client.end());
    more.resize(more.size() + 64, std::byte{0x49});
    const Handshake::State state = hs.state();
    FUZZ_CHECK(hs.input(more) == 0, "consumed bytes in state %s", state_name(state));
    hs.output_sent(1);
    FUZZ_CHECK(hs.output().empty() && hs.state() == state);
  }
  t.state = hs.state();
  t.close_reason = hs.close_reason();
  t.no_zeroes = hs.no_zeroes();
  FUZZ_CHECK((t.state == Handshake::State::closed) == !t.close_reason.empty(),
             "state %s with close reason \"%s\"", state_name(t.state), t.close_reason.c_str());
  return t;
}

// Reads the server's bytes the way a client does.
class Reader {
 public:
  explicit Reader(const Bytes& b) : b_(b) {}
  size_t left() const { return b_.size() - at_; }
  // The next n bytes, or nothing when fewer are left.
  std::optional<uint64_t> peek(size_t n) const {
    if (left() < n) return std::nullopt;
    return read_be(at_, n);
  }
  uint64_t take(size_t n) {
    FUZZ_CHECK(left() >= n, "reply truncated at byte %zu", at_);
    const uint64_t v = read_be(at_, n);
    at_ += n;
    return v;
  }
  std::string_view text(size_t n) {
    FUZZ_CHECK(left() >= n, "reply truncated at byte %zu", at_);
    const std::string_view s(reinterpret_cast<const char*>(b_.data() + at_), n);
    at_ += n;
    return s;
  }

 private:
  uint64_t read_be(size_t at, size_t n) const {
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i)
      v = (v << 8) | std::to_integer<uint64_t>(b_[at + i]);
    return v;
  }
  const Bytes& b_;
  size_t at_ = 0;
};

constexpr uint64_t wire_nbdmagic = 0x4e42444d41474943;  // "NBDMAGIC", from the spec
constexpr uint64_t wire_ihaveopt = 0x49484156454f5054;  // "IHAVEOPT"
constexpr uint64_t wire_reply_magic = 0x0003e889045565a9;

// One option reply's data, checked against the export it describes.
void check_reply_data(const ExportDescription& e, uint32_t type, Reader& r, uint32_t length) {
  if ((type & reply::error_bit) != 0) {
    FUZZ_CHECK(type >= reply::err_unsup && type <= reply::err_ext_header_reqd,
               "unknown error reply 0x%x", type);
    r.text(length);  // an error may carry a message for humans
    return;
  }
  switch (type) {
    case reply::ack:
      FUZZ_CHECK(length == 0, "ACK with %u bytes of data", length);
      return;
    case reply::server: {
      FUZZ_CHECK(length >= 4, "NBD_REP_SERVER of %u bytes", length);
      const uint32_t name_length = static_cast<uint32_t>(r.take(4));
      FUZZ_CHECK(name_length <= length - 4, "name of %u bytes in %u", name_length, length);
      FUZZ_CHECK(r.text(name_length) == e.name);
      FUZZ_CHECK(r.text(length - 4 - name_length) == e.description);
      return;
    }
    case reply::info: {
      FUZZ_CHECK(length >= 2, "NBD_REP_INFO of %u bytes", length);
      const uint16_t item = static_cast<uint16_t>(r.take(2));
      switch (item) {
        case info::export_:
          FUZZ_CHECK(length == 12, "NBD_INFO_EXPORT of %u bytes", length);
          FUZZ_CHECK(r.take(8) == e.size);
          FUZZ_CHECK(r.take(2) == e.transmission_flags);
          return;
        case info::block_size:
          FUZZ_CHECK(length == 14, "NBD_INFO_BLOCK_SIZE of %u bytes", length);
          FUZZ_CHECK(r.take(4) == e.min_block);
          FUZZ_CHECK(r.take(4) == e.preferred_block);
          FUZZ_CHECK(r.take(4) == e.max_payload);
          return;
        case info::name:
          FUZZ_CHECK(r.text(length - 2) == e.name);
          return;
        case info::description:
          FUZZ_CHECK(!e.description.empty());
          FUZZ_CHECK(r.text(length - 2) == e.description);
          return;
        default:
          FUZZ_CHECK(false, "unknown NBD_INFO type %u", item);
      }
      return;
    }
    default:
      FUZZ_CHECK(false, "unknown reply type 0x%x", type);
  }
}

// The whole output is the greeting, then option replies, then (after
// NBD_OPT_EXPORT_NAME) the export's size and flags; negotiation ends exactly
// after an acknowledged GO or that final answer, and an ABORT's ACK is last.
void check_transcript(const ExportDescription& e, const Transcript& t) {
  Reader r(t.output);
  FUZZ_CHECK(r.take(8) == wire_nbdmagic);
  FUZZ_CHECK(r.take(8) == wire_ihaveopt);
  FUZZ_CHECK(r.take(2) == (handshake_flag::fixed_newstyle | handshake_flag::no_zeroes));

  uint32_t options_answered = 0;     // each answer ends with an ACK or an error
  bool go_described_export = false;  // NBD_INFO_EXPORT sent for the current GO
  bool ended_by_go = false;
  bool ended_by_abort = false;
  while (r.peek(8) == wire_reply_magic) {
    FUZZ_CHECK(!ended_by_go && !ended_by_abort, "reply after the final one");
    r.take(8);
    const uint32_t opt = static_cast<uint32_t>(r.take(4));
    const uint32_t type = static_cast<uint32_t>(r.take(4));
    const uint32_t length = static_cast<uint32_t>(r.take(4));
    FUZZ_CHECK(opt != option::export_name, "NBD_OPT_EXPORT_NAME has no option replies");
    if (type == reply::info && opt == option::go && r.peek(2) == info::export_)
      go_described_export = true;
    check_reply_data(e, type, r, length);
    if (type == reply::ack && opt == option::go) {
      FUZZ_CHECK(go_described_export, "GO acknowledged without NBD_INFO_EXPORT");
      ended_by_go = true;
    }
    if (opt == option::abort) {
      FUZZ_CHECK(type == reply::ack, "ABORT answered with 0x%x", type);
      ended_by_abort = true;
    }
    if (type == reply::ack || (type & reply::error_bit) != 0) {
      go_described_export = false;
      ++options_answered;
      FUZZ_CHECK(options_answered <= Handshake::max_options, "option %u answered",
                 options_answered);
    }
  }

  if (r.left() != 0) {  // NBD_OPT_EXPORT_NAME's answer
    FUZZ_CHECK(!ended_by_go && !ended_by_abort);
    FUZZ_CHECK(r.left() == 8 + 2 + (t.no_zeroes ? 0 : 124), "%zu trailing bytes (no_zeroes %d)",
               r.left(), t.no_zeroes);
    FUZZ_CHECK(r.take(8) == e.size);
    FUZZ_CHECK(r.take(2) == e.transmission_flags);
    while (r.left() != 0)
      FUZZ_CHECK(r.take(1) == 0);
    FUZZ_CHECK(t.state == Handshake::State::transmission);
  } else if (ended_by_go) {
    FUZZ_CHECK(t.state == Handshake::State::transmission);
  } else {
    FUZZ_CHECK(t.state != Handshake::State::transmission, "transmission without a final reply");
  }
  if (ended_by_abort) FUZZ_CHECK(t.state == Handshake::State::closed);
}

bool same(const Transcript& a, const Transcript& b) {
  return a.output == b.output && a.state == b.state && a.close_reason == b.close_reason &&
         a.consumed == b.consumed && a.no_zeroes == b.no_zeroes;
}

// A description the spec forbids (a minimum block that is no power of two)
// closes the handshake before it says anything.
void check_invalid_export(std::span<const std::byte> client) {
  ExportDescription invalid = exports[0];
  invalid.min_block = 3;
  Handshake hs(invalid);
  FUZZ_CHECK(hs.state() == Handshake::State::closed && hs.output().empty());
  FUZZ_CHECK(hs.input(client) == 0 && hs.state() == Handshake::State::closed);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const ExportDescription& exported = exports[data[0] & 3];
  FUZZ_CHECK(export_description_problem(exported) == nullptr);
  const size_t schedule_length = std::min<size_t>(data[0] >> 2, size - 1);
  const std::span<const uint8_t> schedule(data + 1, schedule_length);
  const std::span<const std::byte> client(
      reinterpret_cast<const std::byte*>(data) + 1 + schedule_length, size - 1 - schedule_length);

  const Transcript t = drive(exported, schedule, client, Handshake::max_buffered_input);
  check_transcript(exported, t);
  FUZZ_CHECK(t.consumed <= client.size());

  check_invalid_export(client);

  // Everything at once, into a buffer that holds it all: the same outcome.
  const Transcript whole = drive(exported, {}, client, all);
  FUZZ_CHECK(same(t, whole),
             "chunking changed the outcome: %zu vs %zu output bytes, states %s vs %s, "
             "%zu vs %zu consumed",
             t.output.size(), whole.output.size(), state_name(t.state), state_name(whole.state),
             t.consumed, whole.consumed);
  return 0;
}
