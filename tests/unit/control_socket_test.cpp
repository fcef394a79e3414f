// The daemon's control socket (daemon/control_socket.hpp) with a fake elastic
// tier, and the CLI's side (cli/elastic_command.hpp) against it: requests,
// refusals, the stale socket, and a stop that never waits on a client.
#include <catch2/catch.hpp>

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "cli/elastic_command.hpp"
#include "common/byte_size.hpp"
#include "common/exit_codes.hpp"
#include "common/startup_error.hpp"
#include "common/unique_fd.hpp"
#include "daemon/control_socket.hpp"

using namespace vramswap;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using daemon::ControlSocket;
using daemon::ElasticControl;

namespace {

// Records every call and answers what it is told; with `block` set, a call
// waits until unblock() (a release that takes minutes).
class FakeElastic : public ElasticControl {
 public:
  Answer release(uint64_t bytes) override {
    return call(bytes == all_bytes ? "release all" : "release " + std::to_string(bytes));
  }
  Answer restore() override { return call("restore"); }

  void block() {
    std::lock_guard lock(mutex_);
    blocked_ = true;
  }
  void unblock() {
    std::lock_guard lock(mutex_);
    blocked_ = false;
    changed_.notify_all();
  }
  bool wait_until_called(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return !calls_.empty(); });
  }
  std::vector<std::string> calls() {
    std::lock_guard lock(mutex_);
    return calls_;
  }

  Answer answer{true, "released 2.0 GiB to /var/lib/vramswap/t.spill in 0.1 s"};
  bool throw_instead = false;

 private:
  Answer call(const std::string& what) {
    std::unique_lock lock(mutex_);
    calls_.push_back(what);
    changed_.notify_all();
    changed_.wait(lock, [&] { return !blocked_; });
    if (throw_instead) throw std::runtime_error("the mover broke");
    return answer;
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::string> calls_;
  bool blocked_ = false;
};

// A private runtime directory, removed with what is left in it.
class TempDir {
 public:
  TempDir() {
    char name[] = "/tmp/vramswap-control-XXXXXX";
    REQUIRE(mkdtemp(name));
    path_ = name;
    setenv("VRAMSWAP_RUNTIME_DIR", path_.c_str(), 1);
  }
  ~TempDir() {
    unsetenv("VRAMSWAP_RUNTIME_DIR");
    const std::string command = "rm -rf '" + path_ + "'";
    if (std::system(command.c_str()) != 0) WARN("could not remove " << path_);
  }
  const std::string& path() const { return path_; }
  std::string socket() const { return path_ + "/t.control"; }

 private:
  std::string path_;
};

sockaddr_un address_of(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

UniqueFd connect_to(const std::string& path) {
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd);
  const sockaddr_un addr = address_of(path);
  REQUIRE(connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
  return fd;
}

// Everything the server sends until it closes (at most 5 s).
std::string read_all(int fd) {
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::string text;
  char buffer[512];
  for (;;) {
    const ssize_t n = recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) return text;
    text.append(buffer, static_cast<std::size_t>(n));
  }
}

// Sends `request` as is and returns the whole reply.
std::string exchange(const std::string& path, const std::string& request) {
  UniqueFd fd = connect_to(path);
  REQUIRE(send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size()));
  return read_all(fd.get());
}

ControlSocket::Options options_for(const TempDir& dir, ElasticControl* elastic) {
  ControlSocket::Options options;
  options.path = dir.socket();
  options.elastic = elastic;
  return options;
}

cli::ControlTarget target_for(const TempDir& dir) {
  cli::ControlTarget target;
  target.instance = "t";
  target.socket_path = dir.socket();
  target.root = true;
  return target;
}

template <typename F>
std::chrono::milliseconds time_of(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start);
}

}  // namespace

TEST_CASE("control socket: release all, release 2G and restore reach the elastic tier") {
  TempDir dir;
  FakeElastic elastic;
  ControlSocket control(options_for(dir, &elastic));
  CHECK(exchange(dir.socket(), "release all\n") ==
        "ok released 2.0 GiB to /var/lib/vramswap/t.spill in 0.1 s\n");
  CHECK_THAT(exchange(dir.socket(), "release 2G\n"), StartsWith("ok "));
  CHECK_THAT(exchange(dir.socket(), "release 4096\r\n"), StartsWith("ok "));
  elastic.answer = {false, "the spill area is full"};
  CHECK(exchange(dir.socket(), "restore\n") == "error the spill area is full\n");
  CHECK(elastic.calls() ==
        std::vector<std::string>{"release all", "release 2147483648", "release 4096", "restore"});
}

