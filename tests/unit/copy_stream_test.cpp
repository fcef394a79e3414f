// Copies between pinned host memory and the VRAM export, against the fake
// driver: round trips, zeroing, range checks, injected faults, threads.

#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "common/byte_size.hpp"
#include "fake_cuda_support.hpp"
#include "random_bytes.hpp"
#include "store/copy_kernel.hpp"
#include "store/copy_stream.hpp"
#include "store/pinned_buffer.hpp"
#include "store/vram_store.hpp"

using namespace vramswap;
using namespace vramswap::store;
using cuda::CUDA_ERROR_INVALID_CONTEXT;
using cuda::CUDA_ERROR_INVALID_VALUE;
using cuda::CUDA_ERROR_OUT_OF_MEMORY;
using cuda::CUDA_ERROR_UNKNOWN;
using test::random_bytes;

namespace {

// A 16 MiB export in 2 MiB chunks, so that ranges cross chunk boundaries.
constexpr uint64_t export_bytes = 16 * MiB;
constexpr uint64_t chunk = 2 * MiB;

using Settings = std::vector<std::pair<std::string, std::string>>;

// The fake driver's environment: a 64 MiB GPU with a control block.
struct FakeGpu {
  explicit FakeGpu(const Settings& settings) {
    fake.set("VRAMSWAP_FAKE_MEMORY", "64M");
    fake.set("VRAMSWAP_FAKE_RESERVED", "0");
    fake.set("VRAMSWAP_FAKE_CONTROL", dir.file("control"));
    for (const auto& [name, value] : settings)
      fake.set(name, value);
  }
  test::FakeCuda fake;
  test::TempDir dir;
};

// The driver loaded on that GPU, a context and the allocated export.
struct Setup : FakeGpu {
  explicit Setup(const Settings& settings = {})
      : FakeGpu(settings), driver(cuda::Driver::load()), context(driver, 0), store(context, chunk) {
    store.allocate(export_bytes, export_bytes);
  }
  test::ControlBlock control() const { return test::ControlBlock(dir.file("control")); }

  cuda::Driver driver;
  cuda::Context context;
  VramStore store;
};

// Writes `data` at `offset` and synchronizes.
void put(CopyStream& stream, PinnedBuffer& staging, uint64_t offset,
         const std::vector<std::byte>& data) {
  REQUIRE(staging.size() >= data.size());
  std::memcpy(staging.data(), data.data(), data.size());
  REQUIRE(stream.write(offset, staging.data(), data.size()).ok());
  REQUIRE(stream.synchronize().ok());
}

// Reads `length` bytes at `offset` after synchronizing.
std::vector<std::byte> get(CopyStream& stream, PinnedBuffer& staging, uint64_t offset,
                           size_t length) {
  REQUIRE(staging.size() >= length);
  REQUIRE(stream.read(staging.data(), offset, length).ok());
  REQUIRE(stream.synchronize().ok());
  return std::vector<std::byte>(staging.data(), staging.data() + length);
}

}  // namespace

TEST_CASE("random data round-trips, across chunk boundaries and at odd lengths") {
  Setup setup;
  CopyStream stream(setup.store);
  PinnedBuffer staging(setup.context, export_bytes);
  // A host-side model of the whole export, updated with every write.
  std::vector<std::byte> model(export_bytes);
  put(stream, staging, 0, model);  // the fake's VRAM starts zeroed; real VRAM does not

  struct Range {
    uint64_t offset;
    size_t length;
  };
  const Range ranges[] = {
      {0, 4096},                         // first block
      {chunk - 4096, 8192},              // straddles the first boundary
      {chunk - 1, 2},                    // two bytes, one each side
      {3 * chunk + 123, 2 * chunk + 7},  // unaligned, across two boundaries
      {chunk, chunk},                    // exactly one whole chunk
      {export_bytes - 4096, 4096},       // last block
      {4 * chunk - 17, 3 * chunk + 34},  // unaligned, across four boundaries
      {1, export_bytes - 2},             // nearly everything
  };
  uint32_t seed = 1;
  for (const Range& range : ranges) {
    INFO("offset " << range.offset << " length " << range.length);
    const auto data = random_bytes(range.length, seed++);
    put(stream, staging, range.offset, data);
    std::memcpy(model.data() + range.offset, data.data(), data.size());
    CHECK(get(stream, staging, range.offset, range.length) == data);
  }
  CHECK(get(stream, staging, 0, export_bytes) == model);
}

