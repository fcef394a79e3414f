// Parking the export's VRAM in a file descriptor store (store/vram_parking.hpp)
// and finding it again after the daemon died, against the fake driver, with
// a test sink that keeps the descriptors as systemd does.

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "common/byte_size.hpp"
#include "common/fd_store_sink.hpp"
#include "fake_cuda_support.hpp"
#include "store/parking_format.hpp"
#include "store/parking_socket.hpp"
#include "store/vram_parking.hpp"
#include "store/vram_store.hpp"

using namespace vramswap;
using namespace vramswap::store;
using Catch::Matchers::Contains;

namespace {

constexpr uint64_t chunk = 2 * MiB;

// Keeps a duplicate of every stored descriptor under its name, as systemd's
// file descriptor store does, and hands them back as passed descriptors.
class KeepingSink : public FdStoreSink {
 public:
  int store(int fd, std::string_view name) override {
    if (refuse_store) return -EIO;
    kept.push_back({std::string(name), UniqueFd(fcntl(fd, F_DUPFD_CLOEXEC, 0))});
    ++stores;
    return 0;
  }
  int remove(std::string_view name) override {
    if (refuse_remove) return -EIO;
    std::erase_if(kept, [&](const NamedFd& entry) { return entry.name == name; });
    ++removes;
    return 0;
  }
  std::vector<std::string> names() const {
    std::vector<std::string> names;
    for (const NamedFd& entry : kept)
      names.push_back(entry.name);
    std::sort(names.begin(), names.end());
    return names;
  }
  // What the next run gets: duplicates, in the order stored.
  std::vector<NamedFd> passed() const {
    std::vector<NamedFd> passed;
    for (const NamedFd& entry : kept)
      passed.push_back({entry.name, UniqueFd(fcntl(entry.fd.get(), F_DUPFD_CLOEXEC, 0))});
    return passed;
  }
  // The header of the socket kept under `name`, and its descriptors.
  std::pair<parking::Header, std::vector<UniqueFd>> parked(const std::string& name) const {
    for (const NamedFd& entry : kept) {
      if (entry.name != name) continue;
      std::string why;
      auto peeked = parking::peek(entry.fd.get(), parking::max_encoded_bytes, 64, why);
      REQUIRE(peeked);
      auto header = parking::decode(peeked->bytes.data(), peeked->bytes.size(), why);
      REQUIRE(header);
      return {*header, std::move(peeked->fds)};
    }
    FAIL("nothing kept under " << name);
    return {};
  }

  std::vector<NamedFd> kept;
  bool refuse_store = false;
  bool refuse_remove = false;
  int stores = 0;
  int removes = 0;
};

// Forwards what a child stores and removes to the test process (standing in
// for systemd, which outlives the daemon), over a SEQPACKET socket.
class ForwardingSink : public FdStoreSink {
 public:
  explicit ForwardingSink(int socket) : socket_(socket) {}
  int store(int fd, std::string_view name) override { return send("S" + std::string(name), fd); }
  int remove(std::string_view name) override { return send("R" + std::string(name), -1); }

 private:
  int send(const std::string& text, int fd) {
    iovec iov{const_cast<char*>(text.data()), text.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))]{};
    msghdr message{};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    if (fd >= 0) {
      message.msg_control = control;
      message.msg_controllen = sizeof control;
      cmsghdr* header = CMSG_FIRSTHDR(&message);
      header->cmsg_level = SOL_SOCKET;
      header->cmsg_type = SCM_RIGHTS;
      header->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(header), &fd, sizeof fd);
    }
    return sendmsg(socket_, &message, MSG_NOSIGNAL) < 0 ? -errno : 0;
  }
  int socket_;
};

// Applies what a ForwardingSink sent to `sink`, until its end is closed.
void receive_forwarded(int socket, KeepingSink& sink) {
  for (;;) {
    char text[512];
    iovec iov{text, sizeof text};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))]{};
    msghdr message{};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    const ssize_t got = recvmsg(socket, &message, MSG_CMSG_CLOEXEC);
    if (got <= 0) return;
    const std::string name(text + 1, static_cast<size_t>(got) - 1);
    if (text[0] == 'R') {
      (void)sink.remove(name);
      continue;
    }
    const cmsghdr* header = CMSG_FIRSTHDR(&message);
    REQUIRE(header);
    int fd = -1;
    std::memcpy(&fd, CMSG_DATA(header), sizeof fd);
    (void)sink.store(fd, name);
    close(fd);
  }
}

