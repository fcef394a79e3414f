#pragma once

#include <cstdint>
#include <limits>
#include <string>

namespace vramswap::daemon {

// What an admin can ask of a running daemon's elastic tier (vramswap(8):
// `vramswap release NAME [SIZE|all]`, `vramswap restore NAME`), through the
// instance's root-only control socket. The control socket's server depends
// on this interface only; the daemon's elastic tier implements it.
class ElasticControl {
 public:
  static constexpr uint64_t all_bytes = std::numeric_limits<uint64_t>::max();

  // One line for the admin, and whether it worked.
  struct Answer {
    bool ok = false;
    std::string line;  // "released 6.0 GiB to /var/lib/vramswap/0.spill in 3.1 s"
  };

  virtual ~ElasticControl() = default;
  // Moves at least `bytes` of the export's VRAM (all_bytes: all of it) to
  // the spill area and gives the VRAM back to the GPU; returns when done.
  virtual Answer release(uint64_t bytes) = 0;
  // Brings every chunk back to VRAM (up to the configured size, as far as
  // the GPU has room); returns when done.
  virtual Answer restore() = 0;
};

}  // namespace vramswap::daemon
