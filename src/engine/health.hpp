#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>

#include "common/log.hpp"

namespace vramswap::engine {

// What went wrong on the I/O path, for the status line and `vramswap status`.
// Every fault is logged once per cause per interval (never per request), and
// the daemon keeps serving: the requests a fault touched get EIO, the others
// keep their data.
class Health {
 public:
  // `calls` copy calls between host and VRAM failed (a round's batched launch
  // whose copies were then redone one by one counts once, as does each redone
  // copy that failed again), and `requests` requests lost their data to them
  // and were answered EIO. `sticky`: the GPU context is gone (device lost),
  // so every later request will fail too.
  void copy_failed(const char* cuda_error_name, bool sticky, unsigned calls,
                   unsigned requests) noexcept {
    copy_failures_.fetch_add(requests, std::memory_order_relaxed);
    failed_copy_calls_.fetch_add(calls, std::memory_order_relaxed);
    uint64_t suppressed = 0;
    if (sticky) {
      if (!device_lost_.exchange(true, std::memory_order_relaxed)) {
        log_error("GPU lost (%s): every request now fails with EIO; pages swapped to this "
                  "device are gone and processes that touch them will be killed; check dmesg "
                  "and nvidia-smi, then restart the service",
                  cuda_error_name);
      } else if (lost_limit_.allow(suppressed, requests)) {
        // Counted in requests, this call's and those of the calls not logged.
        log_error("GPU still lost (%s): %llu more failed requests", cuda_error_name,
                  static_cast<unsigned long long>(suppressed + requests));
      }
      return;
    }
    if (copy_limit_.allow(suppressed)) {
      log_error("VRAM copy failed (%s): %u failed copy call%s, %u request(s) answered EIO%s",
                cuda_error_name, calls, calls == 1 ? "" : "s", requests,
                suppressed ? " (and earlier failures not logged)" : "");
    }
  }

  // A block read back did not match its checksum: from VRAM, or (elastic
  // VRAM) from the spill area, whose suspects are the disk and its filesystem.
  void checksum_mismatch(uint64_t offset, bool from_spill = false) noexcept {
    checksum_failures_.fetch_add(1, std::memory_order_relaxed);
    uint64_t suppressed = 0;
    if (!checksum_limit_.allow(suppressed)) return;
    if (from_spill) {
      log_error("spill area data corrupted at offset %llu (checksum mismatch): the read gets "
                "EIO; the disk under the spill file may be failing: check dmesg and smartctl "
                "(%llu similar not logged)",
                static_cast<unsigned long long>(offset),
                static_cast<unsigned long long>(suppressed));
    } else {
      log_error("VRAM data corrupted at offset %llu (checksum mismatch): the read gets EIO; "
                "this GPU's memory may be failing: check nvidia-smi -q -d ECC,PAGE_RETIREMENT "
                "and dmesg for Xid errors (%llu similar not logged)",
                static_cast<unsigned long long>(offset),
                static_cast<unsigned long long>(suppressed));
    }
  }

  // Elastic VRAM: a read or write of the spill area failed (errno `error`);
  // the request it served is answered EIO.
  void spill_failed(int error, uint64_t offset) noexcept {
    spill_failures_.fetch_add(1, std::memory_order_relaxed);
    uint64_t suppressed = 0;
    if (spill_limit_.allow(suppressed)) {
      log_error("spill area I/O failed at offset %llu (%s): the request gets EIO; check the "
                "spill file's disk (dmesg) (%llu similar not logged)",
                static_cast<unsigned long long>(offset), std::strerror(error),
                static_cast<unsigned long long>(suppressed));
    }
  }

  // Elastic VRAM: a request waited `seconds` for a chunk that stayed in
  // motion (or without storage) and is answered EIO.
  void chunk_wait_failed(uint64_t offset, int64_t seconds) noexcept {
    chunk_wait_failures_.fetch_add(1, std::memory_order_relaxed);
    uint64_t suppressed = 0;
    if (chunk_wait_limit_.allow(suppressed)) {
      log_error("a request at offset %llu waited %llds for its chunk to finish moving (or to "
                "be given storage) and gets EIO: the chunk mover is stuck or failing "
                "(%llu similar not logged)",
                static_cast<unsigned long long>(offset), static_cast<long long>(seconds),
                static_cast<unsigned long long>(suppressed));
    }
  }

  uint64_t spill_failures() const noexcept {
    return spill_failures_.load(std::memory_order_relaxed);
  }
  uint64_t chunk_wait_failures() const noexcept {
    return chunk_wait_failures_.load(std::memory_order_relaxed);
  }

  bool device_lost() const noexcept { return device_lost_.load(std::memory_order_relaxed); }
  uint64_t copy_failures() const noexcept { return copy_failures_.load(std::memory_order_relaxed); }
  uint64_t checksum_failures() const noexcept {
    return checksum_failures_.load(std::memory_order_relaxed);
  }
  bool degraded() const noexcept {
    return device_lost() || copy_failures() != 0 ||
           failed_copy_calls_.load(std::memory_order_relaxed) != 0 || checksum_failures() != 0 ||
           spill_failures() != 0 || chunk_wait_failures() != 0;
  }

 private:
  std::atomic<bool> device_lost_{false};
  std::atomic<uint64_t> copy_failures_{0};      // requests
  std::atomic<uint64_t> failed_copy_calls_{0};  // calls (counted for users in WorkerStats)
  std::atomic<uint64_t> checksum_failures_{0};
  std::atomic<uint64_t> spill_failures_{0};
  std::atomic<uint64_t> chunk_wait_failures_{0};
  LogRateLimit copy_limit_;
  LogRateLimit lost_limit_;
  LogRateLimit checksum_limit_;
  LogRateLimit spill_limit_;
  LogRateLimit chunk_wait_limit_;
};

}  // namespace vramswap::engine
