#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/chunk_gate.hpp"
#include "engine/connection.hpp"
#include "engine/copy_round.hpp"
#include "engine/staging_arena.hpp"
#include "engine/stats.hpp"
#include "engine/verify_guard.hpp"

namespace vramswap::engine {

// The reply side of a worker: stages read data into the send arena (a copy
// from VRAM queued on the round), decides each request once the round's
// copies have landed or not, and sends every reply that is ready with one
// sendmsg per connection. Replies leave in request order.
class ReplySender {
 public:
  ReplySender(StagingArena& tx, CopyRound& copies, VerifyGuard& verify, ChunkGate& gate,
              WorkerStats& stats) noexcept
      : tx_(tx), copies_(copies), verify_(verify), gate_(gate), stats_(stats) {}

  // Whether the send arena can take a read of `length` now (at least its
  // first piece); otherwise its header waits for the next round.
  bool has_room_for_read(uint32_t length) const noexcept;
  // Queues the copy of the next piece of a read's data into the send arena;
  // false when the arena, or the connection's socket, has no room for a
  // worthwhile piece (the socket: connection.socket_full is set).
  bool stage(Connection& connection, Reply& reply) noexcept;
  // Stages data for replies that still owe some (a read larger than one
  // round's arena, or data a client did not take in an earlier round).
  // False when one could not be fully staged: nothing behind it can be sent
  // this round, so there is no point reading more requests. Starts the
  // connection's round: nothing staged for it yet, its socket not asked.
  bool stage_queued(Connection& connection) noexcept;

  // After the round's sync: every copy queued this round either landed or
  // not (all_lost: the sync could not say which, so none counts as landed).
  // Releases the blocks of writes that are complete, and the chunks of
  // complete requests other than reads (a read keeps its chunks until its
  // last byte is sent: data the client did not take is staged again from
  // where it lies).
  void settle(Connection& connection, bool all_lost) noexcept;
  // Sends what is ready. True when the socket took less than offered: the
  // client is slow to read, wait until it is writable (writable_wanted set).
  bool send(Connection& connection) noexcept;

 private:
  bool fail(Connection& connection, Reply& reply) noexcept;
  size_t socket_room(Connection& connection, size_t wanted) noexcept;

  StagingArena& tx_;
  CopyRound& copies_;
  VerifyGuard& verify_;
  ChunkGate& gate_;
  WorkerStats& stats_;
};

}  // namespace vramswap::engine
