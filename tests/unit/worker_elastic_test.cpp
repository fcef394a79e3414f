// The engine gateway of elastic VRAM (src/store/ELASTIC.md): one worker over
// a chunk map, a spill file and a chunk mover on its own thread. What it
// promises: a request is served from whichever tier its chunks are pinned
// in, byte for byte; one that meets a chunk in motion waits for it, bounded,
// and never sees half-moved data; a write to a chunk with no storage waits
// until the mover gave it some; TRIM and WRITE_ZEROES let chunks move free.

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <future>
#include <vector>

#include "served_worker.hpp"

using namespace vramswap;
using namespace vramswap::engine;
using namespace std::chrono_literals;
using store::MoveOutcome;
using store::Tier;
using test::kChunk;
using test::kEio;
using test::kExportBytes;
using test::NbdTestClient;
using test::ServedWorker;
using Move = test::MoverThread::Move;

namespace {

// What the export should hold, kept beside the client that changes it.
class Model {
 public:
  explicit Model(NbdTestClient& client) : client_(client), bytes_(kExportBytes, 0) {}

  void write(uint64_t offset, const std::vector<uint8_t>& data) {
    REQUIRE(client_.write(offset, data) == 0);
    std::copy(data.begin(), data.end(), bytes_.begin() + static_cast<ptrdiff_t>(offset));
  }
  void write_zeroes(uint64_t offset, uint32_t length) {
    REQUIRE(client_.simple(NbdTestClient::kWriteZeroes, offset, length) == 0);
    std::fill_n(bytes_.begin() + static_cast<ptrdiff_t>(offset), length, 0);
  }
  std::vector<uint8_t> slice(uint64_t offset, uint64_t length) const {
    const auto from = bytes_.begin() + static_cast<ptrdiff_t>(offset);
    return std::vector<uint8_t>(from, from + static_cast<ptrdiff_t>(length));
  }
  // Read through the worker: exactly what the model holds.
  bool reads_back(uint64_t offset, uint32_t length) {
    std::vector<uint8_t> got;
    if (client_.read(offset, length, got) != 0) return false;
    return got == slice(offset, length);
  }

 private:
  NbdTestClient& client_;
  std::vector<uint8_t> bytes_;
};

}  // namespace

TEST_CASE("elastic: data in the spill area is read and written there byte for byte") {
  ServedWorker served({.elastic = true});
  NbdTestClient client = served.connect();
  Model model(client);
  model.write(0, test::random_bytes(3 * kChunk, 1));  // chunks 0-2
  REQUIRE(served.move(Move::evict, 0).outcome == MoveOutcome::moved);
  REQUIRE(served.move(Move::evict, 1).outcome == MoveOutcome::moved);
  REQUIRE(served.chunks->tier(1) == Tier::spill);
  REQUIRE_FALSE(served.store->committed(0));  // a read from VRAM could not succeed
  REQUIRE(served.read_spill(0, 2 * kChunk) == model.slice(0, 2 * kChunk));

  // Reads from the spill file: whole, 512-byte aligned, across two spilled
  // chunks, across a spilled chunk and one in VRAM.
  CHECK(model.reads_back(0, 2 * kChunk));
  CHECK(model.reads_back(1536, 10240));
  CHECK(model.reads_back(kChunk - 64 * KiB, 128 * KiB));
  CHECK(model.reads_back(2 * kChunk - 64 * KiB - 512, 128 * KiB));

  // Writes while evicted: whole blocks, a piece of one block (read-modify-
  // write), 512-byte aligned across two spilled chunks and across a spilled
  // chunk into VRAM, and one large enough to arrive in many pieces.
  model.write(5 * 4096, test::random_bytes(8192, 2));
  model.write(7 * 512, test::random_bytes(1536, 3));
  model.write(kChunk - 1024, test::random_bytes(3072, 4));
  model.write(2 * kChunk - 2560, test::random_bytes(8192, 5));
  model.write(kChunk + 1536, test::random_bytes(300 * KiB, 6));
  model.write_zeroes(kChunk + 320 * KiB + 512, 8192);
  CHECK(served.chunks->tier(0) == Tier::spill);
  CHECK(served.read_spill(0, 2 * kChunk) == model.slice(0, 2 * kChunk));  // on disk
  CHECK(served.read_vram(2 * kChunk, kChunk) == model.slice(2 * kChunk, kChunk));
  CHECK(model.reads_back(0, 3 * kChunk));

  REQUIRE(served.move(Move::restore, 0).outcome == MoveOutcome::moved);
  REQUIRE(served.move(Move::restore, 1).outcome == MoveOutcome::moved);
  CHECK(served.read_vram(0, 3 * kChunk) == model.slice(0, 3 * kChunk));
  CHECK(model.reads_back(0, 3 * kChunk));
  CHECK(served.stat(&WorkerStats::io_errors) == 0);
}

