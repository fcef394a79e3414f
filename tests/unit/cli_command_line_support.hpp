#pragma once

#include <string>
#include <vector>

#include "cli/command_line.hpp"

namespace vramswap::cli {

// The vramswap program's command line as parse_command_line sees it, from
// the words after the program's name.
inline CommandLine parse(std::vector<std::string> words) {
  std::vector<char*> argv;
  static std::string program = "vramswap";
  argv.push_back(program.data());
  for (auto& word : words)
    argv.push_back(word.data());
  argv.push_back(nullptr);
  return parse_command_line(static_cast<int>(argv.size() - 1), argv.data(), "/etc/vramswap.conf");
}

}  // namespace vramswap::cli
