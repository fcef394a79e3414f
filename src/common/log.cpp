#include "common/log.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace vramswap {
namespace {

char g_prefix[96] = "vramswap: ";
bool g_journal = false;
std::atomic<int> g_max_level{static_cast<int>(LogLevel::info)};

// journald sets JOURNAL_STREAM to "device:inode" of the stream it connected
// to stderr; only if stderr is still that stream are "<N>" prefixes understood.
bool stderr_is_journal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (!stream) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  return st.st_dev == dev && st.st_ino == ino;
}

const char* level_word(LogLevel level) {
  switch (level) {
    case LogLevel::error: return "error: ";
    case LogLevel::warning: return "warning: ";
    default: return "";
  }
}

int64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

void log_init(std::string_view program, std::string_view instance) {
  g_journal = stderr_is_journal();
  if (instance.empty()) {
    std::snprintf(g_prefix, sizeof g_prefix, "%.*s: ", static_cast<int>(program.size()),
                  program.data());
  } else {
    std::snprintf(g_prefix, sizeof g_prefix, "%.*s[%.*s]: ", static_cast<int>(program.size()),
                  program.data(), static_cast<int>(instance.size()), instance.data());
  }
  if (const char* debug = std::getenv("VRAMSWAP_DEBUG"); debug && *debug && *debug != '0') {
    log_set_max_level(LogLevel::debug);
  }
}

void log_set_max_level(LogLevel level) {
  g_max_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

void log_message(LogLevel level, const char* format, ...) {
  if (static_cast<int>(level) > g_max_level.load(std::memory_order_relaxed)) return;
  const int saved_errno = errno;
  char line[1024];
  int used = g_journal ? std::snprintf(line, sizeof line, "<%d>", static_cast<int>(level))
                       : std::snprintf(line, sizeof line, "%s%s", g_prefix, level_word(level));
  va_list args;
  va_start(args, format);
  int wrote = std::vsnprintf(line + used, sizeof line - used, format, args);
  va_end(args);
  size_t length = used + (wrote < 0 ? 0 : static_cast<size_t>(wrote));
  if (length > sizeof line - 2) length = sizeof line - 2;  // truncated: keep the newline
  line[length++] = '\n';
  ssize_t ignored = ::write(STDERR_FILENO, line, length);
  (void)ignored;
  errno = saved_errno;
}

bool LogRateLimit::allow(uint64_t& suppressed, uint64_t events) noexcept {
  const int64_t now = monotonic_ns();
  int64_t next = next_allowed_ns_.load(std::memory_order_relaxed);
  if (now >= next &&
      next_allowed_ns_.compare_exchange_strong(next, now + interval_ns_, std::memory_order_relaxed)) {
    suppressed = suppressed_.exchange(0, std::memory_order_relaxed);
    return true;
  }
  suppressed_.fetch_add(events, std::memory_order_relaxed);
  return false;
}

}  // namespace vramswap
