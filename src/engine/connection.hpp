#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "engine/limits.hpp"
#include "nbd/handshake.hpp"
#include "store/block_checksums.hpp"
#include "store/chunk_map.hpp"

namespace vramswap::engine {

// One reply the connection owes its client, kept until every byte of it is
// on the wire. Read data is not kept here: a round stages it in the worker's
// arena, no more than the socket has room for, and what the socket still
// does not take is copied from VRAM again in a later round. The NBD spec
// lets a server process requests out of order, so data re-read after a
// later overlapping write is still valid.
struct Reply {
  uint64_t cookie = 0;
  uint64_t offset = 0;         // reads: where the data comes from
  uint32_t data_length = 0;    // reads: bytes of data after the header; otherwise 0
  uint32_t error = 0;          // NBD error to report; 0 = success
  uint32_t sent = 0;           // header + data bytes already written to the socket
  uint32_t staged_length = 0;  // data staged this round, starting at the first unsent data byte
  uint32_t staged_head = 0;    // bytes staged before `staged` (verify: back to a block boundary)
  std::byte* staged = nullptr;
  uint64_t held_offset = 0;   // verify = yes: the range this write or zero-fill holds
  uint32_t held_length = 0;   // in flight (BlockChecksums::writes_begin) until it lands
  bool complete = false;      // false while a write's payload is still arriving
  bool copy_pending = false;  // a copy for it is queued this round: the sync decides its fate
  bool copy_failed = false;   // one of this round's copies for it did not land
  // Elastic VRAM: this round's staged data came (partly) from the spill area
  // or is zeros of a chunk with no storage, not from VRAM.
  bool staged_elsewhere = false;
  // Elastic VRAM: the chunks of the request's range, pinned from the moment
  // its header is decided until storage is done with it (ChunkGate).
  store::ChunkPins pins;
  std::array<std::byte, 16> header{};

  static constexpr uint32_t header_bytes = 16;
  uint32_t data_sent() const noexcept { return sent > header_bytes ? sent - header_bytes : 0; }
  uint32_t data_left() const noexcept { return error ? 0 : data_length - data_sent(); }
  uint32_t total_bytes() const noexcept { return header_bytes + (error ? 0 : data_length); }
  // Staged data lives in one round's arena only.
  void unstage() noexcept {
    staged = nullptr;
    staged_length = staged_head = 0;
  }
};

enum class Origin : uint8_t { kernel, client };
enum class Phase : uint8_t { handshake, transmission, closed };

// Everything the daemon holds for one connection: fixed size, allocated once
// in the connection pool, so the I/O path never allocates.
struct Connection {
  int fd = -1;
  Origin origin = Origin::client;
  Phase phase = Phase::closed;
  unsigned worker = 0;
  const char* close_reason = nullptr;  // why it was closed, for one debug line

  // Handshake (clients only).
  std::optional<nbd::Handshake> handshake;
  int64_t handshake_deadline_ns = 0;

  // Input not parsed yet (always a prefix of a request stream).
  std::array<std::byte, carry_bytes> carry{};
  size_t carry_length = 0;

  // A write payload (or a refused one being discarded) still arriving.
  uint64_t payload_left = 0;
  uint64_t payload_offset = 0;
  bool payload_discard = false;
  Reply* payload_reply = nullptr;
  store::BlockChecksums::Partial payload_checksum;  // verify = yes: the block still arriving
  // The next bytes of that payload, received while the last round's copies
  // ran (RequestReader::receive_ahead); they lie in the worker's receive arena for
  // the coming round and are taken before anything else of this connection.
  std::byte* ahead = nullptr;
  size_t ahead_length = 0;

  // Replies in request order: a ring of reply_slots.
  std::array<Reply, reply_slots> replies{};
  size_t reply_head = 0;
  size_t reply_count = 0;

  // The socket's room for this round's read data (ReplySender::stage).
  // `send_buffer`: SO_SNDBUF (0: unknown, no limit); `send_room`: the room
  // found this round (unasked_room until asked); `staged_bytes`: what this
  // round staged so far; `socket_full`: staging stopped for want of room.
  static constexpr size_t unasked_room = SIZE_MAX;
  size_t send_buffer = 0;
  size_t send_room = unasked_room;
  size_t staged_bytes = 0;
  bool socket_full = false;
  void new_send_round() noexcept {
    send_room = unasked_room;
    staged_bytes = 0;
    socket_full = false;
  }

  // Scheduling state, owned by the worker.
  bool writable_wanted = false;  // EPOLLOUT registered: the socket buffer is full
  bool needs_round = false;      // stopped for want of arena space or slots: come back
  bool in_round = false;
  bool disconnect_requested = false;
  // Elastic VRAM: since when the next request waits for a chunk in motion
  // (or a write for a chunk to be given storage); 0: not waiting. When the
  // mover was last asked for storage (ChunkGate::admit).
  int64_t chunk_wait_since_ns = 0;
  int64_t storage_asked_ns = 0;

  Reply& reply_at(size_t i) noexcept { return replies[(reply_head + i) % reply_slots]; }
  bool replies_full() const noexcept { return reply_count == reply_slots; }
  Reply& push_reply(uint64_t cookie) noexcept {
    Reply& r = replies[(reply_head + reply_count++) % reply_slots];
    r = Reply{};
    r.cookie = cookie;
    return r;
  }
  void pop_reply() noexcept {
    replies[reply_head].pins.release();
    reply_head = (reply_head + 1) % reply_slots;
    --reply_count;
  }
  void close(const char* reason) noexcept {
    if (phase != Phase::closed) close_reason = reason;
    phase = Phase::closed;
  }
  bool closed() const noexcept { return phase == Phase::closed; }
};

}  // namespace vramswap::engine
