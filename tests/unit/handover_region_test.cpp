// The live restart's shared region: made, killed with the daemon that used
// it (a forked child that dies of SIGKILL), taken back and recovered; and
// every region the next daemon must refuse, refused without a write.
#include "store/handover_region.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/startup_error.hpp"
#include "random_bytes.hpp"

using namespace std::chrono_literals;
using vramswap::StartupError;
using vramswap::UniqueFd;
using vramswap::store::BlockChecksums;
using vramswap::store::ChunkMap;
using vramswap::store::ChunkPins;
using vramswap::store::Deadline;
using vramswap::store::HandoverLayout;
using vramswap::store::HandoverRegion;
using vramswap::store::Motion;
using vramswap::store::RestartIdentity;
using vramswap::store::Tier;
using vramswap::test::random_bytes;

namespace {

constexpr uint64_t kBlock = ChunkMap::block_bytes;
constexpr uint64_t kChunk = 64 * kBlock;
constexpr size_t kChunks = 8;
const RestartIdentity kIdentity{"swap0", kChunks* kChunk, kChunk};
constexpr HandoverLayout kBoth{true, true};

std::vector<std::byte> file_bytes(int fd) {
  struct stat st {};
  REQUIRE(fstat(fd, &st) == 0);
  std::vector<std::byte> bytes(static_cast<size_t>(st.st_size));
  REQUIRE(pread(fd, bytes.data(), bytes.size(), 0) == static_cast<ssize_t>(bytes.size()));
  return bytes;
}

UniqueFd duplicate(const HandoverRegion& region) {
  UniqueFd fd(dup(region.fd()));
  REQUIRE(fd);
  return fd;
}

// A memfd holding `bytes`, sealed against resizing or not.
UniqueFd memfd_with(const std::vector<std::byte>& bytes, bool sealed) {
  UniqueFd fd(memfd_create("test", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  REQUIRE(fd);
  REQUIRE(pwrite(fd.get(), bytes.data(), bytes.size(), 0) == static_cast<ssize_t>(bytes.size()));
  if (sealed) REQUIRE(fcntl(fd.get(), F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK) == 0);
  return fd;
}

void overwrite(int fd, uint64_t offset, const void* data, size_t len) {
  REQUIRE(pwrite(fd, data, len, static_cast<off_t>(offset)) == static_cast<ssize_t>(len));
}

// Records `data` as the content of the block at `offset`, its write left in
// flight or ended.
void write_block(BlockChecksums& sums, uint64_t offset, const std::vector<std::byte>& data,
                 bool ends) {
  sums.writes_begin(offset, kBlock);
  BlockChecksums::Partial partial;
  sums.absorb(partial, offset, data.data(), data.size());
  if (ends) sums.writes_end(offset, kBlock);
}

// The daemon's work in a child process, which dies of SIGKILL in the middle
// of it: requests pinned, moves under way, a write in flight. Exits with 1 if
// a step does not go as planned (the parent then fails).
[[noreturn]] void work_and_die(HandoverRegion& region) {
  ChunkMap map(kIdentity.export_bytes, kChunk, region.chunk_map_storage(), Tier::vram);
  BlockChecksums sums(kIdentity.export_bytes, region.checksum_storage());
  const Deadline later = Deadline::after(10s);
  auto step = [](bool ok) {
    if (!ok) _exit(1);
  };
  // 0: written (blocks 0-2), pinned by a request.
  map.mark_written(0, 3 * kBlock);
  write_block(sums, 0, random_bytes(kBlock, 1), true);
  write_block(sums, kBlock, random_bytes(kBlock, 2), false);  // in flight
  ChunkPins request = map.pin(0, kBlock, later);
  step(request.ok());
  // 1: evicting, copied out, its VRAM released.
  map.mark_written(kChunk, kChunk);
  step(map.begin_move(1, Motion::evicting, later) == ChunkMap::MoveStart::started);
  // 2: pinned, and a mover waiting for the pin to drain.
  map.mark_written(2 * kChunk, kBlock);
  ChunkPins held = map.pin(2 * kChunk, kBlock, later);
  step(held.ok());
  std::thread mover([&map, later] { map.begin_move(2, Motion::evicting, later); });
  // 3: in the spill area, restoring; 4: `none`, restoring.
  map.mark_written(3 * kChunk + 5 * kBlock, kBlock);
  step(map.begin_move(3, Motion::evicting, later) == ChunkMap::MoveStart::started);
  step(map.complete_move(3, Tier::spill));
  step(map.begin_move(3, Motion::restoring, later) == ChunkMap::MoveStart::started);
  step(map.begin_move(4, Motion::evicting, later) == ChunkMap::MoveStart::started);
  step(map.complete_move(4, Tier::none));
  step(map.begin_move(4, Motion::restoring, later) == ChunkMap::MoveStart::started);
  // 5: written, resident in VRAM (that will not come back).
  map.mark_written(5 * kChunk, 2 * kBlock);
  while (map.motion(2) != Motion::evicting)
    std::this_thread::yield();
  kill(getpid(), SIGKILL);
  _exit(2);  // never reached
}

}  // namespace

TEST_CASE("a daemon killed with SIGKILL mid-work leaves a region the next one recovers") {
  HandoverRegion region = HandoverRegion::create(kIdentity, kBoth);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) work_and_die(region);
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  INFO("child status " << status);
  REQUIRE(WIFSIGNALED(status));
  REQUIRE(WTERMSIG(status) == SIGKILL);

  std::string why;
  auto adopted = HandoverRegion::adopt(duplicate(region), kIdentity, why);
  INFO(why);
  REQUIRE(adopted);
  CHECK(adopted->identity().instance == "swap0");
  CHECK(adopted->layout().chunk_map);
  CHECK(adopted->layout().checksums);

  // The VRAM that came back: chunk 1's was released, chunk 5's lost.
  const std::set<size_t> kept = {0, 2, 3, 6, 7};
  ChunkMap::Recovery report;
  ChunkMap map(
      kIdentity.export_bytes, kChunk, adopted->chunk_map_storage(),
      [&kept](size_t chunk) { return kept.count(chunk) > 0; }, report);
  const Tier expected[kChunks] = {Tier::vram, Tier::spill, Tier::vram, Tier::spill,
                                  Tier::none, Tier::vram,  Tier::vram, Tier::vram};
  const uint64_t live[kChunks] = {3, 64, 1, 1, 0, 2, 0, 0};
  for (size_t chunk = 0; chunk < kChunks; ++chunk) {
    INFO("chunk " << chunk);
    CHECK(map.tier(chunk) == expected[chunk]);
    CHECK(map.motion(chunk) == Motion::resident);
    CHECK(map.pin_count(chunk) == 0);
    CHECK(map.live_bytes(chunk) == live[chunk] * kBlock);
  }
  CHECK(report.vram_lost_chunks == 1);
  CHECK(report.first_lost == 5);
  CHECK(report.evicting_fixed == 2);
  CHECK(report.restoring_fixed == 2);
  CHECK(report.pins_cleared == 2);
  CHECK_FALSE(report.usable());

  BlockChecksums::Recovery sums_report;
  BlockChecksums sums(kIdentity.export_bytes, adopted->checksum_storage(), sums_report);
  CHECK(sums_report.raced_blocks == 1);
  const auto first = random_bytes(kBlock, 1);
  CHECK(sums.first_mismatch(0, first.data(), kBlock) == BlockChecksums::no_mismatch);
  CHECK_FALSE(sums.raced_checksum(0));
  // Block 1's write was in flight: its checksum is recorded, its bytes may
  // not have landed; the read adopts what did.
  const auto recorded = sums.raced_checksum(kBlock);
  REQUIRE(recorded);
  CHECK(*recorded == BlockChecksums::crc32c(0, random_bytes(kBlock, 2).data(), kBlock));
  const std::vector<std::byte> zeros(kBlock);
  CHECK(sums.adopt(kBlock, *recorded, zeros.data()));
  CHECK(sums.first_mismatch(kBlock, zeros.data(), kBlock) == BlockChecksums::no_mismatch);
  CHECK(sums.first_mismatch(2 * kBlock, zeros.data(), kBlock) == BlockChecksums::no_mismatch);

  // The recovered map serves: a request pins chunk 0 at once, a mover takes it.
  CHECK(map.pin(0, kChunk, Deadline::after(0ms)).ok());
  CHECK(map.begin_move(2, Motion::evicting, Deadline::after(0ms)) == ChunkMap::MoveStart::started);
}

TEST_CASE("a new region is sealed, sized for its layout, and its header outlives use") {
  HandoverRegion region = HandoverRegion::create(kIdentity, kBoth);
  const int seals = fcntl(region.fd(), F_GET_SEALS);
  CHECK((seals & F_SEAL_GROW) != 0);
  CHECK((seals & F_SEAL_SHRINK) != 0);
  CHECK((seals & F_SEAL_SEAL) != 0);
  CHECK((fcntl(region.fd(), F_GETFD) & FD_CLOEXEC) != 0);
  const uint64_t map_section = 4096;   // 8 words and 8 x 1 word of bits, in one page
  const uint64_t sums_section = 4096;  // 512 blocks: 2 KiB + 1 KiB
  CHECK(region.size() == HandoverRegion::header_bytes + map_section + sums_section);
  CHECK(file_bytes(region.fd()).size() == region.size());
  CHECK(ftruncate(region.fd(), 0) != 0);

  const auto fresh = file_bytes(region.fd());
  const std::vector<std::byte> header(fresh.begin(), fresh.begin() + 4096);
  {
    ChunkMap map(kIdentity.export_bytes, kChunk, region.chunk_map_storage(), Tier::spill);
    BlockChecksums sums(kIdentity.export_bytes, region.checksum_storage());
    map.mark_written(0, kIdentity.export_bytes);
    write_block(sums, 7 * kBlock, random_bytes(kBlock, 3), true);
  }
  const auto after = file_bytes(region.fd());
  CHECK((std::vector<std::byte>(after.begin(), after.begin() + 4096) == header));
  CHECK((after != fresh));  // the state landed in the file

  HandoverRegion moved = std::move(region);
  CHECK(moved.fd() >= 0);
  CHECK(region.fd() < 0);  // NOLINT(bugprone-use-after-move): what a move leaves
  std::string why;
  CHECK(HandoverRegion::adopt(duplicate(moved), kIdentity, why));
}

TEST_CASE("the handover mark says a clean handover from a death, and leaves the header valid") {
  HandoverRegion region = HandoverRegion::create(kIdentity, kBoth);
  CHECK_FALSE(region.handed_over_unix_ns());  // a new region: serving
  std::string why;
  {
    std::optional<HandoverRegion> died = HandoverRegion::adopt(duplicate(region), kIdentity, why);
    REQUIRE(died);
    CHECK_FALSE(died->handed_over_unix_ns());  // its daemon died serving
  }
  region.mark_handed_over(1'796'686'520'412'761'015);
  std::optional<HandoverRegion> handed = HandoverRegion::adopt(duplicate(region), kIdentity, why);
  INFO(why);
  REQUIRE(handed);  // the mark is outside the header's checksum
  CHECK(handed->handed_over_unix_ns() == 1'796'686'520'412'761'015);
  handed->mark_serving();
  CHECK_FALSE(region.handed_over_unix_ns());  // one file, two mappings
}

TEST_CASE("a region holds only the sections its layout names") {
  HandoverRegion region = HandoverRegion::create(kIdentity, HandoverLayout{false, true});
  CHECK(region.size() == HandoverRegion::header_bytes + 4096);
  CHECK_THROWS_AS(region.chunk_map_storage(), std::logic_error);
  CHECK(region.checksum_storage().table != nullptr);
  std::string why;
  auto adopted = HandoverRegion::adopt(duplicate(region), kIdentity, why);
  REQUIRE(adopted);
  CHECK_FALSE(adopted->layout().chunk_map);
  CHECK(adopted->layout().checksums);

  HandoverRegion map_only = HandoverRegion::create(kIdentity, HandoverLayout{true, false});
  CHECK_THROWS_AS(map_only.checksum_storage(), std::logic_error);
}

TEST_CASE("create refuses what no region can hold, in one line") {
  try {
    HandoverRegion::create({std::string(300, 'x'), kChunk, kChunk}, kBoth);
    FAIL("a 300-byte instance name was taken");
  } catch (const StartupError& error) {
    CHECK(error.exit_status() == vramswap::exit_code::config);
    CHECK(std::string(error.what()).find("shorter instance name") != std::string::npos);
  }
  CHECK_THROWS_AS(HandoverRegion::create({"swap0", kChunk + 1, kChunk}, kBoth), StartupError);
  CHECK_THROWS_AS(HandoverRegion::create({"swap0", kChunk, 0}, kBoth), StartupError);
}

TEST_CASE("adopt refuses a region that does not serve, and writes nothing to it") {
  HandoverRegion region = HandoverRegion::create(kIdentity, kBoth);
  {
    ChunkMap map(kIdentity.export_bytes, kChunk, region.chunk_map_storage(), Tier::vram);
    map.mark_written(kChunk, kBlock);
  }
  RestartIdentity expected = kIdentity;
  UniqueFd fd = duplicate(region);
  std::string refusal;

  SECTION("not a region") {
    overwrite(fd.get(), 0, "something else", 14);
    refusal = "not a vramswap state";
  }
  SECTION("a damaged header") {
    const char flipped = 'Z';
    overwrite(fd.get(), 2000, &flipped, 1);
    refusal = "checksum does not match";
  }
  SECTION("another format version") {
    const uint32_t version = 2;
    overwrite(fd.get(), 16, &version, sizeof version);
    refusal = "state format 2, this vramswapd reads format 1: the state is refused";
  }
  SECTION("another instance") {
    expected.instance = "swap1";
    refusal = "it belongs to instance 'swap0', not 'swap1'";
  }
  SECTION("another export size") {
    expected.export_bytes += kChunk;
    refusal = "it records an export of";
  }
  SECTION("another chunk size") {
    expected.chunk_bytes *= 2;
    refusal = "it was written with chunks of";
  }
  SECTION("a truncated copy") {
    auto bytes = file_bytes(fd.get());
    bytes.resize(bytes.size() - 4096);
    fd = memfd_with(bytes, false);
    refusal = "(truncated or damaged)";
  }
  SECTION("a copy shorter than the header") {
    auto bytes = file_bytes(fd.get());
    bytes.resize(100);
    fd = memfd_with(bytes, true);
    refusal = "shorter than its header";
  }
  SECTION("a whole copy that could be resized under the mapping") {
    fd = memfd_with(file_bytes(fd.get()), false);
    refusal = "not sealed against resizing";
  }
  const auto before = file_bytes(fd.get());
  const int kept_fd = dup(fd.get());
  REQUIRE(kept_fd >= 0);
  std::string why;
  CHECK_FALSE(HandoverRegion::adopt(std::move(fd), expected, why));
  CHECK(why.find(refusal) != std::string::npos);
  CHECK(why.find('\n') == std::string::npos);
  CHECK((file_bytes(kept_fd) == before));
  close(kept_fd);
}
