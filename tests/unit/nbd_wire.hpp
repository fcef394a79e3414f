#pragma once

// Test helpers for the NBD codec: building client messages byte by byte, and
// reading server output the way a client does. Deliberately written from the
// spec's layouts, not from the codec's own helpers, so a wrong constant or a
// wrong field order in the codec shows up as a failure.

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace nbd_test {

using Bytes = std::vector<std::byte>;

// Appends big-endian fields.
struct Wire {
  Bytes bytes;

  Wire& u8(unsigned v) {
    bytes.push_back(static_cast<std::byte>(v & 0xff));
    return *this;
  }
  Wire& u16(uint16_t v) { return u8(v >> 8).u8(v); }
  Wire& u32(uint32_t v) {
    return u16(static_cast<uint16_t>(v >> 16)).u16(static_cast<uint16_t>(v));
  }
  Wire& u64(uint64_t v) {
    return u32(static_cast<uint32_t>(v >> 32)).u32(static_cast<uint32_t>(v));
  }
  Wire& text(std::string_view s) {
    for (char c : s)
      u8(static_cast<unsigned char>(c));
    return *this;
  }
  Wire& raw(const Bytes& b) {
    bytes.insert(bytes.end(), b.begin(), b.end());
    return *this;
  }
  Wire& zeroes(size_t n) {
    bytes.insert(bytes.end(), n, std::byte{0});
    return *this;
  }
  operator Bytes() const { return bytes; }
};

inline constexpr uint64_t kIHaveOpt = 0x49484156454f5054;  // "IHAVEOPT"
inline constexpr uint64_t kNbdMagic = 0x4e42444d41474943;  // "NBDMAGIC"
inline constexpr uint64_t kReplyMagic = 0x0003e889045565a9;
inline constexpr uint32_t kRequestMagic = 0x25609513;
inline constexpr uint32_t kSimpleReplyMagic = 0x67446698;

inline Bytes client_flags(uint32_t flags) {
  return Wire{}.u32(flags);
}

inline Bytes option(uint32_t code, const Bytes& data) {
  return Wire{}.u64(kIHaveOpt).u32(code).u32(static_cast<uint32_t>(data.size())).raw(data);
}

// NBD_OPT_INFO / NBD_OPT_GO data.
inline Bytes info_data(std::string_view name, std::initializer_list<uint16_t> requests) {
  Wire w;
  w.u32(static_cast<uint32_t>(name.size())).text(name).u16(static_cast<uint16_t>(requests.size()));
  for (uint16_t r : requests)
    w.u16(r);
  return w;
}

inline Bytes request(uint16_t flags, uint16_t type, uint64_t cookie, uint64_t offset,
                     uint32_t length) {
  return Wire{}.u32(kRequestMagic).u16(flags).u16(type).u64(cookie).u64(offset).u32(length);
}

inline Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes all;
  for (const Bytes& p : parts)
    all.insert(all.end(), p.begin(), p.end());
  return all;
}

inline Bytes text_bytes(std::string_view s) {
  return Wire{}.text(s);
}

// Reads big-endian fields; a read past the end marks the reader failed.
class Reader {
 public:
  Reader(const Bytes& b, size_t at = 0) : b_(b), at_(at) {}
  uint64_t take(size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) {
      if (at_ >= b_.size()) {
        failed_ = true;
        return 0;
      }
      v = (v << 8) | std::to_integer<uint64_t>(b_[at_++]);
    }
    return v;
  }
  uint16_t u16() { return static_cast<uint16_t>(take(2)); }
  uint32_t u32() { return static_cast<uint32_t>(take(4)); }
  uint64_t u64() { return take(8); }
  std::string text(size_t n) {
    std::string s;
    for (size_t i = 0; i < n; ++i)
      s.push_back(static_cast<char>(take(1)));
    return s;
  }
  size_t left() const { return at_ <= b_.size() ? b_.size() - at_ : 0; }
  size_t position() const { return at_; }
  bool failed() const { return failed_; }

 private:
  const Bytes& b_;
  size_t at_;
  bool failed_ = false;
};

struct OptionReply {
  uint32_t option;
  uint32_t type;
  Bytes data;
};

// Splits fixed-newstyle option replies; `ok` is false unless the bytes are a
// whole number of well-formed replies.
inline std::vector<OptionReply> option_replies(const Bytes& b, size_t from, bool& ok) {
  std::vector<OptionReply> replies;
  Reader r(b, from);
  ok = true;
  while (r.left() > 0) {
    if (r.left() < 20 || r.u64() != kReplyMagic) {
      ok = false;
      break;
    }
    OptionReply reply{r.u32(), r.u32(), {}};
    const uint32_t length = r.u32();
    if (r.left() < length) {
      ok = false;
      break;
    }
    reply.data.assign(b.begin() + static_cast<std::ptrdiff_t>(r.position()),
                      b.begin() + static_cast<std::ptrdiff_t>(r.position() + length));
    r.take(length);
    replies.push_back(std::move(reply));
  }
  return replies;
}

}  // namespace nbd_test
