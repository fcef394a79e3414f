#include <sys/mount.h>
#include <sys/swap.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "common/byte_size.hpp"
#include "common/startup_error.hpp"
#include "kernel/block_device.hpp"
#include "kernel/run_program.hpp"
#include "kernel/swaps.hpp"
#include "kernel_test_support.hpp"

using namespace vramswap;
using namespace vramswap::kernel;
using vramswap::test::LoopDevice;
using vramswap::test::TempDir;

namespace {

constexpr const char* kHeader = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";

// Takes the area off swap at the end of a test, whatever happened in it.
struct SwapOffGuard {
  std::string path;
  ~SwapOffGuard() { ::swapoff(path.c_str()); }
};

std::string message_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const StartupError& error) {
    return error.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("/proc/swaps: partitions, files, escapes and negative priorities") {
  const std::string text =
      std::string(kHeader) +
      "/dev/nvme0n1p3                          partition\t16777212\t1234567\t-2\n"
      "/swap\\040file                           file\t\t2097148\t\t0\t\t-3\n"
      "/dev/zram0                              partition\t8388604\t\t52\t\t100\n"
      "/var/tab\\011and\\134slash\\012nl          file\t\t1024\t\t4\t\t5\n"
      "/dev/nbd0                               partition\t16777212\t0\t\t32767";
  std::vector<SwapEntry> entries = parse_proc_swaps(text);
  REQUIRE(entries.size() == 5);

  CHECK(entries[0].path == "/dev/nvme0n1p3");
  CHECK(entries[0].type == "partition");
  CHECK(entries[0].size_bytes == 16777212 * KiB);
  CHECK(entries[0].used_bytes == 1234567 * KiB);
  CHECK(entries[0].priority == -2);

  CHECK(entries[1].path == "/swap file");
  CHECK(entries[1].type == "file");
  CHECK(entries[1].size_bytes == 2097148 * KiB);
  CHECK(entries[1].used_bytes == 0);
  CHECK(entries[1].priority == -3);

  CHECK(entries[2].path == "/dev/zram0");
  CHECK(entries[2].priority == 100);
  CHECK(entries[2].used_bytes == 52 * KiB);

  CHECK(entries[3].path == "/var/tab\tand\\slash\nnl");

  // The last line has no newline; the highest priority swapon accepts.
  CHECK(entries[4].path == "/dev/nbd0");
  CHECK(entries[4].priority == 32767);
}

TEST_CASE("/proc/swaps: no swap, deleted files, and lines of another shape") {
  CHECK(parse_proc_swaps(kHeader).empty());
  CHECK(parse_proc_swaps("").empty());

  const std::string text = std::string(kHeader) +
                           "/swapfile\\040(deleted)                  file\t\t1048572\t\t0\t\t-2\n"
                           "garbage\n"
                           "/dev/sda2 partition notanumber 0 -1\n"
                           "/dev/sdb1 partition 100 0 -4 extra-column\n";
  std::vector<SwapEntry> entries = parse_proc_swaps(text);
  REQUIRE(entries.size() == 2);
  CHECK(entries[0].path == "/swapfile (deleted)");
  CHECK(entries[1].path == "/dev/sdb1");
  CHECK(entries[1].priority == -4);
  CHECK(entries[1].size_bytes == 100 * KiB);

  // A backslash that does not start an escape stays as it is.
  entries = parse_proc_swaps("/odd\\9path file 8 0 -1\n");
  REQUIRE(entries.size() == 1);
  CHECK(entries[0].path == "/odd\\9path");
}

TEST_CASE("swap lookup compares device numbers, not names") {
  TempDir dir;
  LoopDevice loop(dir / "backing.img", 4 * MiB);
  const std::string link = dir / "stable-name";
  std::filesystem::create_symlink(loop.path(), link);

  const std::string text = std::string(kHeader) + "/dev/null partition 100 0 -2\n" + loop.path() +
                           " partition 4092 8 42\n";
  std::vector<SwapEntry> entries = parse_proc_swaps(text);

  std::optional<SwapEntry> found = find_swap_for_device(entries, link);
  REQUIRE(found.has_value());
  CHECK(found->path == loop.path());
  CHECK(found->priority == 42);
  CHECK(found->used_bytes == 8 * KiB);

  CHECK(find_swap_for_device(entries, loop.path()).has_value());
  // /dev/null is listed but is no block device: never a match.
  CHECK_FALSE(find_swap_for_device(entries, "/dev/null").has_value());
  CHECK_FALSE(find_swap_for_device(entries, dir / "missing").has_value());
  CHECK_FALSE(find_swap_for_device(parse_proc_swaps(kHeader), link).has_value());
}

TEST_CASE("mkswap, swapon and swapoff on a loop device, seen through /proc/swaps") {
  REQUIRE(::geteuid() == 0);
  TempDir dir;
  LoopDevice loop(dir / "swap.img", 32 * MiB);
  const std::string link = dir / "vramswap-link";
  std::filesystem::create_symlink(loop.path(), link);
  const long page = ::sysconf(_SC_PAGESIZE);

  CHECK_FALSE(block_device_in_use(loop.path()));
  CHECK_FALSE(active_swap_for_device(link).has_value());

  // No signature yet: the kernel says EINVAL and we say what to do.
  std::string error = message_of([&] { swap_on(loop.path(), 1, false); });
  CHECK_THAT(error, Catch::Contains("no valid swap signature") && Catch::Contains("mkswap"));

  make_swap(loop.path(), "vramswap-a-name-longer-than-16-bytes");
  // The header mkswap wrote: label (cut to 15 bytes) and the page's magic.
  std::string header(static_cast<size_t>(page), '\0');
  {
    std::ifstream image(dir / "swap.img", std::ios::binary);
    image.read(header.data(), page);
  }
  CHECK(header.substr(static_cast<size_t>(page) - 10, 10) == "SWAPSPACE2");
  CHECK(std::string(header.c_str() + 1052) == "vramswap-a-name");  // label field

  SwapOffGuard guard{loop.path()};
  swap_on(link, 7, true);

  std::optional<SwapEntry> active = active_swap_for_device(link);
  REQUIRE(active.has_value());
  CHECK(active->type == "partition");
  CHECK(active->priority == 7);
  CHECK(active->size_bytes == 32 * MiB - static_cast<uint64_t>(page));  // less the header page

  BlockDeviceUse use = block_device_use(link);
  CHECK(use.in_use);
  CHECK(use.holder == "active swap");

  error = message_of([&] { swap_on(loop.path(), 7, false); });
  CHECK_THAT(error, Catch::Contains("already in use"));
  error = message_of([&] { make_swap(loop.path(), "again"); });
  CHECK_THAT(error, Catch::StartsWith("mkswap " + loop.path() + " failed: "));

  swap_off(link);
  CHECK_FALSE(active_swap_for_device(link).has_value());
  CHECK_FALSE(block_device_in_use(loop.path()));

  error = message_of([&] { swap_off(loop.path()); });
  CHECK_THAT(error, Catch::Contains("not an active swap area"));
}

TEST_CASE("priority -1 lets the kernel pick, as the configuration promises") {
  REQUIRE(::geteuid() == 0);
  TempDir dir;
  LoopDevice loop(dir / "swap.img", 16 * MiB);
  make_swap(loop.path(), "vramswap-auto");
  SwapOffGuard guard{loop.path()};
  swap_on(loop.path(), -1, false);
  const std::optional<SwapEntry> active = active_swap_for_device(loop.path());
  REQUIRE(active.has_value());
  CHECK(active->priority < 0);  // the kernel's own, below every preferred area
  swap_off(loop.path());
}

TEST_CASE("swap errors are one line with the cause") {
  TempDir dir;
  std::string error = message_of([&] { swap_on(dir / "missing", 1, false); });
  CHECK_THAT(error, Catch::Contains("no such device"));
  error = message_of([&] { swap_on(dir / "missing", 40000, false); });
  CHECK_THAT(error, Catch::Contains("-1 to 32767"));
  error = message_of([&] { swap_on(dir / "missing", -2, false); });
  CHECK_THAT(error, Catch::Contains("-1 to 32767"));
  error = message_of([&] { make_swap(dir / "missing", "x"); });
  CHECK_THAT(error, Catch::StartsWith("mkswap " + dir / "missing" + " failed: "));
  CHECK(error.find('\n') == std::string::npos);
}

TEST_CASE("block_device_in_use sees exclusive holders: swap, mounts, other programs") {
  REQUIRE(::geteuid() == 0);
  TempDir dir;
  LoopDevice loop(dir / "disk.img", 16 * MiB);

  BlockDeviceUse use = block_device_use(loop.path());
  CHECK_FALSE(use.in_use);
  CHECK(use.holder.empty());

  {
    UniqueFd exclusive(::open(loop.path().c_str(), O_RDONLY | O_EXCL | O_CLOEXEC));
    REQUIRE(exclusive);
    use = block_device_use(loop.path());
    CHECK(use.in_use);
    CHECK(use.holder == "held exclusively by another program");
  }
  // A plain open is no claim.
  {
    UniqueFd plain(::open(loop.path().c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(plain);
    CHECK_FALSE(block_device_in_use(loop.path()));
  }

  ProgramResult mkfs = run_program({"mkfs.ext4", "-q", "-F", loop.path()});
  REQUIRE(mkfs.succeeded());
  const std::string mount_point = dir / "mnt";
  std::filesystem::create_directory(mount_point);
  REQUIRE(::mount(loop.path().c_str(), mount_point.c_str(), "ext4", 0, nullptr) == 0);
  use = block_device_use(loop.path());
  CHECK(use.in_use);
  CHECK(use.holder == "mounted at " + mount_point);
  REQUIRE(::umount(mount_point.c_str()) == 0);
  CHECK_FALSE(block_device_in_use(loop.path()));

  CHECK_THROWS_AS(block_device_use("/dev/null"), StartupError);
  CHECK_THROWS_AS(block_device_use(dir / "missing"), StartupError);
}
