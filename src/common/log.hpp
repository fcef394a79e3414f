#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string_view>

namespace vramswap {

// Syslog severities, so journald files each line at the right priority.
enum class LogLevel : int { error = 3, warning = 4, notice = 5, info = 6, debug = 7 };

// Names the program (and instance) in every line. Under systemd (stderr is the
// journal stream) lines carry a "<N>" priority prefix instead of a name.
void log_init(std::string_view program, std::string_view instance);
void log_set_max_level(LogLevel level);

// One line per call, written with a single write(2) from a stack buffer: it
// allocates nothing, so it is safe on the rare error paths of the I/O threads.
void log_message(LogLevel level, const char* format, ...) __attribute__((format(printf, 2, 3)));

#define VRAMSWAP_LOG(level, ...) ::vramswap::log_message(::vramswap::LogLevel::level, __VA_ARGS__)
#define log_error(...) VRAMSWAP_LOG(error, __VA_ARGS__)
#define log_warning(...) VRAMSWAP_LOG(warning, __VA_ARGS__)
#define log_notice(...) VRAMSWAP_LOG(notice, __VA_ARGS__)
#define log_info(...) VRAMSWAP_LOG(info, __VA_ARGS__)
#define log_debug(...) VRAMSWAP_LOG(debug, __VA_ARGS__)

// Lets one line per cause through per interval and counts the rest, so a fault
// that hits every request cannot flood the journal or slow the I/O path.
class LogRateLimit {
 public:
  explicit LogRateLimit(std::chrono::milliseconds interval = std::chrono::seconds(10))
      : interval_ns_(std::chrono::nanoseconds(interval).count()) {}

  // True when a line may be written now; `suppressed` is then the sum of the
  // `events` of the calls swallowed since the last line that got through (a
  // call may stand for several events: the requests one failure failed).
  bool allow(uint64_t& suppressed, uint64_t events = 1) noexcept;

 private:
  int64_t interval_ns_;
  std::atomic<int64_t> next_allowed_ns_{0};
  std::atomic<uint64_t> suppressed_{0};
};

}  // namespace vramswap
