#pragma once

#include <string>

namespace vramswap::daemon {

// What a SIGTERM asks of the daemon (vramswapd(8), RESTART). Under systemd
// the generated swap unit only wants its daemon (a restart of the service
// leaves it alone), so the daemon tells the cases apart itself, by the job
// systemd runs on its own unit: a restart hands the device over in place;
// anything else (stop, removal, shutdown, systemctl kill) stops, and the
// daemon turns the device's swap off itself before it releases it. Outside
// systemd a SIGTERM stops as it always did: the daemon waits for whoever
// made the device swap to turn it off.
struct StopRequest {
  bool under_systemd = false;  // run as a systemd unit: swap off first, itself
  bool restart = false;        // systemd restarts the unit: hand the device over
};

// Asks systemd (a few seconds at most) and logs one line saying what the
// daemon does and why. A restart whose next daemon could not start
// (`config_path` no longer configures `instance`) is a stop: handing the
// device to a daemon that refuses it would lose its pages.
StopRequest judge_sigterm(const std::string& config_path, const std::string& instance);

// Under systemd, SIGUSR2 (hand over and exit) is refused with one line: the
// unit would end with nothing to start the next daemon. True when it may
// go on.
bool may_hand_over_on_sigusr2();

}  // namespace vramswap::daemon
