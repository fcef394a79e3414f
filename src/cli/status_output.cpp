#include "cli/status_output.hpp"

#include "cli/output_common.hpp"
#include "cli/text.hpp"
#include "common/byte_size.hpp"

namespace vramswap::cli {
namespace {

std::string plural(uint64_t count, const std::string& one, const std::string& many) {
  return format_count(count) + " " + (count == 1 ? one : many);
}

std::string headline(const InstanceView& view) {
  std::string line = view.name + ": ";
  line += view.state == "not-running" ? "not running" : view.state;
  if (view.health) line += ", health " + *view.health;
  if (view.stale_status_file) line += " (stale status file)";
  if (!view.configured) line += " (not configured)";
  return line + "\n";
}

std::string errors_summary(const status::InstanceStatus& s) {
  std::string text;
  auto add = [&](uint64_t count, const char* one, const char* many) {
    if (count == 0) return;
    text += (text.empty() ? "" : ", ") + plural(count, one, many);
  };
  add(s.io_errors, "I/O error", "I/O errors");
  add(s.failed_copy_calls, "failed copy call", "failed copy calls");
  add(s.protocol_errors, "protocol error", "protocol errors");
  add(s.dropped_connections, "dropped connection", "dropped connections");
  add(s.copy_failures, "failed VRAM copy", "failed VRAM copies");
  add(s.checksum_failures, "checksum mismatch", "checksum mismatches");
  if (s.device_lost) text += std::string(text.empty() ? "" : ", ") + "GPU lost";
  return text.empty() ? "none" : text;
}

std::string format_instance_text(const InstanceView& view) {
  std::string out = headline(view);
  if (view.daemon) {
    const status::InstanceStatus& s = *view.daemon;
    out += format_field(
        "GPU", std::to_string(s.gpu_index) + ": " + s.gpu_name + " (" + s.gpu_pci_bus_id + ")");
    out += format_field("VRAM",
                        format_byte_size(s.size_bytes) + " served, pid " + std::to_string(s.pid));
    if (!s.device.empty()) {
      out += format_field(
          "device", s.device + (s.link.empty() ? "" : " = " + s.link) + ", " +
                        plural(s.kernel_connections, "kernel connection", "kernel connections"));
    }
    if (!s.listen.empty()) out += format_field("listen", s.listen);
    if (s.elastic) {
      std::string where = format_byte_size(s.vram_bytes) + " in VRAM, " +
                          format_byte_size(s.spill_bytes) + " in " + s.spill_path;
      if (s.none_bytes) where += ", " + format_byte_size(s.none_bytes) + " with no storage";
      out += format_field(
          "elastic",
          where + "; " +
              (s.gpu_released ? std::string("the GPU is released (no CUDA context held)")
                              : format_byte_size(s.gpu_free_bytes) + " of the GPU free"));
      if (!s.last_move.empty()) {
        const int64_t age = s.updated_unix - s.last_move_unix;
        out += format_field("last move", s.last_move + (age >= 0 ? " (" + std::to_string(age) +
                                                                       " s before this status)"
                                                                 : std::string()));
      }
    }
  }
  if (view.swap.source != "none") {
    std::string swap = "not active";
    if (view.swap.active) {
      swap = format_byte_size(view.swap.used_bytes) + " used of " +
             format_byte_size(view.swap.size_bytes);
      if (view.swap.priority) swap += ", priority " + std::to_string(*view.swap.priority);
    }
    out += format_field("swap", swap);
  }
  if (view.daemon) {
    const status::InstanceStatus& s = *view.daemon;
    std::string io = plural(s.reads, "read", "reads") + " (" + format_byte_size(s.bytes_read) +
                     "), " + plural(s.writes, "write", "writes") + " (" +
                     format_byte_size(s.bytes_written) + ")";
    if (s.trims) io += ", " + plural(s.trims, "discard", "discards");
    if (s.zeroes) io += ", " + plural(s.zeroes, "zeroing", "zeroings");
    if (s.flushes) io += ", " + plural(s.flushes, "flush", "flushes");
    out += format_field("I/O", io);
    out += format_field("errors", errors_summary(s));
    out += format_field("restart", s.fd_store_handover
                                       ? "in place: VRAM and block map kept by systemd, a crash "
                                         "loses nothing"
                                       : "not kept by systemd: a crash loses what is swapped here");
  }
  for (const Message& message : view.messages)
    out += format_message(message, 2);
  return out;
}

Json gpu_json(const status::InstanceStatus& s) {
  return {{"index", s.gpu_index},
          {"name", s.gpu_name},
          {"uuid", s.gpu_uuid},
          {"pci_bus_id", s.gpu_pci_bus_id},
          {"total_bytes", s.gpu_total_bytes}};
}

Json io_json(const IoCounters& counters) {
  Json io = Json::object();
#define VRAMSWAP_IO_COUNTER(name) io[#name] = counters.name;
  VRAMSWAP_IO_COUNTERS(VRAMSWAP_IO_COUNTER)
#undef VRAMSWAP_IO_COUNTER
  return io;
}

Json elastic_json(const status::InstanceStatus& s) {
  Json last = nullptr;
  if (!s.last_move.empty()) {
    last = {{"line", s.last_move}, {"reason", s.last_move_reason}, {"unix", s.last_move_unix}};
  }
  return {{"vram_bytes", s.vram_bytes},    {"spill_bytes", s.spill_bytes},
          {"none_bytes", s.none_bytes},    {"gpu_free_bytes", s.gpu_free_bytes},
          {"spill_path", s.spill_path},    {"last_move", last},
          {"gpu_released", s.gpu_released}};
}

Json unit_json(const systemd::UnitState& unit) {
  const char* how = unit.exit_code == 1   ? "exited"
                    : unit.exit_code == 2 ? "killed"
                    : unit.exit_code == 3 ? "dumped"
                                          : nullptr;
  return {{"name", unit.name},
          {"load_state", unit.load_state},
          {"active_state", unit.active_state},
          {"sub_state", unit.sub_state},
          {"result", unit.result},
          {"exit_code", how ? Json(how) : Json(nullptr)},
          {"exit_status", how ? Json(unit.exit_status) : Json(nullptr)},
          {"failed_condition", string_or_null(unit.failed_condition)},
          {"status_text", string_or_null(unit.status_text)},
          {"last_error", string_or_null(unit.last_error)}};
}

Json previous_crash_json(const status::PreviousCrash& crash) {
  return {{"pid", crash.pid},
          {"ended_unix", crash.ended_unix},
          {"end_seen", crash.end_seen},
          {"cause", string_or_null(crash.cause)},
          {"device", string_or_null(crash.device)},
          {"swap_active", crash.swap_active},
          {"swap_lost_bytes", crash.swap_used_bytes},
          {"count", crash.count},
          {"taken_over", crash.taken_over}};
}

Json instance_json(const InstanceView& view) {
  const status::InstanceStatus* s = view.daemon ? &*view.daemon : nullptr;
  Json j;
  j["name"] = view.name;
  j["configured"] = view.configured;
  j["state"] = view.state;
  j["health"] = view.health ? Json(*view.health) : Json(nullptr);
  j["pid"] = s ? Json(s->pid) : Json(nullptr);
  j["status_line"] = s ? Json(s->status_line) : Json(nullptr);
  j["updated_unix"] = s ? Json(s->updated_unix) : Json(nullptr);
  j["status_age_s"] = view.status_age_s ? Json(*view.status_age_s) : Json(nullptr);
  j["stale_status_file"] = view.stale_status_file;
  j["gpu"] = s ? gpu_json(*s) : Json(nullptr);
  j["size_bytes"] = s ? Json(s->size_bytes) : Json(nullptr);
  j["device"] = s ? string_or_null(s->device) : Json(nullptr);
  j["link"] = s ? string_or_null(s->link) : Json(nullptr);
  j["listen"] = s ? string_or_null(s->listen) : Json(nullptr);
  j["kernel_connections"] = s ? Json(s->kernel_connections) : Json(nullptr);
  j["swap"] = {{"active", view.swap.active},
               {"size_bytes", view.swap.size_bytes},
               {"used_bytes", view.swap.used_bytes},
               {"priority", view.swap.priority ? Json(*view.swap.priority) : Json(nullptr)},
               {"source", view.swap.source}};
  j["io"] = s ? io_json(*s) : Json(nullptr);
  j["faults"] = s ? Json{{"device_lost", s->device_lost},
                         {"copy_failures", s->copy_failures},
                         {"checksum_failures", s->checksum_failures}}
                  : Json(nullptr);
  j["elastic"] = s && s->elastic ? elastic_json(*s) : Json(nullptr);
  j["previous_crash"] =
      s && s->previous_crash ? previous_crash_json(*s->previous_crash) : Json(nullptr);
  j["kept_by_systemd"] = s ? Json(s->fd_store_handover) : Json(nullptr);
  j["hardening"] = s ? Json{{"memory_locked", s->memory_locked},
                            {"oom_protected", s->oom_protected},
                            {"io_flusher", s->io_flusher}}
                     : Json(nullptr);
  j["unit"] = view.unit ? unit_json(*view.unit) : Json(nullptr);
  j["messages"] = messages_json(view.messages);
  return j;
}

}  // namespace

std::string format_status_text(const StatusReport& report) {
  std::string out;
  for (const InstanceView& view : report.instances) {
    if (!out.empty()) out += "\n";
    out += format_instance_text(view);
  }
  if (report.instances.empty()) out += "No VRAM swap device is configured or running.\n";
  if (!report.messages.empty()) out += "\n";
  for (const Message& message : report.messages)
    out += format_message(message, 0);
  return out;
}

std::string format_status_json(const StatusReport& report) {
  Json j;
  j["format"] = json_format;
  j["config"] = {{"path", report.config.path},
                 {"found", !report.config.missing && report.config.unreadable.empty()},
                 {"devices", report.configured},
                 {"errors", report.config.report ? report.config.report->all_errors().size() : 0}};
  j["runtime_dir"] = report.runtime_dir;
  j["systemd"] = report.systemd;
  j["instances"] = Json::array();
  for (const InstanceView& view : report.instances)
    j["instances"].push_back(instance_json(view));
  j["messages"] = messages_json(report.messages);
  j["exit_status"] = report.exit_status;
  return j.dump(2) + "\n";
}

}  // namespace vramswap::cli
