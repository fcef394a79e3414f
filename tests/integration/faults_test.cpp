// Faults injected through the fake CUDA driver: the requests a fault touches
// get EIO, every other request keeps its data, the daemon keeps running, logs
// once per cause, and says it is degraded.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <thread>

#include "fake_cuda_control.hpp"
#include "support/nbd_test_client.hpp"
#include "support/test_daemon.hpp"

using namespace vramswap::test;
using Catch::Matchers::Contains;
using vramswap::fake_cuda::Control;

namespace {

constexpr uint32_t kEIO = 5;

// The fake driver's control block of a running daemon.
class FakeControl {
 public:
  explicit FakeControl(const std::string& path) {
    const int fd = open(path.c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    void* p = mmap(nullptr, sizeof(Control), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    REQUIRE(p != MAP_FAILED);
    control_ = static_cast<Control*>(p);
    REQUIRE(control_->magic.load(std::memory_order_acquire) == vramswap::fake_cuda::control_magic);
  }
  ~FakeControl() { munmap(control_, sizeof(Control)); }
  Control* operator->() { return control_; }

 private:
  Control* control_ = nullptr;
};

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
    ++n;
  return n;
}

}  // namespace

TEST_CASE("a failed copy fails only its request, and the daemon says it is degraded",
          "[faults][fake]") {
  TestDaemon daemon({.size = "256M"});
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
