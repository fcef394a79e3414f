#include "kernel/nbd_netlink.hpp"

#include <arpa/inet.h>
#include <endian.h>
#include <linux/genetlink.h>
#include <linux/nbd-netlink.h>
#include <linux/nbd.h>
#include <netlink/attr.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/utsname.h>

#include <array>
#include <catch2/catch.hpp>
#include <cstring>
#include <thread>

#include "common/byte_size.hpp"
#include "common/startup_error.hpp"
#include "kernel/block_device.hpp"
#include "kernel/genl_transaction.hpp"
#include "kernel/swaps.hpp"
#include "kernel_test_support.hpp"

using namespace vramswap;
using namespace vramswap::kernel;
using vramswap::test::TempDir;

namespace {

constexpr int kFamily = 0x1d;  // any id: building needs no kernel

// The policies of drivers/block/nbd.c (nbd_attr_policy, nbd_sock_policy,
// nbd_device_policy), written out independently of the code under test.
std::array<nla_policy, NBD_ATTR_MAX + 1> kernel_attr_policy() {
  std::array<nla_policy, NBD_ATTR_MAX + 1> policy{};
  policy[NBD_ATTR_INDEX].type = NLA_U32;
  policy[NBD_ATTR_SIZE_BYTES].type = NLA_U64;
  policy[NBD_ATTR_BLOCK_SIZE_BYTES].type = NLA_U64;
  policy[NBD_ATTR_TIMEOUT].type = NLA_U64;
  policy[NBD_ATTR_SERVER_FLAGS].type = NLA_U64;
  policy[NBD_ATTR_CLIENT_FLAGS].type = NLA_U64;
  policy[NBD_ATTR_SOCKETS].type = NLA_NESTED;
  policy[NBD_ATTR_DEAD_CONN_TIMEOUT].type = NLA_U64;
  policy[NBD_ATTR_DEVICE_LIST].type = NLA_NESTED;
  policy[NBD_ATTR_BACKEND_IDENTIFIER].type = NLA_STRING;
  return policy;
}

struct Parsed {
  NlMessage message;  // the attributes point into it
  uint16_t family = 0;
  uint8_t command = 0;
  uint8_t version = 0;
  std::array<nlattr*, NBD_ATTR_MAX + 1> attrs{};
};

Parsed parse(NlMessage message) {
  Parsed parsed;
  parsed.message = std::move(message);
  nlmsghdr* header = nlmsg_hdr(parsed.message.get());
  parsed.family = header->nlmsg_type;
  auto* genl = static_cast<genlmsghdr*>(nlmsg_data(header));
  parsed.command = genl->cmd;
  parsed.version = genl->version;
  auto policy = kernel_attr_policy();
  REQUIRE(genlmsg_parse(header, 0, parsed.attrs.data(), NBD_ATTR_MAX, policy.data()) == 0);
  return parsed;
}

// The fds in NBD_ATTR_SOCKETS, in order, checked the way nbd_genl_connect
// walks them: every element an NBD_SOCK_ITEM holding an NBD_SOCK_FD.
std::vector<int> socket_list(nlattr* sockets) {
  std::vector<int> fds;
  REQUIRE(sockets != nullptr);
  std::array<nla_policy, NBD_SOCK_MAX + 1> policy{};
  policy[NBD_SOCK_FD].type = NLA_U32;
  nlattr* item;
  int remaining;
  nla_for_each_nested(item, sockets, remaining) {
    REQUIRE(nla_type(item) == NBD_SOCK_ITEM);
    std::array<nlattr*, NBD_SOCK_MAX + 1> fields{};
    REQUIRE(nla_parse_nested(fields.data(), NBD_SOCK_MAX, item, policy.data()) == 0);
    REQUIRE(fields[NBD_SOCK_FD] != nullptr);
    fds.push_back(static_cast<int>(nla_get_u32(fields[NBD_SOCK_FD])));
  }
  return fds;
}

std::string error_of(const std::function<void()>& action, int* exit_status = nullptr) {
  try {
    action();
  } catch (const StartupError& error) {
    if (exit_status) *exit_status = error.exit_status();
    return error.what();
  }
  return "(no error)";
}

NlMessage kernel_style_reply(uint8_t command) {
  NlMessage reply(nlmsg_alloc());
  REQUIRE(genlmsg_put(reply.get(), 0, 1, kFamily, 0, 0, command, NBD_GENL_VERSION) != nullptr);
  return reply;
}

// The kernel has an nbd driver when /sys/module/nbd exists: it does for the
// loaded module and, as nbd has parameters, for a built-in driver too.
bool kernel_has_nbd() {
  struct stat st {};
  return ::stat("/sys/module/nbd", &st) == 0;
}

std::string kernel_release() {
  utsname names{};
  ::uname(&names);
  return names.release;
}

}  // namespace

