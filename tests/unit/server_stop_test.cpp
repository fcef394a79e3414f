// Server::stop with clients mid-request, on the fake driver with real
// sockets: what was read is answered for real, what comes later is refused
// with ESHUTDOWN, every connection then closes, and a client that does not
// read its replies holds the stop no longer than its bound.

#include <catch2/catch.hpp>

#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "common/byte_size.hpp"
#include "cuda/context.hpp"
#include "cuda/driver.hpp"
#include "engine/server.hpp"
#include "fake_cuda_support.hpp"
#include "nbd/protocol.hpp"
#include "store/copy_stream.hpp"
#include "store/pinned_buffer.hpp"
#include "store/vram_store.hpp"
#include "support/nbd_test_client.hpp"

using namespace vramswap;
using namespace vramswap::store;
using namespace vramswap::engine;
using test::NbdTestClient;

namespace {

constexpr uint32_t kBlock = 4096;

// One worker over a 16 MiB export on a fake GPU whose every round of copies
// takes `copy_latency_us`, with a listen socket.
struct StoppableServer {
  StoppableServer(unsigned copy_latency_us, unsigned drain_ms) {
    fake.set("VRAMSWAP_FAKE_MEMORY", "64M");
    fake.set("VRAMSWAP_FAKE_RESERVED", "0");
    fake.set("VRAMSWAP_FAKE_CONTROL", dir.file("control"));
    fake.set("VRAMSWAP_FAKE_COPY_LATENCY_US", std::to_string(copy_latency_us));
    driver = std::make_unique<cuda::Driver>(cuda::Driver::load());
    context = std::make_unique<cuda::Context>(*driver, 0);
    store = std::make_unique<VramStore>(*context, 2 * MiB);
    store->allocate(16 * MiB, 16 * MiB);
    ServerOptions options;
    options.export_name = "stop";
    options.listen_path = dir.file("nbd.sock");
    options.engine.workers = 1;
    options.engine.rx_arena_bytes = options.engine.tx_arena_bytes = 1 * MiB;
    options.engine.max_clients = 4;
    options.engine.copy_kernel = false;  // one copy call per request: countable
    options.engine.stop_drain_ms = drain_ms;
    server = std::make_unique<Server>(*store, *context, options);
    server->start();
  }
  ~StoppableServer() { server->stop(); }

  uint64_t copies() const { return test::ControlBlock(dir.file("control"))->copies.load(); }
  // What the export holds, read straight from VRAM (the server stopped).
  std::vector<uint8_t> stored(uint64_t offset, uint32_t length) {
    REQUIRE(context->bind_current_thread().ok());
    CopyStream stream(*store);
    PinnedBuffer buffer(*context, length);
    REQUIRE(stream.read(buffer.data(), offset, length).ok());
    REQUIRE(stream.synchronize().ok());
    auto* bytes = reinterpret_cast<const uint8_t*>(buffer.data());
    return std::vector<uint8_t>(bytes, bytes + length);
  }

