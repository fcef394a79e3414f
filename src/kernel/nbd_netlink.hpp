#pragma once

// Configures the kernel's nbd driver over generic netlink (family "nbd",
// include/uapi/linux/nbd-netlink.h), the interface nbd-client -netlink uses.
// Unlike the old ioctl interface it needs no thread parked in NBD_DO_IT: the
// kernel takes its own references to the sockets we hand it and runs the
// device until we (or a timeout) disconnect it.
//
// What the kernel does with our settings (drivers/block/nbd.c, mainline, and
// the same since about 5.11, so Debian 12's 6.1 and Ubuntu 24.04's 6.8):
//
// Timeout (NBD_ATTR_TIMEOUT, seconds, per request):
//   - timeout > 0, several connections: a request older than the timeout
//     marks the socket it was sent on dead (shut down) and is requeued on
//     another live connection.
//   - timeout > 0, one connection: the socket is marked dead too and the
//     request requeued; it then waits up to the dead-connection timeout for a
//     replacement socket (NBD_CMD_RECONFIGURE) and fails with an I/O error
//     when none comes. Before about 5.11 it failed at once and the whole
//     device shut down.
//   - timeout 0: the block layer still arms a 30 s timer per request. With
//     one connection the kernel only logs "Possible stuck request" and
//     re-arms it: a slow request is never failed. With several connections
//     the 30 s timer behaves like a timeout of 30: the socket is marked dead
//     and the request requeued elsewhere.
//   For swap a failed read kills the process that owns the page (SIGBUS), so
//   with one connection timeout 0 is the safe choice for a local server; with
//   several, expect a socket to be shut down when a request stalls for 30 s
//   and be ready to hand a fresh one over with replace_dead_sockets().
//
// Dead-connection timeout (NBD_ATTR_DEAD_CONN_TIMEOUT, seconds): how long a
// request that finds no live connection waits for NBD_CMD_RECONFIGURE to
// bring one back before it fails (and the device is marked disconnected).
// With it, a device whose server exits without NBD_CMD_DISCONNECT stays
// configured and queues its requests: a new server hands it sockets with
// NBD_CMD_RECONFIGURE (found by index, the backend identifier must match)
// and the queued requests go to it. Requests the old server had been sent but
// never answered are sent again when the block layer's timer (the timeout
// above, or 30 s when it is 0) finds them: the kernel moves a request whose
// socket was replaced to a live one. vramswapd uses it for live restart
// (vramswapd(8), RESTART); a request that outlives it fails (SIGBUS for swap).
//
// NBD_CMD_RECONFIGURE hands new sockets only to connections marked dead
// (their server end closed, or a timed-out request); sockets beyond the dead
// ones are dropped without an error, so check that the kernel took them. It
// needs a device that is still configured and bound (connected once and not
// disconnected since).
//
// Disconnect (NBD_CMD_DISCONNECT): sends NBD_CMD_DISC on every connection,
// shuts every socket down, waits for the kernel's receive workers to stop,
// then fails every request still outstanding with an I/O error and drops the
// configuration. The call returns once that is done. With outstanding swap
// I/O that means lost pages: swap off before disconnecting.
//
// NBD_CFLAG_DESTROY_ON_DISCONNECT: once disconnected and closed by its last
// opener, the device is deleted (/dev/nbdX and /sys/block/nbdX go away)
// instead of staying behind as an unconfigured size-0 disk that a later
// connect without an index may reuse. The kernel never picks a device with
// the flag for a connect without an index, and a connect asking for the index
// of one still being torn down gets EINVAL. Note that it acts on disconnect
// only: a daemon that dies without disconnecting leaves its device configured
// with dead sockets until someone sends NBD_CMD_DISCONNECT. New I/O then
// fails; with timeout 0 and one connection the requests that were in flight
// when it died wait (processes in D state) until that disconnect fails them.
//
// NBD_CFLAG_DISCONNECT_ON_CLOSE (not used): disconnects when the last opener
// closes the device, e.g. after blkid probes it and before swapon opens it.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>
#include "common/geometry.hpp"

struct nl_msg;
struct nl_sock;
struct nlmsghdr;

