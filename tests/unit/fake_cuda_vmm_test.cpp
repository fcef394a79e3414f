// The fake driver's virtual-memory calls: they validate like the driver,
// count against the fake GPU's memory, and an exported handle reaches the
// same bytes from another process, after its exporter is gone.

#include <catch2/catch.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "common/byte_size.hpp"
#include "cuda/context.hpp"
#include "cuda/driver.hpp"
#include "fake_cuda_support.hpp"

using namespace vramswap;
using namespace vramswap::cuda;

namespace {

constexpr uint64_t page = 2 * MiB;

CUmemAllocationProp device_memory(bool exportable) {
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.requestedHandleTypes =
      exportable ? CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR : CU_MEM_HANDLE_TYPE_NONE;
  prop.location = {CU_MEM_LOCATION_TYPE_DEVICE, 0};
  return prop;
}

const CUmemAccessDesc read_write{{CU_MEM_LOCATION_TYPE_DEVICE, 0},
                                 CU_MEM_ACCESS_FLAGS_PROT_READWRITE};

// Copies `length` bytes between host and device on a stream of its own.
CUresult copy(const Driver& driver, CUdeviceptr device, void* host, size_t length, bool to_device) {
  CUstream stream = nullptr;
  if (const CUresult r = driver.cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING); r != 0) return r;
  CUresult result = to_device ? driver.cuMemcpyHtoDAsync(device, host, length, stream)
                              : driver.cuMemcpyDtoHAsync(host, device, length, stream);
  if (result == CUDA_SUCCESS) result = driver.cuStreamSynchronize(stream);
  (void)driver.cuStreamDestroy(stream);
  return result;
}

// Maps `handle` at a fresh reserved range, read/write; 0 on failure.
CUdeviceptr map_fresh(const Driver& driver, CUmemGenericAllocationHandle handle, size_t bytes) {
  CUdeviceptr base = 0;
  if (driver.cuMemAddressReserve(&base, bytes, 0, 0, 0) != CUDA_SUCCESS) return 0;
  if (driver.cuMemMap(base, bytes, 0, handle, 0) != CUDA_SUCCESS) return 0;
  if (driver.cuMemSetAccess(base, bytes, &read_write, 1) != CUDA_SUCCESS) return 0;
  return base;
}

void send_fd(int socket_fd, int fd) {
  char byte = 'h';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))]{};
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  cmsghdr* header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(header), &fd, sizeof fd);
  (void)sendmsg(socket_fd, &message, MSG_NOSIGNAL);
}

// The descriptor passed on `socket_fd`, or -1 after 30 s.
int receive_fd(int socket_fd) {
  pollfd ready{socket_fd, POLLIN, 0};
  if (poll(&ready, 1, 30'000) != 1) return -1;
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))]{};
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  if (recvmsg(socket_fd, &message, MSG_CMSG_CLOEXEC) != 1) return -1;
  cmsghdr* header = CMSG_FIRSTHDR(&message);
  if (!header || header->cmsg_type != SCM_RIGHTS) return -1;
  int fd = -1;
  std::memcpy(&fd, CMSG_DATA(header), sizeof fd);
  return fd;
}

