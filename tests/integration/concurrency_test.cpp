// Many clients at once: more connections than workers are all served, and a
// storm beyond the connection slots waits in the backlog instead of failing.
#include <catch2/catch.hpp>

#include <atomic>
#include <barrier>
#include <thread>

#include "support/nbd_test_client.hpp"
#include "support/test_daemon.hpp"

using namespace vramswap::test;
using Catch::Matchers::Contains;

namespace {

// Each client writes its own region, waits until every client has connected
// and written (so all connections are open at once), then reads back.
unsigned run_clients(TestDaemon& daemon, unsigned clients, uint32_t bytes_each) {
  std::atomic<unsigned> good{0};
  std::barrier all_connected(static_cast<std::ptrdiff_t>(clients));
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      bool ok = false;
      try {
        NbdTestClient client(daemon.socket_path());
        if (client.negotiate() == 1) {
          const auto data = random_bytes(bytes_each, 1000 + i);
          const uint64_t offset = uint64_t{i} * bytes_each;
          ok = client.write(offset, data) == 0;
          all_connected.arrive_and_wait();
          std::vector<uint8_t> back;
          ok = ok && client.read(offset, bytes_each, back) == 0 && back == data;
          client.disconnect();
        } else {
          all_connected.arrive_and_drop();
        }
      } catch (const std::exception&) {
        all_connected.arrive_and_drop();
      }
      if (ok) ++good;
    });
  }
  for (auto& t : threads) t.join();
  return good.load();
}

}  // namespace

TEST_CASE("32 clients at once on 4 workers are all served", "[concurrency]") {
  TestDaemon daemon({.size = "1G", .connections = 4});
  INFO(daemon.log());
  REQUIRE(daemon.start());
  CHECK(run_clients(daemon, 32, 1 << 20) == 32);
  CHECK(daemon.stop() == 0);
}

TEST_CASE("a connection storm beyond the connection slots waits and is served", "[concurrency]") {
  // 300 clients against 256 slots: the last ones wait in the listen backlog
  // until earlier ones leave. Here every client holds its connection until
  // all have written, so the waiting ones must not be needed by the barrier.
  TestDaemon daemon({.size = "1G", .connections = 4});
  REQUIRE(daemon.start());
  std::atomic<unsigned> good{0};
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < 300; ++i) {
    threads.emplace_back([&, i] {
      try {
        NbdTestClient client(daemon.socket_path());
        if (client.negotiate() != 1) return;
        const auto data = random_bytes(64 << 10, 7000 + i);
        std::vector<uint8_t> back;
        if (client.write(uint64_t{i} << 16, data) == 0 &&
            client.read(uint64_t{i} << 16, 64 << 10, back) == 0 && back == data) {
          ++good;
        }
        client.disconnect();
      } catch (const std::exception&) {
      }
    });
  }
  for (auto& t : threads) t.join();
  INFO(daemon.log());
  CHECK(good.load() == 300);
  CHECK(daemon.stop() == 0);
}

TEST_CASE("64 fio clients at once, each verifying its own data, all pass", "[concurrency]") {
  // Each job is its own connection with requests in flight, over its own
  // 4 MiB of a shared export, on 4 workers: 16 connections per worker.
  TestDaemon daemon({.size = "256M", .connections = 4});
  if (!daemon.start()) FAIL("the daemon did not start:\n" << daemon.log());
  const auto fio = run_command(
      {"fio", "--ioengine=nbd", "--uri=" + daemon.uri(), "--name=many", "--numjobs=64",
       "--size=4M", "--offset_increment=4M", "--rw=randwrite", "--bsrange=4k-64k",
       "--iodepth=8", "--verify=crc32c", "--verify_fatal=1", "--do_verify=1",
       "--verify_state_save=0", "--group_reporting"},
      std::chrono::seconds(300));
  INFO(fio.output << "\ndaemon log:\n" << daemon.log());
  REQUIRE(fio.exit_status == 0);
  CHECK_THAT(fio.output, Contains("err= 0"));
  CHECK(daemon.alive());
  CHECK(daemon.stop() == 0);
}
