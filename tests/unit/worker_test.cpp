// The engine below the daemon: one Worker, built from its ServingContext as
// the Server builds it, serving kernel-side connections (socket pairs, no
// handshake) over VRAM on the fake driver. What the daemon and its clients
// rely on from the worker's parts: data comes back byte for byte whatever the
// arenas cut it into, a failed copy costs its own request, corrupt VRAM never
// reaches a client under verify, and a faulty peer loses only its own
// connection.

#include <catch2/catch.hpp>

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "common/byte_size.hpp"
#include "cuda/context.hpp"
#include "cuda/driver.hpp"
#include "engine/connection_pool.hpp"
#include "engine/health.hpp"
#include "engine/worker.hpp"
#include "fake_cuda_support.hpp"
#include "nbd/protocol.hpp"
#include "store/block_checksums.hpp"
#include "store/copy_kernel.hpp"
#include "store/copy_stream.hpp"
#include "store/pinned_buffer.hpp"
#include "store/vram_store.hpp"
#include "support/nbd_test_client.hpp"

using namespace vramswap;
using namespace vramswap::engine;
using test::NbdTestClient;

namespace {

constexpr uint64_t kExportBytes = 16 * MiB;
constexpr uint32_t kEio = 5, kEinval = 22, kEnospc = 28;

struct WorkerOptions {
  bool copy_kernel = false;
  bool verify = false;
};

// A 16 MiB export on the fake GPU served by one worker whose arenas are
// small (256 KiB, halves of 128 KiB for receiving), so that a 1 MiB request
// takes several rounds each way.
class ServedWorker {
 public:
  explicit ServedWorker(WorkerOptions options = {}) {
    fake.set("VRAMSWAP_FAKE_MEMORY", "64M");
    fake.set("VRAMSWAP_FAKE_RESERVED", "0");
    fake.set("VRAMSWAP_FAKE_CONTROL", dir.file("control"));
    driver = std::make_unique<cuda::Driver>(cuda::Driver::load());
    context = std::make_unique<cuda::Context>(*driver, 0);
    store = std::make_unique<store::VramStore>(*context, 2 * MiB);
    store->allocate(kExportBytes, kExportBytes);
    REQUIRE(context->bind_current_thread().ok());
    write_vram(0, std::vector<uint8_t>(kExportBytes, 0));  // what verify's checksums start from
    if (options.copy_kernel) copy_kernel = store::CopyKernel::load(*context);
    if (options.verify) checksums = std::make_unique<store::BlockChecksums>(kExportBytes);

    serving.store = store.get();
    serving.copy_kernel = copy_kernel.get();
    serving.checksums = checksums.get();
    serving.cuda = context.get();
    serving.pool = &pool;
    serving.health = &health;
    serving.description =
        nbd::ExportDescription{"worker",
                               "",
                               kExportBytes,
                               nbd::served_transmission_flags,
                               options.verify ? uint32_t{4096} : nbd::default_min_block,
                               nbd::default_preferred_block,
                               nbd::default_max_payload};
    serving.geometry = nbd::geometry_of(serving.description);
    serving.options.rx_arena_bytes = serving.options.tx_arena_bytes = 256 * KiB;
    serving.options.copy_kernel = options.copy_kernel;
    serving.options.verify = options.verify;
    serving.on_kernel_connection_closed = [this] { kernel_closed.fetch_add(1); };
    worker = std::make_unique<Worker>(0, serving);
    worker->start();
  }
  ~ServedWorker() { worker->stop_and_join(); }

  // A new kernel connection; the test holds the other end.
  NbdTestClient connect() {
    int ends[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) == 0);
    Connection* c = pool.acquire(Origin::kernel);
    REQUIRE(c != nullptr);
    c->fd = ends[0];
    c->origin = Origin::kernel;
    worker->adopt(c);
    return NbdTestClient(UniqueFd(ends[1]));
  }

  test::ControlBlock control() const { return test::ControlBlock(dir.file("control")); }

  // Straight to and from VRAM, around the worker (same store, own stream).
  void write_vram(uint64_t offset, const std::vector<uint8_t>& bytes) {
    store::CopyStream stream(*store);
    store::PinnedBuffer buffer(*context, bytes.size());
    std::memcpy(buffer.data(), bytes.data(), bytes.size());
    REQUIRE(stream.write(offset, buffer.data(), bytes.size()).ok());
    REQUIRE(stream.synchronize().ok());
  }
  std::vector<uint8_t> read_vram(uint64_t offset, uint32_t length) {
    store::CopyStream stream(*store);
    store::PinnedBuffer buffer(*context, length);
    REQUIRE(stream.read(buffer.data(), offset, length).ok());
    REQUIRE(stream.synchronize().ok());
    auto* bytes = reinterpret_cast<const uint8_t*>(buffer.data());
    return std::vector<uint8_t>(bytes, bytes + length);
  }

  uint64_t stat(const std::atomic<uint64_t> WorkerStats::*counter) const {
    return (worker->stats().*counter).load();
  }

  test::FakeCuda fake;
  test::TempDir dir;
  std::unique_ptr<cuda::Driver> driver;
  std::unique_ptr<cuda::Context> context;
  std::unique_ptr<store::VramStore> store;
  std::unique_ptr<store::CopyKernel> copy_kernel;
  std::unique_ptr<store::BlockChecksums> checksums;
  ConnectionPool pool{4, 0};
  Health health;
  ServingContext serving;
  std::atomic<int> kernel_closed{0};
  std::unique_ptr<Worker> worker;
};

template <typename Predicate>
bool eventually(Predicate done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace

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

TEST_CASE("a failed copy costs its own request EIO; the data of others stays") {
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
