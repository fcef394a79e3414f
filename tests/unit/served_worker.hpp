// One Worker built from its ServingContext as the Server builds it, serving
// kernel-side connections (socket pairs, no handshake) over VRAM on the fake
// driver; optionally with the elastic tier (a chunk map, a spill file in a
// temporary directory and a chunk mover on a thread of its own).

#pragma once

#include <catch2/catch.hpp>

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <string>
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
#include "store/chunk_map.hpp"
#include "store/chunk_mover.hpp"
#include "store/copy_kernel.hpp"
#include "store/copy_stream.hpp"
#include "store/pinned_buffer.hpp"
#include "store/spill_area.hpp"
#include "store/vram_store.hpp"
#include "support/nbd_test_client.hpp"

namespace vramswap::test {

inline constexpr uint64_t kExportBytes = 16 * MiB;
inline constexpr uint64_t kChunk = 2 * MiB;
inline constexpr uint32_t kEio = 5, kEinval = 22, kEnospc = 28;

struct WorkerOptions {
  bool copy_kernel = false;
  bool verify = false;
  bool elastic = false;          // a chunk map, a spill area and a mover
  unsigned copy_latency_us = 0;  // a slow GPU (every stream's round)
};

// A thread bound to the context that runs the mover's moves, one at a time,
// as the daemon's mover thread will (VramStore::release and commit are for
// one thread).
class MoverThread {
 public:
  enum class Move { evict, restore, give_storage };

  MoverThread(cuda::Context& context, store::ChunkMover& mover)
      : mover_(mover), thread_([this, &context] { run(context); }) {}
  ~MoverThread() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  std::future<store::MoveResult> post(Move move, size_t chunk) {
    std::lock_guard lock(mutex_);
    tasks_.push_back(Task{move, chunk, {}});
    std::future<store::MoveResult> done = tasks_.back().done.get_future();
    wake_.notify_all();
    return done;
  }
  store::MoveResult move(Move move, size_t chunk) { return post(move, chunk).get(); }

 private:
  struct Task {
    Move move;
    size_t chunk;
    std::promise<store::MoveResult> done;
  };

  void run(cuda::Context& context) {
    const bool bound = context.bind_current_thread().ok();  // (no Catch assertions here)
    for (;;) {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stop_ || !tasks_.empty(); });
      if (tasks_.empty()) return;
      Task task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      const auto deadline = store::Deadline::after(std::chrono::seconds(5));
      store::MoveResult result;
      if (bound) {
        switch (task.move) {
          case Move::evict:
            result = mover_.evict(task.chunk, deadline);
            break;
          case Move::restore:
            result = mover_.restore(task.chunk, deadline);
            break;
          case Move::give_storage:
            result =
                mover_.restore(task.chunk, deadline, store::ChunkMover::Placement::vram_or_spill);
            break;
        }
      }
      task.done.set_value(result);
    }
  }

  store::ChunkMover& mover_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Task> tasks_;
  bool stop_ = false;
  std::thread thread_;
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
    fake.set("VRAMSWAP_FAKE_COPY_LATENCY_US", std::to_string(options.copy_latency_us));
    driver = std::make_unique<cuda::Driver>(cuda::Driver::load());
    context = std::make_unique<cuda::Context>(*driver, 0);
    store = std::make_unique<store::VramStore>(*context, 2 * MiB);
    store->allocate(kExportBytes, kExportBytes);
    REQUIRE(context->bind_current_thread().ok());
    write_vram(0, std::vector<uint8_t>(kExportBytes, 0));  // what verify's checksums start from
    if (options.copy_kernel) copy_kernel = store::CopyKernel::load(*context);
    if (options.verify) checksums = std::make_unique<store::BlockChecksums>(kExportBytes);
    if (options.elastic) {
      chunks = std::make_unique<store::ChunkMap>(kExportBytes, kChunk);
      spill = std::make_unique<store::SpillArea>(
          store::SpillArea::open(dir.file("spill"), kExportBytes, "worker"));
      mover = std::make_unique<store::ChunkMover>(*chunks, *store, *spill);
      mover_thread = std::make_unique<MoverThread>(*context, *mover);
      serving.chunks = chunks.get();
      serving.spill = spill.get();
      // As the daemon will: hand the chunk to the mover's thread, never wait.
      serving.want_storage = [this](size_t chunk) {
        storage_wanted.fetch_add(1);
        (void)mover_thread->post(MoverThread::Move::give_storage, chunk);
      };
    }

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
    worker = std::make_unique<engine::Worker>(0, serving);
    worker->start();
  }
  ~ServedWorker() {
    worker->stop_and_join();
    mover_thread.reset();
  }

  // A new kernel connection; the test holds the other end. `send_buffer`:
  // SO_SNDBUF of the worker's end (0: the system's default).
  NbdTestClient connect(int send_buffer = 0) {
    int ends[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) == 0);
    if (send_buffer > 0) {
      REQUIRE(setsockopt(ends[0], SOL_SOCKET, SO_SNDBUF, &send_buffer, sizeof send_buffer) == 0);
    }
    engine::Connection* c = pool.acquire(engine::Origin::kernel);
    REQUIRE(c != nullptr);
    c->fd = ends[0];
    c->origin = engine::Origin::kernel;
    worker->adopt(c);
    return NbdTestClient(UniqueFd(ends[1]));
  }

  ControlBlock control() const { return ControlBlock(dir.file("control")); }

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
  // Straight from the spill file (4 KiB-aligned offset and length).
  std::vector<uint8_t> read_spill(uint64_t offset, uint32_t length) {
    store::SpillBuffer buffer(length);
    REQUIRE(spill->read(offset, buffer.data(), length) == 0);
    auto* bytes = reinterpret_cast<const uint8_t*>(buffer.data());
    return std::vector<uint8_t>(bytes, bytes + length);
  }
  void write_spill(uint64_t offset, const std::vector<uint8_t>& bytes) {
    store::SpillBuffer buffer(bytes.size());
    std::memcpy(buffer.data(), bytes.data(), bytes.size());
    REQUIRE(spill->write(offset, buffer.data(), bytes.size()) == 0);
  }

  store::MoveResult move(MoverThread::Move how, size_t chunk) {
    return mover_thread->move(how, chunk);
  }

  uint64_t stat(const std::atomic<uint64_t> engine::WorkerStats::*counter) const {
    return (worker->stats().*counter).load();
  }

  FakeCuda fake;
  TempDir dir;
  std::unique_ptr<cuda::Driver> driver;
  std::unique_ptr<cuda::Context> context;
  std::unique_ptr<store::VramStore> store;
  std::unique_ptr<store::CopyKernel> copy_kernel;
  std::unique_ptr<store::BlockChecksums> checksums;
  std::unique_ptr<store::ChunkMap> chunks;
  std::unique_ptr<store::SpillArea> spill;
  std::unique_ptr<store::ChunkMover> mover;
  std::unique_ptr<MoverThread> mover_thread;
  std::atomic<int> storage_wanted{0};
  engine::ConnectionPool pool{4, 0};
  engine::Health health;
  engine::ServingContext serving;
  std::atomic<int> kernel_closed{0};
  std::unique_ptr<engine::Worker> worker;
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

}  // namespace vramswap::test
