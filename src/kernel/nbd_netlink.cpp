#include "kernel/nbd_netlink.hpp"

#include <fcntl.h>
#include <linux/nbd-netlink.h>
#include <linux/nbd.h>
#include <netlink/attr.h>
#include <netlink/errno.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "common/log.hpp"
#include "common/startup_error.hpp"
#include "common/unique_fd.hpp"
#include "kernel/genl_transaction.hpp"
#include "kernel/run_program.hpp"

namespace vramswap::kernel {
namespace {

[[noreturn]] void invalid(const std::string& what) {
  throw StartupError(exit_code::software, "invalid nbd configuration: " + what);
}

void check(int libnl_result, const char* what) {
  if (libnl_result < 0) {
    throw StartupError(exit_code::software,
                       std::string("building the nbd netlink message failed (") + what +
                           "): " + nl_geterror(libnl_result));
  }
}

NlMessage new_message(int family_id, uint8_t command) {
  NlMessage message(nlmsg_alloc());
  if (!message) throw StartupError(exit_code::os_error, "out of memory for a netlink message");
  if (!genlmsg_put(message.get(), NL_AUTO_PORT, NL_AUTO_SEQ, family_id, 0, 0, command,
                   NBD_GENL_VERSION)) {
    throw StartupError(exit_code::software, "building the nbd netlink message header failed");
  }
  return message;
}

void put_sockets(nl_msg* message, std::span<const int> socket_fds) {
  nlattr* sockets = nla_nest_start(message, NBD_ATTR_SOCKETS);
  if (!sockets) check(-NLE_NOMEM, "NBD_ATTR_SOCKETS");
  for (int fd : socket_fds) {
    nlattr* item = nla_nest_start(message, NBD_SOCK_ITEM);
    if (!item) check(-NLE_NOMEM, "NBD_SOCK_ITEM");
    check(nla_put_u32(message, NBD_SOCK_FD, static_cast<uint32_t>(fd)), "NBD_SOCK_FD");
    nla_nest_end(message, item);
  }
  nla_nest_end(message, sockets);
}

bool is_power_of_two(uint64_t value) {
  return value != 0 && (value & (value - 1)) == 0;
}

std::string kernel_release() {
  utsname names{};
  if (::uname(&names) != 0) return "the running kernel";
  return names.release;
}

std::string device_name(uint32_t index) {
  return "nbd" + std::to_string(index);
}

std::string connect_error(int error, const std::optional<uint32_t>& index) {
  const std::string device = index ? "/dev/" + device_name(*index) : "an nbd device";
  switch (error) {
    case EPERM:
      return "setting up " + device +
             " needs CAP_SYS_ADMIN; run vramswapd as root (the packaged service does)";
    case EBUSY:
      return device +
             " is already connected to another server; choose another index, or free it "
             "with `nbd-client -d " +
             device + "` if nothing uses it";
    case EINVAL:
    case EEXIST:
      if (index) {
        return "the kernel refused " + device +
               ": it is still being torn down after a disconnect, or the index is beyond what "
               "the nbd module allows; retry in a moment or pick another index (`dmesg` has the "
               "kernel's reason)";
      }
      return "the kernel refused the nbd configuration (socket, size or block size); `dmesg` has "
             "the kernel's reason";
    case ENOSPC:
      return "the kernel has no free nbd index left; disconnect unused nbd devices";
    case ENOMEM:
      return "the kernel ran out of memory setting up " + device + "; free memory and retry";
    case ENODEV:
      return "the nbd module is being unloaded; retry once `modprobe nbd` succeeds";
    case EBADF:
    case ENOTSOCK:
      return "the socket handed to the kernel for " + device + " is not valid (internal error)";
    default:
      return "setting up " + device + " failed: " + std::strerror(error);
  }
}

int exit_code_for(int error) {
  switch (error) {
    case EPERM:
      return exit_code::no_permission;
    case EBUSY:
    case EINVAL:
    case EEXIST:
    case ENOSPC:
    case ENODEV:
      return exit_code::unavailable;
    case EBADF:
    case ENOTSOCK:
      return exit_code::software;
    default:
      return exit_code::os_error;
  }
}

// The kernel's policy for the attributes we read back.
std::array<nla_policy, NBD_ATTR_MAX + 1> attribute_policy() {
  std::array<nla_policy, NBD_ATTR_MAX + 1> policy{};
  policy[NBD_ATTR_INDEX].type = NLA_U32;
  policy[NBD_ATTR_DEVICE_LIST].type = NLA_NESTED;
  return policy;
}

std::array<nla_policy, NBD_DEVICE_ATTR_MAX + 1> device_policy() {
  std::array<nla_policy, NBD_DEVICE_ATTR_MAX + 1> policy{};
  policy[NBD_DEVICE_INDEX].type = NLA_U32;
  policy[NBD_DEVICE_CONNECTED].type = NLA_U8;
  return policy;
}

uint8_t genl_command(nlmsghdr* header) {
  return static_cast<genlmsghdr*>(nlmsg_data(header))->cmd;
}

// What `modprobe nbd` said, for the error message.
std::string try_modprobe_nbd() {
  ProgramResult result = run_program({"modprobe", "nbd"});
  if (!result.started) return result.summary();
  if (result.succeeded()) return "succeeded, yet the family is still missing";
  return result.summary();
}

}  // namespace

void NlMsgDeleter::operator()(nl_msg* message) const noexcept {
  nlmsg_free(message);
}

NlMessage build_nbd_connect_message(int family_id, const NbdConnectParams& params) {
  if (params.socket_fds.empty()) invalid("no socket to hand to the kernel");
  for (int fd : params.socket_fds) {
    if (fd < 0) invalid("socket descriptor " + std::to_string(fd));
  }
  if (!is_power_of_two(params.block_size) || params.block_size < 512) {
    invalid("block size " + std::to_string(params.block_size) +
            " is not a power of two of at least 512");
  }
  if (params.size_bytes == 0 || params.size_bytes % params.block_size != 0) {
    invalid("size " + std::to_string(params.size_bytes) + " is not a positive multiple of " +
            std::to_string(params.block_size));
  }
  if (params.size_bytes > static_cast<uint64_t>(INT64_MAX)) invalid("size too large");
  if (params.socket_fds.size() > 1 && !(params.server_flags & NBD_FLAG_CAN_MULTI_CONN)) {
    invalid("several sockets need NBD_FLAG_CAN_MULTI_CONN in the server flags");
  }

  NlMessage message = new_message(family_id, NBD_CMD_CONNECT);
  nl_msg* m = message.get();
  if (params.index) check(nla_put_u32(m, NBD_ATTR_INDEX, *params.index), "NBD_ATTR_INDEX");
  check(nla_put_u64(m, NBD_ATTR_SIZE_BYTES, params.size_bytes), "NBD_ATTR_SIZE_BYTES");
  check(nla_put_u64(m, NBD_ATTR_BLOCK_SIZE_BYTES, params.block_size), "NBD_ATTR_BLOCK_SIZE_BYTES");
  check(nla_put_u64(m, NBD_ATTR_SERVER_FLAGS, params.server_flags), "NBD_ATTR_SERVER_FLAGS");
  check(nla_put_u64(m, NBD_ATTR_TIMEOUT, params.timeout_seconds), "NBD_ATTR_TIMEOUT");
  if (params.dead_connection_timeout_seconds) {
    check(nla_put_u64(m, NBD_ATTR_DEAD_CONN_TIMEOUT, *params.dead_connection_timeout_seconds),
          "NBD_ATTR_DEAD_CONN_TIMEOUT");
  }
  // Always sent, even as 0: the kernel keeps a device's DESTROY_ON_DISCONNECT
  // from an earlier connect unless told otherwise.
  const uint64_t client_flags = params.destroy_on_disconnect ? NBD_CFLAG_DESTROY_ON_DISCONNECT : 0;
  check(nla_put_u64(m, NBD_ATTR_CLIENT_FLAGS, client_flags), "NBD_ATTR_CLIENT_FLAGS");
  if (!params.backend_identifier.empty()) {
    check(nla_put_string(m, NBD_ATTR_BACKEND_IDENTIFIER, params.backend_identifier.c_str()),
          "NBD_ATTR_BACKEND_IDENTIFIER");
  }
  put_sockets(m, params.socket_fds);
  return message;
}

NlMessage build_nbd_disconnect_message(int family_id, uint32_t index) {
  NlMessage message = new_message(family_id, NBD_CMD_DISCONNECT);
  check(nla_put_u32(message.get(), NBD_ATTR_INDEX, index), "NBD_ATTR_INDEX");
  return message;
}

NlMessage build_nbd_status_message(int family_id, std::optional<uint32_t> index) {
  NlMessage message = new_message(family_id, NBD_CMD_STATUS);
  if (index) check(nla_put_u32(message.get(), NBD_ATTR_INDEX, *index), "NBD_ATTR_INDEX");
  return message;
}

NlMessage build_nbd_reconfigure_message(int family_id, uint32_t index,
                                        std::span<const int> socket_fds,
                                        std::string_view backend_identifier) {
  if (socket_fds.empty()) invalid("no socket to hand to the kernel");
  NlMessage message = new_message(family_id, NBD_CMD_RECONFIGURE);
  nl_msg* m = message.get();
  check(nla_put_u32(m, NBD_ATTR_INDEX, index), "NBD_ATTR_INDEX");
  if (!backend_identifier.empty()) {
    std::string identifier(backend_identifier);
    check(nla_put_string(m, NBD_ATTR_BACKEND_IDENTIFIER, identifier.c_str()),
          "NBD_ATTR_BACKEND_IDENTIFIER");
  }
  put_sockets(m, socket_fds);
  return message;
}

std::optional<uint32_t> parse_nbd_connect_reply(nlmsghdr* header) {
  if (genl_command(header) != NBD_CMD_CONNECT) return std::nullopt;
  auto policy = attribute_policy();
  std::array<nlattr*, NBD_ATTR_MAX + 1> attributes{};
  if (genlmsg_parse(header, 0, attributes.data(), NBD_ATTR_MAX, policy.data()) < 0) {
    return std::nullopt;
  }
  if (!attributes[NBD_ATTR_INDEX]) return std::nullopt;
  return nla_get_u32(attributes[NBD_ATTR_INDEX]);
}

std::vector<NbdDeviceStatus> parse_nbd_status_reply(nlmsghdr* header) {
  std::vector<NbdDeviceStatus> devices;
  if (genl_command(header) != NBD_CMD_STATUS) return devices;
  auto policy = attribute_policy();
  std::array<nlattr*, NBD_ATTR_MAX + 1> attributes{};
  if (genlmsg_parse(header, 0, attributes.data(), NBD_ATTR_MAX, policy.data()) < 0 ||
      !attributes[NBD_ATTR_DEVICE_LIST]) {
    return devices;
  }
  auto item_policy = device_policy();
  nlattr* item;
  int remaining;
  nla_for_each_nested(item, attributes[NBD_ATTR_DEVICE_LIST], remaining) {
    if (nla_type(item) != NBD_DEVICE_ITEM) continue;
    std::array<nlattr*, NBD_DEVICE_ATTR_MAX + 1> fields{};
    if (nla_parse_nested(fields.data(), NBD_DEVICE_ATTR_MAX, item, item_policy.data()) < 0 ||
        !fields[NBD_DEVICE_INDEX]) {
      continue;
    }
    NbdDeviceStatus device;
    device.index = nla_get_u32(fields[NBD_DEVICE_INDEX]);
    device.connected = fields[NBD_DEVICE_CONNECTED] && nla_get_u8(fields[NBD_DEVICE_CONNECTED]);
    devices.push_back(device);
  }
  return devices;
}

NbdNetlink NbdNetlink::open() {
  nl_sock* socket = nl_socket_alloc();
  if (!socket) throw StartupError(exit_code::os_error, "out of memory for a netlink socket");
  NbdNetlink netlink(socket, -1);
  if (int error = genl_connect(socket); error < 0) {
    throw StartupError(exit_code::os_error,
                       std::string("cannot open a generic netlink socket to configure nbd: ") +
                           nl_geterror(error));
  }
  // The kernel itself asks for the module when a family is missing (its
  // alias is net-pf-16-proto-16-family-nbd), but not where module loading by
  // the kernel is off or fails silently; one explicit modprobe also gives us
  // its words for the error message.
  int family = genl_ctrl_resolve(socket, NBD_GENL_FAMILY_NAME);
  if (family < 0) {
    log_info("generic netlink family \"nbd\" not found (%s); trying `modprobe nbd`",
             nl_geterror(family));
    std::string modprobe_said = try_modprobe_nbd();
    family = genl_ctrl_resolve(socket, NBD_GENL_FAMILY_NAME);
    if (family < 0) {
      throw StartupError(
          exit_code::unavailable,
          "the kernel has no nbd driver (generic netlink family \"nbd\" not found; modprobe nbd: " +
              modprobe_said + "); install the modules package of kernel " + kernel_release() +
              " (it ships nbd.ko) or boot a kernel built with CONFIG_BLK_DEV_NBD");
    }
  }
  netlink.family_id_ = family;
  return netlink;
}

NbdNetlink::NbdNetlink(NbdNetlink&& other) noexcept
    : socket_(std::exchange(other.socket_, nullptr)), family_id_(other.family_id_) {}

NbdNetlink& NbdNetlink::operator=(NbdNetlink&& other) noexcept {
  if (this != &other) {
    if (socket_) nl_socket_free(socket_);
    socket_ = std::exchange(other.socket_, nullptr);
    family_id_ = other.family_id_;
  }
  return *this;
}

NbdNetlink::~NbdNetlink() {
  if (socket_) nl_socket_free(socket_);
}

uint32_t NbdNetlink::connect(const NbdConnectParams& params) {
  NlMessage message = build_nbd_connect_message(family_id_, params);
  std::optional<uint32_t> index;
  int error = genl_transact(socket_, message.get(), [&](nlmsghdr* reply) {
    if (auto replied = parse_nbd_connect_reply(reply)) index = replied;
  });
  if (error != 0) throw StartupError(exit_code_for(error), connect_error(error, params.index));
  if (!index) index = params.index;
  if (!index) {
    throw StartupError(exit_code::os_error,
                       "the kernel connected an nbd device but did not say which one");
  }
  return *index;
}

bool NbdNetlink::disconnect(uint32_t index) {
  NlMessage message = build_nbd_disconnect_message(family_id_, index);
  int error = genl_transact(socket_, message.get(), nullptr);
  if (error == 0) return true;
  // The kernel says EINVAL when there is no such device or it is already
  // going away: either way there is nothing left for us to disconnect.
  if (error == EINVAL) return false;
  const std::string device = "/dev/" + device_name(index);
  if (error == EPERM) {
    throw StartupError(exit_code::no_permission,
                       "disconnecting " + device + " needs CAP_SYS_ADMIN; run as root");
  }
  throw StartupError(exit_code::os_error,
                     "disconnecting " + device + " failed: " + std::strerror(error));
}

std::vector<NbdDeviceStatus> NbdNetlink::status(std::optional<uint32_t> index) {
  NlMessage message = build_nbd_status_message(family_id_, index);
  std::vector<NbdDeviceStatus> devices;
  int error = genl_transact(socket_, message.get(), [&](nlmsghdr* reply) {
    std::vector<NbdDeviceStatus> listed = parse_nbd_status_reply(reply);
    devices.insert(devices.end(), listed.begin(), listed.end());
  });
  if (error != 0) {
    throw StartupError(
        exit_code::os_error,
        std::string("asking the kernel for nbd device status failed: ") + std::strerror(error));
  }
  return devices;
}

std::optional<NbdDeviceStatus> NbdNetlink::query(uint32_t index) {
  for (const NbdDeviceStatus& device : status(index)) {
    if (device.index == index) return device;
  }
  return std::nullopt;
}

std::vector<NbdDeviceStatus> NbdNetlink::query_all() {
  return status(std::nullopt);
}

void NbdNetlink::replace_dead_sockets(uint32_t index, std::span<const int> socket_fds,
                                      std::string_view backend_identifier) {
  NlMessage message =
      build_nbd_reconfigure_message(family_id_, index, socket_fds, backend_identifier);
  int error = genl_transact(socket_, message.get(), nullptr);
  if (error == 0) return;
  const std::string device = "/dev/" + device_name(index);
  if (error == EPERM) {
    throw StartupError(exit_code::no_permission,
                       "reconfiguring " + device + " needs CAP_SYS_ADMIN; run as root");
  }
  if (error == EINVAL) {
    throw StartupError(exit_code::unavailable,
                       "the kernel refused new sockets for " + device +
                           ": it is not connected, or its backend identifier differs");
  }
  throw StartupError(exit_code::os_error,
                     "reconfiguring " + device + " failed: " + std::strerror(error));
}

namespace {

std::optional<std::string> read_sysfs_line(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  char text[256] = {};
  const ssize_t got = ::read(fd.get(), text, sizeof text - 1);
  if (got < 0) return std::nullopt;
  std::string line(text, static_cast<size_t>(got));
  while (!line.empty() && (line.back() == '\n' || line.back() == ' '))
    line.pop_back();
  return line;
}

}  // namespace

std::optional<NbdSysfs> read_nbd_sysfs(uint32_t index) {
  const std::string base = "/sys/block/" + device_name(index);
  const std::optional<std::string> sectors = read_sysfs_line(base + "/size");
  if (!sectors) return std::nullopt;
  NbdSysfs sysfs;
  sysfs.size_bytes = std::strtoull(sectors->c_str(), nullptr, 10) * 512;
  sysfs.backend = read_sysfs_line(base + "/backend").value_or("");
  // One hardware queue per connection: mq/0, mq/1, ...
  while (::access((base + "/mq/" + std::to_string(sysfs.connections)).c_str(), F_OK) == 0)
    ++sysfs.connections;
  return sysfs;
}

std::vector<uint32_t> NbdNetlink::find_by_backend(std::string_view backend) {
  std::vector<uint32_t> found;
  for (const NbdDeviceStatus& device : query_all()) {
    if (!device.connected) continue;
    const std::optional<NbdSysfs> sysfs = read_nbd_sysfs(device.index);
    if (sysfs && sysfs->backend == backend) found.push_back(device.index);
  }
  return found;
}

void trigger_change_uevent(std::string_view block_device_name) {
  const std::string path = "/sys/block/" + std::string(block_device_name) + "/uevent";
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) {
    throw StartupError(exit_code::os_error, "cannot open " + path + ": " + std::strerror(errno) +
                                                "; is the device still there?");
  }
  static constexpr char change_word[] = "change";
  if (::write(fd.get(), change_word, sizeof change_word - 1) !=
      static_cast<ssize_t>(sizeof change_word - 1)) {
    throw StartupError(exit_code::os_error,
                       "cannot ask udev to refresh " + path + ": " + std::strerror(errno));
  }
}

}  // namespace vramswap::kernel
