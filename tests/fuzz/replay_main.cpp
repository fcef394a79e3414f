// Runs a fuzz harness over files without libFuzzer, in any build (gcc
// included): the seed corpus and the inputs of past crashes replay with every
// test run, so the invariants hold for them and a fixed bug stays fixed.
//
//   fuzz_replay_NAME FILE_OR_DIRECTORY...
//
// Directories are read (not recursively) in name order. Fails when there is
// nothing to replay: an empty corpus would otherwise pass unnoticed.

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz_check.hpp"

namespace fs = std::filesystem;

namespace {

std::vector<fs::path> inputs_in(const fs::path& path) {
  std::vector<fs::path> files;
  if (fs::is_directory(path)) {
    for (const auto& entry : fs::directory_iterator(path))
      if (entry.is_regular_file()) files.push_back(entry.path());
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(path);
  }
  return files;
}

}  // namespace

int main(int argc, char** argv) {
  size_t replayed = 0;
  size_t bytes = 0;
  for (int i = 1; i < argc; ++i) {
    if (!fs::exists(argv[i])) {
      std::fprintf(stderr, "%s: %s does not exist\n", argv[0], argv[i]);
      return 1;
    }
    for (const fs::path& file : inputs_in(argv[i])) {
      std::ifstream in(file, std::ios::binary);
      const std::vector<char> data{std::istreambuf_iterator<char>(in),
                                   std::istreambuf_iterator<char>()};
      if (!in.good() && !in.eof()) {
        std::fprintf(stderr, "%s: cannot read %s\n", argv[0], file.c_str());
        return 1;
      }
      const std::string name = file.string();
      vramswap_fuzz::current_input = name.c_str();
      LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(data.data()), data.size());
      vramswap_fuzz::current_input = nullptr;
      ++replayed;
      bytes += data.size();
    }
  }
  if (replayed == 0) {
    std::fprintf(stderr, "%s: no inputs to replay; give corpus files or directories\n", argv[0]);
    return 1;
  }
  std::printf("replayed %zu inputs (%zu bytes): every invariant held\n", replayed, bytes);
  return 0;
}
