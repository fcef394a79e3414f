#include "options.hpp"

#include <getopt.h>

#include <charconv>
#include <string_view>

#include "common/byte_size.hpp"

namespace vramswap::memhog {

const char* const usage_text =
    "usage: memhog --size SIZE [--seed N] [--passes N] [--ready-file PATH]\n"
    "              [--wait-file PATH | --wait-signal] [--report N]\n"
    "Allocates SIZE (e.g. 768M), writes a pattern derived from the seed and the\n"
    "word's index into every 8-byte word, re-touches it --passes times (check and\n"
    "rewrite: forces swap-in and swap-out), optionally waits, then checks every\n"
    "word. Exit status 0 only if every check found every word intact.\n"
    "  --ready-file PATH  write our pid to PATH once the data is in place\n"
    "  --wait-file PATH   before the final check, wait until PATH exists\n"
    "  --wait-signal      before the final check, wait for SIGUSR1\n"
    "  --report N         print the first N wrong words (default 10)\n";

namespace {

template <typename T>
bool parse_number(std::string_view text, T& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size() && !text.empty();
}

}  // namespace

std::optional<Options> parse_options(int argc, char** argv, std::string& error) {
  enum { size = 1, seed, passes, ready_file, wait_file, wait_signal, report, help };
  static const option long_options[] = {
      {"size", required_argument, nullptr, size},
      {"seed", required_argument, nullptr, seed},
      {"passes", required_argument, nullptr, passes},
      {"ready-file", required_argument, nullptr, ready_file},
      {"wait-file", required_argument, nullptr, wait_file},
      {"wait-signal", no_argument, nullptr, wait_signal},
      {"report", required_argument, nullptr, report},
      {"help", no_argument, nullptr, help},
      {nullptr, 0, nullptr, 0},
  };
  Options options;
  error.clear();
  opterr = 0;
  optind = 1;
  for (int c; (c = getopt_long(argc, argv, "", long_options, nullptr)) != -1;) {
    const std::string_view value = optarg ? optarg : "";
    switch (c) {
      case size:
        if (auto bytes = parse_byte_size(value); bytes && *bytes >= 8) {
          options.size_bytes = *bytes;
        } else {
          error =
              "--size '" + std::string(value) + "' is not a size of at least 8 bytes (e.g. 768M)";
          return std::nullopt;
        }
        break;
      case seed:
        if (!parse_number(value, options.seed)) {
          error = "--seed '" + std::string(value) + "' is not a number";
          return std::nullopt;
        }
        break;
      case passes:
        if (!parse_number(value, options.passes)) {
          error = "--passes '" + std::string(value) + "' is not a number";
          return std::nullopt;
        }
        break;
      case ready_file:
        options.ready_file = value;
        break;
      case wait_file:
        options.wait_file = value;
        break;
      case wait_signal:
        options.wait_signal = true;
        break;
      case report:
        if (!parse_number(value, options.report)) {
          error = "--report '" + std::string(value) + "' is not a number";
          return std::nullopt;
        }
        break;
      case help:
        return std::nullopt;
      default:
        error = std::string("unknown or incomplete option '") + argv[optind - 1] +
                "'; see memhog --help";
        return std::nullopt;
    }
  }
  if (optind < argc) {
    error = std::string("unexpected argument '") + argv[optind] + "'; see memhog --help";
    return std::nullopt;
  }
  if (options.size_bytes == 0) {
    error = "--size is required (e.g. --size 768M)";
    return std::nullopt;
  }
  if (!options.wait_file.empty() && options.wait_signal) {
    error = "--wait-file and --wait-signal exclude each other; pick one";
    return std::nullopt;
  }
  return options;
}

}  // namespace vramswap::memhog
