// Listen clients against the daemon's own needs: at the file descriptor limit
// the listener leaves the daemon the descriptors it needs itself (its status
// file keeps being written), and clients beyond what is left wait, are told
// about in the log once, and are served as others leave.

#include <catch2/catch.hpp>

#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <chrono>
#include <ctime>
#include <memory>
#include <regex>
#include <thread>
#include <vector>

#include "support/nbd_test_client.hpp"
#include "support/test_daemon.hpp"

using namespace vramswap::test;
using Catch::Matchers::Contains;

namespace {

bool greeted_within(const NbdTestClient& client, int ms) {
  pollfd p{client.fd(), POLLIN, 0};
  return poll(&p, 1, ms) == 1;
}

time_t modified(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? st.st_mtime : 0;
}

}  // namespace

TEST_CASE("at the descriptor limit, clients wait and the daemon keeps what it needs itself",
          "[slots]") {
  TestDaemon daemon({.size = "256M", .connections = 2});
  // The daemon inherits a low limit; this process gets its own back at once.
  rlimit saved{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &saved) == 0);
  const rlimit low{128, saved.rlim_max};
  REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
  const bool started = daemon.start();
  REQUIRE(setrlimit(RLIMIT_NOFILE, &saved) == 0);
  REQUIRE(started);

  // It says how many clients the limit leaves room for.
  std::smatch room;
  const std::string log = daemon.log();
  REQUIRE(std::regex_search(log, room, std::regex("leaves room for ([0-9]+) of the 256")));
  const size_t allowed = std::stoul(room[1]);
  INFO("clients the limit leaves room for: " << allowed);
  REQUIRE(allowed > 0);
  REQUIRE(allowed >= 20);
  REQUIRE(allowed < 128);

  // Twenty more clients than that connect: the first ones are served (they
  // negotiate, then sit idle), the rest wait in the backlog, not greeted.
  std::vector<std::unique_ptr<NbdTestClient>> clients;
  for (size_t i = 0; i < allowed + 20; ++i)
    clients.push_back(std::make_unique<NbdTestClient>(daemon.socket_path()));
  for (size_t i = 0; i < allowed; ++i)
    REQUIRE(clients[i]->negotiate() == 1);
  size_t waiting = 0;
  for (size_t i = allowed; i < clients.size(); ++i)
    waiting += greeted_within(*clients[i], 100) ? 0 : 1;
  INFO(daemon.log());
  CHECK(waiting == 20);

  // The daemon still writes its status file (every 5 s) and says clients wait.
  const std::string status_file = daemon.dir().file("test.json");
  const time_t saturated = std::time(nullptr);
  bool rewritten = false;
  for (int i = 0; i < 150 && !rewritten; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    rewritten = modified(status_file) > saturated;
  }
  CHECK(rewritten);
  CHECK_THAT(daemon.log(), !Contains("Too many open files"));
  CHECK_THAT(daemon.log(), Contains("client connection slots are in use"));

  // Twenty served ones leave; the waiting ones are served.
  clients.erase(clients.begin(), clients.begin() + 20);
  size_t served_later = 0;
  for (size_t i = allowed - 20; i < clients.size(); ++i) {
    std::vector<uint8_t> data;
    if (clients[i]->negotiate() == 1 && clients[i]->read(0, 4096, data) == 0) ++served_later;
  }
  CHECK(served_later == 20);
  CHECK(daemon.stop() == 0);
}