  test::FakeCuda fake;
  test::TempDir dir;
  std::unique_ptr<cuda::Driver> driver;
  std::unique_ptr<cuda::Context> context;
  std::unique_ptr<VramStore> store;
  std::unique_ptr<Server> server;
};

// An NBD request header, for requests sent back to back in one write.
std::vector<uint8_t> request(uint16_t type, uint64_t cookie, uint64_t offset, uint32_t length) {
  std::vector<uint8_t> out(28);
  auto put = [&](size_t at, uint64_t value, int bytes) {
    for (int i = 0; i < bytes; ++i)
      out[at + i] = static_cast<uint8_t>(value >> (8 * (bytes - 1 - i)));
  };
  put(0, 0x25609513, 4);
  put(4, 0, 2);
  put(6, type, 2);
  put(8, cookie, 8);
  put(16, offset, 8);
  put(24, length, 4);
  return out;
}

void append(std::vector<uint8_t>& to, const std::vector<uint8_t>& what) {
  to.insert(to.end(), what.begin(), what.end());
}

template <typename Predicate>
bool eventually(Predicate done, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace

TEST_CASE(
    "a stop answers the requests already read, refuses later ones with ESHUTDOWN, and closes") {
  // Every round's copies take 300 ms: the stop begins while the first
  // requests' copies are in flight.
  StoppableServer served(300'000, 10'000);
  NbdTestClient client(served.dir.file("nbd.sock"));
  REQUIRE(client.negotiate() == 1);
  const auto before = test::random_bytes(kBlock, 1);
  REQUIRE(client.write(0, before) == 0);

  // Read by the server before the stop: a write, a read, and the header and
  // half the payload of another write.
  const auto first = test::random_bytes(kBlock, 2), second = test::random_bytes(kBlock, 3);
  std::vector<uint8_t> sent;
  append(sent, request(NbdTestClient::kWrite, 1, 64 * KiB, kBlock));
  append(sent, first);
  append(sent, request(NbdTestClient::kRead, 2, 0, kBlock));
  append(sent, request(NbdTestClient::kWrite, 3, 128 * KiB, kBlock));
  sent.insert(sent.end(), second.begin(), second.begin() + kBlock / 2);
  const uint64_t copies = served.copies();
  client.send_raw(sent.data(), sent.size());
  // Its three copies queued: the server has read all of it.
  REQUIRE(eventually([&] { return served.copies() >= copies + 3; }));

  const auto stop_began = std::chrono::steady_clock::now();
  auto stopped = std::async(std::launch::async, [&] { served.server->stop(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // inside the round's copies
  // The rest of the half-sent write, then requests sent after the stop began.
  std::vector<uint8_t> later(second.begin() + kBlock / 2, second.end());
  append(later, request(NbdTestClient::kRead, 4, 0, kBlock));
  append(later, request(NbdTestClient::kWrite, 5, 192 * KiB, kBlock));
  append(later, test::random_bytes(kBlock, 4));
  append(later, request(NbdTestClient::kFlush, 6, 0, 0));
  client.send_raw(later.data(), later.size());

  std::map<uint64_t, uint32_t> errors;
  for (int i = 0; i < 6; ++i) {
    const auto reply = client.read_reply();
    errors[reply.cookie] = reply.error;
    if (reply.cookie == 2 && reply.error == 0) {
      std::vector<uint8_t> data(kBlock);
      client.read_exact(data.data(), data.size());
      CHECK(data == before);
    }
  }
  CHECK(errors == std::map<uint64_t, uint32_t>{{1, 0},
                                               {2, 0},
                                               {3, 0},
                                               {4, nbd::error::eshutdown},
                                               {5, nbd::error::eshutdown},
                                               {6, nbd::error::eshutdown}});
  CHECK(client.closed_by_server(5000));
  REQUIRE(stopped.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  // Drained, not cut off at the bound.
  CHECK(std::chrono::steady_clock::now() - stop_began < std::chrono::seconds(10));
  // The writes answered ok landed; the refused one did not.
  CHECK(served.stored(64 * KiB, kBlock) == first);
  CHECK(served.stored(128 * KiB, kBlock) == second);
  CHECK(served.stored(192 * KiB, kBlock) == std::vector<uint8_t>(kBlock, 0));
}

TEST_CASE("a client that does not read its replies holds a stop no longer than the drain bound") {
  constexpr unsigned kDrainMs = 500;
  StoppableServer served(0, kDrainMs);
  NbdTestClient stuck(served.dir.file("nbd.sock"));
  REQUIRE(stuck.negotiate() == 1);
  NbdTestClient idle(served.dir.file("nbd.sock"));
  REQUIRE(idle.negotiate() == 1);
  // 64 MiB of read replies owed, far beyond what the sockets hold.
  std::vector<uint8_t> reads;
  for (uint64_t i = 0; i < 64; ++i)
    append(reads, request(NbdTestClient::kRead, i + 1, (i % 16) * MiB, 1 * MiB));
  stuck.send_raw(reads.data(), reads.size());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));

  const auto began = std::chrono::steady_clock::now();
  auto stopped = std::async(std::launch::async, [&] { served.server->stop(); });
  REQUIRE(stopped.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  const auto took = std::chrono::steady_clock::now() - began;
  INFO("the stop took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                        << " ms");
  // It waited for the stuck client, up to the bound, and not much longer.
  CHECK(took >= std::chrono::milliseconds(kDrainMs));
  CHECK(took < std::chrono::milliseconds(kDrainMs) + std::chrono::seconds(5));
  CHECK(idle.closed_by_server(1000));
}
