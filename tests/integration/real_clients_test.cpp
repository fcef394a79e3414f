// The daemon on the fake CUDA driver, driven by real NBD clients: libnbd's
// nbdinfo and nbdcopy, qemu-io, and fio's nbd engine with verification.
#include <catch2/catch.hpp>

#include <fstream>

#include "support/nbd_test_client.hpp"
#include "support/test_daemon.hpp"

using namespace vramswap::test;
using Catch::Matchers::Contains;

namespace {

void require_started(TestDaemon& daemon) {
  INFO("daemon log:\n" << daemon.log());
  REQUIRE(daemon.start());
}

void require_clean_stop(TestDaemon& daemon) {
  const int status = daemon.stop();
  INFO("daemon log:\n" << daemon.log());
  REQUIRE(status == 0);
}

void write_random_file(const std::string& path, uint64_t bytes, uint64_t seed) {
  std::ofstream out(path, std::ios::binary);
  constexpr size_t kChunk = 8 << 20;
  for (uint64_t done = 0; done < bytes; done += kChunk) {
    const auto chunk = random_bytes(static_cast<size_t>(std::min<uint64_t>(kChunk, bytes - done)),
                                    seed + done);
    out.write(reinterpret_cast<const char*>(chunk.data()), static_cast<std::streamsize>(chunk.size()));
  }
  REQUIRE(out.good());
}

}  // namespace

TEST_CASE("nbdinfo sees the export's size, flags and block sizes", "[clients]") {
  TestDaemon daemon({.size = "1G"});
  require_started(daemon);
  const auto info = run_command({"nbdinfo", "--json", daemon.uri()});
  INFO(info.output);
  REQUIRE(info.exit_status == 0);
  CHECK_THAT(info.output, Contains("\"export-size\": 1073741824"));
  CHECK_THAT(info.output, Contains("\"is_read_only\": false"));
  CHECK_THAT(info.output, Contains("\"can_flush\": true"));
  CHECK_THAT(info.output, Contains("\"can_fua\": true"));
  CHECK_THAT(info.output, Contains("\"can_trim\": true"));
  CHECK_THAT(info.output, Contains("\"can_zero\": true"));
  CHECK_THAT(info.output, Contains("\"can_multi_conn\": true"));
  CHECK_THAT(info.output, Contains("\"block_size_minimum\": 512"));
  CHECK_THAT(info.output, Contains("\"block_size_preferred\": 4096"));
  CHECK_THAT(info.output, Contains("\"block_size_maximum\": 33554432"));
  // The export also answers to its instance name.
  const auto named = run_command({"nbdinfo", "--size", daemon.uri().replace(0, 12, "nbd+unix:///test")});
  INFO(named.output);
  CHECK(named.exit_status == 0);
  CHECK_THAT(named.output, Contains("1073741824"));
  const auto list = run_command({"nbdinfo", "--list", "--json", daemon.uri()});
  INFO(list.output);
  CHECK(list.exit_status == 0);
  CHECK_THAT(list.output, Contains("\"export-name\": \"test\""));
  require_clean_stop(daemon);
}

TEST_CASE("nbdcopy moves 1 GiB of random data in and out unchanged", "[clients]") {
  TestDaemon daemon({.size = "1G"});
  require_started(daemon);
  const std::string in = daemon.dir().file("in.bin"), out = daemon.dir().file("out.bin");
  write_random_file(in, 1ULL << 30, 42);
  const auto up = run_command({"nbdcopy", "--flush", in, daemon.uri()}, std::chrono::seconds(300));
  INFO(up.output);
  REQUIRE(up.exit_status == 0);
  const auto down = run_command({"nbdcopy", daemon.uri(), out}, std::chrono::seconds(300));
  INFO(down.output);
  REQUIRE(down.exit_status == 0);
  const auto compare = run_command({"cmp", in, out});
  INFO(compare.output);
  CHECK(compare.exit_status == 0);
  require_clean_stop(daemon);
}

TEST_CASE("qemu-io write and read patterns verify, aligned and not", "[clients]") {
  TestDaemon daemon({.size = "256M"});
  require_started(daemon);
  const auto io = run_command(
      {"qemu-io", "-f", "raw",
       "-c", "write -P 0xab 0 1M",
       "-c", "write -P 0xcd 1M 4k",
       "-c", "write -P 0x5a 255M 1M",
       "-c", "write -P 0x11 1000 100",  // unaligned: qemu read-modify-writes 512-byte blocks
       "-c", "read -P 0xab 0 1000",
       "-c", "read -P 0x11 1000 100",
       "-c", "read -P 0xab 1100 1047476",
       "-c", "read -P 0xcd 1M 4k",
       "-c", "read -P 0x5a 255M 1M",
       "-c", "write -z 0 64k",
       "-c", "read -P 0 0 64k",
       "-c", "discard 128k 64k",
       "-c", "flush",
       daemon.uri()});
  INFO(io.output);
  CHECK(io.exit_status == 0);
  CHECK_THAT(io.output, !Contains("verification failed"));
  CHECK_THAT(io.output, !Contains("error"));
  require_clean_stop(daemon);
}

TEST_CASE("fio with several jobs and deep queues verifies every block", "[clients]") {
  TestDaemon daemon({.size = "1G", .connections = 4});
  require_started(daemon);
  const std::vector<std::string> common = {
      "fio", "--ioengine=nbd", "--uri=" + daemon.uri(), "--group_reporting", "--numjobs=4",
      "--size=256M", "--offset_increment=256M", "--verify=crc32c", "--verify_fatal=1",
      "--do_verify=1",
      // No verify-state files left in whatever directory the test runs in.
      "--verify_state_save=0"};
  auto job = [&](std::vector<std::string> extra) {
    auto argv = common;
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run_command(argv, std::chrono::seconds(600));
  };
  const auto random4k = job({"--name=rand4k", "--rw=randwrite", "--bs=4k", "--iodepth=16"});
  INFO(random4k.output);
  REQUIRE(random4k.exit_status == 0);
  CHECK_THAT(random4k.output, Contains("err= 0"));
  const auto mixed = job({"--name=mixed", "--rw=write", "--bsrange=4k-1M", "--iodepth=8"});
  INFO(mixed.output);
  REQUIRE(mixed.exit_status == 0);
  CHECK_THAT(mixed.output, Contains("err= 0"));
  require_clean_stop(daemon);
}

TEST_CASE("fio verifies every block on a slow GPU, whose copies run while payloads arrive",
          "[clients]") {
  // Copies that take 300 us keep each round's stream busy, so workers receive
  // the next payload bytes into the other half of their receive arena while
  // the last ones are still being copied out of the first.
  TestDaemon daemon({.size = "1G",
                     .connections = 4,
                     .environment = {{"VRAMSWAP_FAKE_COPY_LATENCY_US", "300"}}});
  require_started(daemon);
  const auto mixed = run_command(
      {"fio", "--ioengine=nbd", "--uri=" + daemon.uri(), "--group_reporting", "--numjobs=4",
       "--size=64M", "--offset_increment=64M", "--verify=crc32c", "--verify_fatal=1",
       "--do_verify=1", "--verify_state_save=0", "--name=mixed", "--rw=write",
       "--bsrange=4k-1M", "--iodepth=8"},
      std::chrono::seconds(600));
  INFO(mixed.output);
  REQUIRE(mixed.exit_status == 0);
  CHECK_THAT(mixed.output, Contains("err= 0"));
  require_clean_stop(daemon);
}
