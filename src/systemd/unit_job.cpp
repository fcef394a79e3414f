#include "systemd/unit_job.hpp"

#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-login.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "systemd/bus_call.hpp"

namespace vramswap::systemd {
namespace {

constexpr const char* destination = "org.freedesktop.systemd1";
// The daemon asks while it stops, with its device still served: a systemd
// that does not answer must not hold the stop up for the bus's default 25 s.
constexpr uint64_t call_timeout_us = 5'000'000;

// A bus connection to systemd, closed however the query ends.
struct Connection {
  sd_bus* bus = nullptr;
  ~Connection() { sd_bus_flush_close_unref(bus); }
};

// Root talks to systemd directly, as systemctl does (no D-Bus daemon
// needed); anyone else over the system bus.
int connect(Connection& connection) {
  if (geteuid() == 0) {
    sd_bus* direct = nullptr;
    if (sd_bus_new(&direct) >= 0 &&
        sd_bus_set_address(direct, "unix:path=/run/systemd/private") >= 0 &&
        sd_bus_start(direct) >= 0) {
      connection.bus = direct;
      return 0;
    }
    sd_bus_unref(direct);
  }
  return sd_bus_open_system(&connection.bus);
}

// Connects with the short call timeout and finds `unit`'s object path;
// false with `why`.
bool open_unit(Connection& connection, const std::string& unit, std::string& path,
               std::string& why) {
  if (const int r = connect(connection); r < 0) {
    why = std::string("cannot connect to systemd: ") + std::strerror(-r);
    return false;
  }
  sd_bus_set_method_call_timeout(connection.bus, call_timeout_us);
  char* unit_path = nullptr;
  if (sd_bus_path_encode("/org/freedesktop/systemd1/unit", unit.c_str(), &unit_path) < 0) {
    why = "cannot encode the object path of " + unit;
    return false;
  }
  path = unit_path;
  std::free(unit_path);
  return true;
}

}  // namespace

std::optional<std::string> own_unit() {
  // A cgroup path can look like a unit's where systemd does not run the
  // system (a container's): only systemd as init answers for units.
  if (sd_booted() <= 0) return std::nullopt;
  char* unit = nullptr;
  if (sd_pid_get_unit(0, &unit) < 0 || !unit) return std::nullopt;
  std::string name = unit;
  std::free(unit);
  return name;
}

std::optional<std::string> unit_job_type(const std::string& unit, std::string& why) {
  Connection connection;
  std::string path;
  if (!open_unit(connection, unit, path, why)) return std::nullopt;

  // Unit.Job is (job id, job object path); id 0: no job.
  BusError error;
  BusMessage reply;
  int r = sd_bus_get_property(connection.bus, destination, path.c_str(),
                              "org.freedesktop.systemd1.Unit", "Job", &error.error, &reply.message,
                              "(uo)");
  if (r < 0) {
    why = "cannot read the job of " + unit + ": " + describe_bus_failure(r, error.error);
    return std::nullopt;
  }
  uint32_t id = 0;
  const char* job_path = nullptr;
  if ((r = sd_bus_message_read(reply.message, "(uo)", &id, &job_path)) < 0) {
    why = "cannot read the job of " + unit + ": " + std::strerror(-r);
    return std::nullopt;
  }
  if (id == 0) return std::string();
  BusError type_error;
  char* type = nullptr;
  r = sd_bus_get_property_string(connection.bus, destination, job_path,
                                 "org.freedesktop.systemd1.Job", "JobType", &type_error.error,
                                 &type);
  if (r < 0) {
    why = "cannot read the type of job " + std::to_string(id) + " of " + unit + ": " +
          describe_bus_failure(r, type_error.error);
    return std::nullopt;
  }
  std::string result = type ? type : "";
  std::free(type);
  return result;
}

std::optional<uint32_t> fd_store_max(const std::string& unit, std::string& why) {
  Connection connection;
  std::string path;
  if (!open_unit(connection, unit, path, why)) return std::nullopt;
  BusError error;
  uint32_t max = 0;
  const int r = sd_bus_get_property_trivial(connection.bus, destination, path.c_str(),
                                            "org.freedesktop.systemd1.Service",
                                            "FileDescriptorStoreMax", &error.error, 'u', &max);
  if (r < 0) {
    why = "cannot read FileDescriptorStoreMax of " + unit + ": " +
          describe_bus_failure(r, error.error);
    return std::nullopt;
  }
  return max;
}

}  // namespace vramswap::systemd
