// The small parts of the vramswap program: its command line, text layout and
// the check that a status file's pid is still its daemon.

#include <catch2/catch.hpp>

#include <cstdlib>
#include <vector>

#include "cli/command_line.hpp"
#include "cli/daemon_process.hpp"
#include "cli/swap_lookup.hpp"
#include "cli/text.hpp"
#include "cli_command_line_support.hpp"
#include "common/exit_codes.hpp"
#include "common/startup_error.hpp"
#include "config/config.hpp"

using namespace vramswap;
using namespace vramswap::kernel;
using namespace vramswap::cli;
using Catch::Matchers::Contains;

namespace {

std::string usage_error(std::vector<std::string> words) {
  try {
    parse(std::move(words));
  } catch (const StartupError& error) {
    CHECK(error.exit_status() == exit_code::usage);
    return error.what();
  }
  FAIL("accepted");
  return {};
}

}  // namespace

TEST_CASE("command line: commands and options in any order") {
  unsetenv("VRAMSWAP_CONFIG");
  CHECK(parse({}).command == Command::status);
  CHECK(parse({}).config_path == "/etc/vramswap.conf");
  CHECK(parse({"status"}).command == Command::status);
  const CommandLine probe = parse({"--json", "probe", "--config", "/tmp/x.conf"});
  CHECK(probe.command == Command::probe);
  CHECK(probe.json);
  CHECK(probe.config_path == "/tmp/x.conf");
  const CommandLine status = parse({"status", "-j", "-r", "/tmp/run", "-c", "/tmp/y.conf"});
  CHECK(status.json);
  CHECK(status.runtime_dir == "/tmp/run");
  CHECK(status.config_path == "/tmp/y.conf");
  CHECK(parse({"--help"}).command == Command::help);
  CHECK(parse({"probe", "-h"}).command == Command::help);
  CHECK(parse({"help"}).command == Command::help);
  CHECK(parse({"--version"}).command == Command::version);
}

TEST_CASE("command line: $VRAMSWAP_CONFIG names the file unless --config does") {
  setenv("VRAMSWAP_CONFIG", "/tmp/env.conf", 1);
  CHECK(parse({"status"}).config_path == "/tmp/env.conf");
  CHECK(parse({"status", "--config", "/tmp/arg.conf"}).config_path == "/tmp/arg.conf");
  unsetenv("VRAMSWAP_CONFIG");
}

TEST_CASE("command line: anything else is one line and exit status 64") {
  CHECK_THAT(usage_error({"frobnicate"}), Contains("unknown command \"frobnicate\""));
  CHECK_THAT(usage_error({"--frobnicate"}), Contains("unknown option --frobnicate"));
  CHECK_THAT(usage_error({"status", "extra"}), Contains("unexpected argument \"extra\""));
  CHECK_THAT(usage_error({"status", "--config"}), Contains("needs a value"));
  CHECK_THAT(usage_error({"status", "--config="}), Contains("empty"));
  for (const std::string& message : {usage_error({"x"}), usage_error({"-x"})}) {
    CHECK(message.find('\n') == std::string::npos);
    CHECK_THAT(message, Contains("vramswap --help"));
  }
}

TEST_CASE("command line: release NAME SIZE|all, restore NAME") {
  using Verb = status::ControlRequest::Verb;
  CommandLine line = parse({"release", "gpu0"});
  CHECK(line.command == Command::release);
  CHECK(line.instance == "gpu0");
  CHECK(line.request == status::ControlRequest{Verb::release, status::ControlRequest::all_bytes});
  CHECK(parse({"release", "gpu0", "all"}).request == line.request);
  CHECK(parse({"release", "gpu0", "2G"}).request ==
        status::ControlRequest{Verb::release, uint64_t{2} << 30});
  CHECK(parse({"release", "gpu0", "512M", "--runtime-dir", "/tmp/r"}).runtime_dir == "/tmp/r");
  line = parse({"--runtime-dir", "/tmp/r", "restore", "gpu0"});
  CHECK(line.command == Command::restore);
  CHECK(line.instance == "gpu0");
  CHECK(line.request.verb == Verb::restore);

  CHECK_THAT(usage_error({"release"}), Contains("release needs the instance's name"));
  CHECK_THAT(usage_error({"restore"}), Contains("vramswap restore NAME"));
  CHECK_THAT(usage_error({"release", "gpu0", "lots"}),
             Contains("\"lots\" is not a size to release; write it like 2G"));
  CHECK_THAT(usage_error({"release", "gpu0", "0"}), Contains("\"0\" is not a size"));
  CHECK_THAT(usage_error({"release", "gpu0", "2G", "more"}),
             Contains("unexpected argument \"more\""));
  CHECK_THAT(usage_error({"restore", "gpu0", "2G"}), Contains("unexpected argument \"2G\""));
  CHECK_THAT(usage_error({"release", "gpu0", "--json"}), Contains("--json is for status"));
}

TEST_CASE("the help fits 80 columns") {
  std::string text = usage_text();
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    CHECK(end - start <= 80);
    start = end + 1;
  }
}

