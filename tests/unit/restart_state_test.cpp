#include "store/restart_state.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/startup_error.hpp"

using vramswap::store::ChunkMap;
using vramswap::store::Deadline;
using vramswap::store::Motion;
using vramswap::store::RestartIdentity;
using vramswap::store::RestartStateFile;
using vramswap::store::SavedChunks;
using vramswap::store::Tier;
namespace restart_state = vramswap::store::restart_state;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kChunk = 2 * 1024 * 1024;
// Five chunks, the last one short (3 MiB + 4 KiB past the fourth).
constexpr uint64_t kExport = 4 * kChunk + 4096;

struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "vramswap-state-XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const char* name) const { return (path / name).string(); }
};

RestartIdentity identity(const char* instance = "0", uint64_t export_bytes = kExport,
                         uint64_t chunk_bytes = kChunk) {
  return {instance, export_bytes, chunk_bytes};
}

// A map as a daemon leaves it for a restart: chunks 0 and 2 evicted with
// data (some blocks live), 1 and 3 with none, the short last one with data.
void evict_everything(ChunkMap& map) {
  map.mark_written(0, 4096);
  map.mark_written(2 * kChunk + 8192, 12288);
  map.mark_written(4 * kChunk, 4096);
  for (size_t chunk = 0; chunk < map.chunk_count(); ++chunk) {
    REQUIRE(map.begin_move(chunk, Motion::evicting, Deadline::after(std::chrono::seconds(1))) ==
            ChunkMap::MoveStart::started);
    REQUIRE(map.complete_move(chunk, map.has_live_data(chunk) ? Tier::spill : Tier::none));
  }
}

std::vector<std::byte> encoded(const ChunkMap& map, const char* instance = "0") {
  std::vector<uint64_t> words(restart_state::file_bytes(map.export_bytes(), map.chunk_bytes()) / 8);
  std::vector<std::byte> out(words.size() * 8);
  std::string why;
  REQUIRE(restart_state::encode(map, instance, 7, 1234, out, why));
  return out;
}

std::string refusal(const std::vector<std::byte>& bytes, const RestartIdentity& expected) {
  std::string why;
  const auto saved = restart_state::decode(bytes, expected, why);
  return saved ? "(accepted)" : why;
}

}  // namespace

TEST_CASE("a restart record keeps each chunk's place and live blocks") {
  ChunkMap map(kExport, kChunk);
  evict_everything(map);
  const std::vector<std::byte> bytes = encoded(map);
  CHECK(bytes.size() % 4096 == 0);

  std::string why;
  const auto saved = restart_state::decode(bytes, identity(), why);
  REQUIRE(saved);
  CHECK(saved->nbd_index == 7);
  CHECK(saved->saved_unix == 1234);
  CHECK(saved->spill_bytes() == 2 * kChunk + 4096);

  ChunkMap loaded(kExport, kChunk, Tier::vram);
  saved->apply(loaded);
  for (size_t chunk = 0; chunk < map.chunk_count(); ++chunk) {
    CHECK(loaded.tier(chunk) == map.tier(chunk));
    CHECK(loaded.live_bytes(chunk) == map.live_bytes(chunk));
    CHECK(loaded.motion(chunk) == Motion::resident);
  }
  CHECK(loaded.tier(0) == Tier::spill);
  CHECK(loaded.tier(1) == Tier::none);
  CHECK(loaded.live_bytes(2) == 12288);
  CHECK(loaded.tier(4) == Tier::spill);
}

TEST_CASE("a map with a chunk in VRAM cannot be recorded") {
  ChunkMap map(kExport, kChunk);
  std::vector<std::byte> out(restart_state::file_bytes(kExport, kChunk));
  std::string why;
  CHECK_FALSE(restart_state::encode(map, "0", 0, 0, out, why));
  CHECK(why == "chunk 0 is still in VRAM");
}

TEST_CASE("a record that does not serve is refused with one line") {
  ChunkMap map(kExport, kChunk);
  evict_everything(map);
  std::vector<std::byte> bytes = encoded(map);

  CHECK(refusal(bytes, identity("1")) == "it belongs to instance '0', not '1'");
  CHECK(refusal(bytes, identity("0", kExport - 4096)) ==
        "it records an export of 8.0 MiB (8392704 bytes), the device has 8.0 MiB (8388608 bytes)");
  CHECK(refusal(bytes, identity("0", kExport, 4 * kChunk)) ==
        "it was written with chunks of 2.0 MiB, this vramswapd uses 8.0 MiB");

  SECTION("a damaged byte anywhere fails the checksum") {
    bytes[bytes.size() - 1] ^= std::byte{1};
    CHECK(refusal(bytes, identity()) == "its checksum does not match (a damaged file)");
  }
  SECTION("another format version names both") {
    uint32_t version = 9;
    std::memcpy(bytes.data() + 16, &version, sizeof version);
    CHECK(refusal(bytes, identity()) == "written in format version 9, this vramswapd reads 1");
  }
  SECTION("not a state file at all") {
    bytes[0] = std::byte{'X'};
    CHECK(refusal(bytes, identity()) == "not a vramswap restart state");
  }
  SECTION("a record already taken") {
    restart_state::encode_taken(bytes);
    CHECK(refusal(bytes, identity()).starts_with("it holds no record"));
  }
  SECTION("a truncated file") {
    bytes.resize(bytes.size() - 4096);
    CHECK(refusal(bytes, identity()) == "its sizes do not add up (a damaged file)");
  }
}

TEST_CASE("the state file: saved by one daemon, taken once by the next") {
  TempDir dir;
  const std::string path = restart_state::path_for(dir.file("0.spill"));
  CHECK(path == dir.file("0.spill.state"));
  ChunkMap map(kExport, kChunk);
  evict_everything(map);
  std::string why;
  {
    RestartStateFile file = RestartStateFile::open(path, kExport, kChunk);
    struct stat st {};
    REQUIRE(stat(path.c_str(), &st) == 0);
    // Written in full at its size: save() allocates no block.
    CHECK(static_cast<uint64_t>(st.st_size) == restart_state::file_bytes(kExport, kChunk));
    CHECK(static_cast<uint64_t>(st.st_blocks) * 512 >= static_cast<uint64_t>(st.st_size));
    // A fresh file holds no record.
    CHECK_FALSE(restart_state::read(path, identity(), why));
    CHECK(why.starts_with("it holds no record"));
    REQUIRE(file.save(map, "0", 3, why) == 0);
  }
  const auto saved = restart_state::read(path, identity(), why);
  REQUIRE(saved);
  CHECK(saved->nbd_index == 3);
  CHECK(saved->tiers[2] == Tier::spill);

  // The next daemon opens the file: the record is taken from then on.
  RestartStateFile next = RestartStateFile::open(path, kExport, kChunk);
  CHECK_FALSE(restart_state::read(path, identity(), why));
  CHECK(why.starts_with("it holds no record"));

  SECTION("a map still in VRAM is not saved, and the file keeps no record") {
    ChunkMap in_vram(kExport, kChunk);
    CHECK(next.save(in_vram, "0", 3, why) == EBUSY);
    CHECK(why == "chunk 0 is still in VRAM");
    CHECK_FALSE(restart_state::read(path, identity(), why));
  }
  SECTION("a missing file says so") {
    CHECK_FALSE(restart_state::read(dir.file("none.state"), identity(), why));
    CHECK(why == "there is none");
  }
}
