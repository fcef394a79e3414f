#include "fake_logind.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace vramswap::test {
namespace {

constexpr const char* manager_path = "/org/freedesktop/login1";
constexpr const char* manager_interface = "org.freedesktop.login1.Manager";

template <typename Ready>
bool wait_until(Ready ready, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!ready()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace

PrivateBus::PrivateBus() {
  char pattern[] = "/tmp/vramswap-bus-XXXXXX";
  if (!mkdtemp(pattern)) throw std::runtime_error("mkdtemp failed");
  directory_ = pattern;
  socket_ = directory_ + "/bus";
  const std::string listen = "--address=unix:path=" + socket_;
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    const int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
      dup2(null, STDIN_FILENO);
      dup2(null, STDOUT_FILENO);
      dup2(null, STDERR_FILENO);  // its notes about fd limits are noise here
    }
    execlp("dbus-daemon", "dbus-daemon", "--session", "--nofork", "--nopidfile", listen.c_str(),
           static_cast<char*>(nullptr));
    _exit(127);
  }
  // Ready once it accepts connections (its socket file appears a little
  // before it listens).
  auto accepts = [&] {
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof address.sun_path, "%s", socket_.c_str());
    const bool connected =
        connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
    close(fd);
    return connected;
  };
  if (!wait_until(accepts, std::chrono::seconds(10))) {
    throw std::runtime_error("dbus-daemon does not accept connections on " + socket_);
  }
}

PrivateBus::~PrivateBus() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }
  unlink(socket_.c_str());
  rmdir(directory_.c_str());
}

struct FakeLogindHandlers {
  // Runs on the serving thread, which holds the object's mutex.
  static int inhibit(sd_bus_message* call, void* self, sd_bus_error*) {
    auto* logind = static_cast<FakeLogind*>(self);
    const char *what, *who, *why, *mode;
    if (const int r = sd_bus_message_read(call, "ssss", &what, &who, &why, &mode); r < 0) return r;
    int ends[2];
    if (pipe2(ends, O_CLOEXEC) != 0) return -errno;
    logind->read_ends_.push_back(ends[0]);
    logind->last_ = {what, who, why, mode};
    const int r = sd_bus_reply_method_return(call, "h", ends[1]);
    close(ends[1]);  // the reply carried a copy
    return r;
  }
  static int delay(sd_bus*, const char*, const char*, const char*, sd_bus_message* reply,
                   void* self, sd_bus_error*) {
    return sd_bus_message_append(reply, "t", static_cast<FakeLogind*>(self)->delay_usec_);
  }
};

struct FakeLogind::Bus {
  sd_bus* bus = nullptr;
  sd_bus_slot* object = nullptr;
  ~Bus() {
    sd_bus_slot_unref(object);
    sd_bus_flush_close_unref(bus);
  }
};

FakeLogind::FakeLogind(const std::string& address, std::chrono::microseconds inhibit_delay_max)
    : bus_(std::make_unique<Bus>()), delay_usec_(static_cast<uint64_t>(inhibit_delay_max.count())) {
  auto check = [](int r, const char* what) {
    if (r < 0) throw std::runtime_error(std::string(what) + ": " + std::strerror(-r));
  };
  check(sd_bus_new(&bus_->bus), "sd_bus_new");
  check(sd_bus_set_address(bus_->bus, address.c_str()), "sd_bus_set_address");
  check(sd_bus_set_bus_client(bus_->bus, 1), "sd_bus_set_bus_client");
  check(sd_bus_start(bus_->bus), "sd_bus_start");

  static const sd_bus_vtable vtable[] = {
      SD_BUS_VTABLE_START(0),
      SD_BUS_METHOD("Inhibit", "ssss", "h", FakeLogindHandlers::inhibit,
                    SD_BUS_VTABLE_UNPRIVILEGED),
      SD_BUS_PROPERTY("InhibitDelayMaxUSec", "t", FakeLogindHandlers::delay, 0,
                      SD_BUS_VTABLE_PROPERTY_CONST),
      SD_BUS_SIGNAL("PrepareForSleep", "b", 0), SD_BUS_VTABLE_END};
  check(sd_bus_add_object_vtable(bus_->bus, &bus_->object, manager_path, manager_interface, vtable,
                                 this),
        "sd_bus_add_object_vtable");
  check(sd_bus_request_name(bus_->bus, "org.freedesktop.login1", 0), "sd_bus_request_name");
  thread_ = std::thread([this] { serve(); });
}

FakeLogind::~FakeLogind() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  for (const int fd : read_ends_)
    close(fd);
}

void FakeLogind::serve() {
  while (!stop_) {
    {
      std::lock_guard lock(mutex_);
      while (sd_bus_process(bus_->bus, nullptr) > 0) {
      }
    }
    pollfd fd{sd_bus_get_fd(bus_->bus), static_cast<short>(POLLIN), 0};
    poll(&fd, 1, 10);
  }
}

void FakeLogind::prepare_for_sleep(bool sleeping) {
  std::lock_guard lock(mutex_);
  const int value = sleeping ? 1 : 0;
  if (const int r = sd_bus_emit_signal(bus_->bus, manager_path, manager_interface,
                                       "PrepareForSleep", "b", value);
      r < 0) {
    throw std::runtime_error(std::string("emitting PrepareForSleep: ") + std::strerror(-r));
  }
  sd_bus_flush(bus_->bus);
}

size_t FakeLogind::inhibitors_taken() const {
  std::lock_guard lock(mutex_);
  return read_ends_.size();
}

FakeLogind::Inhibit FakeLogind::last_inhibit() const {
  std::lock_guard lock(mutex_);
  return last_;
}

size_t FakeLogind::inhibitors_held() const {
  std::lock_guard lock(mutex_);
  size_t held = 0;
  for (const int fd : read_ends_) {
    pollfd p{fd, POLLIN, 0};
    // Every write end closed: the pipe hangs up.
    if (poll(&p, 1, 0) == 0 || !(p.revents & POLLHUP)) ++held;
  }
  return held;
}

bool FakeLogind::wait_for_held(size_t count, std::chrono::milliseconds timeout) const {
  return wait_until([&] { return inhibitors_held() == count; }, timeout);
}

bool FakeLogind::wait_for_taken(size_t count, std::chrono::milliseconds timeout) const {
  return wait_until([&] { return inhibitors_taken() >= count; }, timeout);
}

}  // namespace vramswap::test
