#pragma once

#include <memory>
#include <optional>
#include <string>

#include "systemd/unit_state.hpp"

namespace vramswap::systemd {

// Whether this machine runs systemd (sd_booted(3): /run/systemd/system).
bool systemd_running();

// A connection to systemd on the system bus, for reading unit properties
// (what `systemctl show` reads); needs no privilege.
class SystemdUnits {
 public:
  // Throws std::runtime_error with the reason when the bus cannot be reached.
  SystemdUnits();
  ~SystemdUnits();
  SystemdUnits(const SystemdUnits&) = delete;
  SystemdUnits& operator=(const SystemdUnits&) = delete;

  // The state of `unit` ("vramswap@0.service"); systemd loads the unit to
  // answer, so a unit that has never run answers too. Throws
  // std::runtime_error when systemd does not answer.
  UnitState query(const std::string& unit);

 private:
  struct Bus;
  std::unique_ptr<Bus> bus_;
};

// The last error (priority err or worse) that the unit's run `invocation_id`
// (32 hex digits; empty: any run) logged, from the system journal; empty when
// there is none or the journal cannot be read by this user.
std::string last_journal_error(const std::string& unit, const std::string& invocation_id);

}  // namespace vramswap::systemd
