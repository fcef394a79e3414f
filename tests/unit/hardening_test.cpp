#include "kernel/hardening.hpp"

#include <linux/capability.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <sstream>
#include <thread>
#include <vector>

#include "kernel_test_support.hpp"

using namespace vramswap;
using namespace vramswap::kernel;
using vramswap::test::ChildResult;
using vramswap::test::count_lines_containing;
using vramswap::test::run_in_child;
using vramswap::test::write_report;

#ifndef PR_GET_IO_FLUSHER
#define PR_GET_IO_FLUSHER 58
#endif

namespace {

long status_kib(const std::string& field) {
  std::istringstream status(test::read_text_file("/proc/self/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  }
  return -1;
}

long vm_locked_kib() {
  return status_kib("VmLck");
}

// In a child: lock_memory(), reporting "RESULT BEFORE AFTER STATE".
ChildResult lock_memory_in_child(bool without_privilege) {
  return run_in_child([&](int report) {
    if (without_privilege) {
      // Unprivileged, with a memlock limit far below what is mapped.
      rlimit small{64 * 1024, 64 * 1024};
      if (::setrlimit(RLIMIT_MEMLOCK, &small) != 0) return 2;
      if (!test::drop_effective_capability(CAP_IPC_LOCK)) return 3;
    }
    long before = vm_locked_kib();
    bool locked = lock_memory();
    long after = vm_locked_kib();
    write_report(report, std::to_string(locked) + " " + std::to_string(before) + " " +
                             std::to_string(after) + " " +
                             std::to_string(hardening_state().memory_locked));
    return 0;
  });
}

struct FlusherOutcome {
  int succeeded = 0, failed = 0, mismatched = 0;
  HardeningState state;
};

// In a child: 16 threads call become_io_flusher(), each checking with
// PR_GET_IO_FLUSHER that its own flag matches what the call returned.
ChildResult io_flusher_in_child(bool without_privilege) {
  return run_in_child([&](int report) {
    if (without_privilege && !test::drop_effective_capability(CAP_SYS_RESOURCE)) return 3;
    std::atomic<int> succeeded{0}, failed{0}, mismatched{0};
    std::vector<std::thread> workers;
    for (int i = 0; i < 16; ++i) {
      workers.emplace_back([&] {
        bool ok = become_io_flusher();
        (ok ? succeeded : failed)++;
        int flag = ::prctl(PR_GET_IO_FLUSHER, 0, 0, 0, 0);
        if ((flag == 1) != ok) mismatched++;
      });
    }
    for (std::thread& worker : workers)
      worker.join();
    HardeningState state = hardening_state();
    write_report(report, std::to_string(succeeded) + " " + std::to_string(failed) + " " +
                             std::to_string(mismatched) + " " +
                             std::to_string(state.io_flusher_threads) + " " +
                             std::to_string(state.io_flusher_failed_threads) + " " +
                             std::to_string(state.io_flusher_errno));
    return 0;
  });
}

FlusherOutcome parse_flusher(const std::string& report) {
  FlusherOutcome outcome;
  std::istringstream fields(report);
  unsigned threads = 0, failed_threads = 0;
  fields >> outcome.succeeded >> outcome.failed >> outcome.mismatched >> threads >>
      failed_threads >> outcome.state.io_flusher_errno;
  outcome.state.io_flusher_threads = threads;
  outcome.state.io_flusher_failed_threads = failed_threads;
  return outcome;
}

ChildResult protect_from_oom_in_child(bool without_privilege) {
  return run_in_child([&](int report) {
    if (without_privilege && !test::drop_effective_capability(CAP_SYS_RESOURCE)) return 3;
    bool protected_ = protect_from_oom();
    std::string adj = test::read_text_file("/proc/self/oom_score_adj");
    write_report(report, std::to_string(protected_) + " " + adj.substr(0, adj.find('\n')) + " " +
                             std::to_string(hardening_state().oom_protected));
    return 0;
  });
}

}  // namespace

TEST_CASE("lock_memory locks the process's pages (VmLck grows)") {
  ChildResult child = lock_memory_in_child(false);
  REQUIRE(child.exit_status == 0);
  INFO("report: " << child.report << "\nstderr: " << child.stderr_text);
  int locked = 0, recorded = 0;
  long before = 0, after = 0;
  std::istringstream(child.report) >> locked >> before >> after >> recorded;
  if (sanitizer_disables_memory_lock) {
    WARN("sanitizer build: lock_memory() must refuse and say why");
    CHECK(locked == 0);
    CHECK_THAT(child.stderr_text, Catch::Contains("AddressSanitizer"));
  } else if (test::has_capability(CAP_IPC_LOCK)) {
    REQUIRE(locked == 1);
  }
  CHECK(recorded == locked);
  if (locked) {
    CHECK(after > before);
    CHECK(child.stderr_text.empty());
  } else {
    CHECK(count_lines_containing(child.stderr_text, "can deadlock") == 1);
  }
}

TEST_CASE("lock_memory without the privilege warns once, naming the risk and the fix") {
  if (!test::has_capability(CAP_IPC_LOCK)) WARN("not privileged: the failure is the natural one");
  ChildResult child = lock_memory_in_child(true);
  REQUIRE(child.exit_status == 0);
  INFO("report: " << child.report << "\nstderr: " << child.stderr_text);
  int locked = 1, recorded = 1;
  long before = 0, after = 0;
  std::istringstream(child.report) >> locked >> before >> after >> recorded;
  CHECK(locked == 0);
  CHECK(recorded == 0);
  CHECK(after == before);
  CHECK(count_lines_containing(child.stderr_text, "warning: cannot lock the daemon in memory") ==
        1);
  CHECK_THAT(child.stderr_text, Catch::Contains("the machine can deadlock"));
  if (!sanitizer_disables_memory_lock)
    CHECK_THAT(child.stderr_text, Catch::Contains("LimitMEMLOCK"));
}

TEST_CASE("become_io_flusher is per thread, recorded, and warns at most once for 16 workers") {
  ChildResult child = io_flusher_in_child(false);
  REQUIRE(child.exit_status == 0);
  INFO("report: " << child.report << "\nstderr: " << child.stderr_text);
  FlusherOutcome outcome = parse_flusher(child.report);
  CHECK(outcome.succeeded + outcome.failed == 16);
  CHECK(outcome.mismatched == 0);
  CHECK(outcome.state.io_flusher_threads == static_cast<uint32_t>(outcome.succeeded));
  CHECK(outcome.state.io_flusher_failed_threads == static_cast<uint32_t>(outcome.failed));
  if (outcome.failed == 0) {
    WARN("PR_SET_IO_FLUSHER is allowed here");
    CHECK(outcome.state.io_flusher_errno == 0);
    CHECK(child.stderr_text.empty());
  } else {
    WARN("PR_SET_IO_FLUSHER is refused here (errno " << outcome.state.io_flusher_errno << ")");
    CHECK(outcome.state.io_flusher_errno != 0);
    CHECK(count_lines_containing(child.stderr_text, "PR_SET_IO_FLUSHER") == 1);
  }
}

TEST_CASE("become_io_flusher without CAP_SYS_RESOURCE: 16 failures, one warning") {
  ChildResult child = io_flusher_in_child(true);
  REQUIRE(child.exit_status == 0);
  INFO("report: " << child.report << "\nstderr: " << child.stderr_text);
  FlusherOutcome outcome = parse_flusher(child.report);
  CHECK(outcome.failed == 16);
  CHECK(outcome.mismatched == 0);
  CHECK(outcome.state.io_flusher_failed_threads == 16);
  CHECK(outcome.state.io_flusher_errno == EPERM);
  CHECK(count_lines_containing(child.stderr_text, "warning: ") == 1);
  CHECK_THAT(child.stderr_text,
             Catch::Contains("PR_SET_IO_FLUSHER") &&
                 Catch::Contains("may recurse into reclaim and wait on the daemon's own device"));
}

TEST_CASE("protect_from_oom sets oom_score_adj to -1000") {
  ChildResult child = protect_from_oom_in_child(false);
  REQUIRE(child.exit_status == 0);
  INFO("report: " << child.report << "\nstderr: " << child.stderr_text);
  int protected_ = 0, recorded = 0;
  std::string adj;
  std::istringstream(child.report) >> protected_ >> adj >> recorded;
  if (test::has_capability(CAP_SYS_RESOURCE)) REQUIRE(protected_ == 1);
  CHECK(recorded == protected_);
  if (protected_) {
    CHECK(adj == "-1000");
    CHECK(child.stderr_text.empty());
  } else {
    CHECK(adj != "-1000");
    CHECK(count_lines_containing(child.stderr_text, "OOM killer") == 1);
  }
}

TEST_CASE("protect_from_oom without CAP_SYS_RESOURCE warns and leaves the score alone") {
  const std::string before = test::read_text_file("/proc/self/oom_score_adj");
  if (before == "-1000\n") {
    WARN("this test process already runs at oom_score_adj -1000: the refusal cannot be seen");
  }
  ChildResult child = protect_from_oom_in_child(true);
  REQUIRE(child.exit_status == 0);
  INFO("report: " << child.report << "\nstderr: " << child.stderr_text);
  int protected_ = 1, recorded = 1;
  std::string adj;
  std::istringstream(child.report) >> protected_ >> adj >> recorded;
  if (before != "-1000\n") {
    CHECK(protected_ == 0);
    CHECK(recorded == 0);
    CHECK(adj + "\n" == before);
    CHECK_THAT(child.stderr_text,
               Catch::Contains("cannot protect the daemon from the OOM killer") &&
                   Catch::Contains("OOMScoreAdjust=-1000"));
  } else {
    CHECK(protected_ == recorded);
  }
}

TEST_CASE("threads of a locked daemon get small stacks, so locking them costs little") {
  // In a child: the default is process-wide. 8 threads stay alive while the
  // resident anonymous memory is read, as the workers do while serving.
  ChildResult child = run_in_child([](int report) {
    if (!limit_thread_stacks()) return 2;
    const bool locked = lock_memory();
    const long before = status_kib("RssAnon");
    std::atomic<bool> release{false};
    std::atomic<int> small_stacks{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i) {
      threads.emplace_back([&] {
        pthread_attr_t attr;
        size_t size = 0;
        if (pthread_getattr_np(pthread_self(), &attr) == 0) {
          pthread_attr_getstacksize(&attr, &size);
          pthread_attr_destroy(&attr);
        }
        if (size == thread_stack_bytes) small_stacks.fetch_add(1);
        while (!release.load())
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
      });
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (small_stacks.load() < 8 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    const long after = status_kib("RssAnon");
    release.store(true);
    for (auto& t : threads)
      t.join();
    write_report(report, std::to_string(locked) + " " + std::to_string(small_stacks.load()) + " " +
                             std::to_string(after - before));
    return 0;
  });
  REQUIRE(child.exit_status == 0);
  INFO("report: " << child.report << "\nstderr: " << child.stderr_text);
  int locked = 0, small_stacks = 0;
  long grown_kib = 0;
  std::istringstream(child.report) >> locked >> small_stacks >> grown_kib;
  CHECK(small_stacks == 8);
  if (locked) {
    // Locked stacks are resident in full: 8 default ones would take 64 MiB,
    // 8 small ones take 8 MiB (plus what the threads' malloc arenas touched).
    CHECK(grown_kib >= 8 * 1024);
    CHECK(grown_kib < 16 * 1024);
  }
}
