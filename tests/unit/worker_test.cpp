// The engine below the daemon: one Worker, built from its ServingContext as
// the Server builds it, serving kernel-side connections (socket pairs, no
// handshake) over VRAM on the fake driver. What the daemon and its clients
// rely on from the worker's parts: data comes back byte for byte whatever the
// arenas cut it into, a failed copy costs its own request, corrupt VRAM never
// reaches a client under verify, and a faulty peer loses only its own
// connection.

#include <catch2/catch.hpp>

#include <vector>

#include "served_worker.hpp"

using namespace vramswap;
using namespace vramswap::engine;
using test::eventually;
using test::kEinval;
using test::kEio;
using test::kEnospc;
using test::kExportBytes;
using test::NbdTestClient;
using test::ServedWorker;
using test::WorkerOptions;

TEST_CASE("a worker returns every byte written, whatever its arenas cut the requests into") {
  const bool copy_kernel = GENERATE(false, true);
  CAPTURE(copy_kernel);
  ServedWorker served({.copy_kernel = copy_kernel});
  NbdTestClient client = served.connect();

  // A block, a payload of several receive halves, a read of several send
  // arenas, one crossing a 2 MiB chunk of the store, and the last block.
  struct Piece {
    uint64_t offset;
    uint32_t length;
  };
  const std::vector<Piece> pieces{
      {0, 4096}, {64 * KiB, 1 * MiB}, {2 * MiB - 12 * KiB, 40 * KiB}, {kExportBytes - 4096, 4096}};
  uint64_t seed = 1;
  for (const Piece& p : pieces)
    REQUIRE(client.write(p.offset, test::random_bytes(p.length, seed++)) == 0);
  seed = 1;
  for (const Piece& p : pieces) {
    const auto expected = test::random_bytes(p.length, seed++);
    std::vector<uint8_t> got;
    REQUIRE(client.read(p.offset, p.length, got) == 0);
    CHECK(got == expected);
    CHECK(served.read_vram(p.offset, p.length) == expected);  // in VRAM, not only echoed
  }
  CHECK(served.stat(&WorkerStats::writes) == pieces.size());
  CHECK(served.stat(&WorkerStats::reads) == pieces.size());
  CHECK(served.stat(&WorkerStats::rounds) > 2 * pieces.size());  // the 1 MiB ones took several
}

TEST_CASE("a worker refuses requests outside the export (EINVAL, ENOSPC) and keeps serving") {
  ServedWorker served;
  NbdTestClient client = served.connect();
  std::vector<uint8_t> got;
  CHECK(client.read(kExportBytes, 4096, got) == kEinval);
  CHECK(client.write(kExportBytes - 4096, test::random_bytes(8192, 3)) == kEnospc);
  const auto data = test::random_bytes(4096, 4);
  CHECK(client.write(8192, data) == 0);
  REQUIRE(client.read(8192, 4096, got) == 0);
  CHECK(got == data);
  CHECK(served.stat(&WorkerStats::protocol_errors) == 2);
}

TEST_CASE("a failed copy costs its own request EIO, the data of others stays") {
  ServedWorker served;
  NbdTestClient client = served.connect();
  const auto kept = test::random_bytes(4096, 5);
  REQUIRE(client.write(0, kept) == 0);

  served.control()->fail_next_copies.store(1);
  CHECK(client.write(4096, test::random_bytes(4096, 6)) == kEio);
  std::vector<uint8_t> got;
  REQUIRE(client.read(0, 4096, got) == 0);
  CHECK(got == kept);
  const auto after = test::random_bytes(4096, 7);
  CHECK(client.write(4096, after) == 0);
  REQUIRE(client.read(4096, 4096, got) == 0);
  CHECK(got == after);

  served.control()->fail_next_copies.store(1);
  CHECK(client.read(0, 4096, got) == kEio);  // a read whose copy failed: EIO, no data
  REQUIRE(client.read(0, 4096, got) == 0);
  CHECK(got == kept);
  CHECK(served.health.copy_failures() == 2);
  CHECK(served.stat(&WorkerStats::io_errors) == 2);
  CHECK(served.stat(&WorkerStats::failed_copy_calls) == 2);
}

