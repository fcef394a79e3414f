// SIGTERM with clients mid-request on the listen socket (attach = no): every
// request the daemon read is answered for real, every later one ESHUTDOWN,
// none is left without a reply, and the daemon exits within its drain bound
// even when a client never reads its replies.
#include <catch2/catch.hpp>

#include <signal.h>

#include <chrono>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "common/byte_size.hpp"
#include "support/fake_control.hpp"
#include "support/nbd_test_client.hpp"
#include "support/test_daemon.hpp"

using namespace vramswap::test;
using Catch::Matchers::Contains;
using std::chrono::steady_clock;
using vramswap::KiB;
using vramswap::MiB;

namespace {

constexpr uint32_t kBlock = 4096;
constexpr uint32_t kESHUTDOWN = 108;
constexpr auto kDrainBound = std::chrono::seconds(5);  // engine::default_stop_drain_ms

// An NBD request header, for requests sent back to back in one write.
std::vector<uint8_t> request(uint16_t type, uint64_t cookie, uint64_t offset, uint32_t length) {
  std::vector<uint8_t> out(28);
  auto put = [&](size_t at, uint64_t value, int bytes) {
    for (int i = 0; i < bytes; ++i)
      out[at + i] = static_cast<uint8_t>(value >> (8 * (bytes - 1 - i)));
  };
  put(0, 0x25609513, 4);
  put(6, type, 2);
  put(8, cookie, 8);
  put(16, offset, 8);
  put(24, length, 4);
  return out;
}

void append(std::vector<uint8_t>& to, const std::vector<uint8_t>& what) {
  to.insert(to.end(), what.begin(), what.end());
}

long long ms_since(steady_clock::time_point then) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - then).count();
}

}  // namespace

TEST_CASE("SIGTERM answers what the daemon read, ESHUTDOWN for what came later, then exits",
          "[stop][fake]") {
  // One worker whose every round of copies takes 300 ms: SIGTERM lands while
  // the first requests' copies are in flight.
  TestDaemon daemon({.size = "256M",
                     .connections = 1,
                     .extra_config = "copy_kernel = no\n",  // one copy call per request
                     .environment = {{"VRAMSWAP_FAKE_COPY_LATENCY_US", "300000"}}});
  REQUIRE(daemon.start());
  FakeControl control(daemon.control_path());
  constexpr unsigned kClients = 4;
  std::vector<std::unique_ptr<NbdTestClient>> clients;
  std::vector<std::vector<uint8_t>> before, first, second;
  for (unsigned i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<NbdTestClient>(daemon.socket_path()));
    REQUIRE(clients[i]->negotiate() == 1);
    before.push_back(random_bytes(kBlock, 10 + i));
    first.push_back(random_bytes(kBlock, 20 + i));
    second.push_back(random_bytes(kBlock, 30 + i));
    REQUIRE(clients[i]->write(i * MiB, before[i]) == 0);
  }

  // Each client: a write, a read, and a write whose payload is half sent.
  const uint64_t copies = control->copies.load();
  for (unsigned i = 0; i < kClients; ++i) {
    const uint64_t base = i * MiB;
    std::vector<uint8_t> sent;
    append(sent, request(NbdTestClient::kWrite, 1, base + 64 * KiB, kBlock));
    append(sent, first[i]);
    append(sent, request(NbdTestClient::kRead, 2, base, kBlock));
    append(sent, request(NbdTestClient::kWrite, 3, base + 128 * KiB, kBlock));
    sent.insert(sent.end(), second[i].begin(), second[i].begin() + kBlock / 2);
    clients[i]->send_raw(sent.data(), sent.size());
  }
  // Three copy calls each queued: the daemon has read all of it.
  const auto deadline = steady_clock::now() + std::chrono::seconds(30);
  while (control->copies.load() < copies + 3 * kClients && steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  REQUIRE(control->copies.load() >= copies + 3 * kClients);

  REQUIRE(kill(daemon.pid(), SIGTERM) == 0);
  const auto term = steady_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(150));  // still inside the copies
  for (unsigned i = 0; i < kClients; ++i) {
    const uint64_t base = i * MiB;
    std::vector<uint8_t> later(second[i].begin() + kBlock / 2, second[i].end());
    append(later, request(NbdTestClient::kRead, 4, base, kBlock));
    append(later, request(NbdTestClient::kWrite, 5, base + 192 * KiB, kBlock));
    append(later, random_bytes(kBlock, 40 + i));
    append(later, request(NbdTestClient::kFlush, 6, 0, 0));
    clients[i]->send_raw(later.data(), later.size());
  }

  unsigned real = 0, refused = 0;
  for (unsigned i = 0; i < kClients; ++i) {
    INFO("client " << i);
    std::map<uint64_t, uint32_t> errors;
    for (int k = 0; k < 6; ++k) {
      const auto reply = clients[i]->read_reply();
      errors[reply.cookie] = reply.error;
      (reply.error == 0 ? real : refused) += 1;
      if (reply.cookie == 2 && reply.error == 0) {
        std::vector<uint8_t> data(kBlock);
        clients[i]->read_exact(data.data(), data.size());
        CHECK(data == before[i]);
      }
    }
    CHECK(errors == std::map<uint64_t, uint32_t>{
                        {1, 0}, {2, 0}, {3, 0}, {4, kESHUTDOWN}, {5, kESHUTDOWN}, {6, kESHUTDOWN}});
    CHECK(clients[i]->closed_by_server(5000));
  }
  const int status = daemon.wait(std::chrono::seconds(30));
  const long long took = ms_since(term);
  INFO("real replies " << real << ", ESHUTDOWN " << refused << ", exit " << took
                       << " ms after SIGTERM");
  CHECK(status == 0);
  CHECK(real == 3 * kClients);
  CHECK(refused == 3 * kClients);
  // Drained, not cut off at the bound.
  CHECK(took < std::chrono::duration_cast<std::chrono::milliseconds>(kDrainBound).count());
  CHECK_THAT(daemon.log(), !Contains("still owed replies"));
}

TEST_CASE("a client that never reads its replies holds SIGTERM no longer than the drain bound",
          "[stop]") {
  TestDaemon daemon({.size = "256M", .connections = 1});
  REQUIRE(daemon.start());
  NbdTestClient stuck(daemon.socket_path());
  REQUIRE(stuck.negotiate() == 1);
  // 128 MiB of read replies owed, far beyond what the sockets hold.
  std::vector<uint8_t> reads;
  for (uint64_t i = 0; i < 128; ++i)
    append(reads, request(NbdTestClient::kRead, i + 1, (i % 64) * MiB, 1 * MiB));
  stuck.send_raw(reads.data(), reads.size());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));

  REQUIRE(kill(daemon.pid(), SIGTERM) == 0);
  const auto term = steady_clock::now();
  const int status = daemon.wait(std::chrono::seconds(60));
  const long long took = ms_since(term);
  INFO("exit " << took << " ms after SIGTERM");
  CHECK(status == 0);
  const long long bound =
      std::chrono::duration_cast<std::chrono::milliseconds>(kDrainBound).count();
  CHECK(took >= bound);  // it tried to answer, up to the bound
  CHECK(took < bound + 10'000);
  CHECK_THAT(daemon.log(), Contains("still owed replies"));
}
