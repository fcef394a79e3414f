// VRAM allocation with back-off, the offset -> device memory mapping, and
// releasing and taking again one chunk's VRAM, against the fake driver.

#include <catch2/catch.hpp>

#include <sys/mman.h>

#include <cstring>
#include <optional>
#include <thread>

#include "common/byte_size.hpp"
#include "common/exit_codes.hpp"
#include "common/startup_error.hpp"
#include "fake_cuda_support.hpp"
#include "store/copy_stream.hpp"
#include "store/pinned_buffer.hpp"
#include "store/vram_store.hpp"

using namespace vramswap;
using namespace vramswap::store;
using Catch::Matchers::Contains;
using cuda::CUDA_ERROR_INVALID_VALUE;
using cuda::CUDA_SUCCESS;

namespace {

// A small fake GPU: 256 MiB, 16 MiB of it kept by the "driver", with a
// control block to watch its allocations.
struct SmallGpu {
  SmallGpu() {
    fake.set("VRAMSWAP_FAKE_MEMORY", "256M");
    fake.set("VRAMSWAP_FAKE_RESERVED", "16M");
    fake.set("VRAMSWAP_FAKE_CONTROL", dir.file("control"));
  }
  test::FakeCuda fake;
  test::TempDir dir;
};

uint64_t allocated_bytes(const std::string& control_path) {
  return test::ControlBlock(control_path)->bytes_allocated.load();
}

}  // namespace

TEST_CASE("an allocation that fits is one range of device addresses over whole chunks") {
  SmallGpu gpu;
  const auto driver = cuda::Driver::load();
  cuda::Context context(driver, 0);
  {
    VramStore store(context, 8 * MiB);
    CHECK(store.size() == 0);
    test::StderrCapture log;
    CHECK(store.allocate(64 * MiB, 16 * MiB) == 64 * MiB);
    CHECK(log.text().find("warning") == std::string::npos);
    CHECK_THAT(log.text(), Contains("64.0 MiB of VRAM allocated in 8 chunks of 8.0 MiB"));
    CHECK(store.size() == 64 * MiB);
    CHECK(store.requested_bytes() == 64 * MiB);
    CHECK(store.backed_off_bytes() == 0);
    CHECK(store.chunk_bytes() == 8 * MiB);
    CHECK(store.chunk_count() == 8);
    CHECK(store.committed_bytes() == 64 * MiB);
    for (size_t i = 0; i < store.chunk_count(); ++i)
      CHECK(store.committed(i));
    CHECK(store.base() != 0);
    CHECK(allocated_bytes(gpu.dir.file("control")) == 64 * MiB);
    CHECK(test::ControlBlock(gpu.dir.file("control"))->creates.load() == 8);
    CHECK(context.memory_info().free_bytes == 240 * MiB - 64 * MiB);
  }
  // The destructor gave it all back.
  CHECK(allocated_bytes(gpu.dir.file("control")) == 0);
}

TEST_CASE("the export size is rounded down to whole 4 KiB blocks, the VRAM up to chunks") {
  SmallGpu gpu;
  const auto driver = cuda::Driver::load();
  cuda::Context context(driver, 0);
  VramStore store(context, 4 * MiB);
  CHECK(store.allocate(10 * MiB + 4096 + 123, 0) == 10 * MiB + 4096);
  CHECK(store.size() % 4096 == 0);
  CHECK(store.chunk_count() == 3);
  CHECK(allocated_bytes(gpu.dir.file("control")) == 12 * MiB);
  CHECK(store.locate(10 * MiB).bytes == 4096);
  CHECK(store.locate(10 * MiB + 4096).bytes == 0);
}

TEST_CASE("allocation backs off when the driver refuses, and says so") {
  SmallGpu gpu;
  // The driver refuses above 40 MiB although cuMemGetInfo reports 240 free:
  // what a GPU shared with other programs does between our check and our ask.
  gpu.fake.set("VRAMSWAP_FAKE_ALLOC_FAIL_ABOVE", "40M");
  const auto driver = cuda::Driver::load();
  cuda::Context context(driver, 0);
  REQUIRE(context.memory_info().free_bytes == 240 * MiB);
  VramStore store(context, 8 * MiB);
  test::StderrCapture log;
  CHECK(store.allocate(56 * MiB, 16 * MiB) == 40 * MiB);
  const std::string logged = log.text();
  CHECK_THAT(logged, Contains("warning: GPU 0: asked for 56.0 MiB of VRAM, got 40.0 MiB "
                              "(backed off by 16.0 MiB): the driver refused more"));
  CHECK(store.size() == 40 * MiB);
  CHECK(store.chunk_count() == 5);
  CHECK(store.requested_bytes() == 56 * MiB);
  CHECK(store.backed_off_bytes() == 16 * MiB);
  CHECK(allocated_bytes(gpu.dir.file("control")) == 40 * MiB);
}

