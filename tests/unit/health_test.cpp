// What the engine's fault counters write to the journal.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "engine/health.hpp"

using Catch::Matchers::Contains;

namespace {

// Whatever `action` logs (the log goes to stderr).
template <typename Action>
std::string logged(Action action) {
  char path[] = "/tmp/vramswap-health-log-XXXXXX";
  const int file = mkstemp(path);
  REQUIRE(file >= 0);
  std::fflush(stderr);
  const int saved = dup(STDERR_FILENO);
  dup2(file, STDERR_FILENO);
  action();
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(file);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  unlink(path);
  return text.str();
}

}  // namespace

TEST_CASE("a lost GPU's rate-limited log line counts the failed requests, not the lines") {
  vramswap::engine::Health health;
  const std::string first = logged([&] {
    health.copy_failed("CUDA_ERROR_LAUNCH_FAILED", true, 1, 3);
    health.copy_failed("CUDA_ERROR_LAUNCH_FAILED", true, 1, 4);  // the first "still lost" line
    // Within the 10 s interval: not logged, but counted.
    health.copy_failed("CUDA_ERROR_LAUNCH_FAILED", true, 1, 5);
    health.copy_failed("CUDA_ERROR_LAUNCH_FAILED", true, 1, 6);
  });
  INFO(first);
  CHECK_THAT(first, Contains("GPU lost (CUDA_ERROR_LAUNCH_FAILED)"));
  CHECK_THAT(first, Contains("GPU still lost (CUDA_ERROR_LAUNCH_FAILED): 4 more failed requests"));
  CHECK(first.find("still lost", first.find("still lost") + 1) == std::string::npos);

  std::this_thread::sleep_for(std::chrono::milliseconds(10'100));
  const std::string later =
      logged([&] { health.copy_failed("CUDA_ERROR_LAUNCH_FAILED", true, 1, 7); });
  INFO(later);
  // 5 + 6 swallowed, and this call's 7.
  CHECK_THAT(later, Contains("GPU still lost (CUDA_ERROR_LAUNCH_FAILED): 18 more failed requests"));
  CHECK(health.device_lost());
}