// A fake GPU with room for a few hundred chunks, and its control block.
struct Gpu {
  Gpu() {
    fake.set("VRAMSWAP_FAKE_MEMORY", "1G");
    fake.set("VRAMSWAP_FAKE_CONTROL", dir.file("control"));
  }
  uint64_t allocated() const { return test::ControlBlock(dir.file("control"))->bytes_allocated; }
  test::FakeCuda fake;
  test::TempDir dir;
};

// A fake GPU and a store of `chunks` committed chunks, with a parking over a
// KeepingSink; nothing is parked until the test says.
struct ParkingRig {
  explicit ParkingRig(size_t chunks, uint64_t first_generation = 1)
      : store(context, chunk),
        allocated(store.allocate(chunks * chunk, 0)),
        parking(store, sink, "vram0", first_generation) {}
  Gpu gpu;
  const cuda::Driver driver = cuda::Driver::load();
  cuda::Context context{driver, 0};
  VramStore store;
  uint64_t allocated;
  KeepingSink sink;
  VramParking parking;
};

cuda::CUresult copy(const VramStore& store, size_t index, void* host, bool to_device) {
  const cuda::Driver& driver = store.context().driver();
  cuda::CUstream stream = nullptr;
  if (const auto r = driver.cuStreamCreate(&stream, cuda::CU_STREAM_NON_BLOCKING); r != 0) return r;
  const cuda::CUdeviceptr at = store.base() + index * chunk;
  cuda::CUresult result = to_device ? driver.cuMemcpyHtoDAsync(at, host, chunk, stream)
                                    : driver.cuMemcpyDtoHAsync(host, at, chunk, stream);
  if (result == cuda::CUDA_SUCCESS) result = driver.cuStreamSynchronize(stream);
  (void)driver.cuStreamDestroy(stream);
  return result;
}

std::vector<unsigned char> pattern(size_t index) {
  std::vector<unsigned char> bytes(chunk);
  for (size_t i = 0; i < bytes.size(); i += 4096)
    bytes[i] = static_cast<unsigned char>(index * 7 + i / 4096);
  bytes[chunk - 1] = static_cast<unsigned char>(index);
  return bytes;
}

ino_t inode_of(int fd) {
  struct stat st {};
  REQUIRE(fstat(fd, &st) == 0);
  return st.st_ino;
}

// Every memfd inode this process reaches: its descriptor table and what the
// sink's parking sockets hold in flight.
std::set<ino_t> reachable(const KeepingSink& sink) {
  std::set<ino_t> inodes;
  DIR* dir = opendir("/proc/self/fd");
  REQUIRE(dir);
  while (const dirent* entry = readdir(dir)) {
    struct stat st {};
    if (entry->d_name[0] != '.' && fstatat(dirfd(dir), entry->d_name, &st, 0) == 0 &&
        S_ISREG(st.st_mode)) {
      inodes.insert(st.st_ino);
    }
  }
  closedir(dir);
  for (const NamedFd& entry : sink.kept) {
    for (const UniqueFd& fd : sink.parked(entry.name).second)
      inodes.insert(inode_of(fd.get()));
  }
  return inodes;
}

ino_t chunk_inode(const VramStore& store, size_t index) {
  UniqueFd fd;
  REQUIRE(store.export_chunk(index, fd).ok());
  return inode_of(fd.get());
}

std::vector<uint32_t> indices(std::initializer_list<uint32_t> list) {
  return std::vector<uint32_t>(list);
}

}  // namespace

TEST_CASE("parking: every committed chunk is parked, one socket per group of 64") {
  ParkingRig rig(140);
  REQUIRE(rig.allocated == 140 * chunk);
  VramStore& store = rig.store;
  KeepingSink& sink = rig.sink;
  VramParking& parking = rig.parking;
  CHECK_FALSE(parking.intact());
  std::string why;
  REQUIRE(parking.park_all(why));
  CHECK(parking.intact());
  CHECK(sink.names() == std::vector<std::string>{"vram-0-1", "vram-1-2", "vram-2-3"});
  const auto [header, fds] = sink.parked("vram-2-3");
  CHECK(header.instance == "vram0");
  CHECK(header.chunk_bytes == chunk);
  CHECK(header.group == 2);
  CHECK(header.generation == 3);
  REQUIRE(header.chunks.size() == 12);
  CHECK(header.chunks.front() == 128);
  CHECK(header.chunks.back() == 139);
  REQUIRE(fds.size() == 12);
  CHECK(inode_of(fds[11].get()) == chunk_inode(store, 139));
  CHECK(sink.parked("vram-0-1").first.chunks.size() == 64);
  CHECK(parking.next_generation() == 4);
}

