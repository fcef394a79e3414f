#include <catch2/catch.hpp>

#include <cstdint>
#include <random>

#include "nbd/protocol.hpp"
#include "nbd/transmission.hpp"
#include "nbd_wire.hpp"

namespace nbd = vramswap::nbd;
using nbd::Action;
using nbd_test::Bytes;
using nbd_test::Wire;

namespace {

constexpr uint64_t kSize = uint64_t{1} << 30;
constexpr uint32_t kMiB = 1u << 20;
const nbd::ExportGeometry kGeometry{kSize, 512, 32 * kMiB};

constexpr uint16_t kRead = 0, kWrite = 1, kDisc = 2, kFlush = 3, kTrim = 4, kWriteZeroes = 6;
constexpr uint16_t kFua = 1, kNoHole = 2, kDf = 4, kReqOne = 8, kFastZero = 16, kPayloadLen = 32;
constexpr uint32_t kEinval = 22, kEnospc = 28;
constexpr uint64_t kMax64 = ~uint64_t{0};

struct Expect {
  Action action;
  uint32_t error = 0;
};

Expect decide(uint16_t type, uint16_t flags, uint64_t offset, uint32_t length,
              const nbd::ExportGeometry& geometry = kGeometry) {
  const nbd::Decision d = nbd::decide({flags, type, 0x42, offset, length}, geometry);
  return {d.action, d.error};
}

bool operator==(const Expect& a, const Expect& b) {
  return a.action == b.action && a.error == b.error;
}

std::ostream& operator<<(std::ostream& os, const Expect& e) {
  return os << "action " << static_cast<int>(e.action) << " error " << e.error;
}

const Expect kEinvalReply{Action::reply_error, kEinval};
const Expect kEinvalDiscard{Action::discard_payload_then_reply_error, kEinval};
const Expect kEnospcDiscard{Action::discard_payload_then_reply_error, kEnospc};

}  // namespace

TEST_CASE("request headers decode field by field") {
  const Bytes header =
      nbd_test::request(0x0102, 0x0304, 0x1122334455667788, 0x99aabbccddeeff00, 0xdeadbeef);
  REQUIRE(header.size() == nbd::request_header_size);
  nbd::Request r{};
  REQUIRE(nbd::decode_request(header.data(), r));
  CHECK(r.flags == 0x0102);
  CHECK(r.type == 0x0304);
  CHECK(r.cookie == 0x1122334455667788);
  CHECK(r.offset == 0x99aabbccddeeff00);
  CHECK(r.length == 0xdeadbeef);
}

TEST_CASE("a request with a wrong magic is refused") {
  // The historic magic, the extended-header magic, a reply magic, garbage.
  for (uint32_t magic : {0x12560953u, 0x21e41c71u, 0x67446698u, 0x25609512u, 0u}) {
    const Bytes header = Wire{}.u32(magic).u16(0).u16(0).u64(1).u64(0).u32(512);
    nbd::Request r{};
    CHECK_FALSE(nbd::decode_request(header.data(), r));
  }
}

TEST_CASE("simple replies encode magic, error and cookie") {
  std::byte out[nbd::simple_reply_size];
  nbd::encode_simple_reply(out, kEnospc, 0x0102030405060708);
  CHECK(Bytes(out, out + sizeof out) ==
        Bytes(Wire{}.u32(0x67446698).u32(28).u64(0x0102030405060708)));
  nbd::encode_simple_reply(out, 0, kMax64);
  CHECK(Bytes(out, out + sizeof out) == Bytes(Wire{}.u32(0x67446698).u32(0).u64(kMax64)));
}

