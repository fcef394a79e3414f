#include "engine/server.hpp"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "common/log.hpp"
#include "common/startup_error.hpp"
#include "engine/descriptor_budget.hpp"
#include "engine/socket_buffers.hpp"
#include "engine/unix_socket.hpp"
#include "nbd/protocol.hpp"
#include "store/copy_stream.hpp"
#include "store/vram_store.hpp"

namespace vramswap::engine {
namespace {

// With verify = yes every request covers whole checksummed blocks.
constexpr uint32_t verified_min_block = store::BlockChecksums::block_bytes;
int fcntl_nonblock(int fd) {
  const int flags = fcntl(fd, F_GETFL);
  return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

// verify = yes: the checksums start out vouching for zeros, so the VRAM must
// hold zeros too (fresh allocations hold whatever was there before).
std::unique_ptr<store::BlockChecksums> checksums_for_zeroed(store::VramStore& store,
                                                            store::ChecksumStorage storage) {
  auto checksums = storage.table ? std::make_unique<store::BlockChecksums>(store.size(), storage)
                                 : std::make_unique<store::BlockChecksums>(store.size());
  store::CopyStream stream(store);
  cuda::Status status = stream.zero(0, store.size());
  const cuda::Status synchronized = stream.synchronize();
  if (status.ok()) status = synchronized;
  if (!status.ok()) {
    throw StartupError(exit_code::unavailable,
                       std::string("cannot clear the VRAM for verify = yes: ") + status.name() +
                           "; check that nvidia-smi works and dmesg for GPU errors");
  }
  log_info("verify = yes: a checksum of every 4 KiB block, %s of RAM",
           format_byte_size(checksums->table_bytes()).c_str());
  return checksums;
}

// verify = yes after a live restart: the checksums the daemon before left,
// for the VRAM it left; a write it never acknowledged is taken as it landed.
std::unique_ptr<store::BlockChecksums> checksums_taken_over(store::VramStore& store,
                                                            store::ChecksumStorage storage) {
  store::BlockChecksums::Recovery recovery;
  auto checksums = std::make_unique<store::BlockChecksums>(store.size(), storage, recovery);
  log_info("verify = yes: the checksums of the vramswapd before, %s of RAM%s",
           format_byte_size(checksums->table_bytes()).c_str(),
           recovery.raced_blocks == 0 ? ""
                                      : (", " + std::to_string(recovery.raced_blocks) +
                                         " blocks taken as they landed (written while it ended)")
                                            .c_str());
  return checksums;
}

}  // namespace

Server::Server(store::VramStore& store, cuda::Context& cuda, ServerOptions options)
    : options_(std::move(options)),
      pool_(options_.kernel_connections,
            options_.listen_path.empty() ? 0 : options_.engine.max_clients),
      kernel_closed_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (!kernel_closed_) {
    throw StartupError(exit_code::os_error,
                       std::string("cannot create an eventfd: ") + std::strerror(errno));
  }
  if (options_.engine.copy_kernel) copy_kernel_ = store::CopyKernel::load(cuda);
  if (options_.engine.verify) {
    checksums_ = options_.checksums_taken_over
                     ? checksums_taken_over(store, options_.checksum_storage)
                     : checksums_for_zeroed(store, options_.checksum_storage);
  }
  context_.store = &store;
  context_.copy_kernel = copy_kernel_.get();
  context_.checksums = checksums_.get();
  context_.cuda = &cuda;
  context_.pool = &pool_;
  context_.health = &health_;
  context_.description =
      nbd::ExportDescription{options_.export_name,
                             options_.export_description,
                             store.size(),
                             nbd::served_transmission_flags,
                             checksums_ ? verified_min_block : nbd::default_min_block,
                             nbd::default_preferred_block,
                             nbd::default_max_payload};
  if (const char* problem = nbd::export_description_problem(context_.description)) {
    throw StartupError(exit_code::config, std::string("cannot export this device: ") + problem);
  }
  context_.geometry = nbd::geometry_of(context_.description);
  context_.options = options_.engine;
  context_.on_thread_start = options_.on_thread_start;
  context_.chunks = options_.chunks;
  context_.spill = options_.spill;
  context_.want_storage = options_.want_storage;
  context_.on_kernel_connection_closed = [this] {
    live_kernel_connections_.fetch_sub(1, std::memory_order_relaxed);
    const uint64_t one = 1;
    ssize_t ignored = ::write(kernel_closed_.get(), &one, sizeof one);
    (void)ignored;
  };
  if (options_.engine.workers == 0) {
    throw StartupError(exit_code::config, "at least one worker is needed");
  }
  workers_.reserve(options_.engine.workers);
  for (unsigned i = 0; i < options_.engine.workers; ++i) {
    workers_.push_back(std::make_unique<Worker>(i, context_));
  }
  const EngineOptions& engine = options_.engine;
  const uint64_t staging =
      uint64_t{engine.workers} * (engine.rx_arena_bytes + engine.tx_arena_bytes);
  log_info("%u I/O workers with %s of pinned staging; small copies %s; busy poll %s",
           engine.workers, format_byte_size(staging).c_str(),
           copy_kernel_ ? "batched into one copy-kernel launch per round" : "by DMA, one call each",
           engine.busy_poll_us == 0 ? "off"
           : engine.busy_poll_mode == BusyPollMode::adaptive
               ? ("adaptive, up to " + std::to_string(engine.busy_poll_us) + " us").c_str()
               : (std::to_string(engine.busy_poll_us) + " us after every round").c_str());
  if (!options_.listen_path.empty()) {
    listener_ = std::make_unique<Listener>(
        open_unix_listener(options_.listen_path, options_.socket_group), options_.listen_path,
        pool_, [this](Connection* c) { least_busy_worker().adopt(c); });
    limit_clients_to_descriptors();
  }
}

// Everything but the clients' sockets is open by now: what the descriptor
// limit leaves, less the daemon's reserve and the kernel's replacement socket
// pairs (two descriptors each while they are handed over), is the clients'.
void Server::limit_clients_to_descriptors() {
  const size_t wanted = pool_.client_slots();
  const size_t reserve = daemon_descriptor_reserve + 2 * size_t{options_.kernel_connections};
  const size_t allowed = clients_within_descriptor_limit(wanted, reserve);
  if (allowed >= wanted) return;
  pool_.limit_client_slots(allowed);
  log_warning(
      "the file descriptor limit (RLIMIT_NOFILE) leaves room for %zu of the %zu listen "
      "clients; later ones wait for a free slot (raise LimitNOFILE= to serve more)",
      allowed, wanted);
}

Server::~Server() {
  stop();
}

void Server::start() {
  for (auto& worker : workers_)
    worker->start();
  if (listener_) listener_->start();
  started_ = true;
}

void Server::stop() {
  if (!started_) return;
  started_ = false;
  // No new clients; then every worker drains at once (each bounded by
  // stop_drain_ms), so the whole stop takes one drain, not one per worker.
  if (listener_) listener_->stop_and_join();
  for (auto& worker : workers_)
    worker->request_stop();
  for (auto& worker : workers_)
    worker->join();
}

std::vector<UniqueFd> Server::open_kernel_sockets(unsigned count) {
  std::vector<UniqueFd> kernel_ends;
  for (unsigned i = 0; i < count; ++i) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
      throw StartupError(exit_code::os_error,
                         std::string("socketpair for the kernel: ") + std::strerror(errno));
    }
    UniqueFd ours(pair[0]);
    kernel_ends.emplace_back(pair[1]);
    enlarge_socket_buffers(pair[0]);
    enlarge_socket_buffers(pair[1]);
    // The kernel end stays blocking (the nbd driver expects that); ours is
    // served by an event loop.
    if (fcntl_nonblock(ours.get()) != 0) {
      throw StartupError(exit_code::os_error,
                         std::string("cannot make a socket non-blocking: ") + std::strerror(errno));
    }
    Connection* slot = pool_.acquire(Origin::kernel);
    if (!slot) throw StartupError(exit_code::software, "no connection slot left for the kernel");
    slot->fd = ours.release();
    live_kernel_connections_.fetch_add(1, std::memory_order_relaxed);
    // Spread the kernel's connections over the workers, one each while they last.
    least_busy_worker().adopt(slot);
  }
  return kernel_ends;
}