TEST_CASE("parking: the VRAM and its bytes outlive a daemon that died without cleaning up") {
  Gpu gpu;
  KeepingSink systemd;
  int pair[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) == 0);
  UniqueFd listening(pair[0]);
  const std::vector<size_t> written = {0, 63, 64, 139};

  // The daemon: parks, writes, releases one chunk, and dies as kill -9 would
  // leave it (no destructor runs).
  const pid_t daemon = fork();
  if (daemon == 0) {
    int code = 0;
    try {
      close(pair[0]);
      const auto driver = cuda::Driver::load();
      cuda::Context context(driver, 0);
      VramStore store(context, chunk);
      if (store.allocate(140 * chunk, 0) != 140 * chunk) _exit(2);
      ForwardingSink sink(pair[1]);
      auto* parking = new VramParking(store, sink, "vram0");
      std::string why;
      if (!parking->park_all(why)) _exit(3);
      for (const size_t index : written) {
        std::vector<unsigned char> bytes = pattern(index);
        if (copy(store, index, bytes.data(), true) != cuda::CUDA_SUCCESS) _exit(4);
      }
      if (!store.release(5).ok() || !parking->intact()) _exit(5);
      _exit(0);  // here: no destructor may free anything
    } catch (...) {
      code = 6;
    }
    _exit(code);
  }
  close(pair[1]);
  receive_forwarded(listening.get(), systemd);
  int status = 0;
  REQUIRE(waitpid(daemon, &status, 0) == daemon);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  // Group 0 was parked again without chunk 5, and the old one removed.
  CHECK(systemd.names() == std::vector<std::string>{"vram-0-4", "vram-1-2", "vram-2-3"});

  // The restarted daemon.
  const auto driver = cuda::Driver::load();
  cuda::Context context(driver, 0);
  VramStore store(context, chunk);
  store.reserve_released(140 * chunk);
  std::vector<NamedFd> passed = systemd.passed();
  passed.push_back({"state", UniqueFd(memfd_create("state", MFD_CLOEXEC))});
  std::string why;
  auto parked = VramParking::unpark(passed, "vram0", chunk, 140, why);
  REQUIRE(parked);
  INFO(why);
  REQUIRE(passed.size() == 1);
  CHECK(passed[0].name == "state");
  CHECK(parked->highest_generation == 4);
  CHECK(parked->stale.empty());
  CHECK(parked->names == std::vector<std::string>{"vram-0-4", "vram-1-2", "vram-2-3"});
  for (size_t index = 0; index < 140; ++index) {
    REQUIRE(parked->chunks[index].valid() == (index != 5));
    if (index != 5) REQUIRE(store.import_chunk(index, parked->chunks[index].get()).ok());
  }
  CHECK(store.committed_bytes() == 139 * chunk);
  CHECK_FALSE(store.committed(5));
  for (const size_t index : written) {
    std::vector<unsigned char> back(chunk);
    REQUIRE(copy(store, index, back.data(), false) == cuda::CUDA_SUCCESS);
    CHECK(back == pattern(index));
  }

  // Adopting sends nothing for unchanged groups.
  const int stores = systemd.stores;
  const int removes = systemd.removes;
  VramParking parking(store, systemd, "vram0");
  REQUIRE(parking.adopt(std::move(*parked), why));
  CHECK(parking.intact());
  CHECK(systemd.stores == stores);
  CHECK(systemd.removes == removes);
  CHECK(parking.next_generation() == 5);
  // And goes on from there: chunk 5 back, group 0 parked as generation 5.
  REQUIRE(store.commit(5).ok());
  CHECK(systemd.names() == std::vector<std::string>{"vram-0-5", "vram-1-2", "vram-2-3"});
  CHECK(systemd.parked("vram-0-5").first.chunks.size() == 64);
}