TEST_CASE("zero() clears exactly the range it is given") {
  Setup setup;
  CopyStream stream(setup.store);
  PinnedBuffer staging(setup.context, export_bytes);
  const auto data = random_bytes(export_bytes, 7);
  put(stream, staging, 0, data);

  const uint64_t offset = chunk - 1000, length = chunk + 3000;  // across a boundary, unaligned
  REQUIRE(stream.zero(offset, length).ok());
  REQUIRE(stream.synchronize().ok());
  std::vector<std::byte> expected = data;
  std::memset(expected.data() + offset, 0, length);
  CHECK(get(stream, staging, 0, export_bytes) == expected);
  CHECK(setup.control()->bytes_zeroed.load() == length);
}

TEST_CASE("ranges outside the export are refused without any copy") {
  Setup setup;
  CopyStream stream(setup.store);
  PinnedBuffer staging(setup.context, 2 * 4096);
  const uint64_t copies_before = setup.control()->copies.load();
  CHECK(stream.write(export_bytes, staging.data(), 1) == CUDA_ERROR_INVALID_VALUE);
  CHECK(stream.write(export_bytes - 4096, staging.data(), 8192) == CUDA_ERROR_INVALID_VALUE);
  CHECK(stream.read(staging.data(), UINT64_MAX - 1, 4096) == CUDA_ERROR_INVALID_VALUE);
  CHECK(stream.read(staging.data(), export_bytes, 4096) == CUDA_ERROR_INVALID_VALUE);
  CHECK(stream.zero(export_bytes - 1, 2) == CUDA_ERROR_INVALID_VALUE);
  CHECK(stream.zero(4096, UINT64_MAX) == CUDA_ERROR_INVALID_VALUE);
  CHECK(stream.write(0, nullptr, 4096) == CUDA_ERROR_INVALID_VALUE);
  CHECK(stream.read(nullptr, 0, 4096) == CUDA_ERROR_INVALID_VALUE);
  CHECK(stream.synchronize().ok());
  CHECK(setup.control()->copies.load() == copies_before);
  // Empty ranges, even at the very end, are fine and copy nothing.
  CHECK(stream.write(export_bytes, staging.data(), 0).ok());
  CHECK(stream.zero(0, 0).ok());
  CHECK(setup.control()->copies.load() == copies_before);
}

TEST_CASE("copies are asynchronous: data moves at synchronize()") {
  Setup setup;
  CopyStream stream(setup.store);
  PinnedBuffer staging(setup.context, 4096);
  const auto first = random_bytes(4096, 1);
  const auto second = random_bytes(4096, 2);
  put(stream, staging, 0, first);

  SECTION("a read's destination is filled only by synchronize()") {
    std::memset(staging.data(), 0xaa, 4096);
    REQUIRE(stream.read(staging.data(), 0, 4096).ok());
    CHECK(std::all_of(staging.data(), staging.data() + 4096,
                      [](std::byte b) { return b == std::byte{0xaa}; }));
    REQUIRE(stream.synchronize().ok());
    CHECK(std::memcmp(staging.data(), first.data(), 4096) == 0);
  }
  SECTION("a write's source is read only by synchronize()") {
    std::memcpy(staging.data(), second.data(), 4096);
    REQUIRE(stream.write(0, staging.data(), 4096).ok());
    std::memset(staging.data(), 0x55, 4096);  // too early: the copy has not run
    REQUIRE(stream.synchronize().ok());
    const auto stored = get(stream, staging, 0, 4096);
    CHECK(std::all_of(stored.begin(), stored.end(),
                      [](std::byte b) { return b == std::byte{0x55}; }));
  }
}