// The child's exit status, or -1 if it did not exit within 30 s (then killed).
int wait_exit(pid_t child) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  int status = 0;
  while (waitpid(child, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(child, SIGKILL);
      waitpid(child, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Runs `body` in a child process; its return value is the exit status.
template <class Body>
pid_t run_child(Body body) {
  const pid_t child = fork();
  if (child == 0) {
    int code = 99;
    try {
      code = body();
    } catch (...) {
      code = 98;
    }
    _exit(code);
  }
  return child;
}

std::vector<unsigned char> pattern(unsigned char seed) {
  std::vector<unsigned char> bytes(page);
  for (size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<unsigned char>(i * 7 + seed);
  return bytes;
}

}  // namespace

TEST_CASE("fake: virtual-memory calls validate their arguments like the driver") {
  test::FakeCuda fake;
  test::TempDir dir;
  fake.set("VRAMSWAP_FAKE_CONTROL", dir.file("control"));
  const Driver driver = Driver::load();
  Context context(driver, 0);
  test::ControlBlock control(dir.file("control"));
  const CUmemAllocationProp prop = device_memory(true);

  size_t granularity = 0;
  REQUIRE(driver.cuMemGetAllocationGranularity(&granularity, &prop,
                                               CU_MEM_ALLOC_GRANULARITY_MINIMUM) == CUDA_SUCCESS);
  CHECK(granularity == page);

  CUmemGenericAllocationHandle handle = 0;
  CHECK(driver.cuMemCreate(&handle, MiB, &prop, 0) == CUDA_ERROR_INVALID_VALUE);  // not a page
  REQUIRE(driver.cuMemCreate(&handle, 2 * page, &prop, 0) == CUDA_SUCCESS);
  CHECK(control->bytes_allocated.load() == 2 * page);
  CHECK(control->creates.load() == 1);  // calls with valid arguments

  CUdeviceptr base = 0;
  REQUIRE(driver.cuMemAddressReserve(&base, 4 * page, 0, 0, 0) == CUDA_SUCCESS);
  CHECK(driver.cuMemMap(base + 4096, 2 * page, 0, handle, 0) == CUDA_ERROR_INVALID_VALUE);
  CHECK(driver.cuMemMap(base + 3 * page, 2 * page, 0, handle, 0) == CUDA_ERROR_INVALID_VALUE);
  CHECK(driver.cuMemMap(base, 2 * page, 0, handle + 100, 0) == CUDA_ERROR_INVALID_HANDLE);
  REQUIRE(driver.cuMemMap(base + page, 2 * page, 0, handle, 0) == CUDA_SUCCESS);
  CHECK(driver.cuMemMap(base, 2 * page, 0, handle, 0) == CUDA_ERROR_INVALID_VALUE);  // overlaps

  // Mapped but not yet accessible: copies are refused.
  std::vector<unsigned char> bytes = pattern(3);
  CHECK(copy(driver, base + page, bytes.data(), 4096, true) == CUDA_ERROR_INVALID_VALUE);
  CHECK(driver.cuMemSetAccess(base, 2 * page, &read_write, 1) == CUDA_ERROR_INVALID_VALUE);
  REQUIRE(driver.cuMemSetAccess(base + page, 2 * page, &read_write, 1) == CUDA_SUCCESS);
  REQUIRE(copy(driver, base + page, bytes.data(), page, true) == CUDA_SUCCESS);
  // A range running off the mapping is refused whole.
  CHECK(copy(driver, base + 3 * page - 4096, bytes.data(), 8192, true) == CUDA_ERROR_INVALID_VALUE);

  // Releasing the handle while mapped keeps the memory until the unmap.
  REQUIRE(driver.cuMemRelease(handle) == CUDA_SUCCESS);
  CHECK(control->bytes_allocated.load() == 2 * page);
  std::vector<unsigned char> back(page);
  REQUIRE(copy(driver, base + page, back.data(), page, false) == CUDA_SUCCESS);
  CHECK(back == bytes);
  CHECK(driver.cuMemAddressFree(base, 4 * page) == CUDA_ERROR_INVALID_VALUE);  // still mapped
  CHECK(driver.cuMemUnmap(base + page, page) == CUDA_ERROR_INVALID_VALUE);     // half a mapping
  REQUIRE(driver.cuMemUnmap(base + page, 2 * page) == CUDA_SUCCESS);
  CHECK(control->bytes_allocated.load() == 0);
  CHECK(copy(driver, base + page, back.data(), 4096, false) == CUDA_ERROR_INVALID_VALUE);
  CHECK(driver.cuMemAddressFree(base, 2 * page) == CUDA_ERROR_INVALID_VALUE);  // not its size
  CHECK(driver.cuMemAddressFree(base, 4 * page) == CUDA_SUCCESS);
}

TEST_CASE("fake: cuMemCreate counts against the GPU's memory and its refusal controls") {
  test::FakeCuda fake;
  test::TempDir dir;
  fake.set("VRAMSWAP_FAKE_MEMORY", "64M");
  fake.set("VRAMSWAP_FAKE_RESERVED", "16M");
  fake.set("VRAMSWAP_FAKE_ALLOC_FAIL_ABOVE", "40M");
  fake.set("VRAMSWAP_FAKE_CONTROL", dir.file("control"));
  const Driver driver = Driver::load();
  Context context(driver, 0);
  test::ControlBlock control(dir.file("control"));
  const CUmemAllocationProp prop = device_memory(false);
  std::vector<CUmemGenericAllocationHandle> handles(20);
  for (size_t i = 0; i < 20; ++i)
    REQUIRE(driver.cuMemCreate(&handles[i], page, &prop, 0) == 0);
  CHECK(context.memory_info().free_bytes == 48 * MiB - 40 * MiB);
  CUmemGenericAllocationHandle more = 0;
  CHECK(driver.cuMemCreate(&more, page, &prop, 0) == CUDA_ERROR_OUT_OF_MEMORY);  // the limit
  REQUIRE(driver.cuMemRelease(handles[0]) == CUDA_SUCCESS);
  CHECK(context.memory_info().free_bytes == 48 * MiB - 38 * MiB);
  // The control block refuses the Nth call.
  control->fail_create_at.store(control->creates.load() + 1);
  CHECK(driver.cuMemCreate(&handles[0], page, &prop, 0) == CUDA_ERROR_OUT_OF_MEMORY);
  REQUIRE(driver.cuMemCreate(&handles[0], page, &prop, 0) == CUDA_SUCCESS);
  // Not created exportable: no descriptor.
  int fd = -1;
  CHECK(driver.cuMemExportToShareableHandle(&fd, handles[0],
                                            CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
                                            0) == CUDA_ERROR_INVALID_VALUE);
  for (const CUmemGenericAllocationHandle handle : handles) {
    REQUIRE(driver.cuMemRelease(handle) == CUDA_SUCCESS);
  }
  CHECK(control->bytes_allocated.load() == 0);
}

TEST_CASE("fake: another program taking VRAM lowers free memory and refuses what no longer fits") {
  test::FakeCuda fake;
  test::TempDir dir;
  fake.set("VRAMSWAP_FAKE_MEMORY", "64M");
  fake.set("VRAMSWAP_FAKE_RESERVED", "16M");
  fake.set("VRAMSWAP_FAKE_CONTROL", dir.file("control"));
  const Driver driver = Driver::load();
  Context context(driver, 0);
  test::ControlBlock control(dir.file("control"));
  const CUmemAllocationProp prop = device_memory(false);
  std::vector<CUmemGenericAllocationHandle> handles(4);
  for (auto& handle : handles)
    REQUIRE(driver.cuMemCreate(&handle, page, &prop, 0) == CUDA_SUCCESS);
  CHECK(context.memory_info().free_bytes == 40 * MiB);

  control->other_program_bytes.store(36 * MiB);  // leaves room for two more pages
  CHECK(context.memory_info().free_bytes == 4 * MiB);
  CUmemGenericAllocationHandle more[3] = {};
  REQUIRE(driver.cuMemCreate(&more[0], page, &prop, 0) == CUDA_SUCCESS);
  REQUIRE(driver.cuMemCreate(&more[1], page, &prop, 0) == CUDA_SUCCESS);
  CHECK(driver.cuMemCreate(&more[2], page, &prop, 0) == CUDA_ERROR_OUT_OF_MEMORY);
  CUdeviceptr plain = 0;
  CHECK(driver.cuMemAlloc(&plain, 4096) == CUDA_ERROR_OUT_OF_MEMORY);
  CHECK(context.memory_info().free_bytes == 0);

  // Taking more than is left keeps what we hold; free reads 0, not a wrap.
  control->other_program_bytes.store(64 * MiB);
  CHECK(context.memory_info().free_bytes == 0);
  REQUIRE(driver.cuMemRelease(more[0]) == CUDA_SUCCESS);
  CHECK(context.memory_info().free_bytes == 0);

  // The other program exits: the memory is ours again.
  control->other_program_bytes.store(0);
  CHECK(context.memory_info().free_bytes == 48 * MiB - 10 * MiB);
  REQUIRE(driver.cuMemCreate(&more[2], page, &prop, 0) == CUDA_SUCCESS);
  for (const auto handle : {handles[0], handles[1], handles[2], handles[3], more[1], more[2]})
    REQUIRE(driver.cuMemRelease(handle) == CUDA_SUCCESS);
  CHECK(control->bytes_allocated.load() == 0);
}

// A GPU reset or the daemon starting over: the primary context's last
// release frees everything in it, and retaining it again gives a working
// context with all the memory free.
TEST_CASE("fake: a context released and retained again starts with its memory free") {
  test::FakeCuda fake;
  test::TempDir dir;
  fake.set("VRAMSWAP_FAKE_MEMORY", "64M");
  fake.set("VRAMSWAP_FAKE_RESERVED", "16M");
  fake.set("VRAMSWAP_FAKE_CONTROL", dir.file("control"));
  const Driver driver = Driver::load();
  test::ControlBlock control(dir.file("control"));
  const CUmemAllocationProp prop = device_memory(false);
  {
    Context context(driver, 0);
    CUmemGenericAllocationHandle handle = 0;
    REQUIRE(driver.cuMemCreate(&handle, 8 * page, &prop, 0) == CUDA_SUCCESS);
    CHECK(context.memory_info().free_bytes == 48 * MiB - 16 * MiB);
    // The handle is left for the context's release to free.
  }
  CHECK(control->bytes_allocated.load() == 0);
  CUmemGenericAllocationHandle stale = 0;
  CHECK(driver.cuMemCreate(&stale, page, &prop, 0) == CUDA_ERROR_INVALID_CONTEXT);

  Context again(driver, 0);
  CHECK(again.memory_info().free_bytes == 48 * MiB);
  CUmemGenericAllocationHandle handle = 0;
  REQUIRE(driver.cuMemCreate(&handle, 8 * page, &prop, 0) == CUDA_SUCCESS);
  CHECK(again.memory_info().free_bytes == 48 * MiB - 16 * MiB);
  REQUIRE(driver.cuMemRelease(handle) == CUDA_SUCCESS);
}

// What a live restart relies on: the exporter writes and exits, a process
// that never loads the driver holds the descriptor (systemd's file
// descriptor store), and a fresh process imports it and finds the bytes.
TEST_CASE(
    "fake: an exported handle reaches the same bytes from another process, after its "
    "exporter exited") {
  test::FakeCuda fake;
  int sockets[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sockets) == 0);

  // This process never loads the driver: each child starts from nothing.
  const pid_t exporter = run_child([&] {
    const Driver driver = Driver::load();
    Context context(driver, 0);
    const CUmemAllocationProp prop = device_memory(true);
    CUmemGenericAllocationHandle handle = 0;
    if (driver.cuMemCreate(&handle, page, &prop, 0) != CUDA_SUCCESS) return 1;
    const CUdeviceptr base = map_fresh(driver, handle, page);
    if (base == 0) return 2;
    std::vector<unsigned char> bytes = pattern(1);
    if (copy(driver, base, bytes.data(), page, true) != CUDA_SUCCESS) return 3;
    int fd = -1;
    if (driver.cuMemExportToShareableHandle(&fd, handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
                                            0) != CUDA_SUCCESS) {
      return 4;
    }
    send_fd(sockets[1], fd);
    return 0;  // exits holding its handle and mapping: the process's end frees them
  });
  REQUIRE(exporter > 0);
  const int held = receive_fd(sockets[0]);
  CHECK(wait_exit(exporter) == 0);
  REQUIRE(held >= 0);
  struct stat st {};
  REQUIRE(fstat(held, &st) == 0);
  CHECK(static_cast<uint64_t>(st.st_size) == page);

  const pid_t importer = run_child([&] {
    const Driver driver = Driver::load();
    Context context(driver, 0);
    CUmemGenericAllocationHandle handle = 0;
    if (driver.cuMemImportFromShareableHandle(&handle, reinterpret_cast<void*>(intptr_t{held}),
                                              CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) !=
        CUDA_SUCCESS) {
      return 11;
    }
    const CUdeviceptr base = map_fresh(driver, handle, page);
    if (base == 0) return 12;
    std::vector<unsigned char> back(page);
    if (copy(driver, base, back.data(), page, false) != CUDA_SUCCESS) return 13;
    if (back != pattern(1)) return 14;
    std::vector<unsigned char> next = pattern(2);
    if (copy(driver, base, next.data(), page, true) != CUDA_SUCCESS) return 15;
    return 0;
  });
  REQUIRE(importer > 0);
  CHECK(wait_exit(importer) == 0);  // 11..15: the step that failed

  // The importer's write is in the memory the holder's descriptor keeps.
  std::vector<unsigned char> seen(page);
  REQUIRE(pread(held, seen.data(), seen.size(), 0) == static_cast<ssize_t>(page));
  CHECK(seen == pattern(2));
  close(held);
  close(sockets[0]);
  close(sockets[1]);
}

TEST_CASE("fake: importing a descriptor that is not an exported allocation is refused") {
  test::FakeCuda fake;
  const Driver driver = Driver::load();
  Context context(driver, 0);
  int pipe_fds[2];
  REQUIRE(pipe(pipe_fds) == 0);
  CUmemGenericAllocationHandle handle = 0;
  CHECK(driver.cuMemImportFromShareableHandle(
            &handle, reinterpret_cast<void*>(intptr_t{pipe_fds[0]}),
            CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) == CUDA_ERROR_INVALID_VALUE);
  CHECK(driver.cuMemImportFromShareableHandle(&handle, reinterpret_cast<void*>(intptr_t{-1}),
                                              CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) ==
        CUDA_ERROR_INVALID_VALUE);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
}
