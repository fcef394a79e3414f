#pragma once

#include <optional>
#include <string>

#include "status/previous_crash.hpp"

namespace vramswap::daemon {

// A starting daemon, holding the instance lock: whether the daemon before it
// ended without a clean stop (its status file is still there). The caller
// keeps reporting it in its status, and says it in the journal once it knows
// whether it takes the device over (log_previous_crash).
std::optional<status::PreviousCrash> take_previous_crash(const std::string& instance);
// The journal's line for it, naming when and what was lost, or that nothing
// was (taken over).
void log_previous_crash(const std::optional<status::PreviousCrash>& crash);

// `vramswapd --record-exit --instance NAME`, run by systemd's ExecStopPost=
// after the daemon exited, with systemd's $EXIT_CODE and $EXIT_STATUS. If the
// daemon died while serving, marks its status file with how and when, says
// so in the journal and replaces the dead daemon's STATUS= line (which
// systemd would otherwise show until the restart) with what happened. Does
// nothing after a clean stop, or while another daemon holds the instance.
// Returns the exit status: 0, also when there was nothing to record.
int record_exit(const std::string& instance);

}  // namespace vramswap::daemon
