#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vramswap::status {

struct InstanceStatus;

// The daemon before this one ended without a clean stop: it crashed, was
// killed, or exited on an error while it served. Its VRAM went with it, and
// with that VRAM every page swapped there: the programs that owned them were
// killed (SIGBUS) when they touched them. A clean stop removes the status
// file, so a status file still there when a daemon starts (under the instance
// lock, so its writer is gone) is the record of such an end. /run is empty
// after a reboot, which is right: nothing of an earlier boot is lost.
struct PreviousCrash {
  int64_t pid = 0;
  // When it ended: when systemd saw it end (`vramswapd --record-exit`), or
  // else its last status write (at most a few seconds before).
  int64_t ended_unix = 0;
  bool end_seen = false;  // ended_unix is the end itself, not the last write
  std::string cause;      // "killed by SIGKILL", "exit status 1"; empty: unknown
  std::string device;     // the nbd device it served; empty: none
  bool swap_active = false;
  uint64_t swap_used_bytes = 0;  // swapped out to it at its last status: lost
  uint64_t count = 1;            // unclean ends in a row since a clean stop or boot
  // Its VRAM and block map were in systemd's file descriptor store (live
  // restart): the pages wait there for the restarted daemon, and are lost
  // only if that one cannot take them over.
  bool vram_kept = false;
  // The daemon that reports it took the device over with every page.
  bool taken_over = false;
};

// What a starting daemon makes of the status file it finds for its instance
// (`left`), holding the instance lock. Nothing when there is no file or it is
// this process's own.
std::optional<PreviousCrash> crash_from_leftover(const std::optional<InstanceStatus>& left,
                                                 int64_t own_pid);

// Marks a dead daemon's file as ended (`vramswapd --record-exit`, run by
// systemd's ExecStopPost= after the daemon died): state "crashed", the cause
// and the time. False when the file is not one of a daemon that was still
// serving or stopping (it ended cleanly, or was marked already).
bool mark_ended(InstanceStatus& left, const std::string& cause, int64_t now_unix);

// How a process ended, from systemd's $EXIT_CODE ("exited", "killed",
// "dumped") and $EXIT_STATUS (a number, or a signal name such as "KILL"):
// "exit status 1", "killed by SIGKILL", "SIGSEGV, core dumped". Empty when
// systemd said nothing.
std::string describe_exit(const std::string& exit_code, const std::string& exit_status);

// "at 2026-12-05 18:30:12 UTC" or "after 2026-12-05 18:30:12 UTC (its last
// status)", in local time.
std::string describe_crash_time(const PreviousCrash& crash);

// What was lost: "160.2 MiB were in swap on /dev/nbd0 and are lost: ...",
// or that nothing was (kept for, or taken over by, the restarted daemon).
std::string describe_crash_loss(const PreviousCrash& crash);
// The same for the status line: "160.2 MiB of swap lost".
std::string summarize_crash_loss(const PreviousCrash& crash);

// The sentence the journal and `vramswap status` use: "the previous vramswapd
// (pid 1234) died without stopping at ... (killed by SIGKILL); 160.2 MiB were
// in swap on /dev/nbd0 and are lost: ...". `who` names the dead daemon.
std::string describe_crash(const PreviousCrash& crash,
                           std::string_view who = "the previous vramswapd");

}  // namespace vramswap::status
