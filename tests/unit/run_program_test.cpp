#include "kernel/run_program.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>

#include "common/unique_fd.hpp"

using namespace vramswap;
using namespace vramswap::kernel;

TEST_CASE("run_program reports exit status, signal and the last line of stderr") {
  ProgramResult ok = run_program({"sh", "-c", "echo to-stdout; exit 0"});
  CHECK(ok.succeeded());
  CHECK(ok.error_output.empty());  // stdout is not captured

  ProgramResult failed =
      run_program({"sh", "-c", "echo 'warning: first' >&2; echo 'error: the cause' >&2; exit 3"});
  CHECK(failed.started);
  CHECK_FALSE(failed.succeeded());
  CHECK(failed.exit_status == 3);
  CHECK(failed.summary() == "error: the cause");

  ProgramResult killed = run_program({"sh", "-c", "kill -TERM $$"});
  CHECK(killed.started);
  CHECK(killed.exit_status == -1);
  CHECK(killed.signal == SIGTERM);
  CHECK_THAT(killed.summary(), Catch::StartsWith("killed by signal"));

  ProgramResult silent = run_program({"sh", "-c", "exit 7"});
  CHECK(silent.summary() == "exit status 7");

  ProgramResult missing = run_program({"vramswap-no-such-program"});
  CHECK_FALSE(missing.started);
  CHECK_THAT(missing.summary(), Catch::Contains("not found in PATH, /usr/sbin or /sbin"));
}

TEST_CASE("run_program keeps only the tail of a flood of stderr") {
  ProgramResult flood = run_program(
      {"sh", "-c", "i=0; while [ $i -lt 2000 ]; do echo \"line $i\" >&2; i=$((i+1)); done"});
  CHECK(flood.succeeded());
  CHECK(flood.error_output.size() <= 4096);
  CHECK(flood.summary() == "line 1999");
}

TEST_CASE("run_program passes no descriptor of ours to the child") {
  // A descriptor without close-on-exec, as a careless caller might leave.
  UniqueFd original(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  UniqueFd leaky(::fcntl(original.get(), F_DUPFD, 50));
  REQUIRE(leaky.get() >= 50);
  const std::string check = "[ -e /proc/self/fd/" + std::to_string(leaky.get()) +
                            " ] && echo inherited >&2 || echo clean >&2";
  ProgramResult result = run_program({"sh", "-c", check});
  CHECK(result.summary() == "clean");
}

TEST_CASE("find_program looks in PATH, then /usr/sbin and /sbin") {
  const char* old = std::getenv("PATH");
  const std::string saved = old ? old : "";
  ::setenv("PATH", "/nonexistent", 1);
  std::optional<std::string> mkswap = find_program("mkswap");
  ::setenv("PATH", saved.c_str(), 1);
  REQUIRE(mkswap.has_value());
  CHECK((*mkswap == "/usr/sbin/mkswap" || *mkswap == "/sbin/mkswap"));
  CHECK_FALSE(find_program("vramswap-no-such-program").has_value());
  CHECK(find_program("/bin/sh") == "/bin/sh");
  CHECK_FALSE(find_program("/etc/passwd").has_value());  // not executable
}
