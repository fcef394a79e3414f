#include "nbd/handshake.hpp"

#include <algorithm>
#include <cstring>
#include <string_view>

namespace vramswap::nbd {

static_assert(Handshake::max_buffered_input >= option_header_size);
static_assert(Handshake::max_buffered_input >= client_flags_size);
static_assert(Handshake::max_buffered_input >= max_string_length);  // NBD_OPT_EXPORT_NAME data

namespace {

// NBD_OPT_INFO / NBD_OPT_GO data, parsed. `name` points into the input.
struct InfoRequest {
  std::string_view name;
  bool wants_name = false;
  bool wants_description = false;
};

// The layout must add up exactly: the spec requires NBD_REP_ERR_INVALID when
// a length field points beyond the option's data, and trailing bytes mean the
// client and server disagree about the format.
bool parse_info_request(std::span<const std::byte> data, InfoRequest& out) {
  if (data.size() < 4 + 2) return false;
  const size_t name_length = load_be32(data.data());
  if (name_length > data.size() - (4 + 2)) return false;
  const std::byte* count_field = data.data() + 4 + name_length;
  const size_t count = load_be16(count_field);
  if (data.size() != 4 + name_length + 2 + 2 * count) return false;
  out.name = {reinterpret_cast<const char*>(data.data() + 4), name_length};
  // Unknown types are ignored, as the spec requires; a type asked twice is
  // answered once (replies stay bounded, and SHOULD appear once anyway).
  for (size_t i = 0; i < count; ++i) {
    const uint16_t type = load_be16(count_field + 2 + 2 * i);
    if (type == info::name) out.wants_name = true;
    if (type == info::description) out.wants_description = true;
  }
  return true;
}

std::string_view as_text(std::span<const std::byte> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

}  // namespace

Handshake::Handshake(const ExportDescription& exported) noexcept : export_(exported), out_{} {
  if (export_description_problem(exported) != nullptr) {
    close("invalid export description");
    return;
  }
  put64(nbd_magic);
  put64(ihaveopt_magic);
  put16(handshake_flag::fixed_newstyle | handshake_flag::no_zeroes);
}

std::span<const std::byte> Handshake::output() const noexcept {
  return std::span(out_).subspan(out_begin_, out_end_ - out_begin_);
}

void Handshake::output_sent(size_t n) noexcept {
  out_begin_ += std::min(n, out_end_ - out_begin_);
  if (out_begin_ != out_end_) return;
  out_begin_ = out_end_ = 0;
  if (phase_ == Phase::final_reply_then_close) phase_ = Phase::closed;
  if (phase_ == Phase::final_reply_then_transmission) phase_ = Phase::transmission;
}

Handshake::State Handshake::state() const noexcept {
  switch (phase_) {
    case Phase::transmission:
      return State::transmission;
    case Phase::closed:
      return State::closed;
    default:
      return State::negotiating;
  }
}

size_t Handshake::input(std::span<const std::byte> received) noexcept {
  size_t used = 0;
  // Each pass consumes bytes, or queues output, or returns: no endless loop.
  while (out_begin_ == out_end_) {
    const std::span<const std::byte> rest = received.subspan(used);
    switch (phase_) {
      case Phase::client_flags:
        if (rest.size() < client_flags_size) return used;
        used += client_flags_size;
        on_client_flags(load_be32(rest.data()));
        break;
      case Phase::option_header:
        if (rest.size() < option_header_size) return used;
        used += option_header_size;
        on_option_header(rest.data());
        break;
      case Phase::option_data:
        if (rest.size() < option_length_) return used;
        used += option_length_;
        on_option_data(rest.first(option_length_));
        break;
      case Phase::skipping_data: {
        const size_t n = std::min<size_t>(rest.size(), skip_left_);
        used += n;
        skip_left_ -= static_cast<uint32_t>(n);
        if (skip_left_ != 0) return used;
        on_option_skipped();
        break;
      }
      default:
        return used;
    }
  }
  return used;
}

void Handshake::on_client_flags(uint32_t flags) noexcept {
  if ((flags & ~(client_flag::fixed_newstyle | client_flag::no_zeroes)) != 0)
    return close("client set unknown client flags");
  if ((flags & client_flag::fixed_newstyle) == 0)
    return close("client does not speak fixed newstyle (NBD_FLAG_C_FIXED_NEWSTYLE unset)");
  no_zeroes_ = (flags & client_flag::no_zeroes) != 0;
  phase_ = Phase::option_header;
}

void Handshake::on_option_header(const std::byte* header) noexcept {
  if (load_be64(header) != ihaveopt_magic) return close("option without the IHAVEOPT magic");
  if (options_received_ == max_options) return close("client sent more than 64 options");
  ++options_received_;
  option_ = load_be32(header + 8);
  option_length_ = load_be32(header + 12);

  switch (option_) {
    case option::export_name:
      // No error reply exists for NBD_OPT_EXPORT_NAME: the spec says close.
      if (option_length_ > max_string_length)
        return close("NBD_OPT_EXPORT_NAME with a name longer than 4096 bytes");
      phase_ = Phase::option_data;
      return;
    case option::info:
    case option::go:
      if (option_length_ > max_option_data) return skip_then_reply(reply::err_too_big);
      phase_ = Phase::option_data;
      return;
    case option::list:
      // NBD_OPT_LIST carries no data.
      if (option_length_ != 0) return skip_then_reply(reply::err_invalid);
      phase_ = Phase::option_data;
      return;
    case option::abort:
      // Data sent with NBD_OPT_ABORT is to be ignored, not refused.
      return skip_then_reply(reply::ack);
    default:
      // STARTTLS (no TLS here), STRUCTURED_REPLY, the metadata contexts,
      // EXTENDED_HEADERS and anything unknown: none of their data matters.
      return skip_then_reply(reply::err_unsup);
  }
}

void Handshake::skip_then_reply(uint32_t reply_type) noexcept {
  skip_left_ = option_length_;
  reply_after_skip_ = reply_type;
  phase_ = Phase::skipping_data;
}

void Handshake::on_option_skipped() noexcept {
  put_reply(reply_after_skip_);
  if (option_ == option::abort) {
    close_reason_ = "client sent NBD_OPT_ABORT";
    phase_ = Phase::final_reply_then_close;
  } else {
    phase_ = Phase::option_header;
  }
}

void Handshake::on_option_data(std::span<const std::byte> data) noexcept {
  phase_ = Phase::option_header;
  switch (option_) {
    case option::export_name:
      answer_export_name(data);
      break;
    case option::list:
      answer_list(data);
      break;
    default:
      answer_info_or_go(data);
      break;
  }
  if (output_overflowed_) close("reply larger than the output buffer");
}

void Handshake::answer_export_name(std::span<const std::byte> name) noexcept {
  const std::string_view wanted = as_text(name);
  if (!wanted.empty() && wanted != export_.name)
    return close("NBD_OPT_EXPORT_NAME named an unknown export");
  put64(export_.size);
  put16(export_.transmission_flags);
  if (!no_zeroes_) {
    static constexpr std::byte zeroes[export_name_reply_zeroes] = {};
    put(zeroes, sizeof zeroes);
  }
  phase_ = Phase::final_reply_then_transmission;
}

void Handshake::answer_list(std::span<const std::byte>) noexcept {
  // The description follows the name, as NBD_REP_SERVER allows, so a listing
  // client can show it.
  const uint32_t name_length = static_cast<uint32_t>(export_.name.size());
  put_reply_header(reply::server,
                   static_cast<uint32_t>(4 + name_length + export_.description.size()));
  put32(name_length);
  put(export_.name.data(), export_.name.size());
  put(export_.description.data(), export_.description.size());
  put_reply(reply::ack);
}

void Handshake::answer_info_or_go(std::span<const std::byte> data) noexcept {
  InfoRequest request;
  if (!parse_info_request(data, request)) return put_reply(reply::err_invalid);
  if (!request.name.empty() && request.name != export_.name) return put_reply(reply::err_unknown);

  put_reply_header(reply::info, 2 + 8 + 2);
  put16(info::export_);
  put64(export_.size);
  put16(export_.transmission_flags);
  // Sent whether asked for or not: our minimum block (512) is not the default
  // (1), and the spec says such a server SHOULD advertise it, and MUST when
  // asked. A client that did not ask may ignore it; requests that break it
  // get NBD_EINVAL, never corrupt data.
  put_reply_header(reply::info, 2 + 4 + 4 + 4);
  put16(info::block_size);
  put32(export_.min_block);
  put32(export_.preferred_block);
  put32(export_.max_payload);
  if (request.wants_name) {
    put_reply_header(reply::info, static_cast<uint32_t>(2 + export_.name.size()));
    put16(info::name);
    put(export_.name.data(), export_.name.size());
  }
  if (request.wants_description && !export_.description.empty()) {
    put_reply_header(reply::info, static_cast<uint32_t>(2 + export_.description.size()));
    put16(info::description);
    put(export_.description.data(), export_.description.size());
  }
  put_reply(reply::ack);
  if (option_ == option::go) phase_ = Phase::final_reply_then_transmission;
}

void Handshake::close(const char* reason) noexcept {
  close_reason_ = reason;
  phase_ = Phase::closed;
  out_begin_ = out_end_ = 0;
}

void Handshake::put(const void* bytes, size_t n) noexcept {
  if (n > out_.size() - out_end_) {
    output_overflowed_ = true;
    return;
  }
  if (n != 0) std::memcpy(out_.data() + out_end_, bytes, n);
  out_end_ += n;
}

void Handshake::put16(uint16_t v) noexcept {
  std::byte b[2];
  store_be16(b, v);
  put(b, sizeof b);
}

void Handshake::put32(uint32_t v) noexcept {
  std::byte b[4];
  store_be32(b, v);
  put(b, sizeof b);
}

void Handshake::put64(uint64_t v) noexcept {
  std::byte b[8];
  store_be64(b, v);
  put(b, sizeof b);
}

void Handshake::put_reply_header(uint32_t type, uint32_t length) noexcept {
  put64(option_reply_magic);
  put32(option_);
  put32(type);
  put32(length);
}

void Handshake::put_reply(uint32_t type) noexcept {
  put_reply_header(type, 0);
}

}  // namespace vramswap::nbd