TEST_CASE("READ") {
  CHECK(decide(kRead, 0, 0, 4096) == Expect{Action::read});
  CHECK(decide(kRead, 0, kSize - 4096, 4096) == Expect{Action::read});
  CHECK(decide(kRead, 0, 0, 32 * kMiB) == Expect{Action::read});
  // FUA: the spec makes servers advertising SEND_FUA accept it on any command.
  CHECK(decide(kRead, kFua, 512, 512) == Expect{Action::read});
  SECTION("flags not valid for READ") {
    for (uint16_t flags :
         {kNoHole, kDf, kReqOne, kFastZero, kPayloadLen, uint16_t{0x8000}, uint16_t{0xffff}})
      CHECK(decide(kRead, flags, 0, 4096) == kEinvalReply);
  }
  SECTION("misaligned") {
    CHECK(decide(kRead, 0, 1, 4096) == kEinvalReply);
    CHECK(decide(kRead, 0, 256, 512) == kEinvalReply);
    CHECK(decide(kRead, 0, 0, 100) == kEinvalReply);
    CHECK(decide(kRead, 0, 0, 4095) == kEinvalReply);
  }
  SECTION("out of range, overflow-safe") {
    CHECK(decide(kRead, 0, kSize, 512) == kEinvalReply);
    CHECK(decide(kRead, 0, kSize - 512, 1024) == kEinvalReply);
    CHECK(decide(kRead, 0, kMax64 - 511, 512) == kEinvalReply);   // offset + length == 2^64
    CHECK(decide(kRead, 0, kMax64 - 511, 1024) == kEinvalReply);  // wraps to 512
    CHECK(decide(kRead, 0, uint64_t{1} << 63, 512) == kEinvalReply);
  }
  SECTION("longer than the maximum payload: refused, nothing to discard") {
    CHECK(decide(kRead, 0, 0, 32 * kMiB + 512) == kEinvalReply);
    CHECK(decide(kRead, 0, 0, 0xfffffe00) == kEinvalReply);
  }
  SECTION("zero length succeeds without I/O, inside the export") {
    CHECK(decide(kRead, 0, 0, 0) == Expect{Action::reply_success});
    CHECK(decide(kRead, 0, kSize, 0) == Expect{Action::reply_success});
    CHECK(decide(kRead, 0, kSize + 512, 0) == kEinvalReply);
  }
}

TEST_CASE("WRITE") {
  CHECK(decide(kWrite, 0, 0, 4096) == Expect{Action::write});
  CHECK(decide(kWrite, kFua, kSize - 32 * kMiB, 32 * kMiB) == Expect{Action::write});
  SECTION("refused writes say to discard the payload first") {
    CHECK(decide(kWrite, 0, 100, 4096) == kEinvalDiscard);
    CHECK(decide(kWrite, 0, 0, 1000) == kEinvalDiscard);
    for (uint16_t flags : {kNoHole, kDf, kReqOne, kFastZero, kPayloadLen, uint16_t{0x4000}})
      CHECK(decide(kWrite, flags, 0, 4096) == kEinvalDiscard);
  }
  SECTION("past the end is ENOSPC, overflow included") {
    CHECK(decide(kWrite, 0, kSize, 512) == kEnospcDiscard);
    CHECK(decide(kWrite, 0, kSize - 512, 1024) == kEnospcDiscard);
    CHECK(decide(kWrite, 0, kMax64 - 511, 1024) == kEnospcDiscard);
    CHECK(decide(kWrite, kFua, kMax64 - 511, 512) == kEnospcDiscard);
  }
  SECTION("beyond the maximum payload: discarded up to 64 MiB, then the connection drops") {
    CHECK(decide(kWrite, 0, 0, 32 * kMiB + 512) == kEinvalDiscard);
    CHECK(decide(kWrite, 0, 0, 64 * kMiB) == kEinvalDiscard);
    CHECK(decide(kWrite, 0, 0, 64 * kMiB + 512) == Expect{Action::drop_connection});
    CHECK(decide(kWrite, 0, 0, 0xffffffff) == Expect{Action::drop_connection});
    // Too long to discard wins over every other fault.
    CHECK(decide(kWrite, 0xffff, kMax64, 0xffffffff) == Expect{Action::drop_connection});
    // A server advertising a larger maximum discards up to it.
    const nbd::ExportGeometry roomy{kSize, 512, 128 * kMiB};
    CHECK(decide(kWrite, 0, 0, 128 * kMiB, roomy) == Expect{Action::write});
    CHECK(decide(kWrite, 0, kSize, 128 * kMiB, roomy) == kEnospcDiscard);
    CHECK(decide(kWrite, 0, 0, 128 * kMiB + 512, roomy) == Expect{Action::drop_connection});
  }
  SECTION("zero length succeeds; with bad flags it fails with nothing to discard") {
    CHECK(decide(kWrite, 0, 4096, 0) == Expect{Action::reply_success});
    CHECK(decide(kWrite, kDf, 4096, 0) == kEinvalReply);
    CHECK(decide(kWrite, 0, kSize + 512, 0) == Expect{Action::reply_error, kEnospc});
  }
}

