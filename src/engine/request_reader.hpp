#pragma once

#include <cstddef>
#include <span>

#include "engine/chunk_gate.hpp"
#include "engine/connection.hpp"
#include "engine/copy_round.hpp"
#include "engine/reply_sender.hpp"
#include "engine/staging_arena.hpp"
#include "engine/stats.hpp"
#include "engine/verify_guard.hpp"
#include "nbd/transmission.hpp"

namespace vramswap::engine {

// The request side of a worker: receives a connection's requests into the
// receive arena (pinned, so write payloads are copied to VRAM straight from
// where they arrived), decodes each, lets the NBD rules decide it, and starts
// it: a read staged by the ReplySender, a write or zero-fill queued on the
// round, everything else answered at once. With elastic VRAM a request that
// touches storage first pins its chunks (ChunkGate); one that must wait for a
// chunk stays unparsed, like one waiting for arena room. It stops where a round cannot go
// on (no arena room, no reply slot, nothing more to read) and keeps what is
// left of the input with the connection.
class RequestReader {
 public:
  // `rx` is this round's half of the receive buffer, `rx_ahead` the other
  // (the worker swaps their contents every round).
  RequestReader(StagingArena& rx, StagingArena& rx_ahead, const nbd::ExportGeometry& geometry,
                CopyRound& copies, VerifyGuard& verify, ChunkGate& gate, ReplySender& replies,
                WorkerStats& stats) noexcept
      : rx_(rx),
        rx_ahead_(rx_ahead),
        geometry_(geometry),
        copies_(copies),
        verify_(verify),
        gate_(gate),
        replies_(replies),
        stats_(stats) {}

  // Reads and starts requests. While the server stops (`draining`), every
  // request read is refused with ESHUTDOWN instead.
  void read_requests(Connection& connection, bool draining) noexcept;
  // Payload bytes received ahead come first: they are the stream's next
  // bytes, and they need neither a reply slot nor send-arena room.
  void take_received_ahead(Connection& connection) noexcept;
  // Between queueing a round's copies and waiting for them: receives the
  // write payloads the round's connections are in the middle of, into the
  // other receive half, while the GPU is busy (one pass at least).
  void receive_ahead(std::span<Connection* const> round) noexcept;

 private:
  void accept_payload(Connection& connection, const std::byte* data, size_t length) noexcept;

  StagingArena& rx_;
  StagingArena& rx_ahead_;
  const nbd::ExportGeometry& geometry_;
  CopyRound& copies_;
  VerifyGuard& verify_;
  ChunkGate& gate_;
  ReplySender& replies_;
  WorkerStats& stats_;
};

}  // namespace vramswap::engine
