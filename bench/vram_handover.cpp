// vramswap-vram-handover: does VRAM allocated with the CUDA virtual-memory
// calls outlive the process that allocated it, when an exported file
// descriptor of it lives on in another process?
//
// A live restart hands the daemon's VRAM to its successor through exported
// allocation handles (POSIX file descriptors) kept in the systemd file
// descriptor store. That works only if the driver keeps the memory and its
// contents while the descriptor lives, even after the allocating process is
// gone. Three scenarios, each in fresh processes forked from this one (which
// never loads the driver, so no CUDA state is ever forked):
//   alive   the importer imports while the exporter still runs (the control:
//           does the import path work at all?)
//   killed  the exporter sends the descriptor to an importer that already has
//           a CUDA context, and is then killed with SIGKILL; the importer
//           imports afterwards
//   holder  the exporter sends the descriptor to a process that never loads
//           the driver (the file descriptor store's situation), and is killed;
//           with no CUDA process alive, a fresh process imports from the holder
// Every step prints what the driver returned; the pattern written by the
// exporter is read back and compared word by word.
//
// Needs no CUDA toolkit: libcuda.so.1 is opened at run time and the few
// types are declared here (with cuda.h at hand,
// -DVRAM_HANDOVER_ABI_CHECK -I/usr/local/cuda/include checks them).
//
// Usage: vramswap-vram-handover [SIZE_MIB] (default 1024; a multiple of 2)
#include <dlfcn.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace probe {

using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = struct CUctx_st*;
using CUmemGenericAllocationHandle = unsigned long long;

enum CUmemAllocationType : int { CU_MEM_ALLOCATION_TYPE_PINNED = 0x1 };
enum CUmemAllocationHandleType : int { CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR = 0x1 };
enum CUmemLocationType : int { CU_MEM_LOCATION_TYPE_DEVICE = 0x1 };
enum CUmemAllocationGranularity_flags : int { CU_MEM_ALLOC_GRANULARITY_MINIMUM = 0x0 };
enum CUmemAccess_flags : int { CU_MEM_ACCESS_FLAGS_PROT_READWRITE = 0x3 };

struct CUmemLocation {
  CUmemLocationType type;
  int id;
};
struct CUmemAllocationProp {
  CUmemAllocationType type;
  CUmemAllocationHandleType requestedHandleTypes;
  CUmemLocation location;
  void* win32HandleMetaData;
  struct {
    unsigned char compressionType;
    unsigned char gpuDirectRDMACapable;
    unsigned short usage;
    unsigned char reserved[4];
  } allocFlags;
};
struct CUmemAccessDesc {
  CUmemLocation location;
  CUmemAccess_flags flags;
};

// The driver's entry points this probe calls, by the symbol libcuda exports.
struct Driver {
  CUresult (*cuInit)(unsigned int);
  CUresult (*cuDeviceGet)(CUdevice*, int);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice);
  CUresult (*cuCtxSetCurrent)(CUcontext);
  CUresult (*cuMemGetAllocationGranularity)(size_t*, const CUmemAllocationProp*,
                                            CUmemAllocationGranularity_flags);
  CUresult (*cuMemCreate)(CUmemGenericAllocationHandle*, size_t, const CUmemAllocationProp*,
                          unsigned long long);
  CUresult (*cuMemAddressReserve)(CUdeviceptr*, size_t, size_t, CUdeviceptr, unsigned long long);
  CUresult (*cuMemMap)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle,
                       unsigned long long);
  CUresult (*cuMemSetAccess)(CUdeviceptr, size_t, const CUmemAccessDesc*, size_t);
  CUresult (*cuMemExportToShareableHandle)(void*, CUmemGenericAllocationHandle,
                                           CUmemAllocationHandleType, unsigned long long);
  CUresult (*cuMemImportFromShareableHandle)(CUmemGenericAllocationHandle*, void*,
                                             CUmemAllocationHandleType);
  CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void*, size_t);
  CUresult (*cuMemcpyDtoH)(void*, CUdeviceptr, size_t);
  CUresult (*cuMemGetInfo)(size_t*, size_t*);
  CUresult (*cuMemUnmap)(CUdeviceptr, size_t);
  CUresult (*cuMemAddressFree)(CUdeviceptr, size_t);
  CUresult (*cuMemRelease)(CUmemGenericAllocationHandle);
  CUresult (*cuGetErrorName)(CUresult, const char**);
};

}  // namespace probe

