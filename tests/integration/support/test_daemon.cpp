#include "support/test_daemon.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <thread>

namespace vramswap::test {

namespace {
std::string from_environment(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value && *value ? value : fallback;
}
}  // namespace

// The GPU machine runs this suite from carried binaries against the real
// driver: VRAMSWAP_TEST_VRAMSWAPD and VRAMSWAP_TEST_LIBCUDA (libcuda.so.1)
// override the build tree's daemon and fake driver there.
std::string vramswapd_binary() {
  return from_environment("VRAMSWAP_TEST_VRAMSWAPD", VRAMSWAP_TEST_VRAMSWAPD);
}
std::string fake_libcuda() {
  return from_environment("VRAMSWAP_TEST_LIBCUDA", VRAMSWAP_TEST_FAKE_LIBCUDA);
}

TestDaemon::TestDaemon(DaemonSpec spec) : spec_(std::move(spec)), fd_store_(spec_.fd_store) {
  std::string config = "[device." + spec_.instance + "]\n";
  config += "size = " + spec_.size + "\n";
  config += "connections = " + std::to_string(spec_.connections) + "\n";
  config += std::string("attach = ") + (spec_.attach ? "yes" : "no") + "\n";
  config += "listen = " + (spec_.listen.empty() ? socket_path() : spec_.listen) + "\n";
  config += spec_.extra_config;
  // Last, so that the lines of extra_config keep their numbers.
  config += "spill = " + spec_.spill + "\n";
  write_file(config_path(), config, 0644);

  notify_.reset(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string notify_path = dir_.file("notify");
  std::strncpy(addr.sun_path, notify_path.c_str(), sizeof addr.sun_path - 1);
  if (bind(notify_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    throw std::runtime_error("cannot bind the notify socket");
  }
}

TestDaemon::~TestDaemon() {
  stop_draining_ = true;
  if (drainer_.joinable()) drainer_.join();
  if (alive()) {
    kill(pid_, SIGKILL);
    wait_for_exit(pid_, std::chrono::seconds(10));
  }
  // A REQUIRE that failed unwinds through here: what the daemon printed (a
  // sanitizer's report among it) is the first thing to read, and its
  // directory goes with this object.
  if (std::uncaught_exceptions() > 0) {
    std::fprintf(stderr, "== the daemon's log (%s):\n%s== end of the daemon's log\n",
                 dir_.file("daemon.log").c_str(), log().c_str());
  }
}

bool TestDaemon::start(std::chrono::seconds timeout) {
  // A start after the last daemon exited (or was killed) waits for its own READY=1.
  ready_ = false;
  {
    std::lock_guard lock(status_mutex_);
    status_.clear();
  }
  Environment env = {{"VRAMSWAP_LIBCUDA", fake_libcuda()},
                     {"VRAMSWAP_FAKE_CONTROL", control_path()},
                     {"NOTIFY_SOCKET", dir_.file("notify")},
                     {"VRAMSWAP_RUNTIME_DIR", dir_.path()},
                     // The store's room, as systemd 254 and later say it.
                     {"FDSTORE", spec_.fd_store ? "4096" : "0"}};
  env.insert(env.end(), spec_.environment.begin(), spec_.environment.end());
  std::optional<PassedFds> passed;
  {
    std::lock_guard lock(status_mutex_);
    passed.emplace(fd_store_.passed());
  }
  pid_ = spawn({vramswapd_binary(), "--config", config_path(), "--instance", spec_.instance},
               dir_.file("daemon.log"), env, &*passed);
  // Read the notify socket all the time, as systemd does: a datagram socket
  // queues only net.unix.max_dgram_qlen messages (10 without systemd's
  // sysctl), after which the daemon's sd_notify() blocks, and with it its
  // main thread, which then never sees SIGTERM.
  if (!drainer_.joinable()) {
    drainer_ = std::thread([this] {
      while (!stop_draining_)
        drain_notifications(100);
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!ready_ && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!ready_ && !alive()) return false;
  }
  return ready_;
}

void TestDaemon::drain_notifications(int timeout_ms) {
  pollfd pfd{notify_.get(), POLLIN, 0};
  if (poll(&pfd, 1, timeout_ms) <= 0) return;
  for (;;) {
    FdStoreHost::Message message;
    std::lock_guard lock(status_mutex_);
    if (!fd_store_.receive(notify_.get(), message)) return;
    if (message.ready) ready_ = true;
    if (!message.status.empty()) status_ = message.status;
  }
}

std::vector<std::string> TestDaemon::stored_fd_names() {
  std::vector<std::string> names;
  {
    std::lock_guard lock(status_mutex_);
    for (const auto& entry : fd_store_.stored())
      names.push_back(entry.first);
  }
  std::sort(names.begin(), names.end());
  return names;
}

int TestDaemon::stored_fd(const std::string& name) {
  std::lock_guard lock(status_mutex_);
  for (const auto& [stored_name, fd] : fd_store_.stored())
    if (stored_name == name) return fd.get();
  return -1;
}

void TestDaemon::clear_fd_store() {
  std::lock_guard lock(status_mutex_);
  fd_store_.clear();
}

std::string TestDaemon::last_status() {
  std::lock_guard lock(status_mutex_);
  return status_;
}

bool TestDaemon::status_shows(const std::string& text, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (last_status().find(text) == std::string::npos) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return true;
}

bool TestDaemon::alive() const {
  if (pid_ <= 0) return false;
  int status = 0;
  // WNOWAIT leaves the zombie for wait()/stop() to collect.
  siginfo_t info{};
  info.si_pid = 0;
  if (waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0) return false;
  (void)status;
  return info.si_pid == 0;
}

int TestDaemon::wait(std::chrono::seconds timeout) {
  if (pid_ <= 0) return -1;
  const int status = wait_for_exit(pid_, timeout);
  if (status >= 0) pid_ = -1;
  return status;
}

int TestDaemon::stop(std::chrono::seconds timeout) {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  const int status = wait(timeout);
  if (status < 0 && alive()) record_where_stuck();
  return status;
}

std::string TestDaemon::threads_report() const {
  if (pid_ <= 0) return "no daemon running\n";
  std::string report;
  const std::string tasks = "/proc/" + std::to_string(pid_) + "/task";
  if (DIR* dir = opendir(tasks.c_str())) {
    while (const dirent* entry = readdir(dir)) {
      if (entry->d_name[0] == '.') continue;
      const std::string task = tasks + "/" + entry->d_name;
      auto first_line = [](const std::string& path) {
        const std::string text = read_file(path);
        return text.substr(0, text.find('\n'));
      };
      report += std::string(entry->d_name) + " " + first_line(task + "/comm") +
                " stat: " + first_line(task + "/stat") + " wchan: " + first_line(task + "/wchan") +
                " syscall: " + first_line(task + "/syscall") + "\n";
    }
    closedir(dir);
  }
  if (access("/usr/bin/gdb", X_OK) == 0) {
    report +=
        run_command({"gdb", "-p", std::to_string(pid_), "-batch", "-ex", "thread apply all bt 20"},
                    std::chrono::seconds(120))
            .output;
  }
  return report;
}

// A daemon that does not stop: says in its log (which the failing test
// prints) where each of its threads is, then kills it.
void TestDaemon::record_where_stuck() {
  const std::string report =
      "== the daemon did not exit after SIGTERM; its threads:\n" + threads_report();
  std::ofstream(dir_.file("daemon.log"), std::ios::app) << report;
  kill(pid_, SIGKILL);
  wait_for_exit(pid_, std::chrono::seconds(10));
  pid_ = -1;
}

}  // namespace vramswap::test
