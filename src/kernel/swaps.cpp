#include "kernel/swaps.hpp"

#include <sys/stat.h>
#include <sys/swap.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/startup_error.hpp"
#include "common/text_lines.hpp"
#include "kernel/run_program.hpp"

namespace vramswap::kernel {
namespace {

// The kernel prints swap paths with seq_file's escaping: space, tab, newline
// and backslash become a backslash and three octal digits.
std::string decode_octal_escapes(std::string_view text) {
  std::string decoded;
  decoded.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size()) {
      const char a = text[i + 1], b = text[i + 2], c = text[i + 3];
      if (a >= '0' && a <= '3' && b >= '0' && b <= '7' && c >= '0' && c <= '7') {
        decoded.push_back(static_cast<char>((a - '0') * 64 + (b - '0') * 8 + (c - '0')));
        i += 3;
        continue;
      }
    }
    decoded.push_back(text[i]);
  }
  return decoded;
}

template <typename Number>
bool parse_number(std::string_view text, Number& value) {
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  return error == std::errc{} && end == text.data() + text.size();
}

std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t'))
      ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t')
      ++i;
    if (i > start) fields.push_back(line.substr(start, i - start));
  }
  return fields;
}

std::optional<dev_t> block_device_number(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISBLK(st.st_mode)) return std::nullopt;
  return st.st_rdev;
}

}  // namespace

std::vector<SwapEntry> parse_proc_swaps(std::string_view text) {
  std::vector<SwapEntry> entries;
  for_each_line(text, [&entries](std::string_view line) {
    std::vector<std::string_view> fields = split_fields(line);
    if (fields.size() < 5) return true;
    SwapEntry entry;
    uint64_t size_kib = 0, used_kib = 0;
    // The header ("Filename Type Size Used Priority") fails here too.
    if (!parse_number(fields[2], size_kib) || !parse_number(fields[3], used_kib) ||
        !parse_number(fields[4], entry.priority)) {
      return true;
    }
    entry.path = decode_octal_escapes(fields[0]);
    entry.type = std::string(fields[1]);
    entry.size_bytes = size_kib * 1024;
    entry.used_bytes = used_kib * 1024;
    entries.push_back(std::move(entry));
    return true;
  });
  return entries;
}

std::vector<SwapEntry> read_proc_swaps() {
  std::ifstream file("/proc/swaps");
  if (!file) {
    throw StartupError(exit_code::os_error, std::string("cannot read /proc/swaps: ") +
                                                std::strerror(errno) + "; is /proc mounted?");
  }
  std::ostringstream text;
  text << file.rdbuf();
  return parse_proc_swaps(text.str());
}

std::optional<SwapEntry> find_swap_for_device(const std::vector<SwapEntry>& entries,
                                              const std::string& device_path) {
  std::optional<dev_t> wanted = block_device_number(device_path);
  if (!wanted) return std::nullopt;
  for (const SwapEntry& entry : entries) {
    if (entry.type != "partition") continue;
    if (block_device_number(entry.path) == wanted) return entry;
    // A swapon run in a mount namespace that is gone (a sandboxed daemon's,
    // swap = yes, after a handover) leaves its /dev mount detached, and the
    // kernel shows the path from that mount's root: "/nbd0" for
    // /dev/nbd0 (swap_off_if_swap() in swaps.hpp).
    if (!block_device_number(entry.path) && block_device_number("/dev" + entry.path) == wanted)
      return entry;
  }
  return std::nullopt;
}

std::optional<SwapEntry> active_swap_for_device(const std::string& device_path) {
  return find_swap_for_device(read_proc_swaps(), device_path);
}

void make_swap(const std::string& path, std::string_view label) {
  std::string cut_label(label.substr(0, swap_label_max));
  ProgramResult result = run_program({"mkswap", "-L", cut_label, path});
  if (result.succeeded()) return;
  if (!result.started) {
    throw StartupError(exit_code::unavailable,
                       "cannot run mkswap (" + result.summary() + "); install util-linux");
  }
  throw StartupError(exit_code::os_error, "mkswap " + path + " failed: " + result.summary());
}

void swap_on(const std::string& path, int priority, bool discard) {
  if (priority < -1 || priority > SWAP_FLAG_PRIO_MASK) {
    throw StartupError(exit_code::config, "swap priority " + std::to_string(priority) +
                                              " is out of range; use -1 to 32767");
  }
  // -1, as in the configuration and swapon(8): no preference, the kernel
  // picks one below every other swap area.
  int flags = priority < 0
                  ? 0
                  : SWAP_FLAG_PREFER | ((priority << SWAP_FLAG_PRIO_SHIFT) & SWAP_FLAG_PRIO_MASK);
  if (discard) flags |= SWAP_FLAG_DISCARD;
  if (::swapon(path.c_str(), flags) == 0) return;
  const int error = errno;
  switch (error) {
    case EBUSY:
      throw StartupError(exit_code::unavailable,
                         path +
                             " is already in use (active swap, mounted, or held by another "
                             "program); check /proc/swaps and `lsblk " +
                             path + "`");
    case EINVAL:
      throw StartupError(exit_code::os_error,
                         path +
                             " has no valid swap signature for this kernel (not made by "
                             "mkswap, or made for another page size); run mkswap on it");
    case EPERM:
      throw StartupError(exit_code::no_permission,
                         "swapon " + path +
                             " was refused: it needs CAP_SYS_ADMIN (run as root), "
                             "or the kernel's limit of swap areas is reached (see /proc/swaps)");
    case ENOENT:
      throw StartupError(exit_code::os_error, "swapon " + path + ": no such device");
    case ENOMEM:
      throw StartupError(exit_code::os_error,
                         "swapon " + path +
                             ": the kernel ran out of memory for the swap map; "
                             "free memory and retry");
    default:
      throw StartupError(exit_code::os_error,
                         "swapon " + path + " failed: " + std::strerror(error));
  }
}

bool swap_off_if_swap(const std::string& path) {
  if (::swapoff(path.c_str()) == 0) return true;
  if (errno == EINVAL) return false;
  swap_off(path);  // again, for its one-line error
  return true;
}

void swap_off(const std::string& path) {
  if (::swapoff(path.c_str()) == 0) return;
  const int error = errno;
  switch (error) {
    case ENOMEM:
      throw StartupError(
          exit_code::os_error,
          "swapoff " + path +
              ": not enough free memory (RAM and other swap) to "
              "take back the pages swapped to it; free memory or add swap elsewhere, "
              "then retry");
    case EINVAL:
      throw StartupError(exit_code::os_error,
                         "swapoff " + path + ": it is not an active swap area");
    case EPERM:
      throw StartupError(exit_code::no_permission,
                         "swapoff " + path + " needs CAP_SYS_ADMIN; run as root");
    case ENOENT:
      throw StartupError(exit_code::os_error, "swapoff " + path + ": no such device");
    default:
      throw StartupError(exit_code::os_error,
                         "swapoff " + path + " failed: " + std::strerror(error));
  }
}

}  // namespace vramswap::kernel