TEST_CASE("a driver that cannot export VRAM as descriptors still gets its device, and says so") {
  SmallGpu gpu;
  gpu.fake.set("VRAMSWAP_FAKE_NO_SHAREABLE", "1");
  const auto driver = cuda::Driver::load();
  cuda::Context context(driver, 0);
  test::ControlBlock control(gpu.dir.file("control"));
  VramStore store(context, 2 * MiB);
  test::StderrCapture log;
  CHECK(store.allocate(16 * MiB, 16 * MiB) == 16 * MiB);
  const std::string logged = log.text();
  CHECK_THAT(logged, Contains("cannot export VRAM as file descriptors (CUDA_ERROR_NOT_SUPPORTED)"));
  CHECK(logged.find("cannot export", logged.find("cannot export") + 1) == std::string::npos);
  CHECK(control->creates.load() == 8);  // the refused ask is not counted: every chunk made once
  CHECK(allocated_bytes(gpu.dir.file("control")) == 16 * MiB);
  // The chunks serve like exportable ones.
  CopyStream stream(store);
  PinnedBuffer buffer(context, 4096);
  std::memset(buffer.data(), 0x5a, 4096);
  REQUIRE(stream.write(15 * MiB, buffer.data(), 4096).ok());
  REQUIRE(stream.synchronize().ok());
  std::memset(buffer.data(), 0, 4096);
  REQUIRE(stream.read(buffer.data(), 15 * MiB, 4096).ok());
  REQUIRE(stream.synchronize().ok());
  CHECK(static_cast<unsigned char>(buffer.data()[4095]) == 0x5a);
}

TEST_CASE("a refused cuMemCreate ends the allocation there, keeping the chunks before it") {
  SmallGpu gpu;
  const auto driver = cuda::Driver::load();
  cuda::Context context(driver, 0);
  test::ControlBlock control(gpu.dir.file("control"));
  control->fail_create_at.store(6);  // the 6th cuMemCreate: out of memory
  VramStore store(context, 2 * MiB);
  test::StderrCapture log;
  CHECK(store.allocate(32 * MiB, 0) == 10 * MiB);
  CHECK_THAT(log.text(), Contains("asked for 32.0 MiB of VRAM, got 10.0 MiB"));
  CHECK(control->creates.load() == 6);  // and no retry after the refusal
  CHECK(allocated_bytes(gpu.dir.file("control")) == 10 * MiB);
}

TEST_CASE("allocation stops at the end of the device's free memory") {
  SmallGpu gpu;
  const auto driver = cuda::Driver::load();
  cuda::Context context(driver, 0);
  VramStore store(context);
  test::StderrCapture log;
  CHECK(store.allocate(1 * GiB, 0) == 240 * MiB);
  CHECK_THAT(log.text(), Contains("asked for 1.0 GiB of VRAM, got 240.0 MiB"));
  CHECK(context.memory_info().free_bytes == 0);
}

TEST_CASE("less than the floor is refused, and nothing stays allocated") {
  SmallGpu gpu;
  gpu.fake.set("VRAMSWAP_FAKE_ALLOC_FAIL_ABOVE", "24M");
  const auto driver = cuda::Driver::load();
  cuda::Context context(driver, 0);
  VramStore store(context, 8 * MiB);
  try {
    store.allocate(64 * MiB, 32 * MiB);
    FAIL("an allocation below the floor was accepted");
  } catch (const StartupError& error) {
    CHECK(error.exit_status() == exit_code::unavailable);
    CHECK(std::string(error.what()) ==
          "only 24.0 MiB of VRAM could be allocated on GPU 0, below the minimum 32.0 MiB; free "
          "VRAM (nvidia-smi shows who holds it) or lower size/min_size");
  }
  CHECK(store.size() == 0);
  CHECK(store.chunk_count() == 0);
  CHECK(allocated_bytes(gpu.dir.file("control")) == 0);
  CHECK(context.memory_info().free_bytes == 240 * MiB);
}

