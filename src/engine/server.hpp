#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/unique_fd.hpp"
#include "engine/connection_pool.hpp"
#include "engine/health.hpp"
#include "engine/limits.hpp"
#include "engine/listener.hpp"
#include "engine/stats.hpp"
#include "engine/worker.hpp"
#include "store/block_checksums.hpp"
#include "store/copy_kernel.hpp"

namespace vramswap::engine {

struct ServerOptions {
  std::string export_name;          // the instance name; also reachable as ""
  std::string export_description;   // shown by NBD clients (e.g. the GPU's name)
  std::string listen_path;          // empty: no userspace socket
  std::string socket_group;         // empty: socket mode 0600
  unsigned kernel_connections = 0;  // slots reserved for the kernel nbd device's sockets
  EngineOptions engine{};
  std::function<void()> on_thread_start;
  // Elastic VRAM (ServingContext's fields of the same names): the daemon's
  // elastic tier owns them and outlives the Server; null without a spill area.
  store::ChunkMap* chunks = nullptr;
  store::SpillArea* spill = nullptr;
  std::function<void(size_t chunk)> want_storage;
  // verify = yes in the live state region (live restart): where the
  // checksums live (null table: in the Server's own memory), and whether
  // they are the daemon before's, vouching for the VRAM handed over as it
  // is, or start out for VRAM the Server zeroes.
  store::ChecksumStorage checksum_storage{};
  bool checksums_taken_over = false;
};

// The NBD server over one VRAM store: workers, the optional listen socket,
// and the kernel's socket pairs. Everything it needs is allocated when it is
// constructed, before it serves a single request.
class Server {
 public:
  Server(store::VramStore& store, cuda::Context& cuda, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void start();
  // Stops accepting clients, answers what is in flight, closes every
  // connection and stops the threads, within options.engine.stop_drain_ms
  // (see Worker::request_stop). The kernel device must be disconnected
  // first, or the kernel sees its sockets die.
  void stop();

  // Creates `count` socket pairs for the kernel: our ends are served by the
  // workers at once, the returned ends are for NBD_CMD_CONNECT or
  // NBD_CMD_RECONFIGURE (close them once the kernel holds them).
  std::vector<UniqueFd> open_kernel_sockets(unsigned count);
  // Readable (an eventfd) whenever a kernel connection has closed.
  int kernel_connection_closed_fd() const noexcept { return kernel_closed_.get(); }

  uint16_t transmission_flags() const noexcept;

  // Elastic VRAM lets go of the GPU (src/store/ELASTIC.md): every worker
  // lets go of its stream and buffer registrations between two rounds, then
  // the copy kernel is unloaded; requests go on meanwhile (every chunk must
  // be in the spill area or have no storage: a VRAM copy would fail with
  // EIO). attach_gpu() brings it all back in the retained context, on the
  // calling thread (bound to it). Each waits for the workers, bounded by
  // gpu_switch_wait: CUDA_ERROR_TIMEOUT when one did not get there, and the
  // first failure otherwise; a failed attach_gpu() leaves them detached.
  // For one thread at a time (the elastic tier's), while serving.
  static constexpr std::chrono::seconds gpu_switch_wait{30};
  cuda::Status detach_gpu() noexcept;
  cuda::Status attach_gpu() noexcept;
  uint64_t export_size() const noexcept { return context_.geometry.size; }
  unsigned live_kernel_connections() const noexcept {
    return live_kernel_connections_.load(std::memory_order_relaxed);
  }
  StatsSnapshot stats() const noexcept;
  const Health& health() const noexcept { return health_; }

 private:
  Worker& least_busy_worker() noexcept;
  // Asks every worker for `attached` and waits until all got there.
  cuda::Status switch_workers(bool attached) noexcept;
  void limit_clients_to_descriptors();

  ServerOptions options_;
  std::unique_ptr<store::CopyKernel> copy_kernel_;
  std::unique_ptr<store::BlockChecksums> checksums_;
  ConnectionPool pool_;
  Health health_;
  ServingContext context_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<Listener> listener_;
  std::atomic<unsigned> live_kernel_connections_{0};
  UniqueFd kernel_closed_;
  bool started_ = false;
};

}  // namespace vramswap::engine
