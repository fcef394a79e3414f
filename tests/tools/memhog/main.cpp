// memhog: the memory-pressure tool of the swap tests. Run in a memory cgroup
// smaller than --size, it pushes its pages out to swap and pulls them back,
// and proves that every word survived the trip.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <span>
#include <string>

#include "common/byte_size.hpp"
#include "common/exit_codes.hpp"
#include "common/log.hpp"
#include "options.hpp"
#include "pattern.hpp"

namespace vramswap::memhog {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Prints the first wrong words and returns how many there were.
uint64_t report(const CheckResult& result, const char* phase, uint64_t total_words) {
  for (const Mismatch& m : result.first) {
    const uint64_t offset = m.index * sizeof(uint64_t);
    log_error("%s: word %" PRIu64 " (byte offset 0x%" PRIx64 ", page %" PRIu64
              "): expected 0x%016" PRIx64 ", found 0x%016" PRIx64,
              phase, m.index, offset, offset / 4096, m.expected, m.actual);
  }
  if (result.mismatches != 0) {
    log_error("%s: %" PRIu64 " of %" PRIu64 " words wrong", phase, result.mismatches, total_words);
  }
  return result.mismatches;
}

// Written to a temporary name and renamed, so a waiter never reads it half-written.
bool write_ready_file(const std::string& path) {
  const std::string temporary = path + ".tmp";
  FILE* file = std::fopen(temporary.c_str(), "w");
  if (!file) return false;
  std::fprintf(file, "%ld\n", static_cast<long>(getpid()));
  if (std::fclose(file) != 0) return false;
  return std::rename(temporary.c_str(), path.c_str()) == 0;
}

void wait_for_go(const Options& options, const sigset_t& usr1) {
  if (options.wait_signal) {
    log_info("data in place; waiting for SIGUSR1 (pid %ld)", static_cast<long>(getpid()));
    int signal_number = 0;
    while (sigwait(&usr1, &signal_number) != 0) {
    }
    return;
  }
  log_info("data in place; waiting for %s", options.wait_file.c_str());
  const timespec tick{0, 100'000'000};
  while (access(options.wait_file.c_str(), F_OK) != 0)
    nanosleep(&tick, nullptr);
}

int run(const Options& options) {
  // Blocked before anything else, so a SIGUSR1 sent early is kept, not fatal.
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  if (options.wait_signal) sigprocmask(SIG_BLOCK, &usr1, nullptr);

  const uint64_t word_count = options.size_bytes / sizeof(uint64_t);
  const size_t bytes = word_count * sizeof(uint64_t);
  void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) {
    log_error("cannot map %s: %s; ask for less with --size", format_byte_size(bytes).c_str(),
              std::strerror(errno));
    return exit_code::os_error;
  }
  // Base pages only: each is swapped on its own, as most of a desktop's memory is.
  madvise(memory, bytes, MADV_NOHUGEPAGE);
  std::span<uint64_t> words(static_cast<uint64_t*>(memory), word_count);

  auto start = Clock::now();
  fill(words, options.seed, 0);
  log_info("wrote %s (seed %" PRIu64 ") in %.1f s", format_byte_size(bytes).c_str(), options.seed,
           seconds_since(start));

  uint64_t wrong = 0;
  uint64_t generation = 0;
  for (unsigned pass = 1; pass <= options.passes; ++pass, ++generation) {
    start = Clock::now();
    const std::string phase = "pass " + std::to_string(pass);
    wrong +=
        report(advance(words, options.seed, generation, options.report), phase.c_str(), word_count);
    log_info("%s: checked and rewrote %s in %.1f s", phase.c_str(), format_byte_size(bytes).c_str(),
             seconds_since(start));
  }

  if (!options.ready_file.empty() && !write_ready_file(options.ready_file)) {
    log_error("cannot write %s: %s", options.ready_file.c_str(), std::strerror(errno));
    return exit_code::os_error;
  }
  if (options.wait_signal || !options.wait_file.empty()) wait_for_go(options, usr1);

  start = Clock::now();
  wrong +=
      report(verify(words, options.seed, generation, options.report), "final check", word_count);
  log_info("final check of %s in %.1f s", format_byte_size(bytes).c_str(), seconds_since(start));
  if (wrong != 0) {
    log_error("FAILED: %" PRIu64 " wrong words in all checks", wrong);
    return 1;
  }
  log_info("OK: every word of %s verified after %u re-touch passes",
           format_byte_size(bytes).c_str(), options.passes);
  return 0;
}

}  // namespace
}  // namespace vramswap::memhog

int main(int argc, char** argv) {
  using namespace vramswap;
  log_init("memhog", "");
  std::string error;
  const auto options = memhog::parse_options(argc, argv, error);
  if (!options) {
    if (error.empty()) {
      std::fputs(memhog::usage_text, stdout);
      return exit_code::ok;
    }
    log_error("%s", error.c_str());
    return exit_code::usage;
  }
  return memhog::run(*options);
}