TEST_CASE("an injected copy failure fails that copy, and synchronize() says so") {
  SECTION("the Nth copy call, from the environment") {
    Setup setup(Settings{{"VRAMSWAP_FAKE_FAIL_COPY", "3"}, {"VRAMSWAP_FAKE_FAIL_COPY_COUNT", "2"}});
    CopyStream stream(setup.store);
    PinnedBuffer staging(setup.context, 4096);
    const auto data = random_bytes(4096, 3);
    std::memcpy(staging.data(), data.data(), 4096);
    CHECK(stream.write(0, staging.data(), 4096).ok());
    CHECK(stream.synchronize().ok());  // call 1
    CHECK(stream.write(4096, staging.data(), 4096).ok());
    CHECK(stream.synchronize().ok());  // call 2
    CHECK(stream.write(8192, staging.data(), 4096).ok());
    const cuda::Status third = stream.synchronize();
    CHECK(third == CUDA_ERROR_OUT_OF_MEMORY);
    CHECK_FALSE(third.sticky());
    CHECK(stream.write(8192, staging.data(), 4096).ok());
    CHECK(stream.synchronize() == CUDA_ERROR_OUT_OF_MEMORY);  // call 4
    CHECK(stream.write(8192, staging.data(), 4096).ok());
    CHECK(stream.synchronize().ok());  // call 5: works again
    CHECK(get(stream, staging, 8192, 4096) == data);
    CHECK(setup.control()->failed_copies.load() == 2);
  }
  SECTION("the next K copies, poked into the control block at run time") {
    Setup setup;
    CopyStream stream(setup.store);
    PinnedBuffer staging(setup.context, 4096);
    const auto data = random_bytes(4096, 4);
    put(stream, staging, 0, data);
    setup.control()->fail_next_copies.store(2);
    CHECK(stream.read(staging.data(), 0, 4096).ok());  // held until the sync
    CHECK(stream.synchronize() == CUDA_ERROR_OUT_OF_MEMORY);
    CHECK(stream.zero(0, 4096) == CUDA_ERROR_OUT_OF_MEMORY);
    CHECK(setup.control()->fail_next_copies.load() == 0);
    CHECK(get(stream, staging, 0, 4096) == data);  // the failed zero() did nothing
  }
}

TEST_CASE("a lost device fails every later call with a sticky error") {
  SECTION("after N copies, from the environment") {
    Setup setup(Settings{{"VRAMSWAP_FAKE_LOSE_DEVICE_AFTER", "2"}});
    CopyStream stream(setup.store);
    PinnedBuffer staging(setup.context, 4096);
    for (uint64_t offset : {0, 4096, 8192}) {
      CHECK(stream.write(offset, staging.data(), 4096).ok());
      (void)stream.synchronize();
    }
    CHECK(stream.zero(0, 4096) == CUDA_ERROR_UNKNOWN);
    CHECK(stream.read(staging.data(), 0, 4096).ok());  // held: the sync tells
    const cuda::Status lost = stream.synchronize();
    CHECK(lost == CUDA_ERROR_UNKNOWN);
    CHECK(lost.sticky());
    CHECK(setup.context.bind_current_thread() == CUDA_ERROR_UNKNOWN);
    size_t free_bytes = 0, total_bytes = 0;
    CHECK(setup.driver.cuMemGetInfo(&free_bytes, &total_bytes) == CUDA_ERROR_UNKNOWN);
  }
  SECTION("poked into the control block at run time") {
    Setup setup;
    CopyStream stream(setup.store);
    PinnedBuffer staging(setup.context, 4096);
    put(stream, staging, 0, random_bytes(4096, 5));
    REQUIRE(stream.read(staging.data(), 0, 4096).ok());
    setup.control()->lose_device.store(1);
    CHECK(stream.synchronize() == CUDA_ERROR_UNKNOWN);
    CHECK(stream.zero(0, 4096) == CUDA_ERROR_UNKNOWN);
    CHECK(stream.synchronize().sticky());
  }
  // Tearing down on a lost device must not crash or hang (the destructors
  // above ran against it), and a fresh start works.
  Setup fresh;
  CopyStream stream(fresh.store);
  PinnedBuffer staging(fresh.context, 4096);
  put(stream, staging, 0, random_bytes(4096, 6));
}