TEST_CASE("control socket: the socket is private and goes away on stop") {
  TempDir dir;
  FakeElastic elastic;
  ControlSocket control(options_for(dir, &elastic));
  struct stat st {};
  REQUIRE(lstat(dir.socket().c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0600);
  control.stop();
  CHECK(lstat(dir.socket().c_str(), &st) != 0);
  control.stop();  // again: nothing happens
}

TEST_CASE("control socket: garbage, a long line and silence get an error line, nothing moves") {
  TempDir dir;
  FakeElastic elastic;
  ControlSocket::Options options = options_for(dir, &elastic);
  options.request_timeout = 200ms;
  ControlSocket control(std::move(options));
  CHECK_THAT(exchange(dir.socket(), "hello\n"), StartsWith("error unknown request \"hello\""));
  CHECK_THAT(exchange(dir.socket(), "release 0\n"), StartsWith("error bad size \"0\""));
  CHECK_THAT(exchange(dir.socket(), std::string(1000, 'x')),
             StartsWith("error request longer than 256 bytes"));
  CHECK_THAT(exchange(dir.socket(), "release al"), StartsWith("error no request within 200 ms"));
  {
    UniqueFd silent = connect_to(dir.socket());
    CHECK_THAT(read_all(silent.get()), StartsWith("error no request within 200 ms"));
  }
  // A client that leaves without a word costs nothing either.
  { UniqueFd gone = connect_to(dir.socket()); }
  CHECK(elastic.calls().empty());
  // And the socket still serves.
  CHECK_THAT(exchange(dir.socket(), "restore\n"), StartsWith("ok "));
}

TEST_CASE("control socket: only root may ask") {
  ucred root{1, 0, 0}, user{1, 1000, 1000};
  const ControlSocket::Options defaults;
  CHECK(defaults.may_ask(root));
  CHECK_FALSE(defaults.may_ask(user));

  // The tests run as root: the check is swapped for one that refuses.
  TempDir dir;
  FakeElastic elastic;
  ControlSocket::Options options = options_for(dir, &elastic);
  uid_t asked = 12345;
  options.may_ask = [&](const ucred& peer) {
    asked = peer.uid;
    return false;
  };
  ControlSocket control(std::move(options));
  // The refusal comes on accepting, before the request is read, and the
  // socket closes after it: the request may find it closed already (EPIPE),
  // while the answer waits in this end's queue.
  UniqueFd fd = connect_to(dir.socket());
  const std::string request = "release all\n";
  (void)send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL);
  const std::string reply = read_all(fd.get());
  CHECK_THAT(reply, StartsWith("error only root may release or restore VRAM (you are uid " +
                               std::to_string(geteuid()) + ")"));
  CHECK(asked == geteuid());
  CHECK(elastic.calls().empty());
}

TEST_CASE("control socket: without an elastic tier every request is answered with why") {
  TempDir dir;
  ControlSocket control(options_for(dir, nullptr));
  for (const char* request : {"release all\n", "restore\n"}) {
    CHECK_THAT(exchange(dir.socket(), request),
               StartsWith("error this device has no spill area (spill = no in "
                          "/etc/vramswap.conf, or it could not be created: see the journal)"));
  }
}

TEST_CASE("control socket: a failing tier is an error line, a multi-line answer one line") {
  TempDir dir;
  FakeElastic elastic;
  ControlSocket control(options_for(dir, &elastic));
  elastic.answer = {true, "released\n2.0 GiB"};
  CHECK(exchange(dir.socket(), "release all\n") == "ok released 2.0 GiB\n");
  elastic.throw_instead = true;
  CHECK(exchange(dir.socket(), "restore\n") == "error internal error: the mover broke\n");
}

