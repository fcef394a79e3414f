#pragma once

// Helpers for unit tests that run the real CUDA code path on the fake driver
// (tests/fake_cuda): environment set-up, the control block, stderr capture.

#include <fcntl.h>
#include <ftw.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fake_cuda_control.hpp"

namespace vramswap::test {

// Sets environment variables for one test and puts the old values back.
class ScopedEnvironment {
 public:
  ScopedEnvironment() = default;
  ScopedEnvironment(const ScopedEnvironment&) = delete;
  ScopedEnvironment& operator=(const ScopedEnvironment&) = delete;
  ~ScopedEnvironment() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->second) {
        setenv(it->first.c_str(), it->second->c_str(), 1);
      } else {
        unsetenv(it->first.c_str());
      }
    }
  }

  void set(const std::string& name, const std::string& value) {
    save(name);
    setenv(name.c_str(), value.c_str(), 1);
  }
  void unset(const std::string& name) {
    save(name);
    unsetenv(name.c_str());
  }

 private:
  void save(const std::string& name) {
    const char* old = std::getenv(name.c_str());
    saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
  }

  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

// The fake driver in its default configuration: VRAMSWAP_LIBCUDA names it
// (ctest sets it; a binary run by hand gets the path it was built with) and
// no VRAMSWAP_FAKE_* variable is set. The fake reads them at the next cuInit
// (Driver::load()), as long as no fake CUDA object is alive.
class FakeCuda : public ScopedEnvironment {
 public:
  FakeCuda() {
    for (const char* name :
         {"VRAMSWAP_FAKE_DEVICES", "VRAMSWAP_FAKE_NAME", "VRAMSWAP_FAKE_MEMORY",
          "VRAMSWAP_FAKE_RESERVED", "VRAMSWAP_FAKE_ALLOC_FAIL_ABOVE", "VRAMSWAP_FAKE_FAIL_COPY",
          "VRAMSWAP_FAKE_FAIL_COPY_COUNT", "VRAMSWAP_FAKE_LOSE_DEVICE_AFTER",
          "VRAMSWAP_FAKE_BACKING_DIR", "VRAMSWAP_FAKE_CONTROL", "VRAMSWAP_FAKE_INIT_ERROR"}) {
      unset(name);
    }
    const char* from_ctest = std::getenv("VRAMSWAP_LIBCUDA");
    set("VRAMSWAP_LIBCUDA", from_ctest && *from_ctest ? from_ctest : VRAMSWAP_TEST_FAKE_LIBCUDA);
  }
  static std::string library() {
    const char* from_ctest = std::getenv("VRAMSWAP_LIBCUDA");
    return from_ctest && *from_ctest ? from_ctest : VRAMSWAP_TEST_FAKE_LIBCUDA;
  }
};

// A fresh directory under $TMPDIR (or /tmp), removed with its contents.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/vramswap-test-XXXXXX";
    if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    nftw(
        path_.c_str(),
        [](const char* path, const struct stat*, int, struct FTW*) { return remove(path); }, 16,
        FTW_DEPTH | FTW_PHYS);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The fake's control block (fake_cuda_control.hpp), mapped the way a test
// process watching a daemon would map it.
class ControlBlock {
 public:
  // Maps the file the fake created at cuInit; throws if it is not ready.
  explicit ControlBlock(const std::string& path) {
    const int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error("cannot open control block " + path);
    void* address =
        mmap(nullptr, sizeof(fake_cuda::Control), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (address == MAP_FAILED) throw std::runtime_error("cannot map control block " + path);
    block_ = static_cast<fake_cuda::Control*>(address);
    if (block_->magic.load(std::memory_order_acquire) != fake_cuda::control_magic) {
      throw std::runtime_error("control block " + path + " is not initialized");
    }
  }
  ControlBlock(const ControlBlock&) = delete;
  ControlBlock& operator=(const ControlBlock&) = delete;
  ~ControlBlock() { munmap(block_, sizeof(fake_cuda::Control)); }
  fake_cuda::Control* operator->() const { return block_; }

 private:
  fake_cuda::Control* block_ = nullptr;
};

// Collects what the program writes to file descriptor 2 (the log) meanwhile.
class StderrCapture {
 public:
  StderrCapture() {
    std::fflush(stderr);
    saved_ = dup(STDERR_FILENO);
    file_ = std::tmpfile();
    if (saved_ < 0 || !file_) throw std::runtime_error("cannot capture stderr");
    dup2(fileno(file_), STDERR_FILENO);
  }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;
  ~StderrCapture() {
    restore();
    if (file_) std::fclose(file_);
  }
  // Stops capturing and returns what was written.
  std::string text() {
    restore();
    std::string text;
    std::rewind(file_);
    char buffer[4096];
    size_t got = 0;
    while ((got = std::fread(buffer, 1, sizeof buffer, file_)) > 0)
      text.append(buffer, got);
    return text;
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    dup2(saved_, STDERR_FILENO);
    close(saved_);
    saved_ = -1;
  }

  int saved_ = -1;
  std::FILE* file_ = nullptr;
};

}  // namespace vramswap::test
