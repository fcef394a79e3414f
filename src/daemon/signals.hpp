#pragma once

#include "common/unique_fd.hpp"

namespace vramswap::daemon {

// SIGTERM, SIGINT and SIGHUP are blocked in every thread (call this before
// any thread starts) and read from a signalfd by the main loop; SIGPIPE is
// ignored so a vanished client costs only its connection.
void block_signals();
UniqueFd open_signalfd();

enum class SignalEvent { none, stop, reload };
// Reads every pending signal; `stop` wins over `reload`.
SignalEvent read_signals(int signal_fd);

}  // namespace vramswap::daemon
