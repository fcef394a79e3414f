#include "systemd/unit_query.hpp"

#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-id128.h>
#include <systemd/sd-journal.h>

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "systemd/bus_call.hpp"

namespace vramswap::systemd {
namespace {

constexpr const char* destination = "org.freedesktop.systemd1";
constexpr const char* unit_interface = "org.freedesktop.systemd1.Unit";
constexpr const char* service_interface = "org.freedesktop.systemd1.Service";

// Journal entries looked at, newest first, before giving up on finding an error.
constexpr int max_journal_entries = 2000;
// An error line longer than this is cut: it goes into a one-line message.
constexpr size_t max_error_length = 400;

std::string hex(const void* data, size_t size) {
  std::string text;
  const auto* bytes = static_cast<const unsigned char*>(data);
  char digits[3];
  for (size_t i = 0; i < size; ++i) {
    std::snprintf(digits, sizeof digits, "%02x", bytes[i]);
    text += digits;
  }
  return text;
}

}  // namespace

namespace {

// The local system journal, narrowed by field matches (all must hold), read
// newest entry first.
class JournalReader {
 public:
  explicit JournalReader(const std::vector<std::string>& matches) {
    if (sd_journal_open(&journal_, SD_JOURNAL_LOCAL_ONLY | SD_JOURNAL_SYSTEM) < 0) {
      journal_ = nullptr;
      return;
    }
    for (const std::string& match : matches) {
      if (sd_journal_add_match(journal_, match.c_str(), 0) < 0) return;
    }
    ready_ = sd_journal_seek_tail(journal_) >= 0;
  }
  ~JournalReader() { sd_journal_close(journal_); }
  JournalReader(const JournalReader&) = delete;
  JournalReader& operator=(const JournalReader&) = delete;

  // The next older entry; false when there is none (or the journal is closed).
  bool previous() { return ready_ && sd_journal_previous(journal_) > 0; }

  // A field of the current entry ("" when it has none).
  std::string field(std::string_view name) {
    const void* data = nullptr;
    size_t size = 0;
    if (sd_journal_get_data(journal_, std::string(name).c_str(), &data, &size) < 0 ||
        size <= name.size()) {
      return {};
    }
    return std::string(static_cast<const char*>(data) + name.size() + 1, size - name.size() - 1);
  }

 private:
  sd_journal* journal_ = nullptr;
  bool ready_ = false;
};

std::string boot_id() {
  sd_id128_t id;
  if (sd_id128_get_boot(&id) < 0) return {};
  char text[SD_ID128_STRING_MAX];
  return sd_id128_to_string(id, text);
}

// What the journal says about the unit's jobs in this boot: whether its last
// start was skipped (and by which condition), or whether it ever ran. Only
// root sees the whole journal: for others, absence proves nothing.
void fill_history_from_journal(UnitState& state) {
  const std::string boot = boot_id();
  if (boot.empty()) return;
  JournalReader journal({"UNIT=" + state.name, "_PID=1", "_BOOT_ID=" + boot});
  for (int seen = 0; seen < max_journal_entries && journal.previous(); ++seen) {
    if (journal.field("JOB_TYPE").empty()) continue;
    state.failed_condition = skipped_condition(journal.field("MESSAGE"));
    if (state.failed_condition.empty()) state.history = UnitState::History::started;
    return;
  }
  if (geteuid() == 0) state.history = UnitState::History::not_started;
}

}  // namespace

struct SystemdUnits::Bus {
  sd_bus* bus = nullptr;
  ~Bus() { sd_bus_flush_close_unref(bus); }

  std::string path_of(const std::string& unit) {
    char* path = nullptr;
    if (sd_bus_path_encode("/org/freedesktop/systemd1/unit", unit.c_str(), &path) < 0) {
      throw std::runtime_error("cannot encode the object path of " + unit);
    }
    std::string result = path;
    std::free(path);
    return result;
  }

  std::string string_property(const std::string& path, const char* interface, const char* name,
                              bool required) {
    BusError error;
    char* value = nullptr;
    const int r = sd_bus_get_property_string(bus, destination, path.c_str(), interface, name,
                                             &error.error, &value);
    if (r < 0) {
      if (required) {
        throw std::runtime_error(std::string("cannot read ") + name + ": " +
                                 describe_bus_failure(r, error.error));
      }
      return {};
    }
    std::string result = value ? value : "";
    std::free(value);
    return result;
  }

  template <typename T>
  T trivial_property(const std::string& path, const char* interface, const char* name, char type,
                     T fallback) {
    BusError error;
    T value{};
    if (sd_bus_get_property_trivial(bus, destination, path.c_str(), interface, name, &error.error,
                                    type, &value) < 0) {
      return fallback;
    }
    return value;
  }

