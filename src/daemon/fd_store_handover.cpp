#include "daemon/fd_store_handover.hpp"

#include <sys/resource.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "common/byte_size.hpp"
#include "common/exit_codes.hpp"
#include "common/log.hpp"
#include "common/startup_error.hpp"
#include "kernel/block_device.hpp"
#include "store/parking_format.hpp"
#include "systemd/fd_store.hpp"
#include "systemd/unit_job.hpp"
#include "systemd/unit_name.hpp"

namespace vramswap::daemon {
namespace {

void remove_all(const std::vector<std::string>& names, FdStoreSink& sink) {
  for (const std::string& name : names)
    (void)sink.remove(name);
}

// A refusal: one line, and the store emptied of everything passed.
std::nullopt_t refuse(const std::string& why, const std::vector<std::string>& names,
                      FdStoreSink& sink) {
  log_warning(
      "cannot take over what the vramswapd before left in systemd's file descriptor store: %s; "
      "freeing it",
      why.c_str());
  remove_all(names, sink);
  return std::nullopt;
}

// Room for one descriptor per chunk besides what the daemon needs itself
// (the package's unit sets LimitNOFILE= for it; the limit is the admin's,
// not raised here). Clients get what is left: the server counts the
// descriptors open when it starts. A chunk that comes back to VRAM later
// opens one more; if that fails, the parking says so and the daemon's status
// stops claiming a crash loses nothing.
bool open_file_limit_allows(uint64_t chunks, std::string& why) {
  constexpr uint64_t headroom = 256;
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    why = std::string("cannot read RLIMIT_NOFILE: ") + std::strerror(errno);
    return false;
  }
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < chunks + headroom) {
    why = "the daemon may open " + std::to_string(limit.rlim_cur) +
          " files, too few to keep a descriptor for each of its " + std::to_string(chunks) +
          " chunks and " + std::to_string(headroom) + " more; raise LimitNOFILE= of the unit";
    return false;
  }
  return true;
}

// Whether the service manager's store keeps as many descriptors as parking
// needs (one per group, one more while a group changes, and the region): it
// drops what is beyond its room without telling the sender. systemd 254 and
// later say the room in $FDSTORE; systemd 252 (Debian 12) answers over
// D-Bus (FileDescriptorStoreMax). Another supervisor that says neither is
// taken at its word ($NOTIFY_SOCKET).
bool store_has_room(size_t chunk_count, std::string& why) {
  const size_t groups =
      (chunk_count + store::parking::group_chunks - 1) / store::parking::group_chunks;
  const size_t needed = groups + 2;
  std::optional<uint64_t> max;
  std::string where = "$FDSTORE";
  if (const char* env = std::getenv("FDSTORE"); env && *env) {
    max = std::strtoull(env, nullptr, 10);
  } else if (const std::optional<std::string> unit = systemd::own_unit()) {
    std::string asked;
    const std::optional<uint32_t> answer = systemd::fd_store_max(*unit, asked);
    if (!answer) {
      why = asked;
      return false;
    }
    max = *answer;
    where = "FileDescriptorStoreMax= of " + *unit;
  }
  if (max && *max < needed) {
    why = where + " is " + std::to_string(*max) + ", fewer than the " + std::to_string(needed) +
          " descriptors this device needs" +
          (where[0] == '$' ? std::string() : "; raise it in a drop-in");
    return false;
  }
  return true;
}

}  // namespace

std::optional<StoredState> take_stored_state(std::vector<NamedFd> passed,
                                             kernel::NbdNetlink* netlink,
                                             const std::string& instance, uint64_t chunk_bytes,
                                             FdStoreSink& sink) {
  std::vector<std::string> names;
  std::optional<UniqueFd> state;
  std::vector<NamedFd> parked;
  for (NamedFd& entry : passed) {
    if (entry.name == state_fd_name) {
      names.push_back(entry.name);
      state = std::move(entry.fd);
    } else if (entry.name.rfind("vram-", 0) == 0) {
      names.push_back(entry.name);
      parked.push_back(std::move(entry));
    }
    // Anything else is not ours: closed here.
  }
  if (names.empty()) return std::nullopt;
  if (!state) return refuse("its VRAM is there but not its block map", names, sink);

  std::optional<uint32_t> nbd_index;
  uint64_t device_bytes = 0;  // 0: no device to hold the region against
  if (netlink) {
    const std::vector<uint32_t> devices =
        netlink->find_by_backend(systemd::backend_identifier(instance));
    for (const uint32_t index : devices) {
      if (const std::optional<kernel::NbdSysfs> sysfs = kernel::read_nbd_sysfs(index)) {
        nbd_index = index;
        device_bytes = sysfs->size_bytes;
        break;
      }
    }
    if (!nbd_index) return refuse("its kernel device is gone", names, sink);
  }

  std::string why;
  std::optional<store::HandoverRegion> region =
      store::HandoverRegion::adopt(std::move(*state), {instance, device_bytes, chunk_bytes}, why);
  if (!region) return refuse("block map: " + why, names, sink);
  const size_t chunk_count =
      static_cast<size_t>((region->identity().export_bytes + chunk_bytes - 1) / chunk_bytes);
  std::optional<store::ParkedVram> vram =
      store::VramParking::unpark(parked, instance, chunk_bytes, chunk_count, why);
  if (!vram) return refuse("parked VRAM: " + why, names, sink);

  StoredState stored{std::move(*region), std::move(*vram), nbd_index, std::nullopt};
  if (const std::optional<int64_t> handed = stored.region.handed_over_unix_ns()) {
    stored.handed_at = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::nanoseconds(*handed)));
  }
  size_t parked_chunks = 0;
  for (const UniqueFd& fd : stored.vram.chunks)
    parked_chunks += fd ? 1 : 0;
  const std::string device_name =
      nbd_index ? "/dev/nbd" + std::to_string(*nbd_index) : "the export";
  log_info(
      "%s was handed over by the vramswapd before (%s): %s of VRAM in %zu chunks and the block "
      "map, from systemd's file descriptor store",
      device_name.c_str(), stored.handed_at ? "a clean handover" : "it died",
      format_byte_size(parked_chunks * chunk_bytes).c_str(), parked_chunks);
  return stored;
}

