#include "kernel/genl_transaction.hpp"

#include <netlink/errno.h>
#include <netlink/handlers.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>

#include <memory>
#include <string>

#include "common/startup_error.hpp"

namespace vramswap::kernel {
namespace {

struct Transaction {
  const std::function<void(nlmsghdr*)>* on_reply = nullptr;
  int kernel_errno = 0;
  bool done = false;
};

int on_valid(nl_msg* message, void* argument) {
  auto* transaction = static_cast<Transaction*>(argument);
  if (*transaction->on_reply) (*transaction->on_reply)(nlmsg_hdr(message));
  return NL_OK;
}

int on_ack(nl_msg*, void* argument) {
  static_cast<Transaction*>(argument)->done = true;
  return NL_STOP;
}

int on_error(sockaddr_nl*, nlmsgerr* error, void* argument) {
  auto* transaction = static_cast<Transaction*>(argument);
  transaction->kernel_errno = error->error < 0 ? -error->error : error->error;
  transaction->done = true;
  return NL_STOP;
}

struct CallbackDeleter {
  void operator()(nl_cb* callbacks) const noexcept { nl_cb_put(callbacks); }
};

}  // namespace

int genl_transact(nl_sock* socket, nl_msg* message,
                  const std::function<void(nlmsghdr*)>& on_reply) {
  std::unique_ptr<nl_cb, CallbackDeleter> callbacks(nl_cb_alloc(NL_CB_DEFAULT));
  if (!callbacks) throw StartupError(exit_code::os_error, "out of memory for a netlink request");
  Transaction transaction;
  transaction.on_reply = &on_reply;
  nl_cb_set(callbacks.get(), NL_CB_VALID, NL_CB_CUSTOM, on_valid, &transaction);
  nl_cb_set(callbacks.get(), NL_CB_ACK, NL_CB_CUSTOM, on_ack, &transaction);
  nl_cb_err(callbacks.get(), NL_CB_CUSTOM, on_error, &transaction);

  int sent = nl_send_auto(socket, message);  // adds NLM_F_REQUEST | NLM_F_ACK, port, sequence
  if (sent < 0) {
    throw StartupError(
        exit_code::os_error,
        std::string("sending a generic netlink request failed: ") + nl_geterror(sent));
  }
  while (!transaction.done) {
    int received = nl_recvmsgs(socket, callbacks.get());
    if (received < 0 && !transaction.done) {
      throw StartupError(exit_code::os_error,
                         std::string("reading the kernel's generic netlink answer failed: ") +
                             nl_geterror(received));
    }
  }
  return transaction.kernel_errno;
}

}  // namespace vramswap::kernel
