#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace vramswap::systemd {

// The systemd unit the calling process belongs to ("vramswap@0.service"),
// from its cgroup; nothing when it runs outside a unit, or systemd does not
// run the system.
std::optional<std::string> own_unit();

// The type of the job systemd is running on `unit` right now, as systemd
// names it ("stop", "restart", "start", ...), or "" when it runs none: what
// a daemon that got SIGTERM asks to tell "systemctl restart" (and a package
// upgrade's restart) from a stop. Answers within a few seconds; nothing,
// with `why`, when systemd cannot be reached or does not answer.
std::optional<std::string> unit_job_type(const std::string& unit, std::string& why);

// How many descriptors systemd keeps for `unit` in its file descriptor store
// (FileDescriptorStoreMax=): more sent are dropped, and the sender is not
// told. Nothing, with `why`, when systemd cannot be asked.
std::optional<uint32_t> fd_store_max(const std::string& unit, std::string& why);

}  // namespace vramswap::systemd
