#include "generator/generator_log.hpp"

#include <fcntl.h>
#include <syslog.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace vramswap::generator {
namespace {

constexpr const char* program = "vramswap-generator";

// A kmsg record holds about 1 KiB; longer lines are cut rather than lost.
constexpr size_t max_line = 900;

}  // namespace

GeneratorLog GeneratorLog::open_default() {
  const char* target = std::getenv("SYSTEMD_LOG_TARGET");
  const bool console = target && (std::strcmp(target, "console") == 0);
  const bool kmsg_asked = target && (std::strcmp(target, "kmsg") == 0);
  if (console || (!kmsg_asked && ::isatty(STDERR_FILENO))) return to_stderr();
  UniqueFd fd(::open("/dev/kmsg", O_WRONLY | O_NOCTTY | O_CLOEXEC));
  if (!fd) return to_stderr();
  return GeneratorLog(std::move(fd), true);
}

void GeneratorLog::write(LogLevel level, const std::string& text) {
  char line[max_line + 64];
  int length;
  const int shown = static_cast<int>(text.size() < max_line ? text.size() : max_line);
  if (use_kmsg_) {
    // "<N>" carries facility and severity; "name[pid]: " becomes the
    // journal's SYSLOG_IDENTIFIER.
    length =
        std::snprintf(line, sizeof line, "<%d>%s[%d]: %.*s\n", LOG_DAEMON | static_cast<int>(level),
                      program, static_cast<int>(::getpid()), shown, text.data());
  } else {
    const char* word = level == LogLevel::error     ? "error: "
                       : level == LogLevel::warning ? "warning: "
                                                    : "";
    length = std::snprintf(line, sizeof line, "%s: %s%.*s\n", program, word, shown, text.data());
  }
  if (length <= 0) return;
  const size_t size = static_cast<size_t>(length) < sizeof line ? length : sizeof line - 1;
  // One write per line: /dev/kmsg takes one record per write.
  const ssize_t ignored = ::write(use_kmsg_ ? kmsg_.get() : STDERR_FILENO, line, size);
  (void)ignored;
}

}  // namespace vramswap::generator
