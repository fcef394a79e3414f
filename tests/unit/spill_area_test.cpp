#include "store/spill_area.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/startup_error.hpp"

using vramswap::StartupError;
using vramswap::store::SpillArea;
using vramswap::store::SpillBuffer;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kExport = 8 * 1024 * 1024;

// A fresh directory under the temporary directory (this machine's disk),
// removed with everything in it.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "vramswap-spill-XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const char* name) const { return (path / name).string(); }
};

// The one line open() throws, for matching.
std::string refusal(const std::string& path, uint64_t export_bytes = kExport,
                    const char* instance = "0") {
  try {
    SpillArea::open(path, export_bytes, instance);
  } catch (const StartupError& error) {
    return error.what();
  }
  return "(opened)";
}

void fill(SpillBuffer& buffer, uint64_t bytes, unsigned seed) {
  for (uint64_t i = 0; i < bytes; ++i)
    buffer.data()[i] = static_cast<std::byte>((i * 131 + seed) & 0xff);
}

}  // namespace

TEST_CASE("a new spill file is written in full, so later writes allocate nothing") {
  TempDir dir;
  const std::string path = dir.file("0.spill");
  SpillArea area = SpillArea::open(path, kExport, "0");
  CHECK(area.created());
  struct stat file {};
  REQUIRE(stat(path.c_str(), &file) == 0);
  CHECK(static_cast<uint64_t>(file.st_size) == SpillArea::header_bytes + kExport);
  CHECK(static_cast<uint64_t>(file.st_blocks) * 512 >=
        SpillArea::header_bytes + kExport);  // no holes
  CHECK((file.st_mode & 0777) == 0600);
  CHECK_FALSE(fs::exists(path + ".new"));

  SpillBuffer buffer(1024 * 1024);
  REQUIRE(area.read(kExport - 4096, buffer.data(), 4096) == 0);
  for (size_t i = 0; i < 4096; ++i)
    REQUIRE(buffer.data()[i] == std::byte{0});
}

TEST_CASE("chunks written to the spill area read back, and stay across a reopen") {
  TempDir dir;
  const std::string path = dir.file("0.spill");
  constexpr uint64_t kChunk = 1024 * 1024;
  SpillBuffer out(kChunk);
  SpillBuffer in(kChunk);
  {
    SpillArea area = SpillArea::open(path, kExport, "0");
    fill(out, kChunk, 7);
    REQUIRE(area.write(3 * kChunk, out.data(), kChunk) == 0);
    REQUIRE(area.read(3 * kChunk, in.data(), kChunk) == 0);
    CHECK(std::memcmp(in.data(), out.data(), kChunk) == 0);
  }
  struct stat before {};
  REQUIRE(stat(path.c_str(), &before) == 0);
  SpillArea again = SpillArea::open(path, kExport, "0");
  CHECK_FALSE(again.created());
  std::memset(in.data(), 0, kChunk);
  REQUIRE(again.read(3 * kChunk, in.data(), kChunk) == 0);
  CHECK(std::memcmp(in.data(), out.data(), kChunk) == 0);
  struct stat after {};
  REQUIRE(stat(path.c_str(), &after) == 0);
  CHECK(after.st_ino == before.st_ino);  // the same file, not a new one
}

TEST_CASE("I/O outside the export or not 4 KiB aligned is refused with EINVAL") {
  TempDir dir;
  SpillArea area = SpillArea::open(dir.file("0.spill"), kExport, "0");
  SpillBuffer buffer(8192);
  CHECK(area.write(kExport, buffer.data(), 4096) == EINVAL);
  CHECK(area.read(kExport - 4096, buffer.data(), 8192) == EINVAL);
  CHECK(area.write(512, buffer.data(), 4096) == EINVAL);
  CHECK(area.write(0, buffer.data(), 1000) == EINVAL);
  CHECK(area.read(0, buffer.data() + 8, 4096) == EINVAL);
  CHECK(area.write(0, buffer.data(), 8192) == 0);
}

