// The daemon locks itself in RAM (mlockall(MCL_CURRENT | MCL_FUTURE)) before
// and after allocating its VRAM. On the fake driver that must not commit the
// fake GPU's memory: a 16 GiB fake GPU on a small CI machine would otherwise
// take 16 GiB of RAM at once (or fail). This test does what the daemon does,
// in a process of its own (mlockall affects the whole process), and checks
// that neither the locked nor the resident memory jumps and that the fake's
// backing memory holds only what was written.
//
// Exit status 77 (ctest: skipped) when this process may not lock its memory
// (no CAP_IPC_LOCK and a small RLIMIT_MEMLOCK): the test cannot run there,
// and says so instead of passing.

#include <dirent.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "common/byte_size.hpp"
#include "common/startup_error.hpp"
#include "cuda/context.hpp"
#include "cuda/driver.hpp"
#include "store/copy_stream.hpp"
#include "store/pinned_buffer.hpp"
#include "store/vram_store.hpp"

using namespace vramswap;
using namespace vramswap::store;

namespace {

constexpr int skipped = 77;
int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAILED", what.c_str());
  if (!ok) ++failures;
}

// A "Vm...:  1234 kB" line of /proc/self/status, in bytes.
uint64_t status_bytes(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoull(line.substr(field.size() + 1)) * KiB;
  }
  return UINT64_MAX;
}

// The fake's memfds: how many, and how much memory they hold.
struct Backing {
  int files = 0;
  uint64_t bytes = 0;
};

Backing fake_backing() {
  Backing backing;
  DIR* fds = opendir("/proc/self/fd");
  if (!fds) return backing;
  while (const dirent* entry = readdir(fds)) {
    const std::string link = std::string("/proc/self/fd/") + entry->d_name;
    char target[256] = {};
    if (readlink(link.c_str(), target, sizeof target - 1) <= 0) continue;
    if (std::strncmp(target, "/memfd:vramswap-fake-", 21) != 0) continue;
    struct stat st {};
    if (stat(link.c_str(), &st) != 0) continue;
    ++backing.files;
    backing.bytes += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  closedir(fds);
  return backing;
}

bool lock_everything() {
  return mlockall(MCL_CURRENT | MCL_FUTURE) == 0;
}

}  // namespace

int main() {
  if (!lock_everything()) {
    if (errno == EPERM || errno == ENOMEM) {
      std::printf(
          "skipped: mlockall(MCL_CURRENT | MCL_FUTURE) is not permitted here (%s); it "
          "needs CAP_IPC_LOCK or an unlimited RLIMIT_MEMLOCK\n",
          std::strerror(errno));
      return skipped;
    }
    std::printf("FAILED: mlockall: %s\n", std::strerror(errno));
    return 1;
  }
  const char* library = std::getenv("VRAMSWAP_LIBCUDA");
  if (!library || !*library) setenv("VRAMSWAP_LIBCUDA", VRAMSWAP_TEST_FAKE_LIBCUDA, 1);
  setenv("VRAMSWAP_FAKE_MEMORY", "17G", 1);
  setenv("VRAMSWAP_FAKE_RESERVED", "256M", 1);

  try {
    const uint64_t locked_before = status_bytes("VmLck");
    const uint64_t resident_before = status_bytes("VmRSS");
    const auto driver = cuda::Driver::load();
    cuda::Context context(driver, 0);
    VramStore store(context);  // 8192 chunks of 2 MiB
    store.allocate(16 * GiB, 16 * GiB);
    check(lock_everything(), "mlockall again after allocating");

    const uint64_t locked = status_bytes("VmLck") - locked_before;
    const uint64_t resident = status_bytes("VmRSS") - resident_before;
    check(store.size() == 16 * GiB, "16 GiB of fake VRAM allocated");
    check(locked < 128 * MiB, "locked memory grew by " + format_byte_size(locked));
    check(resident < 128 * MiB, "resident memory grew by " + format_byte_size(resident));
    Backing backing = fake_backing();
    // A few sparse memfds for the device's allocations (the pool's stripes),
    // not one per chunk.
    check(backing.files >= 1 && backing.files <= 8,
          std::to_string(backing.files) + " backing memfds for 8192 chunks");
    check(backing.bytes < MiB, "backing memory before writing: " + format_byte_size(backing.bytes));

    // It still works as memory: 4 MiB written at both ends, read back.
    PinnedBuffer staging(context, 4 * MiB);
    for (size_t i = 0; i < staging.size(); ++i)
      staging.data()[i] = std::byte(i * 7 + 1);
    std::vector<std::byte> expected(staging.data(), staging.data() + staging.size());
    CopyStream stream(store);
    bool copied = stream.write(0, staging.data(), 2 * MiB).ok() &&
                  stream.write(store.size() - 2 * MiB, staging.data() + 2 * MiB, 2 * MiB).ok() &&
                  stream.synchronize().ok();
    std::memset(staging.data(), 0, staging.size());
    copied = copied && stream.read(staging.data(), 0, 2 * MiB).ok() &&
             stream.read(staging.data() + 2 * MiB, store.size() - 2 * MiB, 2 * MiB).ok() &&
             stream.synchronize().ok();
    check(copied && std::memcmp(staging.data(), expected.data(), expected.size()) == 0,
          "data written at both ends reads back");
    backing = fake_backing();
    check(backing.bytes >= 4 * MiB && backing.bytes < 8 * MiB,
          "backing memory after writing 4 MiB: " + format_byte_size(backing.bytes));
  } catch (const StartupError& error) {
    check(false, error.what());
  }
  return failures == 0 ? 0 : 1;
}
