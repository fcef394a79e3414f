#include "daemon/tier_policy.hpp"

namespace vramswap::daemon {

TierPolicy::TierPolicy(uint64_t reserve, bool release_on_battery, uint64_t chunk_bytes,
                       std::chrono::nanoseconds restore_after,
                       std::chrono::nanoseconds retry_after) noexcept
    : reserve_(reserve),
      release_on_battery_(release_on_battery),
      chunk_bytes_(chunk_bytes),
      restore_after_ns_(restore_after.count()),
      retry_after_ns_(retry_after.count()) {}

TierDecision TierPolicy::decide(const TierInputs& in) noexcept {
  if (release_on_battery_ && in.on_battery) {
    battery_released_ = true;
    roomy_since_ns_ = -1;
    if (in.vram_bytes == 0 || in.now_ns < evict_retry_at_ns_) return {};
    return {TierAction::evict, in.vram_bytes, true, "on battery"};
  }
  if (battery_released_) {
    // AC is back: no hysteresis, the battery was the reason, not a program.
    battery_released_ = false;
    restore_retry_at_ns_ = INT64_MIN;
    if (!held_) roomy_since_ns_ = in.now_ns - restore_after_ns_;
  }
  if (in.gpu_free_bytes < reserve_) {
    roomy_since_ns_ = -1;
    if (in.vram_bytes == 0 || in.now_ns < evict_retry_at_ns_) return {};
    return {TierAction::evict, reserve_ - in.gpu_free_bytes, false, "another program needed VRAM"};
  }
  if (held_ || in.elsewhere_bytes == 0 || in.gpu_free_bytes < reserve_ + chunk_bytes_) {
    roomy_since_ns_ = -1;
    return {};
  }
  if (roomy_since_ns_ < 0) roomy_since_ns_ = in.now_ns;
  if (in.now_ns - roomy_since_ns_ < restore_after_ns_ || in.now_ns < restore_retry_at_ns_)
    return {};
  return {TierAction::restore, in.gpu_free_bytes - reserve_, false, "VRAM is free again"};
}

void TierPolicy::sweep_done(const TierDecision& decision, bool failed, int64_t now_ns,
                            uint64_t vram_bytes_after) noexcept {
  if (decision.action == TierAction::evict) {
    // Short with nothing left in VRAM: there was no more to give, which a
    // wait would not change; holding off would only delay the next eviction
    // once the chunks are back (the 30 s each time that the stress test met).
    const bool retry = failed && vram_bytes_after != 0;
    evict_retry_at_ns_ = retry ? now_ns + retry_after_ns_ : INT64_MIN;
  } else if (decision.action == TierAction::restore) {
    restore_retry_at_ns_ = failed ? now_ns + retry_after_ns_ : INT64_MIN;
    roomy_since_ns_ = -1;  // the next restore waits its own while
  }
}

}  // namespace vramswap::daemon
