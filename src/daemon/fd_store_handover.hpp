#pragma once

// Live restart through systemd's file descriptor store (vramswapd(8),
// RESTART). What a daemon must hand to the next one lives, all the time it
// serves, where the next one can find it even after a crash:
//  - the VRAM: every committed chunk exported as a file descriptor, parked
//    64 chunks to a socket (store/vram_parking.hpp);
//  - the live state region (store/handover_region.hpp): a sealed memfd
//    holding the chunk map (each chunk's place and which blocks hold data)
//    and the checksums of verify = yes, which the map and the checksums are
//    made in, so it is never behind.
// systemd keeps both across a restart of the unit and while it restarts a
// daemon that died, and passes them to the next run. The kernel device
// outlives the daemon by its dead-connection timeout (handover.hpp), so the
// next daemon maps the same VRAM at the same place, takes the map as it was
// left and reattaches.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/fd_store_sink.hpp"
#include "kernel/nbd_netlink.hpp"
#include "store/chunk_map.hpp"
#include "store/handover_region.hpp"
#include "store/vram_parking.hpp"
#include "store/vram_store.hpp"

namespace vramswap::daemon {

// The store's name for the live state region.
inline constexpr const char* state_fd_name = "state";

// What the daemon before left in the store, checked against this start.
struct StoredState {
  store::HandoverRegion region;
  store::ParkedVram vram;
  // Its kernel device (attach = yes); with attach = no, none.
  std::optional<uint32_t> nbd_index;
  // When it stopped serving, if it said so (a clean handover); after a
  // crash, nothing.
  std::optional<std::chrono::system_clock::time_point> handed_at;
};

// At start, before any VRAM is taken: what systemd passed (from
// fd_store::take_passed()). Nothing when it passed nothing of ours. Nothing,
// with one line saying why, when what it passed cannot be taken (another
// format, instance or chunk size, parked VRAM that does not add up, or, with
// attach = yes, no device of the instance left to take): every passed name
// is then removed from the store, so that its VRAM is freed before this
// daemon takes its own. Descriptors of other names are closed. Changes
// nothing of the kernel device: the spill-area path (find_handover) judges
// it next when nothing is taken here.
std::optional<StoredState> take_stored_state(std::vector<NamedFd> passed,
                                             kernel::NbdNetlink* netlink,
                                             const std::string& instance, uint64_t chunk_bytes,
                                             FdStoreSink& sink);

// Removes from the store everything `stored` came from (its VRAM goes).
void forget_stored_state(const StoredState& stored, FdStoreSink& sink);

// The export as the daemon before left it, in `store` (not yet allocated):
// reserved at the handed-over size, the chunk map recovered from the region
// (when it has one; `vram_kept` is then decided by the parked VRAM), and the
// VRAM of every chunk the map keeps in VRAM imported at its place. Throws
// StartupError when a written page could not be brought back (VRAM missing
// or refused by the driver for a chunk that holds data): the caller must
// then release the device and empty the store, never serve other bytes.
std::unique_ptr<store::ChunkMap> take_over_export(StoredState& stored, store::VramStore& store);

// The running daemon's side: its live state region, and its VRAM parked in
// the store once armed.
class FdStoreHandover {
 public:
  // A fresh region for a fresh export (nothing taken over); the chunk map
  // and the checksums are then made in it.
  FdStoreHandover(store::HandoverRegion region, FdStoreSink& sink);
  // The region taken over, already in the store.
  FdStoreHandover(StoredState&& stored, FdStoreSink& sink);

  store::HandoverRegion& region() noexcept { return region_; }
  // With the store allocated (or taken over), the map and the checksums in
  // the region, before serving: puts the region in the store and parks the
  // VRAM (or takes over what was parked). False with one line in `why` when
  // the handover cannot be armed (no store: not run by systemd, or its
  // FileDescriptorStoreMax= too low; too few descriptors allowed; the
  // driver cannot export VRAM): the daemon serves all the same, and a
  // restart goes through the spill area, a crash loses its pages.
  bool arm(store::VramStore& store, std::string& why);
  // Whether the store holds everything the next daemon needs right now.
  bool ready() const noexcept { return parking_ && parking_->intact(); }
  // For a clean in-place handover: notes when serving stopped, for the next
  // daemon's figure of how long its device went unserved.
  void note_handed_over() noexcept;
  // A stop that is no restart (swap is off, the device released): empties
  // the store, so the VRAM is freed with the daemon.
  void discard() noexcept;

 private:
  store::HandoverRegion region_;
  FdStoreSink& sink_;
  bool region_stored_ = false;
  std::optional<store::ParkedVram> parked_;  // taken over, until arm()
  std::unique_ptr<store::VramParking> parking_;
};

}  // namespace vramswap::daemon
