// memhog is the judge of every swap test: these cases prove that it notices
// the ways swap can lose data (flipped bits, a page at the wrong place, stale
// data, zeros) and that a clean round trip passes.
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "pattern.hpp"

using namespace vramswap::memhog;

namespace {
constexpr uint64_t kWordsPerPage = 4096 / sizeof(uint64_t);
constexpr uint64_t kSeed = 42;
}  // namespace

TEST_CASE("memhog: intact data verifies with no mismatch") {
  std::vector<uint64_t> words(4 * kWordsPerPage);
  fill(words, kSeed, 0);
  const CheckResult result = verify(words, kSeed, 0, 10);
  CHECK(result.mismatches == 0);
  CHECK(result.first.empty());
}

TEST_CASE("memhog: one flipped bit is found and located") {
  std::vector<uint64_t> words(4 * kWordsPerPage);
  fill(words, kSeed, 0);
  const uint64_t good = words[1234];
  words[1234] ^= uint64_t{1} << 17;
  const CheckResult result = verify(words, kSeed, 0, 10);
  REQUIRE(result.mismatches == 1);
  REQUIRE(result.first.size() == 1);
  CHECK(result.first[0].index == 1234);
  CHECK(result.first[0].expected == good);
  CHECK(result.first[0].actual == (good ^ (uint64_t{1} << 17)));
}

TEST_CASE("memhog: a page swapped with another page is caught word by word") {
  std::vector<uint64_t> words(4 * kWordsPerPage);
  fill(words, kSeed, 0);
  for (uint64_t i = 0; i < kWordsPerPage; ++i)
    std::swap(words[i], words[2 * kWordsPerPage + i]);
  const CheckResult result = verify(words, kSeed, 0, 3);
  CHECK(result.mismatches == 2 * kWordsPerPage);
  CHECK(result.first.size() == 3);  // the report keeps only what was asked for
}

TEST_CASE("memhog: another run's data and zeroed pages fail") {
  std::vector<uint64_t> words(kWordsPerPage);
  fill(words, kSeed + 1, 0);
  CHECK(verify(words, kSeed, 0, 0).mismatches == kWordsPerPage);
  std::fill(words.begin(), words.end(), 0);
  CHECK(verify(words, kSeed, 0, 0).mismatches == kWordsPerPage);
}

TEST_CASE("memhog: a re-touch pass checks the old generation and writes a new one") {
  std::vector<uint64_t> words(2 * kWordsPerPage);
  fill(words, kSeed, 0);
  words[7] = 0;
  const CheckResult pass = advance(words, kSeed, 0, 10);
  CHECK(pass.mismatches == 1);
  // After the pass every word, the damaged one included, holds generation 1,
  // and a page left at generation 0 (a write lost in swap) would fail.
  CHECK(verify(words, kSeed, 1, 0).mismatches == 0);
  CHECK(verify(words, kSeed, 0, 0).mismatches == words.size());
}