TEST_CASE("a CUDA error other than out-of-memory fails the allocation outright") {
  SmallGpu gpu;
  const auto driver = cuda::Driver::load();
  cuda::Context context(driver, 0);
  VramStore store(context, 8 * MiB);
  // A thread that never bound the context: the driver says INVALID_CONTEXT.
  std::string message;
  std::thread([&] {
    try {
      store.allocate(64 * MiB, 0);
    } catch (const StartupError& error) {
      message = error.what();
    }
  }).join();
  CHECK_THAT(message, Contains("allocating VRAM on GPU 0 failed: cuMemAddressReserve(64.0 MiB) "
                               "returned CUDA_ERROR_INVALID_CONTEXT"));
  CHECK_THAT(message, Contains("bind_current_thread"));
  CHECK(allocated_bytes(gpu.dir.file("control")) == 0);
}

TEST_CASE("allocation arguments are checked") {
  SmallGpu gpu;
  const auto driver = cuda::Driver::load();
  cuda::Context context(driver, 0);
  CHECK_THROWS_AS(VramStore(context, 3 * MiB), std::invalid_argument);
  CHECK_THROWS_AS(VramStore(context, 1 * MiB), std::invalid_argument);
  VramStore store(context, 8 * MiB);
  try {
    store.allocate(16 * MiB, 32 * MiB);
    FAIL("a floor above the request was accepted");
  } catch (const StartupError& error) {
    CHECK(error.exit_status() == exit_code::config);
    CHECK_THAT(std::string(error.what()), Contains("lower min_size or raise size"));
  }
  VramStore tiny(context, 8 * MiB);
  CHECK_THROWS_AS(tiny.allocate(4095, 0), StartupError);
  VramStore twice(context, 8 * MiB);
  twice.allocate(8 * MiB, 0);
  CHECK_THROWS_AS(twice.allocate(8 * MiB, 0), std::logic_error);
}

TEST_CASE("export offsets map to one contiguous device range") {
  SmallGpu gpu;
  const auto driver = cuda::Driver::load();
  cuda::Context context(driver, 0);
  VramStore store(context, 2 * MiB);
  store.allocate(8 * MiB, 0);
  const cuda::CUdeviceptr base = store.base();
  REQUIRE(base != 0);

  SECTION("locate: from the offset to the end of the export, across chunks") {
    CHECK(store.locate(0).device_ptr == base);
    CHECK(store.locate(0).bytes == 8 * MiB);
    CHECK(store.locate(2 * MiB - 1).device_ptr == base + 2 * MiB - 1);
    CHECK(store.locate(5 * MiB).device_ptr == base + 5 * MiB);
    CHECK(store.locate(5 * MiB).bytes == 3 * MiB);
    CHECK(store.locate(8 * MiB).bytes == 0);
    CHECK(store.locate(UINT64_MAX).bytes == 0);
  }
  SECTION("contains: ranges outside the export, overflowing ones included, are refused") {
    CHECK(store.contains(0, 8 * MiB));
    CHECK(store.contains(8 * MiB, 0));
    CHECK(store.contains(2 * MiB - 100, 2 * MiB + 200));
    CHECK_FALSE(store.contains(8 * MiB, 1));
    CHECK_FALSE(store.contains(8 * MiB - 4096, 8192));
    CHECK_FALSE(store.contains(UINT64_MAX, 2));
    CHECK_FALSE(store.contains(4096, UINT64_MAX));
  }
}

namespace {

// A store of 4 chunks of 2 MiB, each filled with its own byte value.
struct FilledStore {
  explicit FilledStore(SmallGpu& gpu)
      : driver(cuda::Driver::load()),
        context(driver, 0),
        store(context, 2 * MiB),
        staging(context, 2 * MiB),
        control(gpu.dir.file("control")) {
    store.allocate(8 * MiB, 0);
    stream.emplace(store);
    for (size_t chunk = 0; chunk < 4; ++chunk)
      fill(chunk, static_cast<unsigned char>(0xa0 + chunk));
  }
  void fill(size_t chunk, unsigned char value) {
    std::memset(staging.data(), value, 2 * MiB);
    REQUIRE(stream->write(chunk * 2 * MiB, staging.data(), 2 * MiB).ok());
    REQUIRE(stream->synchronize().ok());
  }
  // Whether every byte of the chunk reads back as `value`.
  bool holds(size_t chunk, unsigned char value) {
    std::memset(staging.data(), ~value, 2 * MiB);
    if (!stream->read(staging.data(), chunk * 2 * MiB, 2 * MiB).ok()) return false;
    if (!stream->synchronize().ok()) return false;
    for (size_t i = 0; i < 2 * MiB; ++i) {
      if (static_cast<unsigned char>(staging.data()[i]) != value) return false;
    }
    return true;
  }
  uint64_t free_vram() const { return context.memory_info().free_bytes; }