TEST_CASE("elastic: a chunk with no live data reads as zeros, and a write gets it storage") {
  ServedWorker served({.elastic = true});
  NbdTestClient client = served.connect();
  // Bytes that no write put in chunk 3: not live data, they must not show.
  served.write_vram(3 * kChunk, test::random_bytes(kChunk, 7));
  REQUIRE(served.move(Move::evict, 3).outcome == MoveOutcome::moved_free);
  REQUIRE(served.chunks->tier(3) == Tier::none);
  std::vector<uint8_t> got;
  REQUIRE(client.read(3 * kChunk + 512, 64 * KiB, got) == 0);
  CHECK(got == std::vector<uint8_t>(64 * KiB, 0));
  CHECK(served.storage_wanted.load() == 0);  // reads need no storage

  // A write asks the mover, which gives the chunk zero-filled VRAM.
  const auto data = test::random_bytes(4096, 8);
  REQUIRE(client.write(3 * kChunk + 8192, data) == 0);
  CHECK(served.storage_wanted.load() > 0);
  CHECK(served.chunks->tier(3) == Tier::vram);
  CHECK(served.read_vram(3 * kChunk + 8192, 4096) == data);
  CHECK(served.read_vram(3 * kChunk, 8192) == std::vector<uint8_t>(8192, 0));

  // With the GPU's VRAM all taken, the chunk gets its place in the spill
  // area instead, and the write (512-byte aligned) goes there.
  REQUIRE(served.move(Move::evict, 4).outcome == MoveOutcome::moved_free);
  served.control()->other_program_bytes.store(served.context->memory_info().free_bytes);
  const auto small = test::random_bytes(1536, 9);
  REQUIRE(client.write(4 * kChunk + 3 * 512, small) == 0);
  CHECK(served.chunks->tier(4) == Tier::spill);
  CHECK_FALSE(served.store->committed(4));
  std::vector<uint8_t> expected(8192, 0);
  std::copy(small.begin(), small.end(), expected.begin() + 3 * 512);
  CHECK(served.read_spill(4 * kChunk, 8192) == expected);
  REQUIRE(client.read(4 * kChunk, 8192, got) == 0);
  CHECK(got == expected);
  served.control()->other_program_bytes.store(0);
  CHECK(served.stat(&WorkerStats::io_errors) == 0);
}

