#include "store/block_checksums.hpp"

#include "random_bytes.hpp"

#include <catch2/catch.hpp>
#include <cstring>
#include <string_view>
#include <vector>

using vramswap::BlockChecksums;
using vramswap::test::random_bytes;

namespace {

constexpr uint32_t kBlock = BlockChecksums::kBlockBytes;

}  // namespace

TEST_CASE("crc32c is the Castagnoli CRC, and chains across pieces") {
  constexpr std::string_view kCheck = "123456789";
  const auto* text = reinterpret_cast<const std::byte*>(kCheck.data());
  CHECK(BlockChecksums::crc32c(0, text, kCheck.size()) == 0xE3069283u);  // the standard check value
  const uint32_t first = BlockChecksums::crc32c(0, text, 4);
  CHECK(BlockChecksums::crc32c(first, text + 4, 5) == 0xE3069283u);
}

TEST_CASE("a fresh table vouches for zeroed VRAM and nothing else") {
  BlockChecksums sums(16 * kBlock);
  CHECK(sums.table_bytes() == 16 * sizeof(uint32_t));
  const std::vector<std::byte> zeros(4 * kBlock);
  CHECK(sums.first_mismatch(0, zeros.data(), zeros.size()) == BlockChecksums::kNoMismatch);
  auto data = random_bytes(kBlock, 1);
  CHECK(sums.first_mismatch(3 * kBlock, data.data(), kBlock) == 3 * kBlock);
}

TEST_CASE("blocks written in odd pieces are recorded whole, and a flipped bit is found") {
  BlockChecksums sums(64 * kBlock);
  const auto data = random_bytes(8 * kBlock, 2);
  const uint64_t offset = 8 * kBlock;
  BlockChecksums::Partial partial;
  // Pieces that straddle block boundaries, as receives deliver them.
  size_t done = 0;
  for (size_t piece : {1u, 4095u, 3000u, 6000u, 100u}) {
    sums.absorb(partial, offset + done, data.data() + done, piece);
    done += piece;
  }
  sums.absorb(partial, offset + done, data.data() + done, data.size() - done);
  CHECK(partial.filled == 0);
  CHECK(sums.first_mismatch(offset, data.data(), data.size()) == BlockChecksums::kNoMismatch);

  auto flipped = data;
  flipped[5 * kBlock + 17] ^= std::byte{0x04};
  CHECK(sums.first_mismatch(offset, flipped.data(), flipped.size()) == offset + 5 * kBlock);
  // Blocks before the damaged one still check out on their own.
  CHECK(sums.first_mismatch(offset, flipped.data(), 5 * kBlock) == BlockChecksums::kNoMismatch);
}

TEST_CASE("zeroed ranges check out as zeros again") {
  BlockChecksums sums(8 * kBlock);
  const auto data = random_bytes(8 * kBlock, 3);
  BlockChecksums::Partial partial;
  sums.absorb(partial, 0, data.data(), data.size());
  sums.record_zeroes(2 * kBlock, 3 * kBlock);
  const std::vector<std::byte> zeros(3 * kBlock);
  CHECK(sums.first_mismatch(2 * kBlock, zeros.data(), zeros.size()) == BlockChecksums::kNoMismatch);
  CHECK(sums.first_mismatch(0, data.data(), 2 * kBlock) == BlockChecksums::kNoMismatch);
  CHECK(sums.first_mismatch(5 * kBlock, data.data() + 5 * kBlock, 3 * kBlock) ==
        BlockChecksums::kNoMismatch);
  CHECK(sums.first_mismatch(2 * kBlock, data.data() + 2 * kBlock, kBlock) == 2 * kBlock);
}