namespace probe {
namespace {

constexpr int timeout_ms = 60'000;  // every wait for a child is bounded
size_t g_bytes = size_t{1024} << 20;

// ---- messages between the processes: one line each, maybe with a descriptor

void send_line(int sock, const std::string& text, int fd = -1) {
  iovec iov{const_cast<char*>(text.data()), text.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))]{};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  if (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0) std::perror("sendmsg");
}

// Returns false on timeout or a closed peer; *fd gets a passed descriptor or -1.
bool recv_line(int sock, std::string* text, int* fd = nullptr) {
  pollfd p{sock, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) <= 0) return false;
  char buffer[512];
  iovec iov{buffer, sizeof(buffer)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))]{};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  if (n <= 0) return false;
  text->assign(buffer, size_t(n));
  if (fd) *fd = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int passed;
      std::memcpy(&passed, CMSG_DATA(c), sizeof(int));
      if (fd)
        *fd = passed;
      else
        close(passed);
    }
  return true;
}

// Waits for a line from a child and returns it; an empty string on timeout.
std::string expect(int sock, const char* who) {
  std::string line;
  if (!recv_line(sock, &line)) return std::string(who) + ": no answer within 60 s";
  return line;
}

// ---- the driver, in the CUDA children only

Driver g_cu{};

const char* name_of(CUresult r) {
  const char* name = nullptr;
  if (g_cu.cuGetErrorName == nullptr || g_cu.cuGetErrorName(r, &name) != 0 || !name)
    return "(unknown)";
  return name;
}

std::string rc(const char* call, CUresult r) {
  return std::string(call) + "=" + (r == 0 ? "CUDA_SUCCESS" : name_of(r)) + "(" +
         std::to_string(r) + ")";
}

