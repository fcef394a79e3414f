#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/unique_fd.hpp"
#include "cuda/context.hpp"
#include "daemon/elastic_control.hpp"
#include "daemon/sleep_actions.hpp"
#include "daemon/tier_policy.hpp"
#include "engine/busy_poll_policy.hpp"
#include "store/chunk_map.hpp"
#include "store/chunk_mover.hpp"
#include "store/restart_state.hpp"
#include "store/spill_area.hpp"
#include "store/vram_store.hpp"

namespace vramswap::daemon {

struct ElasticTierOptions {
  std::string instance;
  std::string spill_path;        // the file to open or create
  bool spill_automatic = false;  // spill = auto: only where the disk has room to spare
  uint64_t reserve = 0;          // the live floor of free VRAM
  bool release_on_battery = false;
  std::chrono::nanoseconds tick = std::chrono::seconds(1);
  std::chrono::nanoseconds restore_after = TierPolicy::default_restore_after;
  // Where the batteries are (tests point it at a fake tree).
  std::string power_supply_dir = "/sys/class/power_supply";
};

// What status shows of the tier.
struct ElasticSnapshot {
  store::ChunkMap::Census census;
  uint64_t gpu_free_bytes = 0;
  std::string spill_path;
  std::string last_move;  // the log line of the last sweep, empty before the first
  std::string last_move_reason;
  int64_t last_move_unix = 0;
  bool gpu_released = false;  // the daemon holds no CUDA context: the GPU may power down
};

// The others that hold CUDA resources of the context (the Server's workers
// and copy kernel, engine::Server::detach_gpu/attach_gpu): they let go before
// the tier releases the context, and come back after it retained it again.
struct GpuUsers {
  std::function<cuda::Status()> detach;
  std::function<cuda::Status()> attach;
};

// The daemon's elastic VRAM (src/store/ELASTIC.md): the spill area, the chunk
// map and the mover of one device, and the one thread that moves chunks.
//
// The thread is bound to the CUDA context and does every move: the admin's
// release/restore (ElasticControl: the caller blocks until the sweep is done
// and gets its line), the chunks workers ask storage for (want_storage(): an
// atomic bit per chunk and an eventfd, so the worker never blocks, allocates
// or logs), and the triggers of TierPolicy, looked at once a tick: free VRAM
// against `reserve` and the power source. Each sweep logs one line
// ("released 6.0 GiB to /var/lib/vramswap/0.spill in 3.1 s: another program
// needed VRAM"). Sweeps go chunk by chunk and answer waiting writes and stop()
// between chunks.
//
// Around a system sleep (SleepActions, called by SleepWatch): before_sleep()
// evicts every chunk to the spill area and holds them there (no trigger
// brings any back, and a write to a chunk with no storage gets its place in
// the spill area) until after_resume(), which restores them unless the
// admin's release or the battery holds them. Requests go on meanwhile, served
// from the spill area.
//
// Lifetime: made after the VRAM store, before the Server (which gets chunks(),
// spill() and want_storage()); stop() before the Server stops; destroyed
// after the Server and before the store.
class ElasticTier final : public ElasticControl, public SleepActions {
 public:
  // Opens or creates the spill area and makes the map and the mover. Nothing
  // (after one warning line naming the cause and the fix) when the spill area
  // cannot be had: the device then serves from VRAM alone.
  //
  // `handed_over`: the record the daemon before left (live restart through
  // the spill area, vramswapd(8) RESTART): the store holds no VRAM
  // (VramStore::reserve_released), every chunk starts where the record says
  // and the tier brings them back to VRAM in the background once started.
  // The spill file must then be reused as it is: without it (missing, made
  // again) nothing is returned and the caller must not reattach.
  // Every start marks the restart record beside the spill file as taken.
  //
  // `map`: the chunk map, made by the caller in the live state region that
  // systemd's file descriptor store keeps (live restart, fd_store_handover.hpp),
  // fresh or as a daemon before left it; null: the tier makes its own, every
  // chunk in VRAM. Chunks it puts in the spill area need the spill file as
  // it is, as for `handed_over`, and come back to VRAM in the background.
  static std::unique_ptr<ElasticTier> create(cuda::Context& context, store::VramStore& store,
                                             const ElasticTierOptions& options,
                                             const store::SavedChunks* handed_over = nullptr,
                                             std::unique_ptr<store::ChunkMap> map = nullptr);
  ~ElasticTier() override;
  ElasticTier(const ElasticTier&) = delete;
  ElasticTier& operator=(const ElasticTier&) = delete;

  // Before start(): who else must let go of the GPU before the context is
  // released. Without them the context is never released.
  void share_gpu_with(GpuUsers users) { gpu_users_ = std::move(users); }
  void start();
  // Ends the thread (a sweep under way stops after its current chunk);
  // release() and restore() answer that the daemon is stopping from then on.
  void stop() noexcept;