TEST_CASE("control socket: a dead daemon's socket is replaced, anything else refused") {
  TempDir dir;
  {
    // A socket file nobody serves any more, as a killed daemon leaves it.
    UniqueFd dead(socket(AF_UNIX, SOCK_STREAM, 0));
    const sockaddr_un addr = address_of(dir.socket());
    REQUIRE(bind(dead.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
  }
  FakeElastic elastic;
  {
    ControlSocket control(options_for(dir, &elastic));
    CHECK_THAT(exchange(dir.socket(), "restore\n"), StartsWith("ok "));
  }
  std::FILE* file = std::fopen(dir.socket().c_str(), "w");
  REQUIRE(file);
  std::fclose(file);
  try {
    ControlSocket control(options_for(dir, &elastic));
    FAIL("a regular file was replaced");
  } catch (const StartupError& e) {
    CHECK_THAT(e.what(), Contains("exists and is not a socket"));
  }
  struct stat st {};
  CHECK((lstat(dir.socket().c_str(), &st) == 0 && S_ISREG(st.st_mode)));
  // The daemon's way in logs that and serves without one.
  CHECK_FALSE(daemon::open_control_socket("t", &elastic));
}

TEST_CASE("control socket: stop returns at once while a client sits there silent") {
  TempDir dir;
  FakeElastic elastic;
  ControlSocket::Options options = options_for(dir, &elastic);
  options.request_timeout = 60s;
  ControlSocket control(std::move(options));
  UniqueFd silent = connect_to(dir.socket());
  UniqueFd waiting = connect_to(dir.socket());  // in the backlog behind it
  std::this_thread::sleep_for(50ms);            // let the thread take the first one
  CHECK(time_of([&] { control.stop(); }) < 1s);
  CHECK(read_all(silent.get()).empty());
  CHECK(elastic.calls().empty());
}

TEST_CASE("control socket: stop during a release waits for it, and the client gets its answer") {
  TempDir dir;
  FakeElastic elastic;
  elastic.block();
  ControlSocket control(options_for(dir, &elastic));
  UniqueFd client = connect_to(dir.socket());
  REQUIRE(send(client.get(), "release all\n", 12, MSG_NOSIGNAL) == 12);
  REQUIRE(elastic.wait_until_called(5s));
  auto stopped = std::async(std::launch::async, [&] { control.stop(); });
  // The call cannot be interrupted from the socket's side: stop waits for it
  // (the tier stops between two chunks when the daemon stops)...
  CHECK(stopped.wait_for(200ms) == std::future_status::timeout);
  // ...and no more than that.
  elastic.unblock();
  CHECK(stopped.wait_for(2s) == std::future_status::ready);
  CHECK_THAT(read_all(client.get()), StartsWith("ok released"));
}

TEST_CASE("vramswap release: the CLI's side against the socket") {
  TempDir dir;
  FakeElastic elastic;
  ControlSocket control(options_for(dir, &elastic));
  const cli::ControlTarget target = target_for(dir);
  using Verb = status::ControlRequest::Verb;

  cli::ControlOutcome outcome = cli::ask_daemon(target, {Verb::release});
  CHECK(outcome.exit_status == exit_code::ok);
  CHECK(outcome.line == "t: released 2.0 GiB to /var/lib/vramswap/t.spill in 0.1 s");
  outcome = cli::ask_daemon(target, {Verb::release, 2 * GiB});
  CHECK(outcome.exit_status == exit_code::ok);
  elastic.answer = {false, "no spill room; free some"};
  outcome = cli::ask_daemon(target, {Verb::restore});
  CHECK(outcome.exit_status == 1);
  CHECK(outcome.line == "t: no spill room; free some");
  CHECK(elastic.calls() ==
        std::vector<std::string>{"release all", "release 2147483648", "restore"});

  // Not root: refused here, before the daemon is asked.
  cli::ControlTarget user = target;
  user.root = false;
  outcome = cli::ask_daemon(user, {Verb::release});
  CHECK(outcome.exit_status == exit_code::no_permission);
  CHECK_THAT(outcome.line, Contains("sudo vramswap release t"));
  CHECK(elastic.calls().size() == 3);
}

TEST_CASE("vramswap release: no daemon, a dead one, one that does not answer") {
  TempDir dir;
  const cli::ControlTarget target = target_for(dir);
  using Verb = status::ControlRequest::Verb;
  cli::ControlOutcome outcome = cli::ask_daemon(target, {Verb::restore});
  CHECK(outcome.exit_status == 3);
  CHECK_THAT(outcome.line, Contains("t is not running (no " + dir.socket() + ")"));
  CHECK_THAT(outcome.line, Contains("systemctl start vramswap@t.service"));
  {
    UniqueFd dead(socket(AF_UNIX, SOCK_STREAM, 0));
    const sockaddr_un addr = address_of(dir.socket());
    REQUIRE(bind(dead.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
  }
  outcome = cli::ask_daemon(target, {Verb::restore});
  CHECK(outcome.exit_status == 3);
  CHECK_THAT(outcome.line, Contains("left over from a daemon that died"));

  FakeElastic elastic;
  elastic.block();
  ControlSocket control(options_for(dir, &elastic));
  cli::ControlTarget impatient = target;
  impatient.timeout = 300ms;
  outcome = cli::ask_daemon(impatient, {Verb::release});
  CHECK(outcome.exit_status == 1);
  CHECK_THAT(outcome.line, Contains("no answer from the daemon of t within 300 ms; the release "
                                    "may still be running"));
  elastic.unblock();
}

TEST_CASE("vramswap release: the program, its output and exit status") {
  if (geteuid() != 0) {
    WARN("not root: the program refuses before it asks; only that is checked");
  }
  TempDir dir;
  FakeElastic elastic;
  ControlSocket control(options_for(dir, &elastic));
  const std::string command =
      std::string(VRAMSWAP_TEST_VRAMSWAP) + " release t 2G --runtime-dir " + dir.path() + " 2>&1";
  std::FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe);
  std::string output;
  char buffer[256];
  while (std::fgets(buffer, sizeof buffer, pipe))
    output += buffer;
  const int status = pclose(pipe);
  REQUIRE(WIFEXITED(status));
  if (geteuid() != 0) {
    CHECK(WEXITSTATUS(status) == exit_code::no_permission);
    return;
  }
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(output == "t: released 2.0 GiB to /var/lib/vramswap/t.spill in 0.1 s\n");
  CHECK(elastic.calls() == std::vector<std::string>{"release 2147483648"});
}
