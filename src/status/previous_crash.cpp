#include "status/previous_crash.hpp"

#include <ctime>

#include "common/byte_size.hpp"
#include "status/instance_status.hpp"

namespace vramswap::status {
namespace {

// States of a daemon that had not finished: it serves, or waits for swapoff.
bool was_running(const std::string& state) {
  return state == "serving" || state == "stopping";
}

std::string local_time(int64_t unix_time) {
  const time_t t = static_cast<time_t>(unix_time);
  tm local{};
  char text[64] = "?";
  if (localtime_r(&t, &local)) std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S %Z", &local);
  return text;
}

}  // namespace

std::optional<PreviousCrash> crash_from_leftover(const std::optional<InstanceStatus>& left,
                                                 int64_t own_pid) {
  if (!left || left->pid == own_pid) return std::nullopt;
  PreviousCrash crash;
  crash.pid = left->pid;
  crash.end_seen = left->ended_unix != 0;
  crash.ended_unix = crash.end_seen ? left->ended_unix : left->updated_unix;
  crash.cause = left->exit_cause;
  crash.device = left->device;
  crash.swap_active = left->swap_active;
  crash.swap_used_bytes = left->swap_active ? left->swap_used_bytes : 0;
  crash.count = (left->previous_crash ? left->previous_crash->count : 0) + 1;
  crash.vram_kept = left->fd_store_handover;
  return crash;
}

bool mark_ended(InstanceStatus& left, const std::string& cause, int64_t now_unix) {
  if (!was_running(left.state)) return false;
  left.state = "crashed";
  left.health = "failed";
  left.exit_cause = cause;
  left.ended_unix = now_unix;
  return true;
}

std::string describe_exit(const std::string& exit_code, const std::string& exit_status) {
  if (exit_code == "exited") return "exit status " + exit_status;
  if (exit_code == "killed") return "killed by SIG" + exit_status;
  if (exit_code == "dumped") return "SIG" + exit_status + ", core dumped";
  return "";
}

std::string describe_crash_time(const PreviousCrash& crash) {
  if (crash.end_seen) return "at " + local_time(crash.ended_unix);
  return "after " + local_time(crash.ended_unix) + " (its last status)";
}

std::string describe_crash_loss(const PreviousCrash& crash) {
  const std::string device = crash.device.empty() ? "the export" : crash.device;
  if (crash.taken_over) {
    return "this daemon took " + device +
           " over with every written page (its VRAM and block map waited in systemd's file "
           "descriptor store)";
  }
  if (crash.vram_kept) {
    return (crash.swap_active ? format_byte_size(crash.swap_used_bytes) + " in swap on " : "") +
           device + (crash.swap_active ? " wait" : " waits") +
           " in systemd's file descriptor store for the restarted daemon";
  }
  if (crash.swap_active) {
    return format_byte_size(crash.swap_used_bytes) + " were in swap on " + crash.device +
           " and are lost: the programs that owned those pages were killed when they touched "
           "them";
  }
  if (!crash.device.empty()) return crash.device + " was not swap: no swapped page was lost";
  return "what its clients had written is lost";
}

std::string summarize_crash_loss(const PreviousCrash& crash) {
  if (crash.taken_over) return "nothing lost, taken over";
  if (crash.vram_kept) return "swap kept for the restart";
  if (crash.swap_active) return format_byte_size(crash.swap_used_bytes) + " of swap lost";
  if (!crash.device.empty()) return "no swap lost";
  return "its clients' data lost";
}

std::string describe_crash(const PreviousCrash& crash, std::string_view who) {
  std::string text = std::string(who) + " (pid " + std::to_string(crash.pid) +
                     ") died without stopping " + describe_crash_time(crash) +
                     (crash.cause.empty() ? "" : " (" + crash.cause + ")") + "; " +
                     describe_crash_loss(crash);
  if (crash.count > 1) {
    text += " (" + std::to_string(crash.count) +
            " unclean ends in a row; the journal has the earlier ones)";
  }
  return text;
}

}  // namespace vramswap::status
