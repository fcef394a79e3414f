#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace vramswap::memhog {

struct Options {
  uint64_t size_bytes = 0;
  uint64_t seed = 1;
  unsigned passes = 0;       // re-touch passes after the first write
  std::string ready_file;    // written (with our pid) once the data is in place
  std::string wait_file;     // before verifying, wait until this file exists...
  bool wait_signal = false;  // ...or until SIGUSR1 arrives
  size_t report = 10;        // mismatches printed in full
};

// Parses the command line. On a mistake returns nothing and sets `error` to a
// one-line message; `--help` returns nothing with `error` empty.
std::optional<Options> parse_options(int argc, char** argv, std::string& error);

extern const char* const usage_text;

}  // namespace vramswap::memhog