  cuda::Driver driver;
  cuda::Context context;
  VramStore store;
  PinnedBuffer staging;
  std::optional<CopyStream> stream;
  test::ControlBlock control;
};

}  // namespace

TEST_CASE("releasing a chunk gives its VRAM back, committing takes it again, at its place") {
  SmallGpu gpu;
  FilledStore filled(gpu);
  VramStore& store = filled.store;
  const uint64_t free_before = filled.free_vram();

  REQUIRE(store.release(1).ok());
  CHECK_FALSE(store.committed(1));
  CHECK(store.committed_bytes() == 6 * MiB);
  CHECK(filled.free_vram() == free_before + 2 * MiB);
  CHECK(allocated_bytes(gpu.dir.file("control")) == 6 * MiB);
  CHECK(store.release(1).ok());  // again: nothing to do
  CHECK(filled.free_vram() == free_before + 2 * MiB);
  // The other chunks keep their data; the export keeps its addresses.
  CHECK(filled.holds(0, 0xa0));
  CHECK(filled.holds(2, 0xa2));
  CHECK(filled.holds(3, 0xa3));
  CHECK(store.locate(2 * MiB).device_ptr == store.base() + 2 * MiB);
  // No copy reaches a released chunk: the driver refuses it (the mover keeps
  // requests away from it; this is the last line).
  std::memset(filled.staging.data(), 0, 4096);
  const cuda::Status write = filled.stream->write(2 * MiB, filled.staging.data(), 4096);
  const cuda::Status synced = filled.stream->synchronize();
  CHECK_FALSE((write.ok() && synced.ok()));

  REQUIRE(store.commit(1).ok());
  CHECK(store.committed(1));
  CHECK(store.committed_bytes() == 8 * MiB);
  CHECK(filled.free_vram() == free_before);
  CHECK(store.commit(1).ok());  // again: nothing to do
  CHECK(filled.free_vram() == free_before);
  // Readable and writable again (its old contents are gone: the mover
  // restores them).
  filled.fill(1, 0x5c);
  CHECK(filled.holds(1, 0x5c));
  CHECK(filled.holds(0, 0xa0));
  CHECK(filled.holds(2, 0xa2));
  // A range across the re-committed chunk is still one copy.
  const uint64_t copies = filled.control->copies.load();
  REQUIRE(filled.stream->read(filled.staging.data(), 2 * MiB - 4096, 8192).ok());
  REQUIRE(filled.stream->synchronize().ok());
  CHECK(filled.control->copies.load() - copies == 1);
  CHECK(static_cast<unsigned char>(filled.staging.data()[0]) == 0xa0);
  CHECK(static_cast<unsigned char>(filled.staging.data()[4096]) == 0x5c);
}

TEST_CASE("every chunk can be released and committed again, in any order") {
  SmallGpu gpu;
  FilledStore filled(gpu);
  VramStore& store = filled.store;
  const uint64_t free_before = filled.free_vram();
  for (size_t chunk : {3, 0, 2, 1})
    REQUIRE(store.release(chunk).ok());
  CHECK(store.committed_bytes() == 0);
  CHECK(filled.free_vram() == free_before + 8 * MiB);
  CHECK(allocated_bytes(gpu.dir.file("control")) == 0);
  for (size_t chunk : {2, 0, 3, 1})
    REQUIRE(store.commit(chunk).ok());
  CHECK(filled.free_vram() == free_before);
  for (size_t chunk = 0; chunk < 4; ++chunk)
    filled.fill(chunk, static_cast<unsigned char>(chunk));
  for (size_t chunk = 0; chunk < 4; ++chunk) {
    CHECK(filled.holds(chunk, static_cast<unsigned char>(chunk)));
  }
}

TEST_CASE("a commit the driver refuses is reported, and leaves the chunk released") {
  SmallGpu gpu;
  FilledStore filled(gpu);
  VramStore& store = filled.store;
  REQUIRE(store.release(2).ok());
  const uint64_t free_released = filled.free_vram();
  // Another program took the VRAM: the next cuMemCreate is refused.
  filled.control->fail_create_at.store(filled.control->creates.load() + 1);
  CHECK(store.commit(2) == cuda::CUDA_ERROR_OUT_OF_MEMORY);
  CHECK_FALSE(store.committed(2));
  CHECK(store.committed_bytes() == 6 * MiB);
  CHECK(filled.free_vram() == free_released);  // nothing held
  CHECK(filled.holds(3, 0xa3));
  // Room again: the next commit works.
  REQUIRE(store.commit(2).ok());
  filled.fill(2, 0x11);
  CHECK(filled.holds(2, 0x11));
}

