#include "store/block_checksums.hpp"

#include "random_bytes.hpp"

#include <catch2/catch.hpp>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <vector>

using vramswap::store::BlockChecksums;
using vramswap::test::random_bytes;

namespace {

constexpr uint32_t kBlock = BlockChecksums::block_bytes;

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
  CHECK(sums.table_bytes() == 16 * (sizeof(uint32_t) + sizeof(uint16_t)));
  const std::vector<std::byte> zeros(4 * kBlock);
  CHECK(sums.first_mismatch(0, zeros.data(), zeros.size()) == BlockChecksums::no_mismatch);
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
  CHECK(sums.first_mismatch(offset, data.data(), data.size()) == BlockChecksums::no_mismatch);

  auto flipped = data;
  flipped[5 * kBlock + 17] ^= std::byte{0x04};
  CHECK(sums.first_mismatch(offset, flipped.data(), flipped.size()) == offset + 5 * kBlock);
  // Blocks before the damaged one still check out on their own.
  CHECK(sums.first_mismatch(offset, flipped.data(), 5 * kBlock) == BlockChecksums::no_mismatch);
}

TEST_CASE("zeroed ranges check out as zeros again") {
  BlockChecksums sums(8 * kBlock);
  const auto data = random_bytes(8 * kBlock, 3);
  BlockChecksums::Partial partial;
  sums.absorb(partial, 0, data.data(), data.size());
  sums.record_zeroes(2 * kBlock, 3 * kBlock);
  const std::vector<std::byte> zeros(3 * kBlock);
  CHECK(sums.first_mismatch(2 * kBlock, zeros.data(), zeros.size()) == BlockChecksums::no_mismatch);
  CHECK(sums.first_mismatch(0, data.data(), 2 * kBlock) == BlockChecksums::no_mismatch);
  CHECK(sums.first_mismatch(5 * kBlock, data.data() + 5 * kBlock, 3 * kBlock) ==
        BlockChecksums::no_mismatch);
  CHECK(sums.first_mismatch(2 * kBlock, data.data() + 2 * kBlock, kBlock) == 2 * kBlock);
}

namespace {

// Records `data` as the whole content of the block at `offset`.
void record(BlockChecksums& sums, uint64_t offset, const std::vector<std::byte>& data) {
  BlockChecksums::Partial partial;
  sums.absorb(partial, offset, data.data(), data.size());
}

}  // namespace

TEST_CASE("a block two writes raced for takes what landed, once neither is in flight") {
  BlockChecksums sums(16 * kBlock);
  const uint64_t at = 5 * kBlock;
  const auto first = random_bytes(kBlock, 3);
  const auto second = random_bytes(kBlock, 4);

  SECTION("a write alone leaves nothing to adopt") {
    sums.writes_begin(at, kBlock);
    record(sums, at, first);
    CHECK_FALSE(sums.raced_checksum(at));
    sums.writes_end(at, kBlock);
    CHECK_FALSE(sums.raced_checksum(at));
  }
  SECTION("two overlapping writes: the second's checksum, the first's data") {
    sums.writes_begin(at, kBlock);
    record(sums, at, first);
    sums.writes_begin(at, kBlock);
    record(sums, at, second);
    sums.writes_end(at, kBlock);
    CHECK_FALSE(sums.raced_checksum(at));  // one still in flight: its copy may yet land
    sums.writes_end(at, kBlock);
    REQUIRE(sums.first_mismatch(at, first.data(), kBlock) == at);
    const auto recorded = sums.raced_checksum(at);
    REQUIRE(recorded);
    CHECK(sums.adopt(at, *recorded, first.data()));
    CHECK(sums.first_mismatch(at, first.data(), kBlock) == BlockChecksums::no_mismatch);
    CHECK_FALSE(sums.raced_checksum(at));  // checked as usual again
    CHECK(sums.first_mismatch(at, second.data(), kBlock) == at);
  }
  SECTION("a write recorded after the question wins over the adoption") {
    sums.writes_begin(at, kBlock);
    sums.writes_begin(at, kBlock);
    record(sums, at, first);
    sums.writes_end(at, kBlock);
    sums.writes_end(at, kBlock);
    const auto recorded = sums.raced_checksum(at);
    REQUIRE(recorded);
    sums.writes_begin(at, kBlock);
    record(sums, at, second);
    CHECK_FALSE(sums.adopt(at, *recorded, first.data()));
    CHECK(sums.first_mismatch(at, second.data(), kBlock) == BlockChecksums::no_mismatch);
  }
  SECTION("a lone write after a race clears the mark") {
    sums.writes_begin(at, kBlock);
    sums.writes_begin(at, kBlock);
    sums.writes_end(at, kBlock);
    sums.writes_end(at, kBlock);
    REQUIRE(sums.raced_checksum(at));
    sums.writes_begin(at, kBlock);
    record(sums, at, first);
    sums.writes_end(at, kBlock);
    CHECK_FALSE(sums.raced_checksum(at));
  }
  SECTION("only the blocks a range touches are held") {
    sums.writes_begin(at + 100, 2 * kBlock);  // touches blocks 5, 6 and 7
    sums.writes_begin(at + 100, 2 * kBlock);
    sums.writes_end(at + 100, 2 * kBlock);
    sums.writes_end(at + 100, 2 * kBlock);
    CHECK(sums.raced_checksum(at));
    CHECK(sums.raced_checksum(at + 2 * kBlock));
    CHECK_FALSE(sums.raced_checksum(at - kBlock));
    CHECK_FALSE(sums.raced_checksum(at + 3 * kBlock));
  }
}