// Opens the driver and makes the device's primary context current. Returns an
// empty string on success, else what failed.
std::string open_driver() {
  const char* path = std::getenv("VRAM_HANDOVER_LIBCUDA");
  void* lib = dlopen(path ? path : "libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) return std::string("dlopen: ") + dlerror();
  struct Entry {
    void** slot;
    const char* symbol;
  } entries[] = {
      {reinterpret_cast<void**>(&g_cu.cuInit), "cuInit"},
      {reinterpret_cast<void**>(&g_cu.cuDeviceGet), "cuDeviceGet"},
      {reinterpret_cast<void**>(&g_cu.cuDevicePrimaryCtxRetain), "cuDevicePrimaryCtxRetain"},
      {reinterpret_cast<void**>(&g_cu.cuCtxSetCurrent), "cuCtxSetCurrent"},
      {reinterpret_cast<void**>(&g_cu.cuMemGetAllocationGranularity),
       "cuMemGetAllocationGranularity"},
      {reinterpret_cast<void**>(&g_cu.cuMemCreate), "cuMemCreate"},
      {reinterpret_cast<void**>(&g_cu.cuMemAddressReserve), "cuMemAddressReserve"},
      {reinterpret_cast<void**>(&g_cu.cuMemMap), "cuMemMap"},
      {reinterpret_cast<void**>(&g_cu.cuMemSetAccess), "cuMemSetAccess"},
      {reinterpret_cast<void**>(&g_cu.cuMemExportToShareableHandle),
       "cuMemExportToShareableHandle"},
      {reinterpret_cast<void**>(&g_cu.cuMemImportFromShareableHandle),
       "cuMemImportFromShareableHandle"},
      {reinterpret_cast<void**>(&g_cu.cuMemcpyHtoD), "cuMemcpyHtoD_v2"},
      {reinterpret_cast<void**>(&g_cu.cuMemcpyDtoH), "cuMemcpyDtoH_v2"},
      {reinterpret_cast<void**>(&g_cu.cuMemGetInfo), "cuMemGetInfo_v2"},
      {reinterpret_cast<void**>(&g_cu.cuMemUnmap), "cuMemUnmap"},
      {reinterpret_cast<void**>(&g_cu.cuMemAddressFree), "cuMemAddressFree"},
      {reinterpret_cast<void**>(&g_cu.cuMemRelease), "cuMemRelease"},
      {reinterpret_cast<void**>(&g_cu.cuGetErrorName), "cuGetErrorName"},
  };
  for (const Entry& e : entries) {
    *e.slot = dlsym(lib, e.symbol);
    if (!*e.slot) return std::string("the driver does not export ") + e.symbol;
  }
  CUresult r = g_cu.cuInit(0);
  if (r != 0) return rc("cuInit", r);
  CUdevice device;
  if ((r = g_cu.cuDeviceGet(&device, 0)) != 0) return rc("cuDeviceGet", r);
  CUcontext context;
  if ((r = g_cu.cuDevicePrimaryCtxRetain(&context, device)) != 0)
    return rc("cuDevicePrimaryCtxRetain", r);
  if ((r = g_cu.cuCtxSetCurrent(context)) != 0) return rc("cuCtxSetCurrent", r);
  return "";
}

CUmemAllocationProp device_prop() {
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  prop.location = {CU_MEM_LOCATION_TYPE_DEVICE, 0};
  return prop;
}

// The pattern: word i of scenario `seed` (splitmix64), so that memory left
// over from another scenario or never written cannot pass the check.
uint64_t word(uint64_t seed, uint64_t i) {
  uint64_t z = seed * 0x9e3779b97f4a7c15ull + i + 1;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::string free_mib() {
  size_t free_bytes = 0, total = 0;
  CUresult r = g_cu.cuMemGetInfo(&free_bytes, &total);
  if (r != 0) return rc("cuMemGetInfo", r);
  return "free " + std::to_string(free_bytes >> 20) + " MiB";
}

std::string fd_target(int fd) {
  char link[64], target[256];
  std::snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof(target) - 1);
  if (n < 0) return "?";
  target[n] = 0;
  return target;
}

// Reserves an address range, maps `handle` into it, makes it readable and
// writable. Appends the return codes to *log; returns the address or 0.
CUdeviceptr map_handle(CUmemGenericAllocationHandle handle, std::string* log) {
  CUdeviceptr address = 0;
  CUresult r = g_cu.cuMemAddressReserve(&address, g_bytes, 0, 0, 0);
  *log += " " + rc("cuMemAddressReserve", r);
  if (r != 0) return 0;
  r = g_cu.cuMemMap(address, g_bytes, 0, handle, 0);
  *log += " " + rc("cuMemMap", r);
  if (r != 0) return 0;
  CUmemAccessDesc access{{CU_MEM_LOCATION_TYPE_DEVICE, 0}, CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
  r = g_cu.cuMemSetAccess(address, g_bytes, &access, 1);
  *log += " " + rc("cuMemSetAccess", r);
  return r == 0 ? address : 0;
}

// Reads the range back and counts the words that differ from the pattern.
std::string check_pattern(CUdeviceptr address, uint64_t seed) {
  std::vector<uint64_t> host(g_bytes / 8);
  CUresult r = g_cu.cuMemcpyDtoH(host.data(), address, g_bytes);
  if (r != 0) return rc("cuMemcpyDtoH", r) + " CONTENTS UNREADABLE";
  size_t wrong = 0, first = 0;
  for (size_t i = 0; i < host.size(); ++i)
    if (host[i] != word(seed, i) && wrong++ == 0) first = i;
  if (wrong == 0)
    return rc("cuMemcpyDtoH", r) + " CONTENTS INTACT (" + std::to_string(g_bytes >> 20) +
           " MiB, every word equal)";
  return rc("cuMemcpyDtoH", r) + " CONTENTS LOST: " + std::to_string(wrong) + " of " +
         std::to_string(host.size()) + " words differ, first at word " + std::to_string(first);
}

// ---- the roles

// Allocates, maps, writes the pattern, exports a descriptor, sends it to
// `peer` and reports to `control`; then waits to be killed.
[[noreturn]] void exporter(int control, int peer, uint64_t seed) {
  std::string log = "exporter:";
  if (std::string e = open_driver(); !e.empty()) {
    send_line(control, "exporter: " + e);
    _exit(1);
  }
  CUmemAllocationProp prop = device_prop();
  size_t granularity = 0;
  CUresult r =
      g_cu.cuMemGetAllocationGranularity(&granularity, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM);
  log += " " + rc("cuMemGetAllocationGranularity", r) + " granularity " +
         std::to_string(granularity >> 10) + " KiB;";
  std::string before = free_mib();
  CUmemGenericAllocationHandle handle = 0;
  r = g_cu.cuMemCreate(&handle, g_bytes, &prop, 0);
  log += " " + rc("cuMemCreate", r);
  CUdeviceptr address = r == 0 ? map_handle(handle, &log) : 0;
  if (address == 0) {
    send_line(control, log + " FAILED");
    _exit(1);
  }
  std::vector<uint64_t> host(g_bytes / 8);
  for (size_t i = 0; i < host.size(); ++i)
    host[i] = word(seed, i);
  r = g_cu.cuMemcpyHtoD(address, host.data(), g_bytes);
  log += " " + rc("cuMemcpyHtoD", r) + "; readback " + check_pattern(address, seed) + ";";
  log += " device memory " + before + " before, " + free_mib() + " after;";
  int fd = -1;
  r = g_cu.cuMemExportToShareableHandle(&fd, handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0);
  log += " " + rc("cuMemExportToShareableHandle", r) + " fd " + std::to_string(fd) + " -> " +
         (fd >= 0 ? fd_target(fd) : "none");
  if (r != 0 || fd < 0) {
    send_line(control, log + " FAILED");
    _exit(1);
  }
  send_line(peer, "handle", fd);
  close(fd);  // the peer's copy is the only one outside the driver now
  send_line(control, log);
  for (;;)
    pause();
}

// Receives a descriptor on `peer`, reports, waits for "go" on `control`, then
// imports, maps, checks the pattern and reports. `cuda_first` opens the
// driver before the descriptor arrives (a CUDA process alive throughout).
[[noreturn]] void importer(int control, int peer, uint64_t seed, bool cuda_first) {
  std::string error = cuda_first ? open_driver() : "";
  std::string line;
  int fd = -1;
  if (!recv_line(peer, &line, &fd) || fd < 0) {
    send_line(control, "importer: no descriptor arrived");
    _exit(1);
  }
  send_line(control, "importer: holds fd " + std::to_string(fd) + " -> " + fd_target(fd) +
                         (cuda_first ? (error.empty() ? ", CUDA context open" : ", " + error)
                                     : ", driver not opened yet"));
  if (!recv_line(control, &line)) _exit(1);  // "go"
  if (!cuda_first) error = open_driver();
  if (!error.empty()) {
    send_line(control, "importer: " + error);
    _exit(1);
  }
  std::string log = "importer: " + free_mib() + " before import;";
  CUmemGenericAllocationHandle handle = 0;
  CUresult r = g_cu.cuMemImportFromShareableHandle(
      &handle, reinterpret_cast<void*>(static_cast<uintptr_t>(fd)),
      CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
  log += " " + rc("cuMemImportFromShareableHandle", r);
  CUdeviceptr address = r == 0 ? map_handle(handle, &log) : 0;
  if (address != 0) {
    log += "; " + check_pattern(address, seed);
    log += "; " + rc("cuMemUnmap", g_cu.cuMemUnmap(address, g_bytes));
    log += " " + rc("cuMemAddressFree", g_cu.cuMemAddressFree(address, g_bytes));
  }
  if (r == 0) log += " " + rc("cuMemRelease", g_cu.cuMemRelease(handle));
  close(fd);
  log += "; " + free_mib() + " after release and close";
  send_line(control, log);
  _exit(0);
}

// Never opens the driver: receives the descriptor, reports, and on "pass"
// sends it on to `next` and closes its own copy.
[[noreturn]] void holder(int control, int peer, int next) {
  std::string line;
  int fd = -1;
  if (!recv_line(peer, &line, &fd) || fd < 0) {
    send_line(control, "holder: no descriptor arrived");
    _exit(1);
  }
  send_line(control, "holder (no CUDA): holds fd " + std::to_string(fd) + " -> " + fd_target(fd));
  if (!recv_line(control, &line)) _exit(1);  // "pass"
  send_line(next, "handle", fd);
  close(fd);
  send_line(control, "holder: passed the descriptor on and closed it");
  _exit(0);
}

// ---- the scenarios, run by this process (which never opens the driver)

struct Child {
  pid_t pid = -1;
  int control = -1;  // this process's end of the child's control socket
};

void say(const std::string& line) {
  std::printf("  %s\n", line.c_str());
  std::fflush(stdout);
}

template <typename Role>
Child spawn(Role role, std::vector<int> close_in_child) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    std::perror("socketpair");
    std::exit(2);
  }
  pid_t pid = fork();
  if (pid == 0) {
    close(pair[0]);
    for (int fd : close_in_child)
      close(fd);
    role(pair[1]);
    _exit(3);  // the roles never return
  }
  close(pair[1]);
  return {pid, pair[0]};
}

void reap(Child& child) {
  if (child.pid > 0) {
    kill(child.pid, SIGKILL);
    waitpid(child.pid, nullptr, 0);
  }
  if (child.control >= 0) close(child.control);
  child = {};
}

// SIGKILLs the exporter and waits for it: from here no process of it exists.
void kill_exporter(Child& exp) {
  kill(exp.pid, SIGKILL);
  int status = 0;
  waitpid(exp.pid, &status, 0);
  exp.pid = -1;
  say(std::string("exporter killed and reaped: ") +
      (WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "it had exited"));
  reap(exp);
}

// What the driver's own tool says: memory in use and the processes using it.
void gpu_snapshot(const char* when) {
  std::printf("  nvidia-smi %s:\n", when);
  std::fflush(stdout);
  int rc_used = std::system(
      "nvidia-smi --query-gpu=memory.used,persistence_mode --format=csv,noheader "
      "2>&1 | sed 's/^/    memory.used, persistence: /'");
  int rc_apps = std::system(
      "apps=$(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader 2>&1); "
      "echo \"    compute processes: ${apps:-none}\"");
  if (rc_used != 0 || rc_apps != 0) std::printf("    (nvidia-smi not available)\n");
  std::fflush(stdout);
}

void scenario_alive_or_killed(bool kill_first) {
  const uint64_t seed = kill_first ? 2 : 1;
  std::printf("scenario %s: %s\n", kill_first ? "killed" : "alive",
              kill_first ? "exporter SIGKILLed before the import; the importer's CUDA "
                           "context is open throughout"
                         : "import while the exporter still runs (control)");
  int link[2];
  socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, link);
  Child imp = spawn([&](int c) { importer(c, link[1], seed, true); }, {link[0]});
  Child exp = spawn([&](int c) { exporter(c, link[0], seed); }, {link[1], imp.control});
  close(link[0]);
  close(link[1]);
  std::string exported = expect(exp.control, "exporter");
  say(exported);
  say(expect(imp.control, "importer"));
  if (kill_first) {
    kill_exporter(exp);
    sleep(1);
    gpu_snapshot("after the kill, before the import");
  }
  send_line(imp.control, "go");
  std::string result = expect(imp.control, "importer");
  say(result);
  std::printf("RESULT %s: %s\n", kill_first ? "killed" : "alive",
              result.find("CONTENTS INTACT") != std::string::npos ? "memory and contents survived"
                                                                  : "NOT SURVIVED");
  reap(exp);
  reap(imp);
}

