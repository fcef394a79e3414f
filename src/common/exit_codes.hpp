#pragma once

// Exit statuses of the programs, from sysexits(3), so that scripts and
// systemd's journal can tell a configuration problem from a missing GPU.
namespace vramswap::exit_code {
inline constexpr int ok = 0;
inline constexpr int usage = 64;        // bad command line
inline constexpr int unavailable = 69;  // no driver, no GPU, no nbd module, too little VRAM
inline constexpr int software = 70;     // internal error
inline constexpr int os_error = 71;     // a system call failed unexpectedly
// Another vramswapd serves the instance now; trying again once it has
// stopped can succeed (EX_TEMPFAIL).
inline constexpr int in_use = 75;
inline constexpr int no_permission = 77;
inline constexpr int config = 78;  // the configuration file is wrong
}  // namespace vramswap::exit_code