// ---- On given storage (the live restart's region) ----

using vramswap::store::ChecksumStorage;

TEST_CASE("storage: the checksums, then the writer counts, 8-byte aligned") {
  CHECK(BlockChecksums::storage_bytes(3 * kBlock) == 16 + 8);
  CHECK(BlockChecksums::storage_bytes(16 * kBlock) == 64 + 32);
  std::vector<uint64_t> bytes(3);
  const ChecksumStorage storage = BlockChecksums::storage_at(bytes.data(), 3 * kBlock);
  CHECK(reinterpret_cast<std::byte*>(storage.table) == reinterpret_cast<std::byte*>(bytes.data()));
  CHECK(reinterpret_cast<std::byte*>(storage.writers) ==
        reinterpret_cast<std::byte*>(bytes.data()) + 16);
}

TEST_CASE("a table on given storage starts fresh over whatever it held, and keeps it there") {
  constexpr uint64_t kExport = 8 * kBlock;
  std::vector<uint64_t> bytes(BlockChecksums::storage_bytes(kExport) / 8, ~0ull);
  BlockChecksums sums(kExport, BlockChecksums::storage_at(bytes.data(), kExport));
  const std::vector<std::byte> zeros(kExport);
  CHECK(sums.first_mismatch(0, zeros.data(), zeros.size()) == BlockChecksums::no_mismatch);
  CHECK_FALSE(sums.raced_checksum(0));
  const auto data = random_bytes(kBlock, 9);
  record(sums, 2 * kBlock, data);
  const ChecksumStorage view = BlockChecksums::storage_at(bytes.data(), kExport);
  CHECK(view.table[2].load() == BlockChecksums::crc32c(0, data.data(), kBlock));
  CHECK_THROWS_AS(BlockChecksums(kExport, ChecksumStorage{}), std::invalid_argument);
}

TEST_CASE(
    "recovery keeps every checksum: a write in flight at the daemon's death cannot fail a read") {
  constexpr uint64_t kExport = 8 * kBlock;
  std::vector<uint64_t> bytes(BlockChecksums::storage_bytes(kExport) / 8, 0);
  BlockChecksums sums(kExport, BlockChecksums::storage_at(bytes.data(), kExport));
  const auto done = random_bytes(kBlock, 10);
  const auto unlanded = random_bytes(kBlock, 11);
  // 0: a write that completed.
  sums.writes_begin(0, kBlock);
  record(sums, 0, done);
  sums.writes_end(0, kBlock);
  // 1: a write recorded whose copy never landed (the block still holds zeros).
  sums.writes_begin(kBlock, kBlock);
  record(sums, kBlock, unlanded);
  // 2: two writes that raced, both over: raced already.
  sums.writes_begin(2 * kBlock, kBlock);
  sums.writes_begin(2 * kBlock, kBlock);
  sums.writes_end(2 * kBlock, kBlock);
  sums.writes_end(2 * kBlock, kBlock);
  // 3: two writes still in flight.
  sums.writes_begin(3 * kBlock, kBlock);
  sums.writes_begin(3 * kBlock, kBlock);

  std::vector<uint64_t> dead = bytes;  // the storage at the instant of death
  BlockChecksums::Recovery report;
  BlockChecksums recovered(kExport, BlockChecksums::storage_at(dead.data(), kExport), report);
  CHECK(report.raced_blocks == 2);

  CHECK_FALSE(recovered.raced_checksum(0));
  CHECK(recovered.first_mismatch(0, done.data(), kBlock) == BlockChecksums::no_mismatch);
  CHECK(recovered.first_mismatch(0, unlanded.data(), kBlock) == 0);
  CHECK(recovered.raced_checksum(2 * kBlock));
  CHECK(recovered.raced_checksum(3 * kBlock));
  CHECK_FALSE(recovered.raced_checksum(4 * kBlock));

  // Block 1 holds zeros under the unlanded write's checksum: the read that
  // meets it adopts the zeros, as after a race, and checks them from then on.
  const std::vector<std::byte> zeros(kBlock);
  CHECK(recovered.first_mismatch(kBlock, zeros.data(), kBlock) == kBlock);
  const auto recorded = recovered.raced_checksum(kBlock);
  REQUIRE(recorded);
  CHECK(*recorded == BlockChecksums::crc32c(0, unlanded.data(), kBlock));
  CHECK(recovered.adopt(kBlock, *recorded, zeros.data()));
  CHECK_FALSE(recovered.raced_checksum(kBlock));
  CHECK(recovered.first_mismatch(kBlock, zeros.data(), kBlock) == BlockChecksums::no_mismatch);

  // A write after the restart starts the block's history afresh.
  recovered.writes_begin(3 * kBlock, kBlock);
  record(recovered, 3 * kBlock, done);
  recovered.writes_end(3 * kBlock, kBlock);
  CHECK_FALSE(recovered.raced_checksum(3 * kBlock));
  CHECK(recovered.first_mismatch(3 * kBlock, done.data(), kBlock) == BlockChecksums::no_mismatch);
}