TEST_CASE("parking: a released chunk leaves its group and its VRAM is freed") {
  ParkingRig rig(4);
  REQUIRE(rig.allocated == 4 * chunk);
  VramStore& store = rig.store;
  KeepingSink& sink = rig.sink;
  VramParking& parking = rig.parking;
  std::string why;
  REQUIRE(parking.park_all(why));
  const ino_t released = chunk_inode(store, 1);
  CHECK(reachable(sink).count(released) == 1);  // the check below can fail

  REQUIRE(store.release(1).ok());
  CHECK(rig.gpu.allocated() == 3 * chunk);
  CHECK(sink.names() == std::vector<std::string>{"vram-0-2"});
  CHECK(sink.parked("vram-0-2").first.chunks == indices({0, 2, 3}));
  // Nothing reaches its memory any more: not the parking's own descriptors,
  // not the store's parking sockets.
  CHECK(reachable(sink).count(released) == 0);
  CHECK(parking.intact());

  REQUIRE(store.commit(1).ok());
  CHECK(sink.names() == std::vector<std::string>{"vram-0-3"});
  CHECK(sink.parked("vram-0-3").first.chunks == indices({0, 1, 2, 3}));

  // A group with nothing committed is no longer stored at all.
  for (size_t index = 0; index < 4; ++index)
    REQUIRE(store.release(index).ok());
  CHECK(sink.kept.empty());
  CHECK(rig.gpu.allocated() == 0);
  CHECK(parking.intact());
}

TEST_CASE("parking: of two generations of a group, the highest wins and the older is stale") {
  ParkingRig rig(4, 7);
  REQUIRE(rig.allocated == 4 * chunk);
  VramStore& store = rig.store;
  KeepingSink& sink = rig.sink;
  VramParking& parking = rig.parking;
  std::string why;
  REQUIRE(parking.park_all(why));
  // A crash between storing generation 8 and removing 7 leaves both.
  sink.refuse_remove = true;
  {
    test::StderrCapture log;
    REQUIRE(store.release(3).ok());
    CHECK_THAT(log.text(), Contains("removing vram-0-7"));
  }
  CHECK(sink.names() == std::vector<std::string>{"vram-0-7", "vram-0-8"});
  for (const bool newest_first : {false, true}) {
    std::vector<NamedFd> passed = sink.passed();
    if (newest_first) std::reverse(passed.begin(), passed.end());
    auto parked = VramParking::unpark(passed, "vram0", chunk, 4, why);
    REQUIRE(parked);
    CHECK(passed.empty());
    CHECK(parked->names == std::vector<std::string>{"vram-0-8"});
    CHECK(parked->stale == std::vector<std::string>{"vram-0-7"});
    CHECK(parked->highest_generation == 8);
    CHECK(parked->chunks[2].valid());
    CHECK_FALSE(parked->chunks[3].valid());
  }
  // The next change tries the removal again.
  sink.refuse_remove = false;
  REQUIRE(store.release(2).ok());
  CHECK(sink.names() == std::vector<std::string>{"vram-0-9"});
}