TEST_CASE("elastic: a request for a chunk in motion waits for the move, then gets the data") {
  // A slow GPU (every stream's round lasts 200 ms) keeps the chunk moving
  // long enough for the requests to arrive meanwhile.
  ServedWorker served({.elastic = true, .copy_latency_us = 200'000});
  NbdTestClient client = served.connect();
  const auto data = test::random_bytes(kChunk, 10);
  served.write_vram(kChunk, data);
  served.chunks->mark_written(kChunk, kChunk);  // as the write would have

  auto evicting = served.mover_thread->post(Move::evict, 1);
  REQUIRE(test::eventually([&] { return served.chunks->motion(1) == store::Motion::evicting; }));
  std::vector<uint8_t> got;
  REQUIRE(client.read(kChunk + 4096, 64 * KiB, got) == 0);
  CHECK(evicting.wait_for(0s) == std::future_status::ready);  // answered after the move
  CHECK(evicting.get().outcome == MoveOutcome::moved);
  CHECK(got == std::vector<uint8_t>(data.begin() + 4096, data.begin() + 4096 + 64 * KiB));

  auto restoring = served.mover_thread->post(Move::restore, 1);
  REQUIRE(test::eventually([&] { return served.chunks->motion(1) == store::Motion::restoring; }));
  const auto fresh = test::random_bytes(8192, 11);
  REQUIRE(client.write(kChunk + 512, fresh) == 0);
  CHECK(restoring.wait_for(0s) == std::future_status::ready);
  CHECK(restoring.get().outcome == MoveOutcome::moved);
  CHECK(served.chunks->tier(1) == Tier::vram);
  CHECK(served.read_vram(kChunk + 512, 8192) == fresh);
  CHECK(served.read_vram(kChunk + 512 + 8192, 4096) ==
        std::vector<uint8_t>(data.begin() + 512 + 8192, data.begin() + 512 + 8192 + 4096));
}

TEST_CASE("elastic: TRIM and WRITE_ZEROES of whole chunks let them leave VRAM without a copy") {
  ServedWorker served({.elastic = true});
  NbdTestClient client = served.connect();
  REQUIRE(client.write(5 * kChunk, test::random_bytes(kChunk, 12)) == 0);
  REQUIRE(client.write(6 * kChunk, test::random_bytes(kChunk, 13)) == 0);
  CHECK(served.chunks->has_live_data(5));
  REQUIRE(client.simple(NbdTestClient::kTrim, 5 * kChunk, kChunk) == 0);
  REQUIRE(client.simple(NbdTestClient::kWriteZeroes, 6 * kChunk, kChunk) == 0);
  CHECK_FALSE(served.chunks->has_live_data(5));
  CHECK_FALSE(served.chunks->has_live_data(6));
  const uint64_t copied_out = served.control()->bytes_device_to_host.load();
  CHECK(served.move(Move::evict, 5).outcome == MoveOutcome::moved_free);
  CHECK(served.move(Move::evict, 6).outcome == MoveOutcome::moved_free);
  CHECK(served.control()->bytes_device_to_host.load() == copied_out);
  CHECK(served.chunks->tier(5) == Tier::none);

  // Only whole blocks are freed: a block partly trimmed still holds data.
  REQUIRE(client.write(7 * kChunk, test::random_bytes(8192, 14)) == 0);
  REQUIRE(client.simple(NbdTestClient::kTrim, 7 * kChunk + 512, 8192 - 512) == 0);
  CHECK(served.chunks->live_bytes(7) == 4096);
  CHECK(served.stat(&WorkerStats::trims) == 2);
}

TEST_CASE("elastic, verify = yes: data from the spill area is checked, a bad block fails at once") {
  ServedWorker served({.verify = true, .elastic = true});
  NbdTestClient client = served.connect();
  const auto data = test::random_bytes(3 * 4096, 15);
  REQUIRE(client.write(0, data) == 0);
  REQUIRE(served.move(Move::evict, 0).outcome == MoveOutcome::moved);
  std::vector<uint8_t> got;
  REQUIRE(client.read(0, 3 * 4096, got) == 0);
  CHECK(got == data);

  served.write_spill(4096, test::random_bytes(4096, 16));  // the middle block goes bad on disk
  test::StderrCapture log;
  CHECK(client.read(0, 3 * 4096, got) == kEio);
  CHECK(served.health.checksum_failures() == 1);
  // The log names the suspect: the disk, not the GPU.
  CHECK_THAT(log.text(), Catch::Matchers::Contains("spill area data corrupted at offset 4096"));
  REQUIRE(client.read(0, 4096, got) == 0);
  CHECK(got == std::vector<uint8_t>(data.begin(), data.begin() + 4096));
}

TEST_CASE("elastic: a chunk that never stops moving costs the request EIO after the bound") {
  ServedWorker served({.elastic = true});
  NbdTestClient client = served.connect();
  // A mover that started and never finishes (this thread plays it).
  REQUIRE(served.chunks->begin_move(7, store::Motion::evicting, store::Deadline::after(1s)) ==
          store::ChunkMap::MoveStart::started);
  const auto start = std::chrono::steady_clock::now();
  std::vector<uint8_t> got;
  CHECK(client.read(7 * kChunk, 4096, got) == kEio);
  CHECK(std::chrono::steady_clock::now() - start >=
        std::chrono::nanoseconds(ChunkGate::wait_bound_ns));
  CHECK(served.health.chunk_wait_failures() == 1);
  CHECK(served.stat(&WorkerStats::io_errors) == 1);
  CHECK(served.stat(&WorkerStats::protocol_errors) == 0);
  // The connection lives on, and so does the chunk once its move ends.
  served.chunks->abandon_move(7);
  REQUIRE(client.read(7 * kChunk, 4096, got) == 0);
  CHECK(got == std::vector<uint8_t>(4096, 0));
}

// The laptop on battery: with every chunk out of VRAM the daemon lets go of
// the GPU entirely (ElasticTier's let_go_of_gpu, in the order it uses), so
// that no CUDA context of ours is left; the worker serves on from the spill
// area, then takes its stream and buffers back in the context retained again
// (new device addresses for the export on the fake: it never honours the
// old range), and data written meanwhile is there.
TEST_CASE("elastic: the worker serves on while the context is released, then takes it back") {
  const bool copy_kernel = GENERATE(false, true);
  INFO("copy kernel " << copy_kernel);
  ServedWorker served({.copy_kernel = copy_kernel, .elastic = true});
  NbdTestClient client = served.connect();
  Model model(client);
  model.write(0, test::random_bytes(kExportBytes, 21));
  for (size_t chunk = 0; chunk < kExportBytes / kChunk; ++chunk)
    REQUIRE(served.move(Move::evict, chunk).outcome == MoveOutcome::moved);

  // Let go: the worker between rounds, then the kernel, mover, store, context.
  served.worker->want_gpu(false);
  REQUIRE(
      test::eventually([&] { return served.worker->gpu_state() == Worker::GpuState::detached; }));
  if (served.copy_kernel) REQUIRE(served.copy_kernel->detach().ok());
  REQUIRE(served.mover->detach().ok());
  REQUIRE(served.store->detach().ok());
  REQUIRE(served.context->release().ok());
  CHECK(served.control()->live_contexts.load() == 0);
  CHECK(served.control()->bytes_allocated.load() == 0);

  // Serving from the spill area needs no GPU: reads, writes, and a write
  // that gives a chunk with no storage its place there.
  CHECK(model.reads_back(0, 1 << 20));
  CHECK(model.reads_back(kExportBytes - 96 * KiB, 96 * KiB));
  model.write(3 * kChunk + 512, test::random_bytes(200 * KiB, 22));
  CHECK(model.reads_back(3 * kChunk, kChunk));
  CHECK(served.stat(&WorkerStats::io_errors) == 0);

  // Take it back in the same order the other way round, then restore.
  REQUIRE(served.context->retain().ok());
  REQUIRE(served.store->attach().ok());
  REQUIRE(served.mover->attach().ok());
  if (served.copy_kernel) REQUIRE(served.copy_kernel->attach().ok());
  served.worker->want_gpu(true);
  REQUIRE(
      test::eventually([&] { return served.worker->gpu_state() == Worker::GpuState::attached; }));
  CHECK(served.control()->live_contexts.load() == 1);
  for (size_t chunk = 0; chunk < kExportBytes / kChunk; ++chunk)
    REQUIRE(served.move(Move::restore, chunk).outcome == MoveOutcome::moved);
  REQUIRE(served.chunks->census().vram_bytes == kExportBytes);
  const uint64_t copies_before = served.control()->copies.load();
  CHECK(model.reads_back(0, kExportBytes / 2));  // from VRAM through the new stream
  CHECK(model.reads_back(kExportBytes / 2, kExportBytes / 2));
  CHECK(served.control()->copies.load() > copies_before);
  model.write(5 * kChunk + 4096, test::random_bytes(8 * KiB, 23));  // small: the copy kernel's
  CHECK(model.reads_back(5 * kChunk, kChunk));
  CHECK(served.stat(&WorkerStats::io_errors) == 0);
}

TEST_CASE("elastic: the store refuses to give its addresses back while a chunk holds VRAM") {
  ServedWorker served({.elastic = true});
  NbdTestClient client = served.connect();
  Model model(client);
  model.write(0, test::random_bytes(kExportBytes, 24));
  // Every chunk but the last goes to the spill area.
  for (size_t chunk = 0; chunk + 1 < kExportBytes / kChunk; ++chunk)
    REQUIRE(served.move(Move::evict, chunk).outcome == MoveOutcome::moved);
  CHECK(served.store->detach() == cuda::CUDA_ERROR_ILLEGAL_STATE);
  CHECK(served.store->base() != 0);
  CHECK(model.reads_back(kExportBytes - kChunk, kChunk));  // still in VRAM, still served
  CHECK(model.reads_back(0, kChunk));
}