void scenario_holder() {
  const uint64_t seed = 3;
  std::printf(
      "scenario holder: exporter SIGKILLed while only a non-CUDA process holds the descriptor; "
      "then a fresh CUDA process imports from the holder\n");
  int link[2], onward[2];
  socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, link);
  socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, onward);
  Child hold = spawn([&](int c) { holder(c, link[1], onward[0]); }, {link[0], onward[1]});
  close(link[1]);
  close(onward[0]);
  Child exp = spawn([&](int c) { exporter(c, link[0], seed); }, {onward[1], hold.control});
  close(link[0]);
  say(expect(exp.control, "exporter"));
  say(expect(hold.control, "holder"));
  kill_exporter(exp);
  sleep(2);
  gpu_snapshot("with no CUDA process alive (the holder keeps the descriptor)");
  Child imp = spawn([&](int c) { importer(c, onward[1], seed, false); }, {hold.control});
  close(onward[1]);
  send_line(hold.control, "pass");
  say(expect(hold.control, "holder"));
  say(expect(imp.control, "importer"));
  send_line(imp.control, "go");
  std::string result = expect(imp.control, "importer");
  say(result);
  std::printf("RESULT holder: %s\n", result.find("CONTENTS INTACT") != std::string::npos
                                         ? "memory and contents survived"
                                         : "NOT SURVIVED");
  reap(hold);
  reap(imp);
  gpu_snapshot("at the end");
}

}  // namespace
}  // namespace probe