TEST_CASE("NBD_CMD_CONNECT carries every setting, one socket, kernel picks the index") {
  NbdConnectParams params;
  params.socket_fds = {7};
  params.size_bytes = 16 * GiB;
  params.server_flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_TRIM;
  params.timeout_seconds = 0;
  params.backend_identifier = "vramswap/gpu0";

  Parsed parsed = parse(build_nbd_connect_message(kFamily, params));
  CHECK(parsed.family == kFamily);
  CHECK(parsed.command == NBD_CMD_CONNECT);
  CHECK(parsed.version == NBD_GENL_VERSION);

  CHECK(socket_list(parsed.attrs[NBD_ATTR_SOCKETS]) == std::vector<int>{7});
  REQUIRE(parsed.attrs[NBD_ATTR_SIZE_BYTES]);
  CHECK(nla_get_u64(parsed.attrs[NBD_ATTR_SIZE_BYTES]) == 16 * GiB);
  REQUIRE(parsed.attrs[NBD_ATTR_BLOCK_SIZE_BYTES]);
  CHECK(nla_get_u64(parsed.attrs[NBD_ATTR_BLOCK_SIZE_BYTES]) == 4096);
  REQUIRE(parsed.attrs[NBD_ATTR_SERVER_FLAGS]);
  CHECK(nla_get_u64(parsed.attrs[NBD_ATTR_SERVER_FLAGS]) ==
        (NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_TRIM));
  REQUIRE(parsed.attrs[NBD_ATTR_TIMEOUT]);
  CHECK(nla_get_u64(parsed.attrs[NBD_ATTR_TIMEOUT]) == 0);
  REQUIRE(parsed.attrs[NBD_ATTR_CLIENT_FLAGS]);
  CHECK(nla_get_u64(parsed.attrs[NBD_ATTR_CLIENT_FLAGS]) == NBD_CFLAG_DESTROY_ON_DISCONNECT);
  REQUIRE(parsed.attrs[NBD_ATTR_BACKEND_IDENTIFIER]);
  CHECK(std::string(nla_get_string(parsed.attrs[NBD_ATTR_BACKEND_IDENTIFIER])) == "vramswap/gpu0");

  CHECK(parsed.attrs[NBD_ATTR_INDEX] == nullptr);
  CHECK(parsed.attrs[NBD_ATTR_DEAD_CONN_TIMEOUT] == nullptr);
  CHECK(parsed.attrs[NBD_ATTR_DEVICE_LIST] == nullptr);
}

TEST_CASE("NBD_CMD_CONNECT with several sockets in order, a fixed index and timeouts") {
  NbdConnectParams params;
  params.socket_fds = {12, 5, 30, 9};
  params.size_bytes = 512 * MiB;
  params.block_size = 512;
  params.server_flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_CAN_MULTI_CONN;
  params.timeout_seconds = 30;
  params.dead_connection_timeout_seconds = 10;
  params.destroy_on_disconnect = false;
  params.index = 5;

  Parsed parsed = parse(build_nbd_connect_message(kFamily, params));
  CHECK(socket_list(parsed.attrs[NBD_ATTR_SOCKETS]) == std::vector<int>{12, 5, 30, 9});
  REQUIRE(parsed.attrs[NBD_ATTR_INDEX]);
  CHECK(nla_get_u32(parsed.attrs[NBD_ATTR_INDEX]) == 5);
  CHECK(nla_get_u64(parsed.attrs[NBD_ATTR_SIZE_BYTES]) == 512 * MiB);
  CHECK(nla_get_u64(parsed.attrs[NBD_ATTR_BLOCK_SIZE_BYTES]) == 512);
  CHECK(nla_get_u64(parsed.attrs[NBD_ATTR_TIMEOUT]) == 30);
  REQUIRE(parsed.attrs[NBD_ATTR_DEAD_CONN_TIMEOUT]);
  CHECK(nla_get_u64(parsed.attrs[NBD_ATTR_DEAD_CONN_TIMEOUT]) == 10);
  // Sent as 0 so that the kernel clears a flag left by an earlier connect.
  REQUIRE(parsed.attrs[NBD_ATTR_CLIENT_FLAGS]);
  CHECK(nla_get_u64(parsed.attrs[NBD_ATTR_CLIENT_FLAGS]) == 0);
  CHECK(parsed.attrs[NBD_ATTR_BACKEND_IDENTIFIER] == nullptr);

  params.index = 0;  // index 0 is a real index, not "none"
  parsed = parse(build_nbd_connect_message(kFamily, params));
  REQUIRE(parsed.attrs[NBD_ATTR_INDEX]);
  CHECK(nla_get_u32(parsed.attrs[NBD_ATTR_INDEX]) == 0);
}

