#pragma once

#include <chrono>
#include <cstdint>

namespace vramswap::daemon {

// What the elastic tier looks at once a tick (about a second).
struct TierInputs {
  int64_t now_ns = 0;            // monotonic
  uint64_t gpu_free_bytes = 0;   // cuMemGetInfo's free VRAM
  bool on_battery = false;       // any battery discharging
  uint64_t vram_bytes = 0;       // export bytes whose chunks are in VRAM
  uint64_t elsewhere_bytes = 0;  // export bytes in the spill area or with no storage
};

enum class TierAction : uint8_t {
  none,
  evict,    // give back at least `bytes` of VRAM (evict_everything: all of it)
  restore,  // bring back at most `bytes` of the export to VRAM
};

struct TierDecision {
  TierAction action = TierAction::none;
  uint64_t bytes = 0;
  bool everything = false;
  const char* reason = "";
};

// The elastic tier's triggers, as pure decisions over what a tick saw (tests
// drive the clock, the free VRAM and the power source):
//
// - pressure: free VRAM below `reserve` (another program allocated) evicts
//   until the reserve is free again;
// - restore: once free VRAM has stayed at least one chunk above the reserve
//   for `restore_after` (hysteresis: a program that frees and takes VRAM
//   again within that time does not make chunks flap), bring back what fits
//   above the reserve; the wait starts again after each restore;
// - battery (on_battery = release): on battery, evict everything and bring
//   nothing back; when AC returns, restore at once, as far as there is room;
// - an admin's release holds: nothing is brought back automatically until
//   the admin's restore (pressure and battery still evict);
// - a sweep that failed waits `retry_after` before the next of its kind; an
//   eviction that fell short only because nothing was left in VRAM (another
//   program wants more than the export holds) did all it could, and is no
//   failure: the next pressure evicts at once.
class TierPolicy {
 public:
  static constexpr std::chrono::seconds default_restore_after{30};
  static constexpr std::chrono::seconds default_retry_after{30};

  TierPolicy(uint64_t reserve, bool release_on_battery, uint64_t chunk_bytes,
             std::chrono::nanoseconds restore_after = default_restore_after,
             std::chrono::nanoseconds retry_after = default_retry_after) noexcept;

  TierDecision decide(const TierInputs& in) noexcept;

  // What happened to the decision's sweep: whether it failed (fell short of
  // its bytes, a move failed, chunks were busy) and what it left in VRAM.
  void sweep_done(const TierDecision& decision, bool failed, int64_t now_ns,
                  uint64_t vram_bytes_after) noexcept;
  void hold(bool held) noexcept { held_ = held; }
  bool held() const noexcept { return held_; }
  bool battery_released() const noexcept { return battery_released_; }

 private:
  uint64_t reserve_;
  bool release_on_battery_;
  uint64_t chunk_bytes_;
  int64_t restore_after_ns_;
  int64_t retry_after_ns_;
  int64_t roomy_since_ns_ = -1;  // free has been above reserve + a chunk since; -1: not now
  bool battery_released_ = false;
  bool held_ = false;
  int64_t evict_retry_at_ns_ = INT64_MIN;
  int64_t restore_retry_at_ns_ = INT64_MIN;
};

}  // namespace vramswap::daemon