  // Stopping for a restart, after release(all_bytes) put every chunk in the
  // spill area, the Server stopped and stop(): records the map beside the
  // spill file for the next daemon (restart_state.hpp). False, with `why`,
  // when it could not: the next daemon then cannot take the device over.
  bool save_for_restart(uint32_t nbd_index, std::string& why) noexcept;
  const char* restart_state_path() const noexcept {
    return state_ ? state_->path().c_str() : nullptr;
  }

  store::ChunkMap* chunks() noexcept { return &map_; }
  store::SpillArea* spill() noexcept { return &spill_; }
  // For ServingContext::want_storage: lock-free, allocates nothing.
  std::function<void(size_t)> want_storage();
  void want_storage(size_t chunk) noexcept;

  Answer release(uint64_t bytes) override;
  Answer restore() override;

  std::string before_sleep() noexcept override;
  std::string after_resume() noexcept override;
  std::string at_risk() const noexcept override;

  ElasticSnapshot snapshot() const;

 private:
  enum class Command : uint8_t { none, release, restore, before_sleep, after_resume };

  ElasticTier(cuda::Context& context, store::VramStore& store, store::SpillArea spill,
              std::optional<store::RestartStateFile> state, const ElasticTierOptions& options,
              const store::SavedChunks* handed_over, std::unique_ptr<store::ChunkMap> map);
  Answer ask(Command command, uint64_t bytes);
  void run() noexcept;
  void tick() noexcept;
  void serve_wants() noexcept;
  void take_command() noexcept;
  // Sweeps; the answer line, and whether every chunk asked for moved.
  // With `copied`, the caller logs (the line is not), and learns the bytes
  // that were copied rather than moved free.
  Answer evict(uint64_t bytes, bool everything, const char* reason,
               uint64_t* copied = nullptr) noexcept;
  Answer bring_back(uint64_t budget, const char* reason, uint64_t* copied = nullptr) noexcept;
  // The sleep commands, on the tier's thread.
  Answer sleep_now() noexcept;
  Answer resume_now() noexcept;
  std::optional<uint64_t> gpu_free() noexcept;
  void wake() noexcept;
  void finish(const char* why) noexcept;
  void record(const char* line, const char* reason, bool log = true) noexcept;
  // The GPU's whole share of the daemon (elastic_tier_gpu.cpp): once nothing
  // of the export is in VRAM and the VRAM is held back (the admin released
  // all of it, the laptop is on battery), the tier lets go of the CUDA
  // context, so that the GPU holds nothing of ours and may power down;
  // take_gpu_back() retains it before anything comes back to VRAM. Each
  // returns what happened, for the log and the admin's answer; false and
  // nothing changed when it could not.
  // `lost`: the context is known to be gone (a sleep cut the GPU's power):
  // every part lets go whatever the driver answers.
  bool let_go_of_gpu(std::string& line, bool lost = false) noexcept;
  bool take_gpu_back(std::string& line) noexcept;
  // The VRAM stays held back (admin, battery): while released, the tier
  // takes the GPU back only once this is false.
  bool holding_back() const noexcept;

  cuda::Context& context_;
  store::VramStore& store_;
  store::SpillArea spill_;
  std::optional<store::RestartStateFile> state_;  // none: restarts cannot hand over
  std::unique_ptr<store::ChunkMap> map_holder_;
  store::ChunkMap& map_;
  bool restore_at_start_ = false;  // chunks were handed over in the spill area
  store::ChunkMover mover_;
  ElasticTierOptions options_;
  TierPolicy policy_;
  uint64_t last_gpu_free_ = UINT64_MAX;  // at the last tick (the tier's thread only)
  bool asleep_ = false;  // between before_sleep and after_resume (the tier's thread only)
  engine::SystemLoad power_;
  std::unique_ptr<std::atomic<uint64_t>[]> wanted_;  // one bit per chunk
  size_t wanted_words_;
  UniqueFd wake_fd_;  // eventfd: wants and commands
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> gpu_free_bytes_{0};
  std::thread thread_;
  GpuUsers gpu_users_;
  bool gpu_released_ = false;  // the tier's thread only; snapshot() reads gpu_released_seen_
  std::atomic<bool> gpu_released_seen_{false};

  std::mutex caller_mutex_;   // one admin command at a time
  mutable std::mutex mutex_;  // guards what follows
  std::condition_variable done_;
  bool running_ = false;  // commands are taken
  Command command_ = Command::none;
  uint64_t command_bytes_ = 0;
  bool command_done_ = false;
  Answer answer_;
  char last_move_[320] = {};
  char last_reason_[64] = {};
  int64_t last_move_unix_ = 0;
};

}  // namespace vramswap::daemon