TEST_CASE("TRIM") {
  CHECK(decide(kTrim, 0, 0, 4096) == Expect{Action::trim});
  CHECK(decide(kTrim, kFua, 0, 4096) == Expect{Action::trim});
  // No payload: lengths beyond the maximum payload are fine, up to the end.
  CHECK(decide(kTrim, 0, 0, static_cast<uint32_t>(kSize)) == Expect{Action::trim});
  CHECK(decide(kTrim, 0, 0, 0) == Expect{Action::reply_success});
  CHECK(decide(kTrim, kNoHole, 0, 4096) == kEinvalReply);
  CHECK(decide(kTrim, kFastZero, 0, 4096) == kEinvalReply);
  CHECK(decide(kTrim, 0, 512 + 1, 4096) == kEinvalReply);
  CHECK(decide(kTrim, 0, 0, 4097) == kEinvalReply);
  CHECK(decide(kTrim, 0, kSize - 512, 1024) == kEinvalReply);
  CHECK(decide(kTrim, 0, kMax64 - 511, 1024) == kEinvalReply);
}

TEST_CASE("WRITE_ZEROES") {
  CHECK(decide(kWriteZeroes, 0, 0, 4096) == Expect{Action::write_zeroes});
  CHECK(decide(kWriteZeroes, kNoHole, 0, 4096) == Expect{Action::write_zeroes});
  CHECK(decide(kWriteZeroes, kNoHole | kFua, 0, 4096) == Expect{Action::write_zeroes});
  CHECK(decide(kWriteZeroes, 0, 0, 512 * kMiB) == Expect{Action::write_zeroes});
  CHECK(decide(kWriteZeroes, 0, 0, 0) == Expect{Action::reply_success});
  // FAST_ZERO is not advertised: the spec asks for EINVAL.
  CHECK(decide(kWriteZeroes, kFastZero, 0, 4096) == kEinvalReply);
  CHECK(decide(kWriteZeroes, kDf, 0, 4096) == kEinvalReply);
  CHECK(decide(kWriteZeroes, 0, 4, 4096) == kEinvalReply);
  // Past the end: the spec's ENOSPC, as for WRITE, but there is no payload.
  CHECK(decide(kWriteZeroes, 0, kSize, 512) == Expect{Action::reply_error, kEnospc});
  CHECK(decide(kWriteZeroes, 0, kMax64 - 511, 1024) == Expect{Action::reply_error, kEnospc});
}

TEST_CASE("FLUSH") {
  CHECK(decide(kFlush, 0, 0, 0) == Expect{Action::flush});
  CHECK(decide(kFlush, kFua, 0, 0) == Expect{Action::flush});
  // Offset and length are reserved and must be zero.
  CHECK(decide(kFlush, 0, 512, 0) == kEinvalReply);
  CHECK(decide(kFlush, 0, 0, 512) == kEinvalReply);
  CHECK(decide(kFlush, kNoHole, 0, 0) == kEinvalReply);
}