TEST_CASE("pieces that continue each other cross in one copy call, writes and reads alike") {
  Setup setup;
  CopyStream stream(setup.store);
  PinnedBuffer staging(setup.context, 2 * MiB);
  const auto data = random_bytes(1 * MiB, 12);
  auto copies = [&] { return setup.control()->copies.load(); };

  SECTION("a 1 MiB payload received in 64 pieces: one copy") {
    std::memcpy(staging.data(), data.data(), data.size());
    const uint64_t before = copies();
    constexpr size_t piece = 16 * KiB;
    for (size_t done = 0; done < data.size(); done += piece)
      REQUIRE(stream.write(4 * MiB + done, staging.data() + done, piece).ok());
    REQUIRE(stream.synchronize().ok());
    CHECK(copies() - before == 1);
    CHECK(get(stream, staging, 4 * MiB, data.size()) ==
          std::vector<std::byte>(data.begin(), data.end()));
  }
  SECTION("reads staged back to back from consecutive offsets: one copy") {
    put(stream, staging, 0, data);
    std::memset(staging.data(), 0, staging.size());
    const uint64_t before = copies();
    constexpr size_t piece = 256 * KiB;
    for (size_t done = 0; done < data.size(); done += piece)
      REQUIRE(stream.read(staging.data() + done, done, piece).ok());
    REQUIRE(stream.synchronize().ok());
    CHECK(copies() - before == 1);
    CHECK(std::memcmp(staging.data(), data.data(), data.size()) == 0);
  }
  SECTION("a gap on either side or a change of direction splits them, a chunk boundary not") {
    std::memcpy(staging.data(), data.data(), data.size());
    const uint64_t before = copies();
    // Host gap (a request header between two payloads in the arena).
    REQUIRE(stream.write(0, staging.data(), 4096).ok());
    REQUIRE(stream.write(4096, staging.data() + 4096 + 28, 4096).ok());
    // VRAM gap.
    REQUIRE(stream.write(64 * KiB, staging.data() + 64 * KiB, 4096).ok());
    REQUIRE(stream.write(72 * KiB, staging.data() + 68 * KiB, 4096).ok());
    REQUIRE(stream.synchronize().ok());
    CHECK(copies() - before == 4);
    // The export is one range of device addresses: a range across a chunk
    // boundary, and pieces continuing each other across it, are one copy.
    const uint64_t across = copies();
    REQUIRE(stream.write(chunk - 512 * KiB, staging.data(), 512 * KiB).ok());
    REQUIRE(stream.write(chunk, staging.data() + 512 * KiB, 512 * KiB).ok());
    REQUIRE(stream.synchronize().ok());
    CHECK(copies() - across == 1);
    CHECK(get(stream, staging, chunk - 512 * KiB, 1 * MiB) ==
          std::vector<std::byte>(data.begin(), data.end()));
    // A read that continues a write on both sides is still a copy of its own.
    const uint64_t turn = copies();
    REQUIRE(stream.write(8 * MiB, staging.data(), 4096).ok());
    REQUIRE(stream.read(staging.data() + 4096, 8 * MiB + 4096, 4096).ok());
    REQUIRE(stream.synchronize().ok());
    CHECK(copies() - turn == 2);
  }
  SECTION("a zero-fill after a held write of the same bytes wins") {
    std::memcpy(staging.data(), data.data(), 4096);
    REQUIRE(stream.write(0, staging.data(), 4096).ok());
    REQUIRE(stream.zero(0, 4096).ok());
    REQUIRE(stream.synchronize().ok());
    const auto stored = get(stream, staging, 0, 4096);
    CHECK(std::all_of(stored.begin(), stored.end(), [](std::byte b) { return b == std::byte{0}; }));
  }
}

TEST_CASE("a thread that did not bind the context cannot copy") {
  Setup setup;
  CopyStream stream(setup.store);
  PinnedBuffer staging(setup.context, 4096);
  cuda::Status unbound, bound;
  std::thread([&] {
    unbound = stream.write(0, staging.data(), 4096);
    if (unbound.ok()) unbound = stream.synchronize();  // held until then
  }).join();
  CHECK(unbound == CUDA_ERROR_INVALID_CONTEXT);
  std::thread([&] {
    if (setup.context.bind_current_thread().ok()) {
      bound = stream.write(0, staging.data(), 4096);
      if (bound.ok()) bound = stream.synchronize();
    } else {
      bound = CUDA_ERROR_INVALID_CONTEXT;
    }
  }).join();
  CHECK(bound.ok());
}

