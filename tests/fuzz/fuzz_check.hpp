#pragma once

// What the fuzz harnesses share: the libFuzzer entry point they define, and
// invariant checks. A failed check prints what broke and aborts, so libFuzzer
// keeps the input as a crash and the replay test (which runs the same entry
// point over the corpus without libFuzzer) fails on it.

#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace vramswap_fuzz {

// Set by the replay runner to the file being replayed, for the failure message.
inline const char* current_input = nullptr;

[[noreturn]] inline void fail_now(const char* file, int line, const char* condition,
                                  const char* detail) {
  std::fprintf(stderr, "fuzz invariant failed at %s:%d: %s\n", file, line, condition);
  if (detail != nullptr) std::fprintf(stderr, "  %s\n", detail);
  if (current_input != nullptr) std::fprintf(stderr, "  input: %s\n", current_input);
  std::fflush(stderr);
  std::abort();
}

[[noreturn]] inline void fail(const char* file, int line, const char* condition) {
  fail_now(file, line, condition, nullptr);
}

[[noreturn]] inline void fail(const char* file, int line, const char* condition, const char* format,
                              ...) __attribute__((format(printf, 4, 5)));

[[noreturn]] inline void fail(const char* file, int line, const char* condition, const char* format,
                              ...) {
  char detail[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(detail, sizeof detail, format, args);
  va_end(args);
  fail_now(file, line, condition, detail);
}

}  // namespace vramswap_fuzz

// FUZZ_CHECK(condition) or FUZZ_CHECK(condition, "printf format", args...):
// the message gives the values that explain the failure.
#define FUZZ_CHECK(condition, ...)                                                      \
  do {                                                                                  \
    if (!(condition))                                                                   \
      ::vramswap_fuzz::fail(__FILE__, __LINE__, #condition __VA_OPT__(, ) __VA_ARGS__); \
  } while (false)