TEST_CASE("a spill file of ours that is the wrong size is made again") {
  TempDir dir;
  const std::string path = dir.file("0.spill");
  SpillArea::open(path, kExport, "0");

  SECTION("truncated") {
    REQUIRE(truncate(path.c_str(), SpillArea::header_bytes + kExport / 2) == 0);
  }
  SECTION("with a hole punched in it") {
    const int fd = open(path.c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    REQUIRE(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1024 * 1024, 1024 * 1024) ==
            0);
    close(fd);
  }
  SECTION("for another export size") {
    SpillArea::open(path, kExport / 2, "0");
  }
  SpillArea area = SpillArea::open(path, kExport, "0");
  CHECK(area.created());
  struct stat file {};
  REQUIRE(stat(path.c_str(), &file) == 0);
  CHECK(static_cast<uint64_t>(file.st_size) == SpillArea::header_bytes + kExport);
  CHECK(static_cast<uint64_t>(file.st_blocks) * 512 >= SpillArea::header_bytes + kExport);
}

TEST_CASE("a path that is not ours to use is refused with one line naming the cause and the fix") {
  TempDir dir;
  const std::string path = dir.file("0.spill");

  SECTION("missing directory") {
    CHECK_THAT(refusal(dir.file("nowhere/0.spill")),
               Catch::Contains("does not exist") && Catch::Contains("create it"));
  }
  SECTION("a directory") {
    fs::create_directory(path);
    CHECK_THAT(refusal(path), Catch::Contains("is a directory"));
  }
  SECTION("a file that is not a spill file, which is left as it was") {
    std::ofstream(path) << std::string(64 * 1024, 'x');
    CHECK_THAT(refusal(path),
               Catch::Contains("is not a vramswap spill file") && Catch::Contains("remove it"));
    CHECK(fs::file_size(path) == 64 * 1024);
  }
  SECTION("another instance's") {
    SpillArea::open(path, kExport, "gpu1");
    CHECK_THAT(refusal(path), Catch::Contains("belongs to instance 'gpu1'"));
  }
  SECTION("a file that cannot be written") {
    SpillArea::open(path, kExport, "0");
    if (geteuid() == 0) {
      // root writes through file modes: make it immutable instead.
      const int fd = open(path.c_str(), O_RDONLY);
      REQUIRE(fd >= 0);
      int flags = 0;
      REQUIRE(ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0);
      flags |= FS_IMMUTABLE_FL;
      REQUIRE(ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0);
      const std::string line = refusal(path);
      flags &= ~FS_IMMUTABLE_FL;
      ioctl(fd, FS_IOC_SETFLAGS, &flags);
      close(fd);
      CHECK_THAT(line, Catch::Contains("cannot open") && Catch::Contains("permissions"));
    } else {
      REQUIRE(chmod(path.c_str(), 0400) == 0);
      CHECK_THAT(refusal(path), Catch::Contains("cannot open") && Catch::Contains("permissions"));
    }
  }
  SECTION("no room on the disk: checked before anything is written") {
    CHECK_THAT(refusal(path, 1ull << 60),
               Catch::Contains("no room") && Catch::Contains("spill = PATH"));
    CHECK_FALSE(fs::exists(path));
    CHECK_FALSE(fs::exists(path + ".new"));
  }
}

TEST_CASE("a spill file in RAM (tmpfs) is refused") {
  struct statfs shm {};
  REQUIRE(statfs("/dev/shm", &shm) == 0);
  REQUIRE(shm.f_type == TMPFS_MAGIC);  // where this test runs, /dev/shm is tmpfs
  const std::string path = "/dev/shm/vramswap-spill-test-" + std::to_string(getpid());
  CHECK_THAT(refusal(path), Catch::Contains("is in RAM (tmpfs)"));
  CHECK_FALSE(fs::exists(path));
}