TEST_CASE("worker threads copy concurrently on their own streams") {
  Setup setup;
  constexpr int workers = 4;
  constexpr uint64_t share = export_bytes / workers;
  std::vector<std::thread> threads;
  std::vector<int> mismatches(workers, -1);
  for (int worker = 0; worker < workers; ++worker) {
    threads.emplace_back([&, worker] {
      if (!setup.context.bind_current_thread().ok()) return;
      CopyStream stream(setup.store);
      PinnedBuffer staging(setup.context, 64 * 1024);
      int bad = 0;
      std::mt19937 random(static_cast<uint32_t>(worker));
      for (int round = 0; round < 50; ++round) {
        const size_t length = 1 + random() % staging.size();
        const uint64_t offset = worker * share + random() % (share - length);
        std::vector<std::byte> data(length);
        for (auto& byte : data)
          byte = static_cast<std::byte>(random());
        std::memcpy(staging.data(), data.data(), length);
        if (!stream.write(offset, staging.data(), length).ok() || !stream.synchronize().ok()) {
          ++bad;
          continue;
        }
        std::memset(staging.data(), 0, length);
        if (!stream.read(staging.data(), offset, length).ok() || !stream.synchronize().ok() ||
            std::memcmp(staging.data(), data.data(), length) != 0) {
          ++bad;
        }
      }
      mismatches[worker] = bad;
    });
  }
  for (auto& thread : threads)
    thread.join();
  for (int worker = 0; worker < workers; ++worker) {
    INFO("worker " << worker);
    CHECK(mismatches[worker] == 0);
  }
}

TEST_CASE("pinned buffers and streams are moved, not copied") {
  Setup setup;
  PinnedBuffer first(setup.context, 8192);
  std::byte* data = first.data();
  PinnedBuffer second = std::move(first);
  CHECK(second.data() == data);
  CHECK(second.size() == 8192);
  CHECK(first.data() == nullptr);
  CopyStream stream(setup.store);
  CopyStream moved = std::move(stream);
  CHECK(stream.handle() == nullptr);
  put(moved, second, 0, random_bytes(8192, 8));
}

TEST_CASE("flush() sends a round's small copies once, synchronize() only waits for them") {
  Setup setup;
  const auto kernel = CopyKernel::load(setup.context);
  REQUIRE(kernel);
  CopyStream stream(setup.store, kernel.get());
  constexpr size_t block = 4096;
  constexpr size_t blocks = 8;
  PinnedBuffer staging(setup.context, blocks * block, cuda::CU_MEMHOSTREGISTER_DEVICEMAP);
  REQUIRE(stream.map(staging));
  const auto data = random_bytes(blocks * block, 11);
  std::memcpy(staging.data(), data.data(), data.size());
  // Scattered blocks, each in a different chunk: one move each, one launch.
  auto offset_of = [](size_t i) { return i * chunk + (i + 1) * block; };
  for (size_t i = 0; i < blocks; ++i)
    REQUIRE(stream.write(offset_of(i), staging.data() + i * block, block).ok());
  REQUIRE(stream.flush().ok());
  while (stream.busy()) {
  }
  // Done, so the source may change: a second launch from synchronize() would
  // now copy this instead.
  std::memset(staging.data(), 0x55, staging.size());
  REQUIRE(stream.synchronize().ok());
  PinnedBuffer back(setup.context, block);
  for (size_t i = 0; i < blocks; ++i) {
    const auto stored = get(stream, back, offset_of(i), block);
    CHECK(std::memcmp(stored.data(), data.data() + i * block, block) == 0);
  }
}

TEST_CASE("copy-kernel moves that cross a chunk boundary land on both sides of it") {
  Setup setup;
  const auto kernel = CopyKernel::load(setup.context);
  REQUIRE(kernel);
  CopyStream stream(setup.store, kernel.get());
  constexpr size_t block = 4096;
  PinnedBuffer staging(setup.context, 4 * block, cuda::CU_MEMHOSTREGISTER_DEVICEMAP);
  REQUIRE(stream.map(staging));
  const auto data = random_bytes(4 * block, 13);
  std::memcpy(staging.data(), data.data(), data.size());
  // Two 8 KiB writes, each half in one chunk and half in the next: one launch
  // of two moves, each spanning two physical allocations.
  const uint64_t launches = setup.control()->copies.load();
  REQUIRE(stream.write(chunk - block, staging.data(), 2 * block).ok());
  REQUIRE(stream.write(3 * chunk - block, staging.data() + 2 * block, 2 * block).ok());
  REQUIRE(stream.synchronize().ok());
  CHECK(setup.control()->copies.load() - launches == 1);
  PinnedBuffer back(setup.context, 2 * block);
  CHECK(get(stream, back, chunk - block, 2 * block) ==
        std::vector<std::byte>(data.begin(), data.begin() + 2 * block));
  CHECK(get(stream, back, 3 * chunk - block, 2 * block) ==
        std::vector<std::byte>(data.begin() + 2 * block, data.end()));
}

