// Faults injected through the fake CUDA driver: the requests a fault touches
// get EIO, every other request keeps its data, the daemon keeps running, logs
// once per cause, and says it is degraded.
#include <catch2/catch.hpp>

#include <atomic>
#include <map>
#include <thread>

#include "support/fake_control.hpp"
#include "support/nbd_test_client.hpp"
#include "support/test_daemon.hpp"

using namespace vramswap::test;
using Catch::Matchers::Contains;

namespace {

constexpr uint32_t kEIO = 5;

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
    ++n;
  return n;
}

// One client of the pipelined fault test: rounds of `depth` 4 KiB writes sent
// back to back, their replies, then `depth` reads of the same blocks, and
// theirs. A read must return what the last successful write of its block
// wrote; a block whose write failed holds undefined data until written again.
struct PipelinedClient {
  unsigned index;
  unsigned eio = 0;         // requests answered EIO
  unsigned wrong_data = 0;  // reads that returned something never written
  unsigned answered = 0;    // replies received
  std::string failure;      // an exception that ended the client early

  void run(const std::string& socket, unsigned rounds, unsigned depth,
           std::atomic<unsigned>& progress) {
    constexpr uint32_t kBlock = 4096;
    try {
      NbdTestClient client(socket);
      if (client.negotiate() != 1) throw std::runtime_error("negotiation failed");
      const uint64_t base = uint64_t{index} << 20;
      std::map<uint64_t, std::vector<uint8_t>> expected;  // block -> what it holds
      uint64_t cookie = 1;
      for (unsigned round = 0; round < rounds; ++round) {
        std::map<uint64_t, uint64_t> block_of;  // cookie -> block
        std::map<uint64_t, std::vector<uint8_t>> written;
        for (unsigned k = 0; k < depth; ++k) {
          const uint64_t block = (round * depth + k) % 128;
          written[block] = random_bytes(kBlock, (uint64_t{index} << 32) | (round * depth + k));
          client.send_request(NbdTestClient::kWrite, 0, cookie, base + block * kBlock, kBlock);
          client.send_raw(written[block].data(), kBlock);
          block_of[cookie++] = block;
        }
        for (unsigned k = 0; k < depth; ++k) {
          const auto reply = client.read_reply();
          ++answered;
          ++progress;
          const uint64_t block = block_of.at(reply.cookie);
          if (reply.error == 0) {
            expected[block] = written[block];
          } else {
            ++eio;
            expected.erase(block);  // undefined until written again
          }
        }
        block_of.clear();
        for (const auto& [block, data] : written) {
          client.send_request(NbdTestClient::kRead, 0, cookie, base + block * kBlock, kBlock);
          block_of[cookie++] = block;
        }
        for (size_t k = 0; k < written.size(); ++k) {
          const auto reply = client.read_reply();
          ++answered;
          ++progress;
          if (reply.error != 0) {
            ++eio;
            continue;
          }
          std::vector<uint8_t> data(kBlock);
          client.read_exact(data.data(), kBlock);
          const auto known = expected.find(block_of.at(reply.cookie));
          if (known != expected.end() && known->second != data) ++wrong_data;
        }
      }
      client.disconnect();
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }
};

}  // namespace

TEST_CASE("one failed copy call costs at most the one request whose data did not land",
          "[faults][fake]") {
  // Six clients pipelining 4 KiB writes and reads into one worker, whose
  // rounds (the fake GPU takes 1 ms per sync) then hold many requests of many
  // clients; one copy call fails in the middle. With the copy kernel, that
  // call is the round's batched launch.
  const std::string copy_kernel = GENERATE("yes", "no");
  DYNAMIC_SECTION("copy_kernel = " << copy_kernel) {
    TestDaemon daemon({.size = "256M",
                       .connections = 1,
                       .extra_config = "copy_kernel = " + copy_kernel + "\n",
                       .environment = {{"VRAMSWAP_FAKE_COPY_LATENCY_US", "1000"}}});
    REQUIRE(daemon.start());
    FakeControl control(daemon.control_path());
    constexpr unsigned kClients = 6, kRounds = 40, kDepth = 32;
    std::vector<PipelinedClient> clients;
    for (unsigned i = 0; i < kClients; ++i)
      clients.push_back(PipelinedClient{.index = i});
    std::atomic<unsigned> progress{0};
    std::vector<std::thread> threads;
    for (auto& c : clients)
      threads.emplace_back([&] { c.run(daemon.socket_path(), kRounds, kDepth, progress); });
    // Inject once the clients are well into their pipelines.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (progress.load() < kClients * kRounds * kDepth / 2 &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    control->fail_next_copies.store(1);
    for (auto& t : threads)
      t.join();

    unsigned eio = 0, answered = 0;
    for (const auto& c : clients) {
      INFO("client " << c.index << ": " << c.failure);
      CHECK(c.failure.empty());
      CHECK(c.wrong_data == 0);
      eio += c.eio;
      answered += c.answered;
    }
    INFO("requests answered EIO for one injected fault: " << eio << " of " << answered);
    CHECK(answered == kClients * kRounds * kDepth * 2);
    REQUIRE(control->failed_copies.load() == 1);  // the fault was met, once
    CHECK(eio <= 1);
    CHECK(daemon.alive());
    // The status file counts the failed call and the failed requests apart.
    REQUIRE(daemon.status_shows("DEGRADED"));
    const auto status = read_file(daemon.dir().file("test.json"));
    CHECK_THAT(status, Contains("\"failed_copy_calls\": 1"));
    CHECK_THAT(status, Contains("\"io_errors\": " + std::to_string(eio)));
    CHECK_THAT(daemon.log(),
               Contains("1 failed copy call, " + std::to_string(eio) + " request(s) answered EIO"));
    CHECK(daemon.stop() == 0);
  }
}

