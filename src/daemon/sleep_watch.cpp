#include "daemon/sleep_watch.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "common/log.hpp"

namespace vramswap::daemon {
namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr const char* inhibitor_who = "vramswap";

std::string inhibitor_why(const std::string& instance) {
  return "moving the swap on VRAM of vramswap@" + instance +
         " to its spill area, which a sleep cannot lose";
}

void signal_fd(int fd) noexcept {
  const uint64_t one = 1;
  ssize_t ignored = ::write(fd, &one, sizeof one);
  (void)ignored;
}

void drain_fd(int fd) noexcept {
  uint64_t count = 0;
  ssize_t ignored = ::read(fd, &count, sizeof count);
  (void)ignored;
}

std::string seconds_text(milliseconds ms) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f s", static_cast<double>(ms.count()) / 1000.0);
  return text;
}

}  // namespace

milliseconds sleep_budget(std::chrono::microseconds inhibit_delay_max) noexcept {
  const milliseconds delay = duration_cast<milliseconds>(inhibit_delay_max);
  if (delay <= milliseconds(0)) return milliseconds(0);
  return delay - std::min<milliseconds>(delay / 10, std::chrono::seconds(1));
}

void say_sleep_without_spill_area() {
  // The driver lists its module parameters there, one "Name: value" a line.
  bool preserved = false;
  if (FILE* params = std::fopen("/proc/driver/nvidia/params", "re")) {
    char line[256];
    while (std::fgets(line, sizeof line, params)) {
      if (std::strncmp(line, "PreserveVideoMemoryAllocations: 1", 33) == 0) preserved = true;
    }
    std::fclose(params);
  }
  if (preserved) {
    log_notice(
        "sleep: this device has no spill area; its swap survives a suspend only through the "
        "NVIDIA driver's PreserveVideoMemoryAllocations=1 and its nvidia-suspend.service, "
        "nvidia-hibernate.service and nvidia-resume.service being enabled");
    return;
  }
  log_warning(
      "sleep is not protected: this device has no spill area (spill = no, or it could not be "
      "made), so a suspend or hibernation that powers the GPU down loses the pages swapped to "
      "VRAM; give it a spill area, or load the NVIDIA driver with "
      "NVreg_PreserveVideoMemoryAllocations=1 and enable its nvidia-suspend services");
}

std::unique_ptr<SleepWatch> SleepWatch::start(SleepActions& actions, const std::string& instance) {
  const char* risk =
      "sleep is not protected: a suspend or hibernation that powers the GPU down loses the pages "
      "swapped to VRAM (unless the NVIDIA driver preserves video memory)";
  std::unique_ptr<systemd::LogindSleep> logind;
  UniqueFd inhibitor;
  milliseconds budget{0};
  try {
    logind = std::make_unique<systemd::LogindSleep>();
    inhibitor = logind->inhibit_sleep(inhibitor_who, inhibitor_why(instance));
    budget = sleep_budget(logind->inhibit_delay_max());
  } catch (const std::exception& e) {
    log_warning("%s: %s", risk, e.what());
    return nullptr;
  }
  if (budget <= milliseconds(0)) {
    log_warning(
        "%s: logind's InhibitDelayMaxSec is 0, so it waits for no one; set it in "
        "logind.conf(5)",
        risk);
    return nullptr;
  }
  std::unique_ptr<SleepWatch> watch;
  try {
    watch.reset(new SleepWatch(actions, instance, std::move(logind), std::move(inhibitor), budget));
  } catch (const std::exception& e) {
    log_warning("%s: %s", risk, e.what());
    return nullptr;
  }
  log_info(
      "sleep: holding a logind delay inhibitor; before a sleep the swap in VRAM moves to "
      "the spill area (within %s)",
      seconds_text(budget).c_str());
  return watch;
}