TEST_CASE("a failed launch of collected copies redoes each as its own call, and names the lost") {
  Setup setup;
  const auto kernel = CopyKernel::load(setup.context);
  REQUIRE(kernel);
  CopyStream stream(setup.store, kernel.get());
  constexpr size_t block = 4096;
  constexpr size_t blocks = 6;
  PinnedBuffer staging(setup.context, blocks * block, cuda::CU_MEMHOSTREGISTER_DEVICEMAP);
  REQUIRE(stream.map(staging));
  const auto data = random_bytes(blocks * block, 12);
  std::memcpy(staging.data(), data.data(), data.size());
  int tags[blocks] = {};
  for (size_t i = 0; i < blocks; ++i)
    REQUIRE(stream.write(i * chunk, staging.data() + i * block, block, &tags[i]).ok());
  static std::vector<int*> lost;
  lost.clear();
  auto note = [](void* tag) { lost.push_back(static_cast<int*>(tag)); };

  SECTION("the launch fails, every redo works: nothing is lost") {
    setup.control()->fail_next_copies.store(1);
    const auto outcome = stream.synchronize(note);
    CHECK(outcome.error == CUDA_ERROR_OUT_OF_MEMORY);
    CHECK(outcome.failed_calls == 1);
    CHECK_FALSE(outcome.all_lost);
    CHECK(lost.empty());
    PinnedBuffer back(setup.context, block);
    for (size_t i = 0; i < blocks; ++i) {
      const auto stored = get(stream, back, i * chunk, block);
      CHECK(std::memcmp(stored.data(), data.data() + i * block, block) == 0);
    }
  }
  SECTION("the launch and the first two redone copies fail: those two are named") {
    setup.control()->fail_next_copies.store(3);
    const auto outcome = stream.synchronize(note);
    CHECK(outcome.failed_calls == 3);
    CHECK_FALSE(outcome.all_lost);
    CHECK(lost == std::vector<int*>{&tags[0], &tags[1]});
    PinnedBuffer back(setup.context, block);
    for (size_t i = 2; i < blocks; ++i) {
      const auto stored = get(stream, back, i * chunk, block);
      CHECK(std::memcmp(stored.data(), data.data() + i * block, block) == 0);
    }
  }
  SECTION("a lost device: nobody can tell what landed") {
    setup.control()->lose_device.store(1);
    const auto outcome = stream.synchronize(note);
    CHECK(outcome.error.sticky());
    CHECK(outcome.all_lost);
  }
  CHECK(setup.control()->failed_copies.load() >= 1);
}

TEST_CASE("a lone collected copy that fails is not redone: its call was its own") {
  Setup setup;
  const auto kernel = CopyKernel::load(setup.context);
  REQUIRE(kernel);
  CopyStream stream(setup.store, kernel.get());
  PinnedBuffer staging(setup.context, 4096, cuda::CU_MEMHOSTREGISTER_DEVICEMAP);
  REQUIRE(stream.map(staging));
  int tag = 0;
  REQUIRE(stream.write(0, staging.data(), 4096, &tag).ok());
  static void* lost = nullptr;
  lost = nullptr;
  setup.control()->fail_next_copies.store(1);
  const auto outcome = stream.synchronize([](void* t) { lost = t; });
  CHECK(outcome.failed_calls == 1);
  CHECK_FALSE(outcome.all_lost);
  CHECK(lost == &tag);
  CHECK(setup.control()->failed_copies.load() == 1);
  CHECK(setup.control()->copies.load() == 0);  // no second call
}

