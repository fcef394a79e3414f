// ElasticTier's hold on the GPU itself: the CUDA context, and everything the
// daemon allocated in it, let go of while no chunk is in VRAM and the VRAM is
// held back, and taken again before a chunk comes back.
//
// Why: a laptop's discrete GPU powers down (runtime D3) only when no process
// holds a context on it. Evicting every chunk frees the VRAM but not the
// context; on battery that context alone would keep the GPU awake all day.
#include <string>

#include "common/log.hpp"
#include "daemon/elastic_tier.hpp"

namespace vramswap::daemon {
namespace {

std::string gpu_name(const cuda::Context& context) {
  return "GPU " + std::to_string(context.device_index());
}

}  // namespace

bool ElasticTier::holding_back() const noexcept {
  return asleep_ || policy_.held() || policy_.battery_released();
}

// Order: the users (workers, copy kernel) first, between their rounds; then
// the mover's stream and staging; then the store's address range; the
// context last. Anything failing before the context goes puts back what was
// let go of, so the tier keeps a whole GPU or none.
bool ElasticTier::let_go_of_gpu(std::string& line, bool lost) noexcept {
  const std::string gpu = gpu_name(context_);
  if (gpu_released_) {
    line = gpu + " was released already";
    return true;
  }
  if (!gpu_users_.detach || !gpu_users_.attach) {
    line = gpu + " keeps its CUDA context (this daemon cannot let its workers go of it)";
    return false;
  }
  if (map_.census().vram_bytes != 0) {
    line = gpu + " keeps its CUDA context: some of the export is still in VRAM";
    return false;
  }
  const auto refuse = [&](const char* step, cuda::Status status) {
    line = gpu + " keeps its CUDA context: " + step + " failed (" + status.name() + ")";
    return false;
  };
  if (const cuda::Status users = gpu_users_.detach(); !users.ok() && !lost) {
    return refuse("letting the workers go of it", users);
  }
  if (const cuda::Status mover = mover_.detach(); !mover.ok() && !lost) {
    (void)mover_.attach();
    (void)gpu_users_.attach();
    return refuse("letting the mover go of it", mover);
  }
  if (const cuda::Status store = store_.detach(); !store.ok() && !lost) {
    (void)mover_.attach();
    (void)gpu_users_.attach();
    return refuse("freeing the export's device addresses", store);
  }
  // The context's own release may report an error (a lost device), but it
  // has let go all the same: nothing of ours is left to use on it.
  const cuda::Status released = context_.release();
  gpu_released_ = true;
  gpu_released_seen_.store(true, std::memory_order_relaxed);
  line = gpu + " holds nothing of vramswap now (its CUDA context is released";
  line += released.ok() ? ")" : std::string(", ") + released.name() + ")";
  return true;
}

bool ElasticTier::take_gpu_back(std::string& line) noexcept {
  const std::string gpu = gpu_name(context_);
  if (!gpu_released_) return true;
  const auto refuse = [&](const char* step, cuda::Status status) {
    line = "cannot use " + gpu + " again: " + step + " failed (" + status.name() + ")";
    return false;
  };
  if (const cuda::Status retained = context_.retain(); !retained.ok()) {
    return refuse("retaining its CUDA context", retained);
  }
  const auto undo = [&] {
    (void)mover_.detach();
    (void)store_.detach();
    (void)context_.release();
  };
  if (const cuda::Status store = store_.attach(); !store.ok()) {
    undo();
    return refuse("reserving the export's device addresses", store);
  }
  if (const cuda::Status mover = mover_.attach(); !mover.ok()) {
    undo();
    return refuse("giving the mover its stream", mover);
  }
  if (const cuda::Status users = gpu_users_.attach(); !users.ok()) {
    undo();
    return refuse("giving the workers their streams", users);
  }
  gpu_released_ = false;
  gpu_released_seen_.store(false, std::memory_order_relaxed);
  line = gpu + ": took its CUDA context again";
  return true;
}

}  // namespace vramswap::daemon