TEST_CASE("NBD_CMD_CONNECT refuses settings the kernel would reject") {
  NbdConnectParams good;
  good.socket_fds = {3};
  good.size_bytes = 64 * MiB;
  good.server_flags = NBD_FLAG_HAS_FLAGS;
  REQUIRE_NOTHROW(build_nbd_connect_message(kFamily, good));

  auto refused = [&](NbdConnectParams params, const char* why) {
    INFO(why);
    int status = 0;
    std::string message = error_of([&] { build_nbd_connect_message(kFamily, params); }, &status);
    CHECK_THAT(message, Catch::StartsWith("invalid nbd configuration: "));
    CHECK(status == exit_code::software);
  };
  NbdConnectParams p = good;
  p.socket_fds.clear();
  refused(p, "no socket");
  p = good;
  p.socket_fds = {-1};
  refused(p, "negative fd");
  p = good;
  p.size_bytes = 0;
  refused(p, "zero size");
  p = good;
  p.size_bytes = 64 * MiB + 512;
  refused(p, "size not a multiple of the block size");
  p = good;
  p.block_size = 1000;
  refused(p, "block size not a power of two");
  p = good;
  p.block_size = 256;
  refused(p, "block size below 512");
  p = good;
  p.socket_fds = {3, 4};
  refused(p, "two sockets without NBD_FLAG_CAN_MULTI_CONN");
}

TEST_CASE("NBD_CMD_DISCONNECT, NBD_CMD_STATUS and NBD_CMD_RECONFIGURE messages") {
  Parsed parsed = parse(build_nbd_disconnect_message(kFamily, 3));
  CHECK(parsed.command == NBD_CMD_DISCONNECT);
  REQUIRE(parsed.attrs[NBD_ATTR_INDEX]);
  CHECK(nla_get_u32(parsed.attrs[NBD_ATTR_INDEX]) == 3);
  CHECK(parsed.attrs[NBD_ATTR_SOCKETS] == nullptr);

  parsed = parse(build_nbd_status_message(kFamily, 9));
  CHECK(parsed.command == NBD_CMD_STATUS);
  REQUIRE(parsed.attrs[NBD_ATTR_INDEX]);
  CHECK(nla_get_u32(parsed.attrs[NBD_ATTR_INDEX]) == 9);

  parsed = parse(build_nbd_status_message(kFamily, std::nullopt));
  CHECK(parsed.command == NBD_CMD_STATUS);
  CHECK(parsed.attrs[NBD_ATTR_INDEX] == nullptr);

  std::vector<int> fds{21, 22};
  parsed = parse(build_nbd_reconfigure_message(kFamily, 2, fds, "vramswap/gpu1"));
  CHECK(parsed.command == NBD_CMD_RECONFIGURE);
  CHECK(nla_get_u32(parsed.attrs[NBD_ATTR_INDEX]) == 2);
  CHECK(socket_list(parsed.attrs[NBD_ATTR_SOCKETS]) == fds);
  REQUIRE(parsed.attrs[NBD_ATTR_BACKEND_IDENTIFIER]);
  CHECK(std::string(nla_get_string(parsed.attrs[NBD_ATTR_BACKEND_IDENTIFIER])) == "vramswap/gpu1");
  CHECK(parsed.attrs[NBD_ATTR_SIZE_BYTES] == nullptr);
}