TEST_CASE("a failed coalesced copy carrying several tags is redone one call per tag") {
  Setup setup;
  CopyStream stream(setup.store);  // no copy kernel: every call is a DMA copy
  constexpr size_t block = 4096;
  constexpr size_t blocks = 4;
  PinnedBuffer staging(setup.context, blocks * block);
  const auto data = random_bytes(blocks * block, 21);
  static std::vector<int*> lost;
  lost.clear();
  auto note = [](void* tag) { lost.push_back(static_cast<int*>(tag)); };
  int tags[blocks] = {};
  auto copies = [&] { return setup.control()->copies.load(); };

  SECTION("writes of four requests back to back: one call; it fails, one redone part fails") {
    std::memcpy(staging.data(), data.data(), data.size());
    for (size_t i = 0; i < blocks; ++i)
      REQUIRE(stream.write(i * block, staging.data() + i * block, block, &tags[i]).ok());
    setup.control()->fail_next_copies.store(2);  // the coalesced call, then the first redo
    const uint64_t before = copies();
    const auto outcome = stream.synchronize(note);
    CHECK(outcome.error == CUDA_ERROR_OUT_OF_MEMORY);
    CHECK(outcome.failed_calls == 2);
    CHECK_FALSE(outcome.all_lost);
    CHECK(lost == std::vector<int*>{&tags[0]});
    CHECK(copies() - before == blocks - 1);  // the three redone parts that landed
    PinnedBuffer back(setup.context, block);
    for (size_t i = 1; i < blocks; ++i) {
      const auto stored = get(stream, back, i * block, block);
      CHECK(std::memcmp(stored.data(), data.data() + i * block, block) == 0);
    }
  }
  SECTION("reads of four requests back to back: one call; it fails, every redo lands") {
    put(stream, staging, 0, data);
    std::memset(staging.data(), 0, staging.size());
    for (size_t i = 0; i < blocks; ++i)
      REQUIRE(stream.read(staging.data() + i * block, i * block, block, &tags[i]).ok());
    setup.control()->fail_next_copies.store(1);
    const auto outcome = stream.synchronize(note);
    CHECK(outcome.failed_calls == 1);
    CHECK_FALSE(outcome.all_lost);
    CHECK(lost.empty());
    CHECK(std::memcmp(staging.data(), data.data(), data.size()) == 0);
  }
  SECTION("one request's payload in many pieces: one call, its own; it fails and is not redone") {
    std::memcpy(staging.data(), data.data(), data.size());
    for (size_t i = 0; i < blocks; ++i)
      REQUIRE(stream.write(i * block, staging.data() + i * block, block, &tags[0]).ok());
    setup.control()->fail_next_copies.store(1);
    const uint64_t before = copies();
    const auto outcome = stream.synchronize(note);
    CHECK(outcome.failed_calls == 1);
    CHECK(lost == std::vector<int*>{&tags[0]});
    CHECK(copies() - before == 0);
  }
  SECTION("a lost device: nothing can be told apart") {
    for (size_t i = 0; i < blocks; ++i)
      REQUIRE(stream.write(i * block, staging.data() + i * block, block, &tags[i]).ok());
    setup.control()->lose_device.store(1);
    const auto outcome = stream.synchronize(note);
    CHECK(outcome.error.sticky());
    CHECK(outcome.all_lost);
    CHECK(lost.empty());
  }
}

TEST_CASE("a failed launch redoes each tag's part, also parts that were coalesced in the table") {
  Setup setup;
  const auto kernel = CopyKernel::load(setup.context);
  REQUIRE(kernel);
  CopyStream stream(setup.store, kernel.get());
  constexpr size_t block = 4096;
  PinnedBuffer staging(setup.context, 4 * block, cuda::CU_MEMHOSTREGISTER_DEVICEMAP);
  REQUIRE(stream.map(staging));
  const auto data = random_bytes(4 * block, 22);
  std::memcpy(staging.data(), data.data(), data.size());
  int a = 0, b = 0, c = 0;
  // a and b continue each other: one move; c is elsewhere: a second move.
  REQUIRE(stream.write(0, staging.data(), block, &a).ok());
  REQUIRE(stream.write(block, staging.data() + block, block, &b).ok());
  REQUIRE(stream.write(chunk, staging.data() + 2 * block, block, &c).ok());
  static std::vector<int*> lost;
  lost.clear();
  setup.control()->fail_next_copies.store(3);  // the launch, then the redone parts of a and b
  const auto outcome =
      stream.synchronize([](void* tag) { lost.push_back(static_cast<int*>(tag)); });
  CHECK(outcome.failed_calls == 3);
  CHECK_FALSE(outcome.all_lost);
  CHECK(lost == std::vector<int*>{&a, &b});
  PinnedBuffer back(setup.context, block);
  const auto stored = get(stream, back, chunk, block);
  CHECK(std::memcmp(stored.data(), data.data() + 2 * block, block) == 0);
}
