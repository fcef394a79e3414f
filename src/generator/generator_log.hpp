#pragma once

#include <string>

#include "common/log.hpp"
#include "common/unique_fd.hpp"

namespace vramswap::generator {

// Where the generator's lines go. It runs before the journal exists (at boot)
// or beside it (daemon-reload), so systemd.generator(7) has it write to
// /dev/kmsg, from where the journal picks the lines up with their priority.
class GeneratorLog {
 public:
  // SYSTEMD_LOG_TARGET=console (or a terminal on stderr, someone running it
  // by hand) writes to stderr; otherwise /dev/kmsg, or stderr when that
  // cannot be opened (a container).
  static GeneratorLog open_default();
  static GeneratorLog to_stderr() { return GeneratorLog(UniqueFd(), false); }

  void write(LogLevel level, const std::string& text);

 private:
  GeneratorLog(UniqueFd kmsg, bool use_kmsg) : kmsg_(std::move(kmsg)), use_kmsg_(use_kmsg) {}
  UniqueFd kmsg_;
  bool use_kmsg_ = false;
};

}  // namespace vramswap::generator