uint16_t Server::transmission_flags() const noexcept {
  return nbd::served_transmission_flags;
}

cuda::Status Server::switch_workers(bool attached) noexcept {
  if (!started_) return cuda::CUDA_ERROR_ILLEGAL_STATE;
  for (auto& worker : workers_)
    worker->want_gpu(attached);
  const Worker::GpuState goal = attached ? Worker::GpuState::attached : Worker::GpuState::detached;
  const auto deadline = std::chrono::steady_clock::now() + gpu_switch_wait;
  for (;;) {
    bool all_there = true;
    for (const auto& worker : workers_) {
      const Worker::GpuState state = worker->gpu_state();
      if (attached && state == Worker::GpuState::failed) return cuda::CUDA_ERROR_INVALID_CONTEXT;
      all_there = all_there && state == goal;
    }
    if (all_there) return cuda::Status();
    if (std::chrono::steady_clock::now() >= deadline) return cuda::CUDA_ERROR_TIMEOUT;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

cuda::Status Server::detach_gpu() noexcept {
  if (const cuda::Status workers = switch_workers(false); !workers.ok()) {
    (void)switch_workers(true);
    return workers;
  }
  return copy_kernel_ ? copy_kernel_->detach() : cuda::Status();
}

cuda::Status Server::attach_gpu() noexcept {
  cuda::Status status = copy_kernel_ ? copy_kernel_->attach() : cuda::Status();
  if (status.ok()) status = switch_workers(true);
  if (!status.ok()) {
    (void)switch_workers(false);
    if (copy_kernel_) (void)copy_kernel_->detach();
  }
  return status;
}

Worker& Server::least_busy_worker() noexcept {
  Worker* best = workers_.front().get();
  for (auto& worker : workers_) {
    if (worker->connections() < best->connections()) best = worker.get();
  }
  return *best;
}

StatsSnapshot Server::stats() const noexcept {
  StatsSnapshot total;
  for (const auto& worker : workers_)
    total.accumulate(worker->stats());
  return total;
}

}  // namespace vramswap::engine
