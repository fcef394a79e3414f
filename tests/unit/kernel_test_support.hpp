#pragma once

// Helpers for the tests of src/kernel: temporary directories, loop devices,
// running a function in a child process, capabilities.

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>

#include "common/unique_fd.hpp"

namespace vramswap::test {

inline std::string read_text_file(const std::string& path) {
  std::ifstream file(path);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

inline void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream file(path);
  file << text;
}

class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "vramswap-test-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A loop device over a sparse file, detached when this object goes away (and
// by the kernel, thanks to autoclear, should the test process die first:
// we hold the only plain open of it).
class LoopDevice {
 public:
  LoopDevice(const std::string& backing_file, uint64_t size_bytes) {
    {
      UniqueFd backing(::open(backing_file.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
      if (!backing || ::ftruncate(backing.get(), static_cast<off_t>(size_bytes)) != 0) {
        throw std::runtime_error("cannot create " + backing_file);
      }
    }
    UniqueFd backing(::open(backing_file.c_str(), O_RDWR | O_CLOEXEC));
    UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
    if (!control) throw std::runtime_error(std::string("/dev/loop-control: ") + strerror(errno));
    // Other programs may grab the free device between asking and taking it.
    for (int attempt = 0; attempt < 20; ++attempt) {
      int number = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
      if (number < 0)
        throw std::runtime_error(std::string("LOOP_CTL_GET_FREE: ") + strerror(errno));
      std::string path = "/dev/loop" + std::to_string(number);
      UniqueFd device(::open(path.c_str(), O_RDWR | O_CLOEXEC));
      if (!device) continue;
      if (::ioctl(device.get(), LOOP_SET_FD, backing.get()) != 0) continue;
      loop_info64 info{};
      info.lo_flags = LO_FLAGS_AUTOCLEAR;
      ::ioctl(device.get(), LOOP_SET_STATUS64, &info);
      path_ = path;
      device_ = std::move(device);
      return;
    }
    throw std::runtime_error("no free loop device");
  }
  ~LoopDevice() {
    if (device_) ::ioctl(device_.get(), LOOP_CLR_FD, 0);
  }
  LoopDevice(const LoopDevice&) = delete;
  LoopDevice& operator=(const LoopDevice&) = delete;
  const std::string& path() const { return path_; }
  std::string name() const { return path_.substr(path_.rfind('/') + 1); }

 private:
  std::string path_;
  UniqueFd device_;
};

struct ChildResult {
  int exit_status = -1;
  std::string report;  // what the child wrote to the report fd
  std::string stderr_text;
};

inline std::string drain_fd(int fd) {
  std::string text;
  char buffer[4096];
  ssize_t got;
  while ((got = ::read(fd, buffer, sizeof buffer)) != 0) {
    if (got < 0) {
      if (errno == EINTR) continue;
      break;
    }
    text.append(buffer, static_cast<size_t>(got));
  }
  return text;
}

// Runs `body` in a forked child with its stderr captured, so that process-wide
// changes (mlockall, capabilities, oom_score_adj) stay out of the test
// process. `body` writes its findings to the fd it is given and returns the
// exit status.
inline ChildResult run_in_child(const std::function<int(int report_fd)>& body) {
  int report_pipe[2], stderr_pipe[2];
  if (::pipe(report_pipe) != 0 || ::pipe(stderr_pipe) != 0) throw std::runtime_error("pipe");
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork");
  if (pid == 0) {
    ::close(report_pipe[0]);
    ::close(stderr_pipe[0]);
    ::dup2(stderr_pipe[1], STDERR_FILENO);
    int status = 99;
    try {
      status = body(report_pipe[1]);
    } catch (...) {
      status = 98;
    }
    ::_exit(status);
  }
  ::close(report_pipe[1]);
  ::close(stderr_pipe[1]);
  ChildResult result;
  result.report = drain_fd(report_pipe[0]);
  result.stderr_text = drain_fd(stderr_pipe[0]);
  ::close(report_pipe[0]);
  ::close(stderr_pipe[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

inline void write_report(int fd, const std::string& text) {
  ssize_t ignored = ::write(fd, text.data(), text.size());
  (void)ignored;
}

// Whether the calling thread has capability `bit` (CAP_*) in its effective set.
inline bool has_capability(int bit) {
  std::istringstream status(read_text_file("/proc/self/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("CapEff:", 0) == 0) {
      unsigned long long mask = std::stoull(line.substr(7), nullptr, 16);
      return (mask >> bit) & 1;
    }
  }
  return false;
}

// Drops capability `bit` from the calling thread's effective set.
inline bool drop_effective_capability(int bit) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &header, data) != 0) return false;
  data[bit / 32].effective &= ~(1u << (bit % 32));
  return ::syscall(SYS_capset, &header, data) == 0;
}

inline int count_lines_containing(const std::string& text, const std::string& needle) {
  int count = 0;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find(needle) != std::string::npos) ++count;
  }
  return count;
}

}  // namespace vramswap::test
