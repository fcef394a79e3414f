#pragma once

#include "common/unique_fd.hpp"

namespace vramswap::daemon {

// SIGTERM, SIGINT, SIGHUP and SIGUSR2 are blocked in every thread (call this before
// any thread starts) and read from a signalfd by the main loop; SIGPIPE is
// ignored so a vanished client costs only its connection.
void block_signals();
UniqueFd open_signalfd();

// restart (SIGUSR2): stop for a restart, handing the device over to the next
// daemon (vramswapd(8), RESTART); it wins over a stop that comes with it
// (systemd sends SIGTERM right after the ExecStop= that asked for it).
enum class SignalEvent { none, stop, reload, restart };
// Reads every pending signal; `restart` wins over `stop`, `stop` over `reload`.
SignalEvent read_signals(int signal_fd);

}  // namespace vramswap::daemon
