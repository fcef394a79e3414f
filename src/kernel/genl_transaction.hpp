#pragma once

#include <functional>

struct nl_msg;
struct nl_sock;
struct nlmsghdr;

namespace vramswap::kernel {

// One generic netlink request/answer round trip on a connected socket: sends
// `message` (with NLM_F_ACK), hands every reply message to `on_reply`, and
// returns once the kernel's acknowledgement or error arrives: 0, or the
// kernel's errno (positive, exact; libnl's own error codes fold several
// errnos into one, which would lose EBUSY vs EEXIST). Throws
// StartupError(exit_code::os_error) when the socket itself fails.
int genl_transact(nl_sock* socket, nl_msg* message, const std::function<void(nlmsghdr*)>& on_reply);

}  // namespace vramswap::kernel