TEST_CASE("the kernel's CONNECT and STATUS replies are read back") {
  // nbd_connect_reply: NBD_CMD_CONNECT with NBD_ATTR_INDEX.
  NlMessage reply = kernel_style_reply(NBD_CMD_CONNECT);
  REQUIRE(nla_put_u32(reply.get(), NBD_ATTR_INDEX, 3) == 0);
  CHECK(parse_nbd_connect_reply(nlmsg_hdr(reply.get())) == 3u);
  CHECK_FALSE(parse_nbd_connect_reply(nlmsg_hdr(kernel_style_reply(NBD_CMD_CONNECT).get())));
  NlMessage other = kernel_style_reply(NBD_CMD_STATUS);
  REQUIRE(nla_put_u32(other.get(), NBD_ATTR_INDEX, 3) == 0);
  CHECK_FALSE(parse_nbd_connect_reply(nlmsg_hdr(other.get())));

  // nbd_genl_status: DEVICE_LIST { DEVICE_ITEM { INDEX, CONNECTED } ... }.
  NlMessage status = kernel_style_reply(NBD_CMD_STATUS);
  nlattr* list = nla_nest_start(status.get(), NBD_ATTR_DEVICE_LIST);
  for (auto [index, connected] : {std::pair{0u, 1}, std::pair{4u, 0}, std::pair{17u, 1}}) {
    nlattr* item = nla_nest_start(status.get(), NBD_DEVICE_ITEM);
    REQUIRE(nla_put_u32(status.get(), NBD_DEVICE_INDEX, index) == 0);
    REQUIRE(nla_put_u8(status.get(), NBD_DEVICE_CONNECTED, static_cast<uint8_t>(connected)) == 0);
    nla_nest_end(status.get(), item);
  }
  nla_nest_end(status.get(), list);
  std::vector<NbdDeviceStatus> devices = parse_nbd_status_reply(nlmsg_hdr(status.get()));
  REQUIRE(devices.size() == 3);
  CHECK(devices[0].index == 0);
  CHECK(devices[0].connected);
  CHECK(devices[1].index == 4);
  CHECK_FALSE(devices[1].connected);
  CHECK(devices[2].index == 17);
  CHECK(devices[2].connected);

  // Asking for an index the kernel does not have: an empty list.
  NlMessage empty = kernel_style_reply(NBD_CMD_STATUS);
  nla_nest_end(empty.get(), nla_nest_start(empty.get(), NBD_ATTR_DEVICE_LIST));
  CHECK(parse_nbd_status_reply(nlmsg_hdr(empty.get())).empty());
}

TEST_CASE("a generic netlink round trip returns the reply and the kernel's exact errno") {
  // The nbd family is missing on some machines; the controller family every
  // kernel has exercises the same send / reply / ack / error path for real.
  std::unique_ptr<nl_sock, void (*)(nl_sock*)> socket(nl_socket_alloc(), nl_socket_free);
  REQUIRE(socket);
  REQUIRE(genl_connect(socket.get()) == 0);

  auto ask_for_family = [&](const char* name, int& family_id) {
    NlMessage message(nlmsg_alloc());
    REQUIRE(genlmsg_put(message.get(), NL_AUTO_PORT, NL_AUTO_SEQ, GENL_ID_CTRL, 0, 0,
                        CTRL_CMD_GETFAMILY, 1));
    REQUIRE(nla_put_string(message.get(), CTRL_ATTR_FAMILY_NAME, name) == 0);
    int replies = 0;
    int error = genl_transact(socket.get(), message.get(), [&](nlmsghdr* reply) {
      ++replies;
      std::array<nlattr*, CTRL_ATTR_MAX + 1> attrs{};
      if (genlmsg_parse(reply, 0, attrs.data(), CTRL_ATTR_MAX, nullptr) == 0 &&
          attrs[CTRL_ATTR_FAMILY_ID]) {
        family_id = nla_get_u16(attrs[CTRL_ATTR_FAMILY_ID]);
      }
    });
    return std::pair{error, replies};
  };

  int family_id = -1;
  auto [error, replies] = ask_for_family("nlctrl", family_id);
  CHECK(error == 0);
  CHECK(replies == 1);
  CHECK(family_id == GENL_ID_CTRL);

  family_id = -1;
  std::tie(error, replies) = ask_for_family("vramswap-none", family_id);
  CHECK(error == ENOENT);
  CHECK(replies == 0);
  CHECK(family_id == -1);

  // A name longer than the controller's policy allows (15 bytes): EINVAL,
  // told apart from ENOENT.
  std::tie(error, replies) = ask_for_family("vramswap-no-such-family", family_id);
  CHECK(error == EINVAL);

  // The socket stays usable after an error.
  std::tie(error, replies) = ask_for_family("nlctrl", family_id);
  CHECK(error == 0);
  CHECK(family_id == GENL_ID_CTRL);
}

