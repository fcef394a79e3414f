// Malformed and hostile input from raw sockets: each gets the spec's answer or
// loses only its own connection, and the daemon keeps serving others the
// right data.
#include <catch2/catch.hpp>

#include <thread>

#include "support/nbd_test_client.hpp"
#include "support/test_daemon.hpp"

using namespace vramswap::test;

namespace {

constexpr uint32_t kEINVAL = 22, kENOSPC = 28;
constexpr uint64_t kSize = 256ULL << 20;

// Writes a known pattern at the start of the export and checks it later.
struct Witness {
  explicit Witness(TestDaemon& daemon) : client(daemon.socket_path()) {
    REQUIRE(client.negotiate() == 1);
    REQUIRE(client.write(0, data) == 0);
  }
  void check() {
    std::vector<uint8_t> back;
    REQUIRE(client.read(0, static_cast<uint32_t>(data.size()), back) == 0);
    CHECK(back == data);
  }
  std::vector<uint8_t> data = random_bytes(1 << 20, 99);
  NbdTestClient client;
};

NbdTestClient connected(TestDaemon& daemon) {
  NbdTestClient client(daemon.socket_path());
  REQUIRE(client.negotiate() == 1);
  return client;
}

// The connection still works: a normal round trip succeeds.
void check_usable(NbdTestClient& client) {
  const auto data = random_bytes(8192, 5);
  CHECK(client.write(kSize - 8192, data) == 0);
  std::vector<uint8_t> back;
  CHECK(client.read(kSize - 8192, 8192, back) == 0);
  CHECK(back == data);
}

}  // namespace

TEST_CASE("transmission errors get the spec's answers and the stream stays in sync",
          "[bad-input]") {
  TestDaemon daemon({.size = "256M"});
  REQUIRE(daemon.start());
  Witness witness(daemon);
  NbdTestClient client = connected(daemon);
  REQUIRE(client.export_size() == kSize);

  SECTION("unknown command") {
    CHECK(client.simple(99, 0, 4096) == kEINVAL);
    check_usable(client);
  }
  SECTION("unknown command flag") {
    CHECK(client.simple(NbdTestClient::kRead, 0, 4096, 0x8000) == kEINVAL);
    check_usable(client);
  }
  SECTION("read beyond the end") {
    CHECK(client.simple(NbdTestClient::kRead, kSize, 4096) == kEINVAL);
    CHECK(client.simple(NbdTestClient::kRead, kSize - 4096, 8192) == kEINVAL);
    check_usable(client);
  }
  SECTION("write beyond the end: ENOSPC, and its payload is consumed") {
    CHECK(client.write(kSize - 4096, random_bytes(8192, 1)) == kENOSPC);
    check_usable(client);
  }
  SECTION("offset plus length overflowing 64 bits") {
    CHECK(client.simple(NbdTestClient::kRead, ~0ULL - 511, 1024) == kEINVAL);
    CHECK(client.write(~0ULL - 511, random_bytes(1024, 2)) != 0);
    CHECK(client.simple(NbdTestClient::kTrim, ~0ULL - 511, 1024) == kEINVAL);
    check_usable(client);
  }
  SECTION("misaligned requests") {
    CHECK(client.simple(NbdTestClient::kRead, 100, 4096) == kEINVAL);
    CHECK(client.simple(NbdTestClient::kRead, 0, 100) == kEINVAL);
    CHECK(client.write(100, random_bytes(512, 3)) == kEINVAL);
    check_usable(client);
  }
  SECTION("a read longer than the maximum payload") {
    CHECK(client.simple(NbdTestClient::kRead, 0, 64u << 20) == kEINVAL);
    check_usable(client);
  }
  SECTION("a write longer than the maximum payload is refused after its payload") {
    CHECK(client.write(0, random_bytes(40u << 20, 4)) == kEINVAL);
    check_usable(client);
  }
  SECTION("flush, trim, write-zeroes and FUA work") {
    CHECK(client.simple(NbdTestClient::kFlush, 0, 0) == 0);
    CHECK(client.simple(NbdTestClient::kTrim, 1 << 20, 1 << 20) == 0);
    CHECK(client.write(4 << 20, random_bytes(4096, 6), NbdTestClient::kFlagFua) == 0);
    CHECK(client.simple(NbdTestClient::kWriteZeroes, 4 << 20, 4096) == 0);
    std::vector<uint8_t> back;
    CHECK(client.read(4 << 20, 4096, back) == 0);
    CHECK(back == std::vector<uint8_t>(4096, 0));
  }
  witness.check();
  CHECK(daemon.stop() == 0);
}