TEST_CASE("wrap: lines up to the width, indented continuation, long words whole") {
  CHECK(wrap("a b c", 80, 0, 2) == "a b c\n");
  CHECK(wrap("aaaa bbbb cccc", 9, 0, 2) == "aaaa bbbb\n  cccc\n");
  CHECK(wrap("aaaa bbbb", 10, 4, 4) == "aaaa\n    bbbb\n");
  CHECK(wrap("x /a/very/long/path/name y", 10, 0, 1) == "x\n /a/very/long/path/name\n y\n");
  CHECK(wrap("", 10, 0, 0) == "\n");
}

TEST_CASE("counts and ages read easily") {
  CHECK(format_count(0) == "0");
  CHECK(format_count(999) == "999");
  CHECK(format_count(1000) == "1,000");
  CHECK(format_count(1234567) == "1,234,567");
  CHECK(format_age(5) == "5 s");
  CHECK(format_age(600) == "10 min");
  CHECK(format_age(3 * 3600) == "3 h");
  CHECK(format_age(3 * 86400) == "3 days");
  CHECK(format_age(-4) == "0 s");
}

TEST_CASE("/proc/PID/stat: the name may hold spaces and parentheses") {
  const std::string stat =
      "1234 (vram (x) d) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 3 0 987654 1000 "
      "200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 2 0 0 0 0 0";
  const auto parsed = parse_process_stat(stat);
  REQUIRE(parsed);
  CHECK(parsed->state == 'S');
  CHECK(parsed->start_ticks == 987654);
  CHECK_FALSE(parse_process_stat("1234 vramswapd S"));
  CHECK_FALSE(parse_process_stat("1234 (vramswapd) S 1 2"));
}

TEST_CASE("a status file's pid counts only while it is the daemon that wrote it") {
  const ProcessStat sleeping{'S', 100};
  const ProcessStat zombie{'Z', 100};
  CHECK(classify_process(true, "vramswapd\n", sleeping, 1000, 1005) == DaemonProcess::running);
  CHECK(classify_process(false, "", sleeping, 0, 1005) == DaemonProcess::gone);
  CHECK(classify_process(true, "vramswapd\n", zombie, 1000, 1005) == DaemonProcess::gone);
  CHECK(classify_process(true, "bash\n", sleeping, 1000, 1005) == DaemonProcess::other_program);
  // Started after the file was last written: the pid was reused.
  CHECK(classify_process(true, "vramswapd\n", sleeping, 2000, 1005) ==
        DaemonProcess::newer_process);
  // Whole seconds on both sides: a second or two of rounding is no reuse.
  CHECK(classify_process(true, "vramswapd\n", sleeping, 1006, 1005) == DaemonProcess::running);
}

TEST_CASE("the running test process is found, a pid that is not there is not") {
  // This process is no vramswapd.
  CHECK(check_daemon_process(getpid(), time(nullptr)) == DaemonProcess::other_program);
  CHECK(check_daemon_process(0, 0) == DaemonProcess::gone);
  CHECK(check_daemon_process(-5, 0) == DaemonProcess::gone);
  CHECK(check_daemon_process(int64_t{1} << 40, 0) == DaemonProcess::gone);
}

TEST_CASE("the [global] defaults of a config are what probe sizes GPUs with") {
  // The hook in config::ConfigReport that probe relies on.
  const auto report = config::parse_config_report(
      "[global]\nreserve = 3G\nmin_size = 1G\n[device.0]\nreserve = 5G\n", "x.conf");
  CHECK(report.defaults.reserve == uint64_t{3} << 30);
  CHECK(report.defaults.min_size == uint64_t{1} << 30);
  CHECK(report.devices[0].config->reserve == uint64_t{5} << 30);
  const auto empty = config::parse_config_report("", "x.conf");
  CHECK(empty.defaults.reserve == config::default_device_config().reserve);
}

TEST_CASE("a swap area is found by device number, or by name when its path is gone") {
  const auto exists = [](const std::string& path) { return path != "/nbd3"; };
  // Nothing here is a block device: only the name fallback can match.
  const std::vector<SwapEntry> entries = {{"/swapfile", "file", 1 << 20, 0, -2},
                                          {"/nbd3", "partition", 8 << 20, 4096, 1000}};
  const auto found = find_device_swap(entries, "/dev/nbd3", exists);
  REQUIRE(found);
  CHECK(found->priority == 1000);
  CHECK(found->used_bytes == 4096);
  CHECK_FALSE(find_device_swap(entries, "/dev/nbd4", exists));
  // A path that still resolves is another device of the same name elsewhere.
  CHECK_FALSE(find_device_swap(entries, "/dev/nbd3", [](const std::string&) { return true; }));
  const std::vector<SwapEntry> deleted = {{"/nbd3 (deleted)", "partition", 8 << 20, 0, 5}};
  CHECK(find_device_swap(deleted, "/dev/nbd3", [](const std::string&) { return false; }));
}
