#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/unique_fd.hpp"
#include "cuda/error.hpp"
#include "engine/busy_poll_policy.hpp"
#include "engine/chunk_gate.hpp"
#include "engine/connection.hpp"
#include "engine/connection_pool.hpp"
#include "engine/copy_round.hpp"
#include "engine/health.hpp"
#include "engine/limits.hpp"
#include "engine/reply_sender.hpp"
#include "engine/request_reader.hpp"
#include "engine/staging_arena.hpp"
#include "engine/stats.hpp"
#include "engine/verify_guard.hpp"
#include "nbd/handshake.hpp"
#include "nbd/transmission.hpp"
#include "store/copy_stream.hpp"
#include "store/pinned_buffer.hpp"

namespace vramswap::cuda {
class Context;
}
namespace vramswap::store {
class BlockChecksums;
class ChunkMap;
class CopyKernel;
class SpillArea;
class VramStore;
}  // namespace vramswap::store

namespace vramswap::engine {

// What every worker shares; owned by the Server, immutable while serving.
struct ServingContext {
  store::VramStore* store = nullptr;
  const store::CopyKernel* copy_kernel = nullptr;  // null: every copy by DMA
  store::BlockChecksums* checksums = nullptr;      // null: verify = no
  cuda::Context* cuda = nullptr;
  ConnectionPool* pool = nullptr;
  Health* health = nullptr;
  nbd::ExportGeometry geometry{};
  nbd::ExportDescription description{};
  EngineOptions options{};
  // Elastic VRAM (src/store/ELASTIC.md); both null: every block is always in
  // VRAM. Every request pins the chunks it touches, and each piece goes to
  // the tier its chunk is in: VRAM through the round's copies, the spill
  // area by synchronous O_DIRECT I/O, a chunk with no storage (`none`) reads
  // as zeros.
  store::ChunkMap* chunks = nullptr;
  store::SpillArea* spill = nullptr;
  // A write met a chunk with no storage: asks the elastic tier's mover to
  // give it some (VRAM, or its place in the spill area:
  // ChunkMover::restore(chunk, deadline, Placement::vram_or_spill)); the write waits
  // until the chunk is resident again. Called on the I/O path: it must not
  // block, allocate or log. Asked again every ChunkGate::storage_ask_interval_ns
  // while the write waits, so it may drop a request it cannot queue, and
  // must take a repeated one in stride.
  std::function<void(size_t chunk)> want_storage;
  // Run first on every worker thread (e.g. PR_SET_IO_FLUSHER, which is per thread).
  std::function<void()> on_thread_start;
  // A kernel connection ended (the kernel disconnected, or a socket died).
  std::function<void()> on_kernel_connection_closed;
};

// One thread serving many connections with non-blocking sockets and epoll.
//
// It works in rounds: take whatever input the ready connections have, queue
// the copies it asks for on the worker's CUDA stream (write payloads straight
// from the pinned receive arena, read data straight into the pinned send
// arena), synchronize the stream once, then send every reply the round
// produced with one sendmsg per connection. One sync serves many requests,
// and nothing is allocated or logged per request.
//
// While the GPU copies a round's payloads, the worker receives the next
// payload bytes into the other half of its receive buffer (the halves take
// turns): a client's socket keeps draining instead of standing full until the
// sync returns, so receiving and copying overlap.
class Worker {
 public:
  Worker(unsigned index, const ServingContext& context);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void start();
  // Asks the worker to stop (any thread; returns at once): it drains its
  // connections (see drain()), for at most options.stop_drain_ms, then drops
  // what is left and its thread ends.
  void request_stop() noexcept;
  // Waits for the thread to end (after request_stop()).
  void join();
  void stop_and_join();

  // Hands a connection to this worker (any thread). Client connections start
  // with the handshake, kernel ones go straight to transmission.
  void adopt(Connection* connection);

  // Elastic VRAM lets go of the GPU (Server::detach_gpu): the worker lets go
  // of its CUDA resources (stream, registrations of its buffers) at the start
  // of its next round, when no copy of its is in flight, and serves on from
  // the spill area; attach brings them back in the retained context. Any
  // thread; returns at once: gpu_state() says when the worker got there.
  enum class GpuState : uint8_t { attached, detached, failed };
  void want_gpu(bool attached) noexcept;
  GpuState gpu_state() const noexcept { return gpu_state_.load(std::memory_order_acquire); }
  bool gpu_wanted() const noexcept { return gpu_wanted_.load(std::memory_order_relaxed); }

  unsigned connections() const noexcept { return connections_.load(std::memory_order_relaxed); }
  const WorkerStats& stats() const noexcept { return stats_; }

 private:
  void run() noexcept;
  void take_handoffs() noexcept;
  void register_connection(Connection& c) noexcept;
  void update_interest(Connection& c) noexcept;
  void retire(Connection& c) noexcept;
  void expire_handshakes() noexcept;
  void begin_drain() noexcept;
  void close_if_drained(Connection& c) noexcept;

  void follow_gpu() noexcept;
  void wake() noexcept;

  void serve(Connection& c) noexcept;
  void serve_handshake(Connection& c) noexcept;
  void report_failed_copies() noexcept;

  unsigned index_;
  const ServingContext& context_;
  store::PinnedBuffer rx_buffer_;
  store::PinnedBuffer tx_buffer_;
  std::unique_ptr<store::CopyStream> stream_;
  StagingArena rx_;        // this round's half of rx_buffer_
  StagingArena rx_ahead_;  // the other half: payloads received while this round's copies run
  StagingArena tx_;
  WorkerStats stats_;
  // The parts of a round; none calls back into the worker.
  CopyRound copies_;
  VerifyGuard verify_;
  ChunkGate gate_;
  ReplySender replies_;
  RequestReader requests_;
  UniqueFd epoll_;
  UniqueFd wake_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> gpu_wanted_{true};
  std::atomic<GpuState> gpu_state_{GpuState::attached};
  // Stopping: requests read from now on are answered ESHUTDOWN, and a
  // connection that owes nothing more is closed; the loop ends when none is
  // left or at drain_deadline_ns_.
  bool draining_ = false;
  int64_t drain_deadline_ns_ = 0;

  std::mutex handoff_mutex_;
  std::vector<Connection*> handoffs_;  // capacity reserved for the whole pool
  std::vector<Connection*> owned_;     // every connection this worker serves
  std::vector<Connection*> round_;     // the connections served in this round

  std::atomic<unsigned> connections_{0};
  SystemLoad machine_load_;
  BusyPollPolicy busy_poll_;  // whether to poll again at once when a round found nothing
};

}  // namespace vramswap::engine
