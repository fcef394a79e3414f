#pragma once

#include <cstddef>
#include <cstdint>

#include "common/byte_size.hpp"

namespace vramswap::engine {

// Unparsed input a connection may keep between rounds. A receive in the
// header phase never asks for more than this, so whatever is left over when a
// round stops parsing (out of reply slots or staging) always fits here: no
// client can make the daemon buffer more than this for it.
inline constexpr size_t carry_bytes = 32 * KiB;

// Replies a connection may have in flight (parsed, not yet fully sent). A
// client that pipelines more simply waits: its requests stay in its socket.
inline constexpr size_t reply_slots = 128;

// Send and receive buffer of every served socket (kernel and client): with
// the kernel's doubling for bookkeeping, room for a whole send arena.
inline constexpr size_t socket_buffer_bytes = 4 * MiB;

// The smallest piece of a large read worth staging in a round: below this a
// read waits for the next round's empty arena rather than trickling out.
inline constexpr size_t min_read_chunk = 256 * KiB;

// A client has this long to finish the handshake; slow or silent handshakes
// would otherwise hold connection slots forever.
inline constexpr int handshake_timeout_seconds = 30;

// How long a stop waits for connections to drain: requests already read get
// their real replies, later ones ESHUTDOWN, then each connection closes. A
// client that does not read its replies, or keeps sending, holds the stop no
// longer than this.
inline constexpr unsigned default_stop_drain_ms = 5000;

// How `busy_poll` was configured (see BusyPollPolicy).
enum class BusyPollMode : uint8_t {
  adaptive,  // not set: spin only where it pays
  fixed,     // set explicitly: spin that long after every round with work; 0: never
};

// Sizes a deployment chooses (config and defaults live in the daemon).
struct EngineOptions {
  unsigned workers = 1;
  size_t rx_arena_bytes = 4 * MiB;  // pinned, per worker: write payloads on their way to VRAM
  size_t tx_arena_bytes = 4 * MiB;  // pinned, per worker: read data on its way to clients
  unsigned max_clients = 256;       // userspace (listen socket) connections at once
  bool copy_kernel = true;          // batch small copies into one kernel launch per round
  unsigned busy_poll_us = 0;        // after a round with work, poll this long before sleeping
  BusyPollMode busy_poll_mode = BusyPollMode::fixed;  // adaptive: BusyPollPolicy decides
  bool verify = false;                                // checksum every 4 KiB block (BlockChecksums)
  unsigned stop_drain_ms = default_stop_drain_ms;     // bound of Server::stop's drain
};

}  // namespace vramswap::engine
