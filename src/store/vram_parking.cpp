#include "store/vram_parking.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <stdexcept>
#include <utility>

#include "store/parking_format.hpp"
#include "store/parking_socket.hpp"

namespace vramswap::store {
namespace {

size_t group_count(size_t chunks) {
  return (chunks + parking::group_chunks - 1) / parking::group_chunks;
}

std::string sink_error(const char* what, const std::string& name, int error) {
  return std::string(what) + " " + name +
         " in the file descriptor store failed: " + std::strerror(-error);
}

}  // namespace

VramParking::VramParking(VramStore& store, FdStoreSink& sink, std::string instance,
                         uint64_t first_generation)
    : store_(store),
      sink_(sink),
      instance_(std::move(instance)),
      next_generation_(std::max<uint64_t>(first_generation, 1)) {
  if (instance_.size() > parking::max_instance_bytes) {
    throw std::invalid_argument("instance name too long to park VRAM under");
  }
  if (store.chunk_count() > std::numeric_limits<uint32_t>::max()) {
    throw std::invalid_argument("too many chunks to park");
  }
  exported_.resize(store.chunk_count());
  names_.resize(group_count(store.chunk_count()));
  failed_.assign(names_.size(), false);
  store_.set_observer(this);
}

VramParking::~VramParking() {
  store_.set_observer(nullptr);
}

uint64_t VramParking::next_generation() const {
  std::lock_guard lock(mutex_);
  return next_generation_;
}

bool VramParking::park_all(std::string& why) {
  std::lock_guard lock(mutex_);
  if (!store_.exportable()) {
    why = "this driver cannot export VRAM as file descriptors, so it cannot outlive the daemon";
    return false;
  }
  return repark_groups(std::vector<bool>(names_.size(), true), why);
}

bool VramParking::repark_groups(const std::vector<bool>& which, std::string& why) {
  bool all = true;
  for (size_t group = 0; group < names_.size(); ++group) {
    if (!which[group]) continue;
    std::string failure;
    failed_[group] = !repark(group, failure);
    if (failed_[group] && all) {
      why = failure;
      all = false;
    }
  }
  parked_ = all;
  update_intact();
  return all;
}

bool VramParking::adopt(ParkedVram&& parked, std::string& why) {
  std::lock_guard lock(mutex_);
  if (parked.chunks.size() != exported_.size() || parked.names.size() != names_.size()) {
    why = "the parked VRAM is for an export of " + std::to_string(parked.chunks.size()) +
          " chunks, this one has " + std::to_string(exported_.size());
    return false;
  }
  next_generation_ = std::max(next_generation_, parked.highest_generation + 1);
  std::vector<bool> differs(names_.size(), false);
  for (size_t chunk = 0; chunk < exported_.size(); ++chunk) {
    const size_t group = chunk / parking::group_chunks;
    const bool was_parked = parked.chunks[chunk].valid();
    if (was_parked && store_.committed(chunk)) {
      exported_[chunk] = std::move(parked.chunks[chunk]);
    } else if (was_parked || store_.committed(chunk)) {
      differs[group] = true;  // parked but not imported, or committed anew
    }
  }
  names_ = std::move(parked.names);
  for (const std::string& name : parked.stale)
    remove_name(name);
  return repark_groups(differs, why);
}

bool VramParking::repark(size_t group, std::string& why) {
  // Names the sink refused to remove earlier hold VRAM that may be released
  // by now: try again on every change.
  std::vector<std::string> retry = std::exchange(unremoved_, {});
  for (const std::string& name : retry)
    remove_name(name);

  parking::Header header{instance_, store_.chunk_bytes(), group, 0, {}};
  std::vector<int> fds;
  const size_t first = group * parking::group_chunks;
  const size_t end = std::min(first + parking::group_chunks, exported_.size());
  for (size_t chunk = first; chunk < end; ++chunk) {
    if (!store_.committed(chunk)) {
      exported_[chunk].reset();  // a released chunk's VRAM must really go
      continue;
    }
    if (!exported_[chunk]) {
      const cuda::Status exported = store_.export_chunk(chunk, exported_[chunk]);
      if (!exported.ok()) {
        why = "exporting VRAM chunk " + std::to_string(chunk) + " as a file descriptor failed: " +
              store_.context().driver().describe(exported.code());
        return false;
      }
    }
    fds.push_back(exported_[chunk].get());
    header.chunks.push_back(static_cast<uint32_t>(chunk));
  }

  const std::string previous = names_[group];
  if (fds.empty()) {
    if (!previous.empty()) remove_name(previous);
    names_[group].clear();
    return true;
  }
  header.generation = next_generation_++;
  const UniqueFd socket = parking::park(parking::encode(header), fds, why);
  if (!socket) return false;
  const std::string name = parking::name(group, header.generation);
  if (const int stored = sink_.store(socket.get(), name); stored < 0) {
    why = sink_error("storing", name, stored);
    return false;  // the previous generation stays stored, and stays right for what it holds
  }
  names_[group] = name;
  // Only now: a crash before this leaves both, and the next run takes the
  // newer one.
  if (!previous.empty()) remove_name(previous);
  return true;
}

void VramParking::remove_name(const std::string& name) {
  if (const int removed = sink_.remove(name); removed < 0) {
    // Its VRAM stays taken until the next run finds it stale.
    unremoved_.push_back(name);
    uint64_t suppressed = 0;
    if (log_limit_.allow(suppressed)) {
      log_warning("live restart: %s; its VRAM stays taken until it is removed (%llu more)",
                  sink_error("removing", name, removed).c_str(),
                  static_cast<unsigned long long>(suppressed));
    }
  }
}

void VramParking::repark_quietly(size_t group) noexcept {
  std::string why;
  bool ok = false;
  try {
    ok = repark(group, why);
  } catch (const std::exception& error) {
    why = error.what();
  }
  failed_[group] = !ok;
  update_intact();
  if (ok) return;
  uint64_t suppressed = 0;
  if (log_limit_.allow(suppressed)) {
    log_warning(
        "live restart: VRAM chunk group %zu cannot be parked (%s); a restart now would lose "
        "the pages in it (%llu more)",
        group, why.c_str(), static_cast<unsigned long long>(suppressed));
  }
}

void VramParking::chunk_committed(size_t chunk) noexcept {
  std::lock_guard lock(mutex_);
  if (chunk < exported_.size()) repark_quietly(chunk / parking::group_chunks);
}

void VramParking::chunk_released(size_t chunk) noexcept {
  std::lock_guard lock(mutex_);
  if (chunk >= exported_.size()) return;
  exported_[chunk].reset();  // even if parking the group again fails
  repark_quietly(chunk / parking::group_chunks);
}

void VramParking::discard() noexcept {
  std::lock_guard lock(mutex_);
  for (std::string& name : names_) {
    if (!name.empty()) (void)sink_.remove(name);
    name.clear();
  }
  for (const std::string& name : unremoved_)
    (void)sink_.remove(name);
  unremoved_.clear();
  for (UniqueFd& fd : exported_)
    fd.reset();
  parked_ = false;
  update_intact();
}

void VramParking::update_intact() {
  intact_.store(parked_ && std::none_of(failed_.begin(), failed_.end(), [](bool f) { return f; }),
                std::memory_order_relaxed);
}

std::optional<ParkedVram> VramParking::unpark(std::vector<NamedFd>& passed,
                                              std::string_view instance, uint64_t chunk_bytes,
                                              size_t chunk_count, std::string& why) {
  const size_t groups = group_count(chunk_count);
  ParkedVram parked;
  parked.chunks.resize(chunk_count);
  parked.names.resize(groups);
  // Per group: the entry of the highest generation.
  std::vector<std::optional<size_t>> newest(groups);
  std::vector<uint64_t> newest_generation(groups, 0);
  for (size_t i = 0; i < passed.size(); ++i) {
    if (!parking::is_parking_name(passed[i].name)) continue;
    const auto name = parking::parse_name(passed[i].name);
    if (!name) {
      why = "a parked VRAM socket has a malformed name (" + passed[i].name + ")";
      return std::nullopt;
    }
    if (name->group >= groups) {
      why = passed[i].name + " parks chunk group " + std::to_string(name->group) +
            ", beyond the export's " + std::to_string(groups) + " groups";
      return std::nullopt;
    }
    if (newest[name->group] && newest_generation[name->group] == name->generation) {
      why = "two parked VRAM sockets are named " + passed[i].name;
      return std::nullopt;
    }
    parked.highest_generation = std::max(parked.highest_generation, name->generation);
    if (newest[name->group] && newest_generation[name->group] > name->generation) {
      parked.stale.push_back(passed[i].name);
      continue;
    }
    if (newest[name->group]) parked.stale.push_back(passed[*newest[name->group]].name);
    newest[name->group] = i;
    newest_generation[name->group] = name->generation;
  }

  for (size_t group = 0; group < groups; ++group) {
    if (!newest[group]) continue;
    const NamedFd& entry = passed[*newest[group]];
    auto peeked =
        parking::peek(entry.fd.get(), parking::max_encoded_bytes, parking::group_chunks, why);
    if (!peeked) {
      why = entry.name + ": " + why;
      return std::nullopt;
    }
    const auto header = parking::decode(peeked->bytes.data(), peeked->bytes.size(), why);
    if (!header) {
      why = entry.name + ": " + why;
      return std::nullopt;
    }
    const auto refuse = [&](const std::string& what) {
      why = entry.name + " " + what;
      return std::nullopt;
    };
    if (header->instance != instance) {
      return refuse("is VRAM of instance '" + header->instance + "', not '" +
                    std::string(instance) + "'");
    }
    if (header->chunk_bytes != chunk_bytes) {
      return refuse("holds chunks of " + std::to_string(header->chunk_bytes) + " bytes, not " +
                    std::to_string(chunk_bytes));
    }
    if (header->group != group || header->generation != newest_generation[group]) {
      return refuse("holds group " + std::to_string(header->group) + " generation " +
                    std::to_string(header->generation) + ", not what its name says");
    }
    if (header->chunks.size() != peeked->fds.size()) {
      return refuse("announces " + std::to_string(header->chunks.size()) + " chunks but carries " +
                    std::to_string(peeked->fds.size()) + " descriptors");
    }
    const size_t first = group * parking::group_chunks;
    const size_t end = std::min(first + parking::group_chunks, chunk_count);
    for (size_t i = 0; i < header->chunks.size(); ++i) {
      const size_t chunk = header->chunks[i];
      if (chunk < first || chunk >= end || (i > 0 && chunk <= header->chunks[i - 1])) {
        return refuse("holds chunk " + std::to_string(chunk) + ", outside its group's chunks " +
                      std::to_string(first) + ".." + std::to_string(end - 1) + " or out of order");
      }
      parked.chunks[chunk] = std::move(peeked->fds[i]);
    }
    parked.names[group] = entry.name;
  }

  // Everything checked: the parking entries are ours now (their descriptors
  // close here; systemd keeps its own).
  std::erase_if(passed, [](const NamedFd& entry) { return parking::is_parking_name(entry.name); });
  return parked;
}

}  // namespace vramswap::store
