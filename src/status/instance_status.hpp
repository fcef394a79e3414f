#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/io_counters.hpp"
#include "status/previous_crash.hpp"

namespace vramswap::status {

// What a running vramswapd publishes about itself in
// <runtime dir>/NAME.json (default /run/vramswap), rewritten atomically every
// few seconds and on every change of state. `vramswap status` reads these
// files; their format is versioned so an older CLI can tell a newer daemon.
// The I/O counters (common/io_counters.hpp) are its own fields, by name.
struct InstanceStatus : IoCounters {
  static constexpr int format_version = 1;

  int format = format_version;
  std::string instance;
  int64_t pid = 0;
  // "serving", "stopping"; "crashed": the daemon died, and systemd's
  // ExecStopPost= marked its file (see previous_crash.hpp).
  std::string state;
  std::string health;       // "ok", "degraded", "failed"
  std::string status_line;  // what systemctl status shows

  int gpu_index = -1;
  std::string gpu_name, gpu_uuid, gpu_pci_bus_id;
  uint64_t gpu_total_bytes = 0;

  uint64_t size_bytes = 0;  // VRAM served
  std::string device;       // /dev/nbdX, empty when not attached
  std::string link;         // /dev/vramswap/NAME
  std::string listen;       // Unix socket, empty when none
  unsigned kernel_connections = 0;

  bool swap_active = false;
  uint64_t swap_size_bytes = 0, swap_used_bytes = 0;
  int swap_priority = 0;

  bool device_lost = false;
  uint64_t copy_failures = 0, checksum_failures = 0;

  // Elastic VRAM (added within format 1: an older file reads as elastic off).
  // Where the export's bytes are: in VRAM, in the spill area, or nowhere (no
  // live data, no storage); the GPU's free VRAM; the last sweep's log line,
  // its reason and when.
  bool elastic = false;
  uint64_t vram_bytes = 0, spill_bytes = 0, none_bytes = 0, gpu_free_bytes = 0;
  std::string spill_path;
  std::string last_move, last_move_reason;
  int64_t last_move_unix = 0;
  bool gpu_released = false;  // no CUDA context held: the GPU may power down
  // Live restart (added within format 1): the VRAM and the block map are
  // kept in systemd's file descriptor store, so the next daemon of the unit
  // takes the device over in place, even after this one crashed.
  bool fd_store_handover = false;

  bool memory_locked = false, oom_protected = false, io_flusher = false;
  int64_t updated_unix = 0;

  // Set on a dead daemon's file when systemd reports its end.
  std::string exit_cause;
  int64_t ended_unix = 0;
  // The daemon before this one ended without a clean stop; reported (and
  // health is not "ok") until this one stops cleanly or the machine reboots.
  std::optional<PreviousCrash> previous_crash;
};

std::string runtime_directory();  // $VRAMSWAP_RUNTIME_DIR or /run/vramswap
std::string status_path(const std::string& instance);

std::string to_json(const InstanceStatus& status);
// Nothing when the text is not a status document of a format we know.
std::optional<InstanceStatus> from_json(const std::string& text);

// Writes the file atomically (temporary file + rename); returns false with
// errno set on failure. Not on the I/O path.
bool write_status_file(const InstanceStatus& status);
void remove_status_file(const std::string& instance);
// The instance's file, when there is one of a format we know.
std::optional<InstanceStatus> read_status_file(const std::string& instance);
// Every status file in the runtime directory, sorted by instance.
std::vector<InstanceStatus> read_status_files();

}  // namespace vramswap::status