TEST_CASE("DISC disconnects whatever its fields say") {
  CHECK(decide(kDisc, 0, 0, 0) == Expect{Action::disconnect});
  CHECK(decide(kDisc, 0xffff, kMax64, 0xffffffff) == Expect{Action::disconnect});
}

TEST_CASE("CACHE, BLOCK_STATUS, RESIZE and unknown commands get EINVAL, no payload assumed") {
  for (uint16_t type :
       {uint16_t{5}, uint16_t{7}, uint16_t{8}, uint16_t{9}, uint16_t{0x7fff}, uint16_t{0xffff}}) {
    CHECK(decide(type, 0, 0, 4096) == kEinvalReply);
    CHECK(decide(type, kReqOne, 0, 0xffffffff) == kEinvalReply);
  }
}

TEST_CASE("a geometry without alignment constraints checks none and cannot divide by zero") {
  for (uint32_t min_block : {0u, 1u}) {
    const nbd::ExportGeometry g{1000, min_block, 32 * kMiB};
    CHECK(decide(kRead, 0, 1, 999, g) == Expect{Action::read});
    CHECK(decide(kRead, 0, 1, 1000, g) == kEinvalReply);
  }
}

TEST_CASE("random requests: an I/O action is always aligned, in range and within limits") {
  std::mt19937_64 rng(20261125);
  const uint64_t interesting_offsets[] = {
      0, 512, kSize - 512, kSize, kSize + 512, kMax64 - 511, kMax64, uint64_t{1} << 63};
  const uint32_t interesting_lengths[] = {
      0, 1, 512, 4096, 32 * kMiB, 32 * kMiB + 512, 64 * kMiB, 64 * kMiB + 1, 0xffffffff};
  for (int i = 0; i < 200000; ++i) {
    // Mostly plausible requests (known types, few flags, aligned), with
    // edge values and raw garbage mixed in.
    const uint64_t bits = rng();
    nbd::Request r{};
    r.flags = static_cast<uint16_t>(bits & 1 ? rng() : rng() & 0x3f);
    r.type = static_cast<uint16_t>(bits & 2 ? rng() : rng() % 10);
    r.cookie = rng();
    if (bits & 4) {
      r.offset = interesting_offsets[rng() % std::size(interesting_offsets)];
    } else {
      r.offset = rng() % (2 * kSize);
      if (bits & 8) r.offset &= ~uint64_t{511};
    }
    if (bits & 16) {
      r.length = interesting_lengths[rng() % std::size(interesting_lengths)];
    } else {
      r.length = static_cast<uint32_t>(rng());
      if (bits & 32) r.length &= ~uint32_t{511};
    }
    const nbd::Decision d = nbd::decide(r, kGeometry);
    const bool io = d.action == Action::read || d.action == Action::write ||
                    d.action == Action::trim || d.action == Action::write_zeroes;
    const bool error_reply =
        d.action == Action::reply_error || d.action == Action::discard_payload_then_reply_error;
    INFO("flags " << r.flags << " type " << r.type << " offset " << r.offset << " length "
                  << r.length);
    REQUIRE((d.error != 0) == error_reply);
    if (io) {
      REQUIRE(r.length > 0);
      REQUIRE(r.offset % 512 == 0);
      REQUIRE(r.length % 512 == 0);
      REQUIRE(static_cast<unsigned __int128>(r.offset) + r.length <= kSize);
      if (d.action == Action::read || d.action == Action::write) REQUIRE(r.length <= 32 * kMiB);
    }
    // Only WRITE has a payload on the wire; every refused one must be drained.
    if (d.action == Action::discard_payload_then_reply_error) REQUIRE(r.type == kWrite);
    if (r.type == kWrite && r.length > 0 && r.length <= 64 * kMiB)
      REQUIRE((d.action == Action::write || d.action == Action::discard_payload_then_reply_error));
    if (d.action == Action::drop_connection) REQUIRE((r.type == kWrite && r.length > 64 * kMiB));
  }
}