void forget_stored_state(const StoredState& stored, FdStoreSink& sink) {
  for (const std::string& name : stored.vram.names)
    if (!name.empty()) (void)sink.remove(name);
  remove_all(stored.vram.stale, sink);
  (void)sink.remove(state_fd_name);
}

std::unique_ptr<store::ChunkMap> take_over_export(StoredState& stored, store::VramStore& store) {
  const store::RestartIdentity& identity = stored.region.identity();
  store.reserve_released(identity.export_bytes);
  const std::vector<UniqueFd>& parked = stored.vram.chunks;
  const auto vram_kept = [&parked](size_t chunk) {
    return chunk < parked.size() && static_cast<bool>(parked[chunk]);
  };
  std::unique_ptr<store::ChunkMap> map;
  if (stored.region.layout().chunk_map) {
    store::ChunkMap::Recovery recovery;
    map = std::make_unique<store::ChunkMap>(identity.export_bytes, identity.chunk_bytes,
                                            stored.region.chunk_map_storage(), vram_kept, recovery);
    if (!recovery.usable()) {
      throw StartupError(exit_code::software,
                         recovery.vram_lost_chunks > 0
                             ? "chunk " + std::to_string(recovery.first_lost) + " (and " +
                                   std::to_string(recovery.vram_lost_chunks - 1) +
                                   " more) holds data in VRAM, but its VRAM was not handed over"
                             : "chunk " + std::to_string(recovery.first_damaged) + " (and " +
                                   std::to_string(recovery.damaged_chunks - 1) +
                                   " more) has a state no vramswapd writes");
    }
    if (recovery.evicting_fixed + recovery.restoring_fixed > 0) {
      log_notice(
          "%zu chunks were moving when the vramswapd before ended: each is where its "
          "complete copy is",
          recovery.evicting_fixed + recovery.restoring_fixed);
    }
  }
  for (size_t chunk = 0; chunk < store.chunk_count(); ++chunk) {
    const bool in_vram = map ? map->tier(chunk) == store::Tier::vram : true;
    if (!in_vram) continue;  // its parked VRAM (if any) is freed with the parking
    if (!vram_kept(chunk)) {
      throw StartupError(exit_code::software, "chunk " + std::to_string(chunk) +
                                                  " was not handed over (no spill area, so "
                                                  "every chunk is in VRAM)");
    }
    if (const cuda::Status imported = store.import_chunk(chunk, parked[chunk].get());
        !imported.ok()) {
      throw StartupError(exit_code::software, "the driver refused the VRAM of chunk " +
                                                  std::to_string(chunk) + ": " + imported.name());
    }
  }
  return map;
}

FdStoreHandover::FdStoreHandover(store::HandoverRegion region, FdStoreSink& sink)
    : region_(std::move(region)), sink_(sink) {}

FdStoreHandover::FdStoreHandover(StoredState&& stored, FdStoreSink& sink)
    : region_(std::move(stored.region)),
      sink_(sink),
      region_stored_(true),
      parked_(std::move(stored.vram)) {}

bool FdStoreHandover::arm(store::VramStore& store, std::string& why) {
  if (!systemd::fd_store::available()) {
    why = "not run by systemd (no $NOTIFY_SOCKET)";
    return false;
  }
  if (!store.exportable()) {
    why = "this driver cannot export VRAM as file descriptors";
    return false;
  }
  if (!open_file_limit_allows(store.chunk_count(), why)) return false;
  if (!store_has_room(store.chunk_count(), why)) return false;
  region_.mark_serving();
  if (!region_stored_) {
    if (const int stored = sink_.store(region_.fd(), state_fd_name); stored < 0) {
      why = std::string("cannot put the block map in systemd's store: ") + std::strerror(-stored);
      return false;
    }
    region_stored_ = true;
  }
  const uint64_t first_generation = parked_ ? parked_->highest_generation + 1 : 1;
  parking_ = std::make_unique<store::VramParking>(store, sink_, region_.identity().instance,
                                                  first_generation);
  const bool parked = parked_ ? parking_->adopt(std::move(*parked_), why) : parking_->park_all(why);
  parked_.reset();
  if (!parked) {
    parking_.reset();
    return false;
  }
  return true;
}

void FdStoreHandover::note_handed_over() noexcept {
  region_.mark_handed_over(std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count());
}

void FdStoreHandover::discard() noexcept {
  if (parking_) parking_->discard();
  if (region_stored_) (void)sink_.remove(state_fd_name);
  region_stored_ = false;
}

}  // namespace vramswap::daemon