TEST_CASE("modprobe is tried once when the nbd family is missing, and its words are reported") {
  TempDir dir;
  const std::string log = dir / "modprobe.log";
  test::write_text_file(dir / "modprobe",
                        "#!/bin/sh\necho \"$@\" >> '" + log +
                            "'\necho 'modprobe: FATAL: fake modprobe says no' >&2\n"
                            "exit 1\n");
  REQUIRE(::chmod((dir / "modprobe").c_str(), 0755) == 0);
  const char* old_path = std::getenv("PATH");
  const std::string saved_path = old_path ? old_path : "";
  ::setenv("PATH", dir.path().c_str(), 1);

  int status = 0;
  std::string error;
  bool opened = false;
  try {
    NbdNetlink netlink = NbdNetlink::open();
    opened = netlink.family_id() > 0;
  } catch (const StartupError& e) {
    error = e.what();
    status = e.exit_status();
  }
  ::setenv("PATH", saved_path.c_str(), 1);

  if (kernel_has_nbd()) {
    // The family resolved on the first try: modprobe must not have run.
    WARN("this kernel has nbd: checked that modprobe is not run when the family exists");
    CHECK(opened);
    CHECK_FALSE(std::filesystem::exists(log));
  } else {
    WARN("this kernel has no nbd: checked the modprobe fallback and its error message");
    CHECK(status == exit_code::unavailable);
    CHECK(test::read_text_file(log) == "nbd\n");  // exactly one attempt
    CHECK_THAT(error, Catch::Contains("modprobe nbd: modprobe: FATAL: fake modprobe says no"));
  }
}

namespace {

// A minimal NBD server on the daemon's end of a socketpair, enough for the
// kernel's partition scan and our own reads: serves a 1 MiB buffer.
class TinyNbdServer {
 public:
  explicit TinyNbdServer(int fd) : fd_(fd), data_(1 * MiB, 0) {
    for (size_t i = 0; i < data_.size(); ++i)
      data_[i] = static_cast<char>(i * 7 + 3);
    thread_ = std::thread([this] { serve(); });
  }
  ~TinyNbdServer() {
    ::shutdown(fd_.get(), SHUT_RDWR);
    thread_.join();
  }
  const std::vector<char>& data() const { return data_; }

 private:
  bool read_exactly(void* buffer, size_t length) {
    auto* bytes = static_cast<char*>(buffer);
    while (length > 0) {
      ssize_t got = ::read(fd_.get(), bytes, length);
      if (got <= 0) return false;
      bytes += got;
      length -= static_cast<size_t>(got);
    }
    return true;
  }
  bool write_exactly(const void* buffer, size_t length) {
    auto* bytes = static_cast<const char*>(buffer);
    while (length > 0) {
      ssize_t put = ::write(fd_.get(), bytes, length);
      if (put <= 0) return false;
      bytes += put;
      length -= static_cast<size_t>(put);
    }
    return true;
  }
  void serve() {
    for (;;) {
      nbd_request request{};
      if (!read_exactly(&request, sizeof request) || ntohl(request.magic) != NBD_REQUEST_MAGIC) {
        return;
      }
      const uint32_t type = ntohl(request.type) & 0xffff;
      const uint64_t from = be64toh(request.from);
      const uint32_t length = ntohl(request.len);
      nbd_reply reply{};
      reply.magic = htonl(NBD_REPLY_MAGIC);
      std::memcpy(reply.handle, request.handle, sizeof reply.handle);
      const bool in_range = from <= data_.size() && length <= data_.size() - from;
      if (type == NBD_CMD_DISC) return;
      if (type == NBD_CMD_WRITE) {
        std::vector<char> payload(length);
        if (!read_exactly(payload.data(), length)) return;
        if (in_range) std::memcpy(data_.data() + from, payload.data(), length);
      }
      if ((type == NBD_CMD_READ || type == NBD_CMD_WRITE) && !in_range) reply.error = htonl(EINVAL);
      if (!write_exactly(&reply, sizeof reply)) return;
      if (type == NBD_CMD_READ && in_range && !write_exactly(data_.data() + from, length)) return;
    }
  }

  UniqueFd fd_;
  std::vector<char> data_;
  std::thread thread_;
};

}  // namespace

