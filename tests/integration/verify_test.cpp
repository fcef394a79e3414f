// verify = yes: a checksum of every 4 KiB block, so that VRAM that changed
// under the daemon (a flipped bit on a GPU without ECC) fails the read that
// meets it instead of handing out wrong data.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include "support/nbd_test_client.hpp"
#include "support/test_daemon.hpp"

using namespace vramswap::test;
using Catch::Matchers::Contains;

namespace {

constexpr uint32_t kEIO = 5, kEINVAL = 22;

// The fake driver's backing file of the daemon's VRAM: the device's pool,
// which holds the daemon's chunks in the order it took them, export offset
// 0 first, so an export offset is an offset in the file.
std::string backing_file(const TempDir& dir) {
  const std::string path = dir.file("dev0-vram");
  struct stat st {};
  REQUIRE(stat(path.c_str(), &st) == 0);
  return path;
}

// Flips one bit of the fake VRAM behind the daemon's back.
void flip_bit(const std::string& path, uint64_t offset) {
  const int fd = open(path.c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  unsigned char byte = 0;
  REQUIRE(pread(fd, &byte, 1, static_cast<off_t>(offset)) == 1);
  byte ^= 0x10;
  REQUIRE(pwrite(fd, &byte, 1, static_cast<off_t>(offset)) == 1);
  close(fd);
}

}  // namespace

TEST_CASE("verify = yes: a flipped bit in VRAM fails only the reads that meet it",
          "[verify][fake]") {
  TempDir vram;
  TestDaemon daemon({.size = "256M",
                     .extra_config = "verify = yes\n",
                     // VRAM stays in the device's pool file, where the bit
                     // is flipped: the fake moves an exported chunk to a
                     // memfd of its own, so no export (no live restart).
                     .environment = {{"VRAMSWAP_FAKE_BACKING_DIR", vram.path()},
                                     {"VRAMSWAP_FAKE_NO_SHAREABLE", "1"}}});
  if (!daemon.start()) FAIL("the daemon did not start:\n" << daemon.log());
  NbdTestClient client(daemon.socket_path()), other(daemon.socket_path());
  REQUIRE(client.negotiate() == 1);
  REQUIRE(other.negotiate() == 1);
  const auto mine = random_bytes(64 << 10, 1), theirs = random_bytes(64 << 10, 2);
  REQUIRE(client.write(0, mine) == 0);
  REQUIRE(other.write(1 << 20, theirs) == 0);
  std::vector<uint8_t> back;
  REQUIRE(client.read(0, 64 << 10, back) == 0);
  REQUIRE(back == mine);
  // Never-written blocks read as the zeros they were cleared to.
  REQUIRE(client.read(8 << 20, 8192, back) == 0);
  CHECK(back == std::vector<uint8_t>(8192, 0));

  flip_bit(backing_file(vram), 3 * 4096 + 100);
  CHECK(client.read(0, 64 << 10, back) == kEIO);  // the read that covers block 3
  CHECK(client.read(3 * 4096, 4096, back) == kEIO);
  CHECK(client.read(0, 3 * 4096, back) == 0);  // its neighbours are intact
  CHECK(std::equal(back.begin(), back.end(), mine.begin()));
  CHECK(client.read(4 * 4096, 4096, back) == 0);
  CHECK(std::equal(back.begin(), back.end(), mine.begin() + 4 * 4096));
  CHECK(other.read(1 << 20, 64 << 10, back) == 0);  // nobody else lost anything
  CHECK(back == theirs);

  // Writing the block again makes it whole.
  const auto fresh = random_bytes(4096, 3);
  CHECK(client.write(3 * 4096, fresh) == 0);
  CHECK(client.read(3 * 4096, 4096, back) == 0);
  CHECK(back == fresh);

  // So do zeroes.
  flip_bit(backing_file(vram), (1 << 20) + 5);
  CHECK(other.read(1 << 20, 4096, back) == kEIO);
  CHECK(other.simple(NbdTestClient::kWriteZeroes, 1 << 20, 4096) == 0);
  CHECK(other.read(1 << 20, 4096, back) == 0);
  CHECK(back == std::vector<uint8_t>(4096, 0));

  CHECK(daemon.alive());
  CHECK(daemon.status_shows("3 checksum mismatches"));
  CHECK_THAT(daemon.log(), Contains("VRAM data corrupted at offset 12288 (checksum mismatch)"));
  CHECK_THAT(daemon.log(),
             Contains("verify = yes: a checksum of every 4 KiB block, 384.0 KiB of RAM"));
  CHECK(daemon.stop() == 0);
}

TEST_CASE("verify = yes: requests must cover whole 4 KiB blocks, and clients are told so",
          "[verify]") {
  TestDaemon daemon({.size = "256M", .extra_config = "verify = yes\n"});
  if (!daemon.start()) FAIL("the daemon did not start:\n" << daemon.log());
  const auto info = run_command({"nbdinfo", "--json", daemon.uri()});
  INFO(info.output);
  CHECK_THAT(info.output, Contains("\"block_size_minimum\": 4096"));
  NbdTestClient client(daemon.socket_path());
  REQUIRE(client.negotiate() == 1);
  std::vector<uint8_t> back;
  CHECK(client.write(512, random_bytes(512, 4)) == kEINVAL);
  CHECK(client.read(4096, 512, back) == kEINVAL);
  const auto data = random_bytes(4096, 5);
  CHECK(client.write(4096, data) == 0);  // the connection is still usable
  CHECK(client.read(4096, 4096, back) == 0);
  CHECK(back == data);
  CHECK(daemon.stop() == 0);
}

TEST_CASE("verify = yes: fio's own verification finds every block intact", "[verify][clients]") {
  TestDaemon daemon({.size = "1G", .connections = 4, .extra_config = "verify = yes\n"});
  if (!daemon.start()) FAIL("the daemon did not start:\n" << daemon.log());
  const auto fio =
      run_command({"fio", "--ioengine=nbd", "--uri=" + daemon.uri(), "--group_reporting",
                   "--numjobs=4", "--size=256M", "--offset_increment=256M", "--verify=crc32c",
                   "--verify_fatal=1", "--do_verify=1", "--verify_state_save=0", "--name=mixed",
                   "--rw=randwrite", "--bsrange=4k-1M", "--iodepth=16"},
                  std::chrono::seconds(600));
  INFO(fio.output << "\ndaemon log:\n" << daemon.log());
  REQUIRE(fio.exit_status == 0);
  CHECK_THAT(fio.output, Contains("err= 0"));
  CHECK_THAT(daemon.log(), !Contains("checksum mismatch"));
  CHECK(daemon.stop() == 0);
}

TEST_CASE("verify = yes: reads racing writes of the same blocks get data, not EIO",
          "[verify][clients]") {
  // A read that overlaps a write in flight may meet the old data under the
  // new checksum; the daemon reads such a block again instead of calling it
  // corrupt. One writer and three readers share one MiB for a few seconds.
  TestDaemon daemon({.size = "256M", .connections = 4, .extra_config = "verify = yes\n"});
  if (!daemon.start()) FAIL("the daemon did not start:\n" << daemon.log());
  const auto fio =
      run_command({"fio", "--ioengine=nbd", "--uri=" + daemon.uri(), "--size=1M", "--bs=4k",
                   "--iodepth=16", "--time_based", "--runtime=4", "--name=writer", "--rw=randwrite",
                   "--name=readers", "--rw=randread", "--numjobs=3"},
                  std::chrono::seconds(120));
  INFO(fio.output << "\ndaemon log:\n" << daemon.log());
  REQUIRE(fio.exit_status == 0);
  CHECK_THAT(fio.output, !Contains("Input/output error"));
  CHECK_THAT(daemon.log(), !Contains("checksum mismatch"));
  CHECK(daemon.stop() == 0);
}

TEST_CASE("verify = yes: blocks written on several connections at once read back, not EIO",
          "[verify][clients]") {
  // Two writes of one block on two connections may have their checksums
  // recorded in one order and their copies land in the other: the block then
  // holds one write's data under the other's checksum. NBD leaves its content
  // to the client (either write's data will do), not a read that fails from
  // then on. Four writers share one MiB for a few seconds on a GPU whose
  // copies take 200 us (so that rounds on different workers interleave);
  // then all of it is read back.
  TestDaemon daemon({.size = "256M",
                     .connections = 4,
                     .extra_config = "verify = yes\n",
                     .environment = {{"VRAMSWAP_FAKE_COPY_LATENCY_US", "200"}}});
  if (!daemon.start()) FAIL("the daemon did not start:\n" << daemon.log());
  const auto writers =
      run_command({"fio", "--ioengine=nbd", "--uri=" + daemon.uri(), "--size=1M",
                   "--bsrange=4k-64k", "--iodepth=16", "--time_based", "--runtime=3",
                   "--name=writers", "--rw=randwrite", "--numjobs=4", "--group_reporting"},
                  std::chrono::seconds(120));
  INFO(writers.output << "\ndaemon log:\n" << daemon.log());
  REQUIRE(writers.exit_status == 0);
  const auto reader = run_command({"fio", "--ioengine=nbd", "--uri=" + daemon.uri(), "--size=1M",
                                   "--bs=4k", "--name=reader", "--rw=read"},
                                  std::chrono::seconds(120));
  INFO(reader.output);
  CHECK(reader.exit_status == 0);
  CHECK_THAT(reader.output, !Contains("Input/output error"));
  CHECK_THAT(daemon.log(), !Contains("checksum mismatch"));
  CHECK(daemon.stop() == 0);
}
