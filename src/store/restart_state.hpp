#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/unique_fd.hpp"
#include "store/chunk_map.hpp"
#include "store/spill_area.hpp"

namespace vramswap::store {

// Live restart through the spill area (vramswapd(8), RESTART): a daemon that
// stops for a restart moves every chunk to the spill area and records here
// where each chunk is (spill, or none: no live data) and which blocks hold
// live data; the next daemon of the instance takes that record, serves the
// spill area's bytes as they are and reattaches to the kernel device.
//
// The record lives in a file beside the spill file (`SPILL.state`), created
// and fully written once at its final size, like the spill file, and written
// with O_DIRECT from a locked buffer: the stop that writes it allocates
// nothing while the kernel may be swapping to the device.
//
// Layout: a 4 KiB header (magic, format version, whether it holds a record,
// the export and chunk sizes, the chunk count, the instance, the nbd index,
// when it was saved, a CRC32C of everything but the CRC itself), then one
// byte per chunk (its tier), then the live bits, 8 bytes per 64 blocks of
// each chunk, padded to 4 KiB.
//
// A record is taken once: the next daemon marks it taken before it serves
// (its own writes make the spill area's bytes stale), and every start marks
// it taken whether it used it or not, so a later crash never finds an old one.

// What a record must match to be used.
struct RestartIdentity {
  std::string instance;
  uint64_t export_bytes = 0;
  uint64_t chunk_bytes = 0;
};

// A record, decoded and validated.
struct SavedChunks {
  RestartIdentity identity;
  uint32_t nbd_index = 0;
  int64_t saved_unix = 0;
  size_t words_per_chunk = 0;
  std::vector<Tier> tiers;     // one per chunk: spill or none
  std::vector<uint64_t> live;  // words_per_chunk per chunk

  uint64_t spill_bytes() const noexcept;
  // Puts every chunk of `map` where the record says. The map must have the
  // record's geometry, and no request nor mover may use it yet.
  void apply(ChunkMap& map) const noexcept;
};

namespace restart_state {

inline constexpr uint32_t format_version = 1;
inline constexpr uint64_t header_bytes = 4096;

// The size of the file for an export (whole 4 KiB blocks).
uint64_t file_bytes(uint64_t export_bytes, uint64_t chunk_bytes) noexcept;

// Writes the record of `map` into `out` (file_bytes() long). False, with
// `why`, when a chunk is still in VRAM or in motion: such a map cannot be
// handed over.
bool encode(const ChunkMap& map, std::string_view instance, uint32_t nbd_index, int64_t saved_unix,
            std::span<std::byte> out, std::string& why);
// Writes a header that holds no record (what every start leaves).
void encode_taken(std::span<std::byte> header);

// Reads a record back, or nothing with one line in `why`: no record (never
// written, or already taken), not a state file, another format version, a
// damaged record (checksum), another instance, export size or chunk size.
std::optional<SavedChunks> decode(std::span<const std::byte> in, const RestartIdentity& expected,
                                  std::string& why);

// The state file beside a spill file.
std::string path_for(const std::string& spill_path);

// Reads and validates the record at `path` without changing the file (the
// starting daemon, before it allocates anything). Nothing, with `why`, when
// the file is missing or the record does not serve.
std::optional<SavedChunks> read(const std::string& path, const RestartIdentity& expected,
                                std::string& why);

}  // namespace restart_state

// The state file of a running daemon: opened (created at its size when
// missing or of another size) with the spill area, marked taken at once, and
// written by save() when the daemon stops for a restart.
class RestartStateFile {
 public:
  // Throws StartupError with one line naming the cause and the fix.
  static RestartStateFile open(const std::string& path, uint64_t export_bytes,
                               uint64_t chunk_bytes);

  RestartStateFile(RestartStateFile&&) noexcept = default;
  RestartStateFile& operator=(RestartStateFile&&) noexcept = default;

  // Records `map` and makes it durable (fdatasync). 0, or the errno of the
  // failure (EBUSY: a chunk is in VRAM or moving; `why` says which).
  int save(const ChunkMap& map, std::string_view instance, uint32_t nbd_index,
           std::string& why) noexcept;
  // Marks the file as holding no record, durably. 0 or an errno.
  int mark_taken() noexcept;
  const std::string& path() const noexcept { return path_; }

 private:
  RestartStateFile(UniqueFd fd, std::string path, uint64_t bytes);

  UniqueFd fd_;
  std::string path_;
  std::unique_ptr<SpillBuffer> buffer_;
};

}  // namespace vramswap::store