TEST_CASE("release and commit refuse chunks outside the export") {
  SmallGpu gpu;
  FilledStore filled(gpu);
  CHECK(filled.store.release(4) == cuda::CUDA_ERROR_INVALID_VALUE);
  CHECK(filled.store.commit(4) == cuda::CUDA_ERROR_INVALID_VALUE);
  CHECK(filled.store.committed_bytes() == 8 * MiB);
}

TEST_CASE("a store destroyed with chunks released frees the rest") {
  SmallGpu gpu;
  const auto driver = cuda::Driver::load();
  cuda::Context context(driver, 0);
  {
    VramStore store(context, 2 * MiB);
    store.allocate(8 * MiB, 0);
    REQUIRE(store.release(0).ok());
    REQUIRE(store.release(2).ok());
    CHECK(allocated_bytes(gpu.dir.file("control")) == 4 * MiB);
  }
  // With the context still alive (its reset would free everything anyway).
  CHECK(allocated_bytes(gpu.dir.file("control")) == 0);
  CHECK(context.memory_info().free_bytes == 240 * MiB);
}

namespace {

// Records what the store tells its observer.
struct RecordingObserver final : ChunkObserver {
  void chunk_committed(size_t chunk) noexcept override {
    events.push_back("+" + std::to_string(chunk));
  }
  void chunk_released(size_t chunk) noexcept override {
    events.push_back("-" + std::to_string(chunk));
  }
  std::vector<std::string> events;
};

}  // namespace

TEST_CASE("an observer hears of every commit and release that changed a chunk, and only those") {
  SmallGpu gpu;
  const auto driver = cuda::Driver::load();
  cuda::Context context(driver, 0);
  test::ControlBlock control(gpu.dir.file("control"));
  RecordingObserver observer;
  {
    VramStore store(context, 2 * MiB);
    store.allocate(8 * MiB, 0);
    store.set_observer(&observer);
    REQUIRE(store.release(1).ok());
    REQUIRE(store.release(1).ok());  // no-op: nothing to tell
    CHECK(store.commit(9) == CUDA_ERROR_INVALID_VALUE);
    control->fail_create_at.store(control->creates.load() + 1);
    CHECK(store.commit(1) == cuda::CUDA_ERROR_OUT_OF_MEMORY);  // failed: nothing to tell
    REQUIRE(store.commit(1).ok());
    REQUIRE(store.commit(1).ok());  // no-op
    CHECK(observer.events == std::vector<std::string>{"-1", "+1"});
    // What the destructor frees is not told.
  }
  CHECK(observer.events.size() == 2);
}

TEST_CASE("an exported chunk is imported at a released chunk's place with its bytes") {
  SmallGpu gpu;
  FilledStore filled(gpu);
  VramStore& store = filled.store;
  REQUIRE(store.exportable());
  UniqueFd fd;
  REQUIRE(store.export_chunk(1, fd).ok());
  REQUIRE(fd);
  UniqueFd none;
  CHECK(store.export_chunk(4, none) == CUDA_ERROR_INVALID_VALUE);

  // Released, the descriptor keeps the memory; imported at chunk 3's place.
  REQUIRE(store.release(1).ok());
  CHECK(store.export_chunk(1, none) == CUDA_ERROR_INVALID_VALUE);
  CHECK(store.import_chunk(0, fd.get()) == CUDA_ERROR_INVALID_VALUE);  // committed
  REQUIRE(store.release(3).ok());
  REQUIRE(store.import_chunk(3, fd.get()).ok());
  CHECK(store.committed(3));
  CHECK(store.committed_bytes() == 6 * MiB);
  CHECK(filled.holds(3, 0xa1));
  filled.fill(3, 0x77);  // and it is writable
  CHECK(filled.holds(3, 0x77));
  // Not a descriptor of VRAM: refused, nothing held.
  UniqueFd other(memfd_create("not-vram", MFD_CLOEXEC));
  CHECK_FALSE(store.import_chunk(1, other.get()).ok());
  CHECK_FALSE(store.committed(1));
  CHECK(store.import_chunk(1, -1) == CUDA_ERROR_INVALID_VALUE);
}