TEST_CASE("unpark: refuses VRAM it cannot trust, and leaves the passed descriptors alone") {
  ParkingRig rig(4);
  REQUIRE(rig.allocated == 4 * chunk);
  KeepingSink& sink = rig.sink;
  VramParking& parking = rig.parking;
  std::string why;
  REQUIRE(parking.park_all(why));

  const auto refused = [&](std::vector<NamedFd> passed, std::string_view instance,
                           uint64_t chunk_bytes, size_t chunks) {
    const size_t before = passed.size();
    std::string reason;
    CHECK_FALSE(VramParking::unpark(passed, instance, chunk_bytes, chunks, reason));
    CHECK(passed.size() == before);
    return reason;
  };
  CHECK_THAT(refused(sink.passed(), "vram1", chunk, 4), Contains("instance 'vram0', not 'vram1'"));
  CHECK_THAT(refused(sink.passed(), "vram0", 2 * chunk, 4), Contains("chunks of 2097152 bytes"));
  CHECK_THAT(refused(sink.passed(), "vram0", chunk, 2), Contains("holds chunk 2, outside"));

  UniqueFd memory(memfd_create("chunk", MFD_CLOEXEC));
  const auto crafted = [&](const std::string& name, std::vector<unsigned char> bytes, size_t fds) {
    std::vector<NamedFd> passed;
    std::string reason;
    passed.push_back({name, parking::park(bytes, std::vector<int>(fds, memory.get()), reason)});
    REQUIRE(passed.back().fd);
    return passed;
  };
  const std::vector<unsigned char> two = parking::encode({"vram0", chunk, 0, 9, indices({0, 1})});
  // Sound as crafted: accepted.
  {
    auto passed = crafted("vram-0-9", two, 2);
    CHECK(VramParking::unpark(passed, "vram0", chunk, 4, why));
  }
  CHECK_THAT(refused(crafted("vram-0-9", {two.begin(), two.end() - 3}, 2), "vram0", chunk, 4),
             Contains("does not hold"));
  CHECK_THAT(refused(crafted("vram-0-9", two, 1), "vram0", chunk, 4),
             Contains("announces 2 chunks but carries 1"));
  CHECK_THAT(refused(crafted("vram-0-8", two, 2), "vram0", chunk, 4),
             Contains("not what its name says"));
  CHECK_THAT(
      refused(crafted("vram-0-9", parking::encode({"vram0", chunk, 0, 9, indices({1, 1})}), 2),
              "vram0", chunk, 4),
      Contains("out of order"));
  CHECK_THAT(refused(crafted("vram-0-9", {'n', 'o', 'p', 'e', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                          0,   0,   0,   0,   0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                          0,   0,   0,   0,   0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
                             0),
                     "vram0", chunk, 4),
             Contains("magic"));
  CHECK_THAT(refused(crafted("vram-x", two, 2), "vram0", chunk, 4), Contains("malformed name"));
  CHECK_THAT(refused(crafted("vram-1-9", two, 2), "vram0", chunk, 4), Contains("beyond"));
}

TEST_CASE("parking: a store that cannot export, or a sink that refuses, is reported") {
  Gpu gpu;
  SECTION("the driver cannot export") {
    gpu.fake.set("VRAMSWAP_FAKE_NO_SHAREABLE", "1");
    const auto driver = cuda::Driver::load();
    cuda::Context context(driver, 0);
    VramStore store(context, chunk);
    test::StderrCapture log;
    REQUIRE(store.allocate(4 * chunk, 0) == 4 * chunk);
    CHECK_FALSE(store.exportable());
    UniqueFd fd;
    CHECK(store.export_chunk(0, fd) == cuda::CUDA_ERROR_INVALID_VALUE);
    KeepingSink sink;
    VramParking parking(store, sink, "vram0");
    std::string why;
    CHECK_FALSE(parking.park_all(why));
    CHECK_THAT(why, Contains("cannot export VRAM as file descriptors"));
    CHECK(sink.kept.empty());
    CHECK_FALSE(parking.intact());
  }
  SECTION("the sink refuses, then takes it again") {
    const auto driver = cuda::Driver::load();
    cuda::Context context(driver, 0);
    VramStore store(context, chunk);
    REQUIRE(store.allocate(4 * chunk, 0) == 4 * chunk);
    CHECK(store.exportable());
    KeepingSink sink;
    VramParking parking(store, sink, "vram0");
    std::string why;
    sink.refuse_store = true;
    CHECK_FALSE(parking.park_all(why));
    CHECK_THAT(why, Contains("storing vram-0-1 in the file descriptor store failed"));
    sink.refuse_store = false;
    REQUIRE(parking.park_all(why));
    CHECK(parking.intact());
    // A hook's failure: logged, remembered, and over at the next success.
    sink.refuse_store = true;
    {
      test::StderrCapture log;
      REQUIRE(store.release(0).ok());
      CHECK_THAT(log.text(), Contains("VRAM chunk group 0 cannot be parked"));
    }
    CHECK_FALSE(parking.intact());
    sink.refuse_store = false;
    REQUIRE(store.commit(0).ok());
    CHECK(parking.intact());
    CHECK(sink.names() == std::vector<std::string>{"vram-0-4"});
    CHECK(sink.parked("vram-0-4").first.chunks == indices({0, 1, 2, 3}));
  }
}

TEST_CASE("parking: discard removes everything, and the VRAM goes with the store") {
  Gpu gpu;
  const auto driver = cuda::Driver::load();
  cuda::Context context(driver, 0);
  KeepingSink sink;
  ino_t inode = 0;
  {
    VramStore store(context, chunk);
    REQUIRE(store.allocate(4 * chunk, 0) == 4 * chunk);
    VramParking parking(store, sink, "vram0");
    std::string why;
    REQUIRE(parking.park_all(why));
    inode = chunk_inode(store, 0);
    parking.discard();
    CHECK(sink.kept.empty());
    CHECK_FALSE(parking.intact());
  }
  CHECK(gpu.allocated() == 0);
  CHECK(reachable(sink).count(inode) == 0);
}
