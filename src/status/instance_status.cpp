#include "status/instance_status.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace vramswap::status {
namespace {

using nlohmann::json;

// One list of fields for both directions, so they cannot drift apart.
// The I/O counters (common/io_counters.hpp) under their own names.
#define VRAMSWAP_STATUS_FIELDS(X)                                                             \
  X(format)                                                                                   \
  X(instance)                                                                                 \
  X(pid)                                                                                      \
  X(state)                                                                                    \
  X(health)                                                                                   \
  X(status_line) X(gpu_index) X(gpu_name) X(gpu_uuid) X(gpu_pci_bus_id) X(gpu_total_bytes)    \
      X(size_bytes) X(device) X(link) X(listen) X(kernel_connections) X(swap_active)          \
          X(swap_size_bytes) X(swap_used_bytes) X(swap_priority) VRAMSWAP_IO_COUNTERS(X)      \
              X(device_lost) X(copy_failures) X(checksum_failures) X(memory_locked)           \
                  X(oom_protected) X(io_flusher) X(updated_unix) X(exit_cause) X(ended_unix)  \
                      X(elastic) X(vram_bytes) X(spill_bytes) X(none_bytes) X(gpu_free_bytes) \
                          X(spill_path) X(last_move) X(last_move_reason) X(last_move_unix)    \
                              X(gpu_released) X(fd_store_handover)

#define VRAMSWAP_CRASH_FIELDS(X)                                                          \
  X(pid)                                                                                  \
  X(ended_unix) X(end_seen) X(cause) X(device) X(swap_active) X(swap_used_bytes) X(count) \
      X(vram_kept) X(taken_over)

json crash_to_json(const PreviousCrash& c) {
  json j;
#define VRAMSWAP_TO_JSON(field) j[#field] = c.field;
  VRAMSWAP_CRASH_FIELDS(VRAMSWAP_TO_JSON)
#undef VRAMSWAP_TO_JSON
  return j;
}

// Throws json::exception on a field of the wrong type.
PreviousCrash crash_from_json(const json& j) {
  PreviousCrash c;
#define VRAMSWAP_FROM_JSON(field) \
  if (j.contains(#field)) j.at(#field).get_to(c.field);
  VRAMSWAP_CRASH_FIELDS(VRAMSWAP_FROM_JSON)
#undef VRAMSWAP_FROM_JSON
  return c;
}

std::optional<InstanceStatus> read_file_at(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  return from_json(text.str());
}

}  // namespace

std::string runtime_directory() {
  const char* dir = std::getenv("VRAMSWAP_RUNTIME_DIR");
  return dir && *dir ? dir : "/run/vramswap";
}

std::string status_path(const std::string& instance) {
  return runtime_directory() + "/" + instance + ".json";
}

std::string to_json(const InstanceStatus& s) {
  json j;
#define VRAMSWAP_TO_JSON(field) j[#field] = s.field;
  VRAMSWAP_STATUS_FIELDS(VRAMSWAP_TO_JSON)
#undef VRAMSWAP_TO_JSON
  j["previous_crash"] = s.previous_crash ? crash_to_json(*s.previous_crash) : json(nullptr);
  return j.dump(2) + "\n";
}

std::optional<InstanceStatus> from_json(const std::string& text) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || j.value("format", 0) != InstanceStatus::format_version) {
    return std::nullopt;
  }
  InstanceStatus s;
  try {
#define VRAMSWAP_FROM_JSON(field) \
  if (j.contains(#field)) j.at(#field).get_to(s.field);
    VRAMSWAP_STATUS_FIELDS(VRAMSWAP_FROM_JSON)
#undef VRAMSWAP_FROM_JSON
    if (j.contains("previous_crash") && j.at("previous_crash").is_object()) {
      s.previous_crash = crash_from_json(j.at("previous_crash"));
    }
  } catch (const json::exception&) {
    return std::nullopt;
  }
  return s;
}

bool write_status_file(const InstanceStatus& status) {
  const std::string dir = runtime_directory();
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return false;
  const std::string path = status_path(status.instance);
  const std::string temporary = path + ".tmp";
  const std::string text = to_json(status);
  const int fd = open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  const int saved = errno;
  close(fd);
  if (!written || rename(temporary.c_str(), path.c_str()) != 0) {
    unlink(temporary.c_str());
    errno = written ? errno : saved;
    return false;
  }
  return true;
}

void remove_status_file(const std::string& instance) {
  unlink(status_path(instance).c_str());
}

std::optional<InstanceStatus> read_status_file(const std::string& instance) {
  return read_file_at(status_path(instance));
}

std::vector<InstanceStatus> read_status_files() {
  std::vector<InstanceStatus> found;
  const std::string dir = runtime_directory();
  DIR* d = opendir(dir.c_str());
  if (!d) return found;
  while (const dirent* entry = readdir(d)) {
    const std::string name = entry->d_name;
    if (name.size() <= 5 || name.compare(name.size() - 5, 5, ".json") != 0) continue;
    if (auto status = read_file_at(dir + "/" + name)) found.push_back(std::move(*status));
  }
  closedir(d);
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return a.instance < b.instance; });
  return found;
}

}  // namespace vramswap::status
