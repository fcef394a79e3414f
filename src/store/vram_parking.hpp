#pragma once

// Live restart (a daemon killed with kill -9 and restarted by systemd keeps
// every swapped page): the export's VRAM must outlive the process. Each
// committed chunk is exported as a file descriptor (VramStore::export_chunk),
// and those descriptors are kept in systemd's file descriptor store, where
// the next run of the unit gets them back and maps them at the same place
// (VramStore::import_chunk).
//
// Not one stored descriptor per chunk: systemd (252, Debian 12) compares each
// new stored descriptor with every stored one, O(n^2) for a 16 GiB export's
// 8192 chunks. Chunks are parked by group instead (parking_format.hpp): one
// parking socket per group of 64 holds the group's descriptors in flight in
// one datagram (parking_socket.hpp), stored as "vram-<group>-<generation>".
// A group that changes is parked again under the next generation, stored
// before the previous one is removed: a crash in between leaves both, and
// the reader takes the highest.
//
// The parking also keeps its own exported descriptor per committed chunk, so
// that a group is parked again without exporting its other chunks; a released
// chunk's descriptor is closed and its group parked without it, or its VRAM
// would stay taken.
//
// Threads: the hooks run on the thread that commits and releases (the chunk
// mover); park_all(), adopt() and discard() read the store's chunks too, so
// they run while no commit or release does (at start, at stop). intact() is
// for any thread.
//
// Costs: one descriptor per committed chunk in this process (8192 for 16 GiB
// in 2 MiB chunks: RLIMIT_NOFILE must allow them), and in systemd one stored
// descriptor per group, two for a moment while a group changes
// (FileDescriptorStoreMax= must allow them and the block map's).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd_store_sink.hpp"
#include "common/log.hpp"
#include "common/unique_fd.hpp"
#include "store/vram_store.hpp"

namespace vramswap::store {

// What an earlier run parked, as unpark() found it.
struct ParkedVram {
  // By chunk index: the chunk's VRAM; invalid where none was parked.
  std::vector<UniqueFd> chunks;
  // By group: the name its newest parking socket is stored under; empty
  // where none.
  std::vector<std::string> names;
  // Older generations still stored (a crash between store and remove):
  // adopt() removes them.
  std::vector<std::string> stale;
  // The highest generation stored (0: none): the next run goes on after it.
  uint64_t highest_generation = 0;
};

class VramParking final : public ChunkObserver {
 public:
  // For `store` after allocate() or reserve_released() (and, on a restart,
  // after its chunks were imported): becomes its observer until destroyed.
  // Parks nothing yet: park_all() or adopt() does. `instance` names the
  // daemon instance in every datagram. Throws std::invalid_argument for an
  // instance name over parking::max_instance_bytes or an export of more than
  // 2^32 chunks.
  VramParking(VramStore& store, FdStoreSink& sink, std::string instance,
              uint64_t first_generation = 1);
  // Removes nothing: what is stored keeps the VRAM for the next run (after a
  // stop that is no restart, call discard() first).
  ~VramParking();
  VramParking(const VramParking&) = delete;
  VramParking& operator=(const VramParking&) = delete;

  // Exports every committed chunk and parks every group that holds one.
  // False with `why` (one line) when the store cannot export (its driver
  // has no descriptor handles), the driver refuses an export, a socket call
  // fails or the sink refuses; the groups parked before stay parked.
  bool park_all(std::string& why);

  // Takes over what an earlier run parked, after the store imported it: the
  // parked descriptors become this parking's own, their sockets stay stored
  // as they are, the stale generations are removed, and only groups that
  // differ from the store (a chunk not imported, or committed since) are
  // parked again. Generations go on after the highest found. False with
  // `why` when `parked` is not for this store's chunks or a group cannot be
  // parked again.
  bool adopt(ParkedVram&& parked, std::string& why);

  // The store's hooks: park the chunk's group again (with the chunk now, or
  // without it). Never throw; a failure is logged (rate limited) and
  // remembered until the group is parked again.
  void chunk_committed(size_t chunk) noexcept override;
  void chunk_released(size_t chunk) noexcept override;

  // Whether the file descriptor store holds every committed chunk, as last
  // parked: true after park_all() or adopt() succeeded while no group has
  // failed to be parked again since. Any thread.
  bool intact() const noexcept { return intact_.load(std::memory_order_relaxed); }

  // For a stop that is no restart: removes every parking socket from the
  // store and closes this parking's descriptors, so that the VRAM goes with
  // the store's own handles.
  void discard() noexcept;

  // The generation the next parked group gets.
  uint64_t next_generation() const;

  // The chunks an earlier run parked, from the descriptors systemd passed
  // (fd_store::take_passed()): per group the highest generation, its
  // datagram read (peeked: the socket keeps it for a later crash) and
  // checked against this run's instance, chunk size and chunk count. Takes
  // the "vram-*" entries out of `passed` and leaves the others (the block
  // map's). Refuses (nullopt, `why` one line, `passed` untouched) on any
  // inconsistency: a malformed name, another instance or chunk size, a
  // chunk outside its group or the export, descriptors missing. A refusal
  // means the parked VRAM cannot be trusted: remove every "vram-*" name.
  static std::optional<ParkedVram> unpark(std::vector<NamedFd>& passed, std::string_view instance,
                                          uint64_t chunk_bytes, size_t chunk_count,
                                          std::string& why);

 private:
  // Parks group `group` again from the store's committed chunks (removing
  // its name when it holds none). Called with mutex_ held.
  bool repark(size_t group, std::string& why);
  // repark() of every group `which` marks; the first failure in `why`.
  // Called with mutex_ held.
  bool repark_groups(const std::vector<bool>& which, std::string& why);
  // Removes `name` from the store, or remembers it to try again.
  void remove_name(const std::string& name);
  // repark() from a hook: logs and remembers a failure.
  void repark_quietly(size_t group) noexcept;
  void update_intact();

  VramStore& store_;
  FdStoreSink& sink_;
  const std::string instance_;
  mutable std::mutex mutex_;  // the hooks run on the mover's thread
  uint64_t next_generation_;
  std::vector<UniqueFd> exported_;      // by chunk: this parking's descriptor
  std::vector<std::string> names_;      // by group: its stored name, or empty
  std::vector<bool> failed_;            // by group: last parking failed
  std::vector<std::string> unremoved_;  // names the sink refused to remove
  bool parked_ = false;                 // park_all() or adopt() succeeded
  std::atomic<bool> intact_{false};
  LogRateLimit log_limit_;
};

}  // namespace vramswap::store