  // The first condition whose last check failed, as "ConditionPathExists=/x"
  // (with '|' and '!' as in the unit file).
  std::string failed_condition(const std::string& path) {
    BusError error;
    BusMessage reply;
    if (sd_bus_get_property(bus, destination, path.c_str(), unit_interface, "Conditions",
                            &error.error, &reply.message, "a(sbbsi)") < 0) {
      return {};
    }
    if (sd_bus_message_enter_container(reply.message, 'a', "(sbbsi)") < 0) return {};
    const char* type = nullptr;
    const char* parameter = nullptr;
    int trigger = 0, negate = 0, state = 0;
    while (sd_bus_message_read(reply.message, "(sbbsi)", &type, &trigger, &negate, &parameter,
                               &state) > 0) {
      // state: 0 not checked, > 0 met, < 0 not met (or could not be checked)
      if (state < 0) {
        return std::string(type) + "=" + (trigger ? "|" : "") + (negate ? "!" : "") + parameter;
      }
    }
    return {};
  }

  std::string invocation_id(const std::string& path) {
    BusError error;
    BusMessage reply;
    if (sd_bus_get_property(bus, destination, path.c_str(), unit_interface, "InvocationID",
                            &error.error, &reply.message, "ay") < 0) {
      return {};
    }
    const void* data = nullptr;
    size_t size = 0;
    if (sd_bus_message_read_array(reply.message, 'y', &data, &size) < 0 || size == 0) return {};
    return hex(data, size);
  }
};

bool systemd_running() {
  return sd_booted() > 0;
}

SystemdUnits::SystemdUnits() : bus_(std::make_unique<Bus>()) {
  // Root talks to systemd directly, as systemctl does: that works without a
  // D-Bus daemon (minimal systems and containers often have none).
  if (geteuid() == 0) {
    sd_bus* direct = nullptr;
    if (sd_bus_new(&direct) >= 0 &&
        sd_bus_set_address(direct, "unix:path=/run/systemd/private") >= 0 &&
        sd_bus_start(direct) >= 0) {
      bus_->bus = direct;
      return;
    }
    sd_bus_unref(direct);
  }
  const int r = sd_bus_open_system(&bus_->bus);
  if (r < 0) {
    throw std::runtime_error(std::string("cannot connect to the system bus: ") + std::strerror(-r) +
                             (geteuid() == 0 ? "" : "; run vramswap status as root"));
  }
}

SystemdUnits::~SystemdUnits() = default;

UnitState SystemdUnits::query(const std::string& unit) {
  const std::string path = bus_->path_of(unit);
  UnitState state;
  state.name = unit;
  state.load_state = bus_->string_property(path, unit_interface, "LoadState", true);
  state.active_state = bus_->string_property(path, unit_interface, "ActiveState", true);
  state.sub_state = bus_->string_property(path, unit_interface, "SubState", false);
  state.result = bus_->string_property(path, service_interface, "Result", false);
  state.exit_code =
      bus_->trivial_property<int32_t>(path, service_interface, "ExecMainCode", 'i', 0);
  state.exit_status =
      bus_->trivial_property<int32_t>(path, service_interface, "ExecMainStatus", 'i', 0);
  if (bus_->trivial_property<uint64_t>(path, service_interface, "ExecMainStartTimestamp", 't', 0) !=
      0) {
    state.history = UnitState::History::started;
  }
  const bool condition_checked =
      bus_->trivial_property<uint64_t>(path, unit_interface, "ConditionTimestamp", 't', 0) != 0;
  const int condition_met =
      bus_->trivial_property<int>(path, unit_interface, "ConditionResult", 'b', 1);
  if (condition_checked && !condition_met) state.failed_condition = bus_->failed_condition(path);
  // systemd unloads inactive units nothing refers to, and forgets their
  // conditions and timestamps: the journal still has their last job.
  if (state.active_state == "inactive" && state.failed_condition.empty() &&
      state.history != UnitState::History::started) {
    fill_history_from_journal(state);
  }
  state.status_text = bus_->string_property(path, service_interface, "StatusText", false);
  if (state.active_state == "failed" || state.sub_state == "auto-restart") {
    state.last_error = last_journal_error(unit, bus_->invocation_id(path));
  }
  return state;
}

std::string last_journal_error(const std::string& unit, const std::string& invocation_id) {
  std::vector<std::string> matches = {"_SYSTEMD_UNIT=" + unit};
  if (!invocation_id.empty()) matches.push_back("_SYSTEMD_INVOCATION_ID=" + invocation_id);
  JournalReader journal(matches);
  for (int seen = 0; seen < max_journal_entries && journal.previous(); ++seen) {
    const std::string priority = journal.field("PRIORITY");
    if (priority.size() != 1 || priority[0] < '0' || priority[0] > '3') continue;
    std::string found = journal.field("MESSAGE");
    if (found.empty()) continue;
    if (found.size() > max_error_length) found = found.substr(0, max_error_length) + "...";
    return found;
  }
  return {};
}

}  // namespace vramswap::systemd