TEST_CASE("a failed copy fails only its request, and the daemon says it is degraded",
          "[faults][fake]") {
  // Each copy its own driver call, so that the one injected failure is that
  // request's own (with the copy kernel, a write's payload pieces go in one
  // launch, which is redone call by call when it fails: see the pipelined
  // test below).
  TestDaemon daemon({.size = "256M", .extra_config = "copy_kernel = no\n"});
  REQUIRE(daemon.start());
  FakeControl control(daemon.control_path());
  NbdTestClient client(daemon.socket_path()), other(daemon.socket_path());
  REQUIRE(client.negotiate() == 1);
  REQUIRE(other.negotiate() == 1);
  const auto mine = random_bytes(64 << 10, 1), theirs = random_bytes(64 << 10, 2);
  REQUIRE(client.write(0, mine) == 0);
  REQUIRE(other.write(1 << 20, theirs) == 0);
  std::vector<uint8_t> back;

  // A read whose copy fails gets EIO; the data is still there afterwards.
  control->fail_next_copies.store(1);
  CHECK(client.read(0, 64 << 10, back) == kEIO);
  CHECK(client.read(0, 64 << 10, back) == 0);
  CHECK(back == mine);

  // A write whose copy fails gets EIO; writing again works.
  control->fail_next_copies.store(1);
  const auto newer = random_bytes(64 << 10, 3);
  CHECK(client.write(0, newer) == kEIO);
  CHECK(client.write(0, newer) == 0);
  CHECK(client.read(0, 64 << 10, back) == 0);
  CHECK(back == newer);

  // Nobody else lost anything.
  CHECK(other.read(1 << 20, 64 << 10, back) == 0);
  CHECK(back == theirs);
  CHECK(control->failed_copies.load() == 2);
  CHECK(daemon.alive());
  CHECK(daemon.status_shows("DEGRADED: 2 failed copies"));
  const auto status = read_file(daemon.dir().file("test.json"));
  CHECK_THAT(status, Contains("\"health\": \"degraded\""));
  CHECK_THAT(status, Contains("\"copy_failures\": 2"));
  CHECK_THAT(daemon.log(), Contains("VRAM copy failed (CUDA_ERROR_OUT_OF_MEMORY)"));
  CHECK(daemon.stop() == 0);
}

TEST_CASE("a lost GPU fails every request with EIO, logs once, and the daemon stays up",
          "[faults][fake]") {
  TestDaemon daemon({.size = "256M"});
  REQUIRE(daemon.start());
  FakeControl control(daemon.control_path());
  NbdTestClient client(daemon.socket_path());
  REQUIRE(client.negotiate() == 1);
  REQUIRE(client.write(0, random_bytes(4096, 4)) == 0);

  control->lose_device.store(1);
  std::vector<uint8_t> back;
  for (int i = 0; i < 200; ++i) {
    CHECK(client.read(0, 4096, back) == kEIO);
    CHECK(client.write(4096, random_bytes(4096, 5)) == kEIO);
  }
  // Requests that need no copy still work: the daemon is alive and honest.
  CHECK(client.simple(NbdTestClient::kFlush, 0, 0) == 0);
  CHECK(daemon.alive());
  CHECK(daemon.status_shows("FAILED: GPU lost"));
  const std::string log = daemon.log();
  INFO(log);
  CHECK(count(log, "GPU lost") == 1);
  CHECK(count(log, "error:") <= 2);  // the first report, and at most one rate-limited reminder
  CHECK(daemon.stop() == 0);
}
