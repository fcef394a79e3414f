#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "kernel/nbd_netlink.hpp"
#include "store/restart_state.hpp"

namespace vramswap::daemon {

// How long the kernel queues a device's requests while no daemon serves it
// (NBD_ATTR_DEAD_CONN_TIMEOUT): a restart's gap (exit, start, CUDA, reading
// the record) takes seconds; 60 s leaves room for a slow start while a dead
// daemon that nothing restarts costs a bounded stall (vramswapd(8), RESTART).
inline constexpr unsigned dead_connection_timeout_s = 60;

// What a starting daemon takes over from the one before it: the device it
// left configured and the record it left beside the spill file.
struct Handover {
  uint32_t nbd_index = 0;
  store::SavedChunks saved;
  // When the record was written (its file's modification time, to the
  // nanosecond; the record's own time is in seconds): the device has been
  // unserved since about then.
  std::optional<std::chrono::system_clock::time_point> recorded_at;
};

// After the reattach: one line saying how long the device went unserved
// (requests the kernel queued waited at most that long, but for those the
// daemon before had read and not answered: the kernel sends them again
// when its request timer finds them).
void log_unserved_gap(const Handover& handover);
// The same for a device taken over from systemd's file descriptor store:
// unserved since `since` (`what` says what happened then), when known.
void log_unserved_gap(uint32_t nbd_index,
                      std::optional<std::chrono::system_clock::time_point> since, const char* what);

// Looks for the instance's device (by backend identifier) and, with
// `state_path` (empty without a spill area), the record beside the spill
// file. A device with a record that serves it: the handover. A device
// without one (the daemon before crashed, or its record is refused): the
// device is disconnected with one line saying why, and nothing is handed
// over. No device: nothing. Reads the record, changes nothing of it.
std::optional<Handover> find_handover(kernel::NbdNetlink& netlink, const std::string& instance,
                                      const std::string& state_path, uint64_t chunk_bytes);

class ElasticTier;
class KernelDevice;

// A restart was asked for (SIGUSR2): moves every chunk to the spill area
// while the device keeps serving. True when the device can be handed over;
// false with `why` (no kernel device, no spill area or restart record file,
// a move that failed): the daemon then stops as for a stop.
bool prepare_handover(ElasticTier* tier, KernelDevice* kernel, std::string& why);

// After prepare_handover(), the Server stopped (the kernel now queues the
// device's requests) and the tier stopped: records the map for the next
// daemon and lets go of the device without disconnecting it. Returns the
// exit status. When the record cannot be written the device is disconnected
// (the next daemon could not bring its pages back either).
int finish_handover(ElasticTier& tier, KernelDevice& kernel);

}  // namespace vramswap::daemon
