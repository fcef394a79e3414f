#pragma once

#include "cuda/driver_api.hpp"

namespace vramswap::cuda {

// "CUDA_ERROR_OUT_OF_MEMORY"; "CUDA_ERROR_UNRECOGNIZED" for a value this
// build does not list. A static string: safe on the I/O path (no driver call,
// no allocation).
const char* cuda_error_name(CUresult result) noexcept;

// Whether `result` means the context, or the GPU behind it, can no longer be
// used: every later call in this process will fail too, so the daemon must
// stop serving (and keep the swapped pages' loss visible) rather than retry.
// False for per-call failures (a bad argument, memory exhausted for one
// request, an injected copy failure) after which later calls can succeed.
bool is_sticky(CUresult result) noexcept;

// A CUresult carried by value: what the I/O path returns instead of throwing.
// Trivially copyable, allocates nothing.
class [[nodiscard]] Status {
 public:
  constexpr Status() noexcept = default;
  constexpr Status(CUresult code) noexcept : code_(code) {}  // NOLINT: implicit on purpose

  constexpr bool ok() const noexcept { return code_ == CUDA_SUCCESS; }
  constexpr CUresult code() const noexcept { return code_; }
  const char* name() const noexcept { return cuda_error_name(code_); }
  bool sticky() const noexcept { return is_sticky(code_); }

  friend constexpr bool operator==(Status, Status) noexcept = default;

 private:
  CUresult code_ = CUDA_SUCCESS;
};

}  // namespace vramswap::cuda