TEST_CASE("verify = yes: VRAM changed behind the worker's back is EIO, never wrong data") {
  ServedWorker served({.verify = true});
  NbdTestClient client = served.connect();
  const auto data = test::random_bytes(3 * 4096, 8);
  REQUIRE(client.write(0, data) == 0);
  std::vector<uint8_t> got;
  REQUIRE(client.read(0, 3 * 4096, got) == 0);
  CHECK(got == data);

  served.write_vram(4096, test::random_bytes(4096, 9));  // the middle block goes bad
  CHECK(client.read(0, 3 * 4096, got) == kEio);
  CHECK(served.health.checksum_failures() == 1);
  REQUIRE(client.read(0, 4096, got) == 0);  // the blocks around it are intact
  CHECK(got == std::vector<uint8_t>(data.begin(), data.begin() + 4096));
  REQUIRE(client.read(2 * 4096, 4096, got) == 0);
  CHECK(got == std::vector<uint8_t>(data.begin() + 2 * 4096, data.end()));
}

TEST_CASE("a peer that breaks the protocol loses its own connection only") {
  ServedWorker served;
  NbdTestClient faulty = served.connect();
  NbdTestClient good = served.connect();
  const auto data = test::random_bytes(64 * KiB, 10);
  REQUIRE(good.write(0, data) == 0);

  const std::vector<uint8_t> garbage(28, 0xee);  // no request magic
  faulty.send_raw(garbage.data(), garbage.size());
  CHECK(faulty.closed_by_server());
  CHECK(eventually([&] { return served.kernel_closed.load() == 1; }));

  std::vector<uint8_t> got;
  REQUIRE(good.read(0, 64 * KiB, got) == 0);
  CHECK(got == data);
  CHECK(served.stat(&WorkerStats::dropped_connections) == 1);
  CHECK(eventually([&] { return served.worker->connections() == 1; }));
}

TEST_CASE("read data the socket cannot take yet waits in VRAM and is never copied out twice") {
  const bool verify = GENERATE(false, true);
  CAPTURE(verify);
  ServedWorker served({.verify = verify});
  // The worker's end holds 32 KiB (64 KiB as the kernel counts), a quarter
  // of one round's send arena: every round could stage more than it takes.
  NbdTestClient client = served.connect(32 * KiB);
  const auto data = test::random_bytes(4 * MiB, 7);
  REQUIRE(client.write(0, data) == 0);
  const auto control = served.control();
  const uint64_t before = control->bytes_device_to_host.load();

  std::vector<uint8_t> got;
  REQUIRE(client.read(0, 4 * MiB, got) == 0);
  CHECK(got == data);
  const uint64_t copied = control->bytes_device_to_host.load() - before;
  CHECK(copied >= 4 * MiB);
  // With verify a piece starts on a block boundary: the part of a block the
  // client already has is read again with the rest (about 7% here).
  CHECK(copied <= 4 * MiB + 4 * MiB / 10);
}

TEST_CASE("a worker ends a connection on NBD_CMD_DISC after answering what came before") {
  ServedWorker served;
  NbdTestClient client = served.connect();
  const auto data = test::random_bytes(4096, 11);
  client.send_request(NbdTestClient::kWrite, 0, 1, 0, 4096);
  client.send_raw(data.data(), data.size());
  client.send_request(NbdTestClient::kDisc, 0, 2, 0, 0);
  const auto reply = client.read_reply();
  CHECK(reply.cookie == 1);
  CHECK(reply.error == 0);
  CHECK(client.closed_by_server());
  CHECK(served.read_vram(0, 4096) == data);
  CHECK(eventually([&] { return served.kernel_closed.load() == 1; }));
}
