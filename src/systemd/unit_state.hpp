#pragma once

#include <string>

namespace vramswap::systemd {

// What systemd knows about one vramswap@NAME.service: the facts
// `systemctl status` shows, as the D-Bus properties of the same names give
// them. Plain data, so that the decisions made from it are unit-testable.
struct UnitState {
  std::string name;          // "vramswap@0.service"
  std::string load_state;    // LoadState: loaded, not-found, masked, bad-setting, error
  std::string active_state;  // ActiveState: active, activating, deactivating, inactive, failed
  std::string sub_state;     // SubState: running, start, auto-restart, dead, failed, ...
  std::string result;        // Result: success, exit-code, signal, core-dump, timeout, ...
  int exit_code = 0;         // ExecMainCode: 1 exited, 2 killed, 3 dumped core; 0 never ran
  int exit_status = 0;       // ExecMainStatus: the exit status, or the signal number
  // Whether it ran since boot: from ExecMainStartTimestamp, or (systemd
  // forgets about inactive units it unloads) from its jobs in the journal.
  enum class History { unknown, not_started, started };
  History history = History::unknown;
  // "ConditionPathExists=/sys/bus/pci/drivers/nvidia" when the last start
  // was skipped because that condition was not met; empty otherwise.
  std::string failed_condition;
  std::string status_text;  // StatusText: the daemon's last STATUS= line, if systemd kept it
  // The last error line the unit's latest run logged (from the journal), when
  // this user may read it; empty otherwise.
  std::string last_error;
};

// "ConditionPathExists=/sys/bus/pci/drivers/nvidia" from systemd's journal
// line "UNIT - DESCRIPTION was skipped because of an unmet condition check
// (ConditionPathExists=/sys/bus/pci/drivers/nvidia)."; empty for any other.
std::string skipped_condition(const std::string& message);

}  // namespace vramswap::systemd
