#pragma once

#include <string>

namespace vramswap::cli {

enum class HibernateStep { prepare, resume };

// The record of what prepare swapped off: <runtime dir>/hibernate.json.
std::string hibernate_record_path();

// `vramswap hibernate prepare`: run by vramswap-hibernate.service before
// systemd-sleep picks the hibernation location and the kernel freezes the
// daemons. Swaps off every daemon's device that is active swap, so that the
// image never goes to VRAM and nothing is paged to a device whose daemon is
// frozen, and records them; or refuses (exit status 1, one line on standard
// error naming cause and fix) while every device stays swap. A swapoff that
// fails swaps the ones before it on again.
//
// `vramswap hibernate resume`: run by vramswap-hibernate-resume.service
// after the hibernation (done, failed or refused): swaps the recorded devices
// on again with their priority and discard, where each is still its
// instance's device, and removes the record.
//
// Exit status: 0 done (or nothing to do), 1 refused or failed, 77 not root.
int run_hibernate(HibernateStep step, const std::string& config_path);

}  // namespace vramswap::cli