SleepWatch::SleepWatch(SleepActions& actions, std::string instance,
                       std::unique_ptr<systemd::LogindSleep> logind, UniqueFd inhibitor,
                       milliseconds budget)
    : actions_(actions),
      instance_(std::move(instance)),
      logind_(std::move(logind)),
      inhibitor_(std::move(inhibitor)),
      budget_(budget),
      stop_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
      done_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (!stop_fd_ || !done_fd_) {
    throw std::runtime_error(std::string("cannot create an eventfd: ") + std::strerror(errno));
  }
  logind_->subscribe([this](bool sleeping) { prepare(sleeping); });
  actor_ = std::thread([this] { act(); });
  watcher_ = std::thread([this] { watch(); });
}

SleepWatch::~SleepWatch() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_actor_.notify_all();
  signal_fd(stop_fd_.get());
  if (watcher_.joinable()) watcher_.join();
  if (actor_.joinable()) actor_.join();
}

void SleepWatch::post(Action action) noexcept {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(action);
  }
  wake_actor_.notify_all();
}

void SleepWatch::prepare(bool sleeping) noexcept {
  if (sleeping) {
    saving_ = true;
    saving_deadline_ = steady_clock::now() + budget_;
    post(Action::before_sleep);
    return;
  }
  // Resumed: protect the next sleep first, then bring the pages back.
  if (saving_) {
    saving_ = false;  // the sleep came and went while saving: nothing left to hold up
    inhibitor_.reset();
  }
  take_inhibitor();
  post(Action::after_resume);
}

void SleepWatch::take_inhibitor() noexcept {
  if (inhibitor_) return;
  try {
    inhibitor_ = logind_->inhibit_sleep(inhibitor_who, inhibitor_why(instance_));
    said_inhibit_failed_ = false;
  } catch (const std::exception& e) {
    if (!said_inhibit_failed_) {
      said_inhibit_failed_ = true;
      log_warning("the next sleep is not protected: %s", e.what());
    }
  }
}

void SleepWatch::watch() noexcept {
  for (;;) {
    int timeout = logind_->timeout_ms();
    if (saving_) {
      const auto left = duration_cast<milliseconds>(saving_deadline_ - steady_clock::now());
      const int left_ms = static_cast<int>(std::max<int64_t>(left.count(), 0));
      timeout = timeout < 0 ? left_ms : std::min(timeout, left_ms);
    }
    pollfd fds[3] = {{stop_fd_.get(), POLLIN, 0},
                     {done_fd_.get(), POLLIN, 0},
                     {logind_->fd(), logind_->events(), 0}};
    if (poll(fds, 3, timeout) < 0 && errno != EINTR) {
      log_error("sleep is no longer protected: poll failed (%s)", std::strerror(errno));
      return;
    }
    if (fds[0].revents) return;
    if (fds[1].revents) {
      drain_fd(done_fd_.get());
      bool done = false;
      {
        std::lock_guard lock(mutex_);
        done = std::exchange(before_sleep_done_, false);
      }
      if (done && saving_) {
        saving_ = false;
        inhibitor_.reset();  // logind may go on
      }
    }
    if (!logind_->process()) {
      log_error("sleep is no longer protected: the connection to the system bus was lost");
      inhibitor_.reset();
      return;
    }
    if (saving_ && steady_clock::now() >= saving_deadline_) {
      saving_ = false;
      inhibitor_.reset();
      const std::string risk = actions_.at_risk();
      log_warning(
          "suspend: the move to the spill area did not finish within %s (logind waits at most "
          "InhibitDelayMaxSec): let the sleep go on%s%s; raise InhibitDelayMaxSec in "
          "logind.conf(5)",
          seconds_text(budget_).c_str(), risk.empty() ? "" : " with ", risk.c_str());
    }
  }
}

void SleepWatch::act() noexcept {
  for (;;) {
    Action action = Action::none;
    {
      std::unique_lock lock(mutex_);
      wake_actor_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      action = queue_.front();
      queue_.pop_front();
    }
    const std::string line =
        action == Action::before_sleep ? actions_.before_sleep() : actions_.after_resume();
    if (!line.empty()) log_info("%s", line.c_str());
    if (action == Action::before_sleep) {
      {
        std::lock_guard lock(mutex_);
        before_sleep_done_ = true;
      }
      signal_fd(done_fd_.get());
    }
  }
}

}  // namespace vramswap::daemon