namespace vramswap::kernel {

struct NlMsgDeleter {
  void operator()(nl_msg* message) const noexcept;
};
using NlMessage = std::unique_ptr<nl_msg, NlMsgDeleter>;

struct NbdConnectParams {
  // The kernel's ends of the connections (e.g. one end of each socketpair),
  // sent in this order. The kernel looks them up in the sending process's fd
  // table and takes its own references: close them after connect(). Leave
  // SO_RCVTIMEO/SO_SNDTIMEO unset on them: the kernel's own reads and writes
  // on these sockets would obey them.
  std::vector<int> socket_fds;
  uint64_t size_bytes = 0;  // a multiple of block_size
  uint64_t block_size = export_block_bytes;
  // The transmission flags our server announces (NBD_FLAG_HAS_FLAGS,
  // NBD_FLAG_SEND_FLUSH, NBD_FLAG_SEND_TRIM, NBD_FLAG_CAN_MULTI_CONN, ...):
  // the kernel enables discard and write cache handling from them, and needs
  // NBD_FLAG_CAN_MULTI_CONN for more than one socket.
  uint64_t server_flags = 0;
  uint64_t timeout_seconds = 0;  // 0: never fail a slow request (see above)
  // Sent only when set; see above for why 0 (not sent) is the default.
  std::optional<uint64_t> dead_connection_timeout_seconds;
  bool destroy_on_disconnect = true;
  // Shown in /sys/block/nbdX/backend so udev can name the device
  // (e.g. "vramswap/NAME"); also required to match by NBD_CMD_RECONFIGURE.
  std::string backend_identifier;
  // A fixed nbdX; without it the kernel picks a free device (or creates one)
  // and connect() returns the index it chose.
  std::optional<uint32_t> index;
};

struct NbdDeviceStatus {
  uint32_t index = 0;
  // The kernel reports "connected" when the device has a configuration,
  // which is also the case while any program holds the device open.
  bool connected = false;
};

// Message building and reply parsing, without I/O, for the tests. Builders
// throw StartupError(exit_code::software) on parameters the kernel would
// reject (no socket, zero or misaligned size, bad block size, several
// sockets without NBD_FLAG_CAN_MULTI_CONN).
NlMessage build_nbd_connect_message(int family_id, const NbdConnectParams& params);
NlMessage build_nbd_disconnect_message(int family_id, uint32_t index);
NlMessage build_nbd_status_message(int family_id, std::optional<uint32_t> index);
NlMessage build_nbd_reconfigure_message(int family_id, uint32_t index,
                                        std::span<const int> socket_fds,
                                        std::string_view backend_identifier);
// The index in a NBD_CMD_CONNECT reply, if the message carries one.
std::optional<uint32_t> parse_nbd_connect_reply(nlmsghdr* header);
// The devices in a NBD_CMD_STATUS reply (empty when none matched).
std::vector<NbdDeviceStatus> parse_nbd_status_reply(nlmsghdr* header);

// One generic netlink socket bound to the "nbd" family. Startup and shutdown
// only: every call allocates and blocks until the kernel answers.
class NbdNetlink {
 public:
  // Resolves the family; when it is missing runs `modprobe nbd` once and
  // tries again. Throws StartupError(exit_code::unavailable) with the cause
  // and the fix when the kernel still has no nbd driver.
  static NbdNetlink open();

  NbdNetlink(NbdNetlink&& other) noexcept;
  NbdNetlink& operator=(NbdNetlink&& other) noexcept;
  NbdNetlink(const NbdNetlink&) = delete;
  NbdNetlink& operator=(const NbdNetlink&) = delete;
  ~NbdNetlink();

  int family_id() const noexcept { return family_id_; }

  // Sets up and starts /dev/nbdX; returns X. Needs CAP_SYS_ADMIN. The kernel
  // reads the device right away (partition scan, udev's blkid), so the
  // server must already be answering on the sockets.
  uint32_t connect(const NbdConnectParams& params);
  // Disconnects nbdX (see the header comment) and returns true; false when
  // the kernel has no such device or it is already going away. Needs
  // CAP_SYS_ADMIN.
  bool disconnect(uint32_t index);
  // Whether nbdX exists and is connected. Needs no privilege.
  std::optional<NbdDeviceStatus> query(uint32_t index);
  // Every nbd device the kernel has.
  std::vector<NbdDeviceStatus> query_all();
  // The connected devices whose backend identifier is `backend` (more than
  // one only when a disconnected one is still held open, e.g. by swap).
  std::vector<uint32_t> find_by_backend(std::string_view backend);
  // Hands new sockets to nbdX (NBD_CMD_RECONFIGURE) to take the place of
  // connections the kernel marked dead (a timed-out request, a server that
  // exited); sockets beyond the dead ones are
  // ignored by the kernel. `backend_identifier` must be the one given at
  // connect. Needs CAP_SYS_ADMIN.
  void replace_dead_sockets(uint32_t index, std::span<const int> socket_fds,
                            std::string_view backend_identifier);

 private:
  NbdNetlink(nl_sock* socket, int family_id) noexcept : socket_(socket), family_id_(family_id) {}
  std::vector<NbdDeviceStatus> status(std::optional<uint32_t> index);

  nl_sock* socket_ = nullptr;
  int family_id_ = -1;
};

// What sysfs says of nbdX: its size in bytes (0 when unconfigured), how many
// connections it was configured with (one hardware queue each), its backend
// identifier (empty when none). Nothing when the device does not exist.
struct NbdSysfs {
  uint64_t size_bytes = 0;
  unsigned connections = 0;
  std::string backend;
};
std::optional<NbdSysfs> read_nbd_sysfs(uint32_t index);

// Asks udev to look at /sys/block/NAME again ("change" uevent). The kernel
// announces a connected nbd device before it creates its `backend` attribute,
// so a rule matching on ATTR{backend} can miss it: call this after connect().
// Throws StartupError(exit_code::os_error) when the device does not exist.
void trigger_change_uevent(std::string_view block_device_name);

}  // namespace vramswap::kernel
