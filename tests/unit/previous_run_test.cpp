// A daemon that died while serving is found and reported by the next one:
// the detection from the status file it left, the record systemd's
// ExecStopPost= adds (vramswapd --record-exit), and the instance lock whose
// file a clean stop removes.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "common/byte_size.hpp"
#include "common/exit_codes.hpp"
#include "common/startup_error.hpp"
#include "common/unique_fd.hpp"
#include "daemon/instance_lock.hpp"
#include "daemon/previous_run.hpp"
#include "status/instance_status.hpp"

using namespace vramswap;
using Catch::Matchers::Contains;
using status::InstanceStatus;
using status::PreviousCrash;

namespace {

constexpr int64_t kNow = 1'800'000'000;

// A daemon serving swap, as its status file says.
InstanceStatus serving(int64_t pid) {
  InstanceStatus s;
  s.instance = "crashtest";
  s.pid = pid;
  s.state = "serving";
  s.health = "ok";
  s.device = "/dev/nbd3";
  s.swap_active = true;
  s.swap_used_bytes = 160 * MiB;
  s.updated_unix = kNow - 3;
  return s;
}

// VRAMSWAP_RUNTIME_DIR pointing to a fresh directory for the test's life.
class RuntimeDir {
 public:
  RuntimeDir() {
    char name[] = "/tmp/vramswap-previous-run-XXXXXX";
    REQUIRE(mkdtemp(name));
    path_ = name;
    setenv("VRAMSWAP_RUNTIME_DIR", path_.c_str(), 1);
  }
  ~RuntimeDir() {
    unsetenv("VRAMSWAP_RUNTIME_DIR");
    std::filesystem::remove_all(path_);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A datagram socket standing in for systemd's notify socket.
class NotifySocket {
 public:
  explicit NotifySocket(const RuntimeDir& dir) : path_(dir.file("notify")) {
    fd_.reset(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path_.copy(addr.sun_path, sizeof addr.sun_path - 1);
    REQUIRE(bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    setenv("NOTIFY_SOCKET", path_.c_str(), 1);
  }
  ~NotifySocket() { unsetenv("NOTIFY_SOCKET"); }
  // The next message, or "" when none was sent.
  std::string message() {
    char buffer[4096];
    const ssize_t n = recv(fd_.get(), buffer, sizeof buffer, 0);
    return n > 0 ? std::string(buffer, size_t(n)) : std::string();
  }

 private:
  std::string path_;
  UniqueFd fd_;
};

// A pid no process has: one of a child that has been reaped.
int64_t dead_pid() {
  const pid_t child = fork();
  if (child == 0) _exit(0);
  int status = 0;
  waitpid(child, &status, 0);
  return child;
}

}  // namespace

TEST_CASE("no file, or this process's own, is no crash") {
  CHECK_FALSE(status::crash_from_leftover(std::nullopt, 100));
  CHECK_FALSE(status::crash_from_leftover(serving(100), 100));
}

TEST_CASE("a file a daemon left while serving is its crash: pid, last status and the swap lost") {
  const auto crash = status::crash_from_leftover(serving(100), 200);
  REQUIRE(crash);
  CHECK(crash->pid == 100);
  CHECK(crash->ended_unix == kNow - 3);
  CHECK_FALSE(crash->end_seen);
  CHECK(crash->cause.empty());
  CHECK(crash->swap_active);
  CHECK(crash->swap_used_bytes == 160 * MiB);
  CHECK(crash->count == 1);
  const std::string text = status::describe_crash(*crash);
  CHECK_THAT(text, Contains("the previous vramswapd (pid 100) died without stopping after "));
  CHECK_THAT(text, Contains("(its last status)"));
  CHECK_THAT(text, Contains("160.0 MiB were in swap on /dev/nbd3 and are lost"));
}

TEST_CASE("what was lost: swap, nothing when the device was not swap, or a client's data") {
  InstanceStatus file = serving(100);
  file.swap_active = false;
  file.swap_used_bytes = 0;
  CHECK(status::describe_crash_loss(*status::crash_from_leftover(file, 1)) ==
        "/dev/nbd3 was not swap: no swapped page was lost");
  file.device.clear();
  CHECK(status::describe_crash_loss(*status::crash_from_leftover(file, 1)) ==
        "what its clients had written is lost");
}

TEST_CASE("a daemon whose VRAM was in systemd's store lost nothing: kept, then taken over") {
  InstanceStatus file = serving(100);
  file.fd_store_handover = true;
  std::optional<status::PreviousCrash> crash = status::crash_from_leftover(file, 1);
  REQUIRE(crash);
  CHECK(crash->vram_kept);
  CHECK(status::describe_crash_loss(*crash) ==
        "160.0 MiB in swap on /dev/nbd3 wait in systemd's file descriptor store for the "
        "restarted daemon");
  CHECK(status::summarize_crash_loss(*crash) == "swap kept for the restart");
  crash->taken_over = true;
  CHECK_THAT(status::describe_crash(*crash),
             Contains("; this daemon took /dev/nbd3 over with every written page"));
  CHECK(status::summarize_crash_loss(*crash) == "nothing lost, taken over");
  // attach = no: the export itself is kept.
  file.device.clear();
  file.swap_active = false;
  crash = status::crash_from_leftover(file, 1);
  CHECK(status::describe_crash_loss(*crash) ==
        "the export waits in systemd's file descriptor store for the restarted daemon");
}

TEST_CASE("systemd's report of the end is kept once, and the next daemon uses it") {
  InstanceStatus file = serving(100);
  REQUIRE(status::mark_ended(file, "killed by SIGKILL", kNow));
  CHECK(file.state == "crashed");
  CHECK(file.health == "failed");
  CHECK_FALSE(status::mark_ended(file, "exit status 1", kNow + 1));  // marked already
  CHECK(file.exit_cause == "killed by SIGKILL");
  const auto crash = status::crash_from_leftover(file, 200);
  REQUIRE(crash);
  CHECK(crash->end_seen);
  CHECK(crash->ended_unix == kNow);
  CHECK_THAT(status::describe_crash(*crash), Contains(" (killed by SIGKILL); "));
}

TEST_CASE("crashes in a row are counted") {
  InstanceStatus second = serving(200);
  second.previous_crash = *status::crash_from_leftover(serving(100), 200);
  const auto crash = status::crash_from_leftover(second, 300);
  REQUIRE(crash);
  CHECK(crash->pid == 200);
  CHECK(crash->count == 2);
  CHECK_THAT(status::describe_crash(*crash), Contains("2 unclean ends in a row"));
}

TEST_CASE("how systemd says a process ended, in words") {
  CHECK(status::describe_exit("killed", "KILL") == "killed by SIGKILL");
  CHECK(status::describe_exit("dumped", "SEGV") == "SIGSEGV, core dumped");
  CHECK(status::describe_exit("exited", "1") == "exit status 1");
  CHECK(status::describe_exit("", "") == "");
}

TEST_CASE("the previous crash survives the status file's JSON") {
  InstanceStatus file = serving(300);
  file.previous_crash = *status::crash_from_leftover(serving(100), 300);
  file.previous_crash->cause = "killed by SIGKILL";
  const auto back = status::from_json(status::to_json(file));
  REQUIRE(back);
  REQUIRE(back->previous_crash);
  CHECK(back->previous_crash->pid == 100);
  CHECK(back->previous_crash->cause == "killed by SIGKILL");
  CHECK(back->previous_crash->swap_used_bytes == 160 * MiB);
  CHECK_FALSE(status::from_json(status::to_json(serving(1)))->previous_crash);
}

TEST_CASE("record-exit marks a dead daemon's file and replaces its STATUS= line") {
  RuntimeDir dir;
  NotifySocket notify(dir);
  const int64_t pid = dead_pid();
  REQUIRE(status::write_status_file(serving(pid)));
  setenv("EXIT_CODE", "killed", 1);
  setenv("EXIT_STATUS", "KILL", 1);
  CHECK(daemon::record_exit("crashtest") == exit_code::ok);
  unsetenv("EXIT_CODE");
  unsetenv("EXIT_STATUS");

  const std::string message = notify.message();
  CHECK_THAT(message, Contains("STATUS=DIED: vramswapd (pid " + std::to_string(pid) +
                               ") died without stopping at "));
  CHECK_THAT(message, Contains("(killed by SIGKILL); 160.0 MiB were in swap on /dev/nbd3"));
  const auto marked = status::read_status_file("crashtest");
  REQUIRE(marked);
  CHECK(marked->state == "crashed");
  CHECK(marked->exit_cause == "killed by SIGKILL");

  // Once only: a second run (another stop of the same unit) changes nothing.
  CHECK(daemon::record_exit("crashtest") == exit_code::ok);
  CHECK(notify.message().empty());

  // The next daemon finds it, with the cause.
  const auto crash = daemon::take_previous_crash("crashtest");
  REQUIRE(crash);
  CHECK(crash->pid == pid);
  CHECK(crash->cause == "killed by SIGKILL");
  CHECK(crash->end_seen);
  // The lock --record-exit took is gone with it.
  CHECK_FALSE(std::filesystem::exists(dir.file("crashtest.lock")));
}

TEST_CASE("record-exit after a clean stop, or while a daemon holds the instance, does nothing") {
  RuntimeDir dir;
  NotifySocket notify(dir);
  CHECK(daemon::record_exit("crashtest") == exit_code::ok);  // no file: a clean stop
  CHECK(notify.message().empty());

  REQUIRE(status::write_status_file(serving(getpid())));
  const daemon::InstanceLock held("crashtest", true);
  CHECK(daemon::record_exit("crashtest") == exit_code::ok);
  CHECK(notify.message().empty());
  CHECK(status::read_status_file("crashtest")->state == "serving");
}

TEST_CASE("the instance lock refuses a second daemon with 75, and a clean end removes its file") {
  RuntimeDir dir;
  {
    const daemon::InstanceLock first("crashtest", true);
    CHECK(std::filesystem::exists(dir.file("crashtest.lock")));
    try {
      const daemon::InstanceLock second("crashtest", true);
      FAIL("a second lock was granted");
    } catch (const StartupError& error) {
      CHECK(error.exit_status() == exit_code::in_use);
      CHECK(error.exit_status() == 75);
      CHECK_THAT(error.what(), Contains("already served by another vramswapd (pid " +
                                        std::to_string(getpid()) + ")"));
    }
  }
  CHECK_FALSE(std::filesystem::exists(dir.file("crashtest.lock")));
  // And the instance can be taken again.
  const daemon::InstanceLock again("crashtest", true);
  CHECK(std::filesystem::exists(dir.file("crashtest.lock")));
}