TEST_CASE("the kernel's nbd driver: a clear error without it, connect/query/disconnect with it") {
  // open() may load the module (modprobe): only its outcome tells which case
  // this machine is, and /sys/module/nbd must agree with it either way.
  std::optional<NbdNetlink> opened;
  int open_status = 0;
  const std::string open_error =
      error_of([&] { opened.emplace(NbdNetlink::open()); }, &open_status);
  if (!opened) {
    WARN("this kernel has no nbd driver: checking the error a user gets");
    CHECK_FALSE(kernel_has_nbd());
    CHECK(open_status == exit_code::unavailable);
    CHECK_THAT(open_error, Catch::StartsWith("the kernel has no nbd driver (generic netlink family "
                                             "\"nbd\" not found; modprobe nbd: "));
    CHECK_THAT(open_error,
               Catch::Contains("install the modules package of kernel " + kernel_release()));
    CHECK_THAT(open_error, Catch::Contains("CONFIG_BLK_DEV_NBD"));
    CHECK(open_error.find('\n') == std::string::npos);
    return;
  }

  WARN("this kernel has nbd: connecting a real device");
  REQUIRE(kernel_has_nbd());
  NbdNetlink& netlink = *opened;
  CHECK(netlink.family_id() > 0);
  for (const NbdDeviceStatus& device : netlink.query_all()) {
    INFO("nbd" << device.index);
    CHECK(std::filesystem::exists("/sys/block/nbd" + std::to_string(device.index)));
  }
  REQUIRE(::geteuid() == 0);

  int pair[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
  UniqueFd kernel_end(pair[0]);
  TinyNbdServer server(pair[1]);

  NbdConnectParams params;
  params.socket_fds = {kernel_end.get()};
  params.size_bytes = 1 * MiB;
  params.server_flags = NBD_FLAG_HAS_FLAGS;
  params.backend_identifier = "vramswap/unit-test-" + std::to_string(::getpid());
  const uint32_t index = netlink.connect(params);
  kernel_end.reset();  // the kernel holds its own reference now
  const std::string name = "nbd" + std::to_string(index);

  std::optional<NbdDeviceStatus> status = netlink.query(index);
  REQUIRE(status.has_value());
  CHECK(status->connected);
  std::string backend = test::read_text_file("/sys/block/" + name + "/backend");
  CHECK(backend == params.backend_identifier + "\n");
  CHECK(test::read_text_file("/sys/block/" + name + "/size") == "2048\n");  // sectors
  CHECK_NOTHROW(trigger_change_uevent(name));

  {
    UniqueFd device(::open(("/dev/" + name).c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(device);
    std::vector<char> block(4096);
    REQUIRE(::pread(device.get(), block.data(), block.size(), 65536) == 4096);
    CHECK(std::memcmp(block.data(), server.data().data() + 65536, block.size()) == 0);
  }

  // Real swap on it: mkswap writes through our server, swapon reads the
  // header back, and the device is then held exclusively.
  const std::string device_path = "/dev/" + name;
  CHECK_FALSE(block_device_in_use(device_path));
  make_swap(device_path, "vramswap-test");
  {
    struct SwapOffGuard {
      std::string path;
      ~SwapOffGuard() { ::swapoff(path.c_str()); }
    } guard{device_path};
    swap_on(device_path, 3, false);
    std::optional<SwapEntry> active = active_swap_for_device(device_path);
    REQUIRE(active.has_value());
    CHECK(active->priority == 3);
    CHECK(active->size_bytes == 1 * MiB - static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)));
    CHECK(block_device_use(device_path).holder == "active swap");
    swap_off(device_path);
    CHECK_FALSE(active_swap_for_device(device_path).has_value());
  }

  // A fixed index that is taken: EBUSY, told as such.
  int pair2[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair2) == 0);
  UniqueFd spare_a(pair2[0]), spare_b(pair2[1]);
  NbdConnectParams taken = params;
  taken.socket_fds = {spare_a.get()};
  taken.index = index;
  int exit_status = 0;
  std::string error = error_of([&] { netlink.connect(taken); }, &exit_status);
  CHECK_THAT(error, Catch::Contains("/dev/" + name + " is already connected"));
  CHECK(exit_status == exit_code::unavailable);

  CHECK(netlink.disconnect(index));
  status = netlink.query(index);
  CHECK((!status || !status->connected));

  // DESTROY_ON_DISCONNECT: the kernel removes the device, from a work queue:
  // sysfs goes first, the index a moment later.
  auto gone = [&] {
    return !std::filesystem::exists("/sys/block/" + name) && !netlink.query(index).has_value();
  };
  for (int i = 0; i < 100 && !gone(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK_FALSE(std::filesystem::exists("/sys/block/" + name));
  CHECK_FALSE(netlink.query(index).has_value());
  // Disconnecting what is gone is no error, just nothing to do.
  CHECK_FALSE(netlink.disconnect(index));
}
