#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <string>

#include "fake_cuda_control.hpp"

namespace vramswap::test {

// The fake driver's control block of a running daemon (fake_cuda_control.hpp):
// faults to inject, counters to read.
class FakeControl {
 public:
  using Control = fake_cuda::Control;

  explicit FakeControl(const std::string& path) {
    const int fd = open(path.c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    void* p = mmap(nullptr, sizeof(Control), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    REQUIRE(p != MAP_FAILED);
    control_ = static_cast<Control*>(p);
    REQUIRE(control_->magic.load(std::memory_order_acquire) == fake_cuda::control_magic);
  }
  ~FakeControl() { munmap(control_, sizeof(Control)); }
  FakeControl(const FakeControl&) = delete;
  FakeControl& operator=(const FakeControl&) = delete;
  Control* operator->() { return control_; }

 private:
  Control* control_ = nullptr;
};

}  // namespace vramswap::test
