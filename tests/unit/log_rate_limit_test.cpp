#include <catch2/catch.hpp>

#include <chrono>

#include "common/log.hpp"

using vramswap::LogRateLimit;

TEST_CASE("a rate limit reports what it swallowed, counting each call's events") {
  LogRateLimit limit(std::chrono::hours(1));
  uint64_t suppressed = 99;
  REQUIRE(limit.allow(suppressed, 5));
  CHECK(suppressed == 0);
  CHECK_FALSE(limit.allow(suppressed, 7));
  CHECK_FALSE(limit.allow(suppressed, 3));
  CHECK_FALSE(limit.allow(suppressed));  // one event by default
  LogRateLimit open(std::chrono::milliseconds(0));
  REQUIRE(open.allow(suppressed, 2));
  CHECK(suppressed == 0);
}

TEST_CASE("once the interval has passed, the next line gets the events swallowed meanwhile") {
  LogRateLimit limit(std::chrono::milliseconds(50));
  uint64_t suppressed = 0;
  REQUIRE(limit.allow(suppressed, 1));
  CHECK_FALSE(limit.allow(suppressed, 7));
  CHECK_FALSE(limit.allow(suppressed, 3));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool allowed = false;
  while (!allowed && std::chrono::steady_clock::now() < deadline) {
    allowed = limit.allow(suppressed, 0);
  }
  REQUIRE(allowed);
  CHECK(suppressed == 10);
}
