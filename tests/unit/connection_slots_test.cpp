// Connection slots: the kernel's are its own, listen clients wait for theirs,
// and the file descriptor limit leaves the daemon what it needs itself. The
// pool on its own, then the server on the fake driver with real sockets.

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "common/byte_size.hpp"
#include "cuda/context.hpp"
#include "cuda/driver.hpp"
#include "engine/connection_pool.hpp"
#include "engine/descriptor_budget.hpp"
#include "engine/server.hpp"
#include "fake_cuda_support.hpp"
#include "store/vram_store.hpp"
#include "support/nbd_test_client.hpp"

using namespace vramswap;
using namespace vramswap::store;
using namespace vramswap::engine;

namespace {

// True if `fd` becomes readable within `ms` (the server said something).
bool readable_within(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, ms) == 1;
}

template <typename Predicate>
bool eventually(Predicate done, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// One NBD read of 4 KiB at offset 0 on a kernel socket (the request the
// kernel's nbd driver would send), and its reply's error field.
uint32_t kernel_read(int fd) {
  unsigned char request[28] = {};
  const uint32_t magic = htonl(0x25609513);
  std::memcpy(request, &magic, 4);  // flags 0, type 0 (read), cookie 0, offset 0
  const uint32_t length = htonl(4096);
  std::memcpy(request + 24, &length, 4);
  REQUIRE(::write(fd, request, sizeof request) == sizeof request);
  unsigned char reply[16 + 4096];
  size_t got = 0;
  while (got < sizeof reply) {
    REQUIRE(readable_within(fd, 10'000));
    const ssize_t n = ::read(fd, reply + got, sizeof reply - got);
    REQUIRE(n > 0);
    got += static_cast<size_t>(n);
  }
  uint32_t error = 0;
  std::memcpy(&error, reply + 4, 4);
  return ntohl(error);
}

// The server over a 16 MiB export on the fake driver, with a listen socket.
struct ServedExport {
  explicit ServedExport(unsigned kernel_connections, unsigned max_clients) {
    fake.set("VRAMSWAP_FAKE_MEMORY", "64M");
    fake.set("VRAMSWAP_FAKE_RESERVED", "0");
    driver = std::make_unique<cuda::Driver>(cuda::Driver::load());
    context = std::make_unique<cuda::Context>(*driver, 0);
    store = std::make_unique<VramStore>(*context, 2 * MiB);
    store->allocate(16 * MiB, 16 * MiB);
    ServerOptions options;
    options.export_name = "slots";
    options.listen_path = dir.file("nbd.sock");
    options.kernel_connections = kernel_connections;
    options.engine.workers = 2;
    options.engine.rx_arena_bytes = options.engine.tx_arena_bytes = 1 * MiB;
    options.engine.max_clients = max_clients;
    options.engine.copy_kernel = false;
    server = std::make_unique<Server>(*store, *context, options);
    server->start();
  }
  ~ServedExport() { server->stop(); }

  test::FakeCuda fake;
  test::TempDir dir;
  std::unique_ptr<cuda::Driver> driver;
  std::unique_ptr<cuda::Context> context;
  std::unique_ptr<VramStore> store;
  std::unique_ptr<Server> server;
};

}  // namespace

TEST_CASE("the pool never lends a kernel slot to a client, nor a client slot to the kernel") {
  ConnectionPool pool(2, 3);
  std::vector<Connection*> clients;
  while (Connection* c = pool.acquire(Origin::client))
    clients.push_back(c);
  CHECK(clients.size() == 3);
  CHECK_FALSE(pool.client_slot_free());
  Connection* k1 = pool.acquire(Origin::kernel);
  Connection* k2 = pool.acquire(Origin::kernel);
  REQUIRE(k1);
  REQUIRE(k2);
  CHECK(pool.acquire(Origin::kernel) == nullptr);
  pool.release(k1);  // a kernel connection dropped: its slot waits for the kernel
  CHECK(pool.acquire(Origin::client) == nullptr);
  CHECK(pool.acquire(Origin::kernel) == k1);
  pool.release(clients.back());
  CHECK(pool.acquire(Origin::kernel) == nullptr);
  CHECK(pool.acquire(Origin::client) == clients.back());
}

TEST_CASE("the client slots can be lowered, never raised, and hold in use ones") {
  ConnectionPool pool(0, 8);
  Connection* a = pool.acquire(Origin::client);
  Connection* b = pool.acquire(Origin::client);
  pool.limit_client_slots(2);
  CHECK(pool.client_slots() == 2);
  CHECK(pool.acquire(Origin::client) == nullptr);
  pool.limit_client_slots(5);
  CHECK(pool.client_slots() == 2);
  pool.release(a);
  CHECK(pool.acquire(Origin::client) != nullptr);
  (void)b;
}

TEST_CASE("the descriptor budget keeps the daemon's reserve out of the clients' reach") {
  CHECK(clients_within(256, 1024, 20, 32) == 256);
  CHECK(clients_within(256, 256, 20, 32) == 204);
  CHECK(clients_within(256, 40, 20, 32) == 0);
  CHECK(open_descriptors() >= 3);  // stdin, stdout, stderr at least
}

TEST_CASE("the descriptors a daemon needs grow with its workers, kernel connections and socket") {
  // Reserve 32 + the server's eventfd 1 + 2 per worker.
  CHECK(descriptors_needed(1, 0, false) == 35);
  // + a socket pair per kernel connection.
  CHECK(descriptors_needed(4, 4, false) == 49);
  // + listener, its eventfd and one client.
  CHECK(descriptors_needed(4, 0, true) == 44);
  CHECK(descriptors_needed(64, 64, true) == 32 + 1 + 128 + 128 + 3);
}

TEST_CASE("idle clients that finished the handshake never lock out the kernel's connections") {
  constexpr unsigned kKernel = 2;
  constexpr unsigned kClients = 16;
  ServedExport served(kKernel, kClients);
  Server& server = *served.server;
  std::vector<UniqueFd> kernel_ends = server.open_kernel_sockets(kKernel);
  REQUIRE(server.live_kernel_connections() == kKernel);

  // Every client slot taken by a client that negotiated and then sits idle.
  std::vector<std::unique_ptr<test::NbdTestClient>> idle;
  for (unsigned i = 0; i < kClients; ++i) {
    idle.push_back(std::make_unique<test::NbdTestClient>(served.dir.file("nbd.sock")));
    REQUIRE(idle.back()->negotiate() == 1);
  }
  // One more waits in the backlog: no greeting.
  test::NbdTestClient waiting(served.dir.file("nbd.sock"));
  CHECK_FALSE(readable_within(waiting.fd(), 300));

  // The kernel drops a connection: until the daemon replaces it, its slot
  // stays free for the kernel; the waiting client does not get it.
  kernel_ends[0].reset();
  REQUIRE(eventually([&] { return server.live_kernel_connections() == kKernel - 1; }));
  CHECK_FALSE(readable_within(waiting.fd(), 300));
  std::vector<UniqueFd> replacement;
  REQUIRE_NOTHROW(replacement = server.open_kernel_sockets(1));
  REQUIRE(replacement.size() == 1);
  CHECK(server.live_kernel_connections() == kKernel);
  // Both the replacement and the surviving connection serve requests.
  CHECK(kernel_read(replacement[0].get()) == 0);
  CHECK(kernel_read(kernel_ends[1].get()) == 0);

  // A client leaving frees a client slot: the waiting one is served.
  idle.front()->disconnect();
  idle.erase(idle.begin());
  CHECK(waiting.negotiate() == 1);
  std::vector<uint8_t> data;
  CHECK(waiting.read(0, 4096, data) == 0);
}