int main(int argc, char** argv) {
  if (argc > 1) {
    char* end = nullptr;
    unsigned long mib = std::strtoul(argv[1], &end, 10);
    if (*end != 0 || mib == 0 || mib % 2 != 0) {
      std::fprintf(stderr,
                   "vramswap-vram-handover: SIZE_MIB must be a positive even number "
                   "(the allocation granularity is 2 MiB), not '%s'\n",
                   argv[1]);
      return 2;
    }
    probe::g_bytes = size_t(mib) << 20;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::printf("vram-handover: %zu MiB per allocation, POSIX file descriptor handles\n",
              probe::g_bytes >> 20);
  probe::gpu_snapshot("at the start");
  probe::scenario_alive_or_killed(false);
  probe::scenario_alive_or_killed(true);
  probe::scenario_holder();
  return 0;
}

#ifdef VRAM_HANDOVER_ABI_CHECK
// Last in the file: cuda.h's macros (cuMemcpyHtoD is cuMemcpyHtoD_v2) would
// rename the calls above.
#include <cuda.h>
static_assert(sizeof(probe::CUmemAllocationProp) == sizeof(::CUmemAllocationProp));
static_assert(offsetof(probe::CUmemAllocationProp, location) ==
              offsetof(::CUmemAllocationProp, location));
static_assert(offsetof(probe::CUmemAllocationProp, allocFlags) ==
              offsetof(::CUmemAllocationProp, allocFlags));
static_assert(sizeof(probe::CUmemAccessDesc) == sizeof(::CUmemAccessDesc));
static_assert(int(probe::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) ==
              int(::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
static_assert(int(probe::CU_MEM_ALLOCATION_TYPE_PINNED) == int(::CU_MEM_ALLOCATION_TYPE_PINNED));
static_assert(int(probe::CU_MEM_LOCATION_TYPE_DEVICE) == int(::CU_MEM_LOCATION_TYPE_DEVICE));
static_assert(int(probe::CU_MEM_ACCESS_FLAGS_PROT_READWRITE) ==
              int(::CU_MEM_ACCESS_FLAGS_PROT_READWRITE));
static_assert(int(probe::CU_MEM_ALLOC_GRANULARITY_MINIMUM) ==
              int(::CU_MEM_ALLOC_GRANULARITY_MINIMUM));
#endif