TEST_CASE("protocol violations drop only the offending connection", "[bad-input]") {
  TestDaemon daemon({.size = "256M"});
  REQUIRE(daemon.start());
  Witness witness(daemon);

  SECTION("bad request magic") {
    NbdTestClient client = connected(daemon);
    const uint8_t garbage[28] = {0xde, 0xad, 0xbe, 0xef};
    client.send_raw(garbage, sizeof garbage);
    CHECK(client.closed_by_server());
  }
  SECTION("a payload cut short by a disconnect") {
    NbdTestClient client = connected(daemon);
    client.send_request(NbdTestClient::kWrite, 0, 1, 2 << 20, 1 << 20);
    const auto half = random_bytes(100 << 10, 8);
    client.send_raw(half.data(), half.size());
    // the client vanishes here
  }
  SECTION("bad option magic in the handshake") {
    NbdTestClient client(daemon.socket_path());
    uint8_t greeting[18];
    client.read_exact(greeting, sizeof greeting);
    const uint8_t flags[4] = {0, 0, 0, 3};
    client.send_raw(flags, 4);
    const uint8_t bad_option[16] = {'N', 'O', 'T', 'O', 'P', 'T', 'S', '!', 0, 0, 0, 7};
    client.send_raw(bad_option, sizeof bad_option);
    CHECK(client.closed_by_server());
  }
  SECTION("a client without fixed newstyle") {
    NbdTestClient client(daemon.socket_path());
    uint8_t greeting[18];
    client.read_exact(greeting, sizeof greeting);
    const uint8_t flags[4] = {0, 0, 0, 0};
    client.send_raw(flags, 4);
    CHECK(client.closed_by_server());
  }
  SECTION("an unknown export name") {
    NbdTestClient client(daemon.socket_path());
    CHECK(client.negotiate("no-such-export") == 0x80000006u);  // NBD_REP_ERR_UNKNOWN
  }
  SECTION("the export by its instance name") {
    NbdTestClient client(daemon.socket_path());
    CHECK(client.negotiate("test") == 1);
    check_usable(client);
  }
  witness.check();
  CHECK(daemon.stop() == 0);
}

TEST_CASE("stalled clients do not hold up others", "[bad-input]") {
  TestDaemon daemon({.size = "256M", .connections = 1});  // one worker: no hiding
  REQUIRE(daemon.start());

  // Silent before the greeting is read, half a request header, half a
  // payload, and a client that pipelines reads but never takes the replies.
  NbdTestClient silent(daemon.socket_path());
  NbdTestClient half_header = connected(daemon);
  const uint8_t partial[10] = {0x25, 0x60, 0x95, 0x13};
  half_header.send_raw(partial, sizeof partial);
  NbdTestClient half_payload = connected(daemon);
  half_payload.send_request(NbdTestClient::kWrite, 0, 1, 8 << 20, 1 << 20);
  const auto some = random_bytes(4096, 9);
  half_payload.send_raw(some.data(), some.size());
  // 128 pipelined 1 MiB reads in one send (one small send each would fill
  // the client's own socket buffer: AF_UNIX charges every message in full).
  NbdTestClient not_reading = connected(daemon);
  std::vector<uint8_t> reads;
  for (uint64_t i = 0; i < 128; ++i) {
    const uint64_t offset = (i % 64) << 20;
    const uint8_t header[28] = {0x25, 0x60, 0x95, 0x13, 0, 0, 0, 0,  // magic, flags, READ
                                0, 0, 0, 0, 0, 0, 0, static_cast<uint8_t>(i),
                                0, 0, 0, 0, 0, static_cast<uint8_t>(offset >> 16),
                                static_cast<uint8_t>(offset >> 8), 0,
                                0, 0x10, 0, 0};  // length 1 MiB
    reads.insert(reads.end(), header, header + sizeof header);
  }
  not_reading.send_raw(reads.data(), reads.size());

  Witness witness(daemon);
  witness.check();
  check_usable(witness.client);
  CHECK(daemon.stop() == 0);
}
