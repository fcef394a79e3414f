#include "engine/request_reader.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "common/clock.hpp"
#include "engine/limits.hpp"
#include "engine/nonblocking.hpp"
#include "nbd/protocol.hpp"
#include "nbd/transmission.hpp"

namespace vramswap::engine {
namespace {

// While stopping, a request read from now on is not served: it is answered
// ESHUTDOWN (the NBD spec's "the server is shutting down"), a write's payload
// read and dropped first to keep the stream in step. A disconnect, or a
// request that drops the connection anyway, stays what it was.
nbd::Decision refused_while_stopping(nbd::Decision decision) noexcept {
  switch (decision.action) {
    case nbd::Action::disconnect:
    case nbd::Action::drop_connection:
      return decision;
    case nbd::Action::write:
    case nbd::Action::discard_payload_then_reply_error:
      return {nbd::Action::discard_payload_then_reply_error, nbd::error::eshutdown};
    default:
      return {nbd::Action::reply_error, nbd::error::eshutdown};
  }
}

// Requests that reach storage: with elastic VRAM they pin their chunks.
bool touches_storage(nbd::Action action) noexcept {
  return action == nbd::Action::read || action == nbd::Action::write ||
         action == nbd::Action::write_zeroes || action == nbd::Action::trim;
}

// A receive that ended the connection's input: names why, or nothing when
// the socket is merely empty for now.
void close_on_receive_end(Connection& c, ssize_t n, const char* peer_closed) noexcept {
  if (n == 0)
    c.close(peer_closed);
  else if (!would_block(errno))
    c.close("receive failed");
}

}  // namespace

void RequestReader::read_requests(Connection& c, bool draining) noexcept {
  // The unparsed input: the carry from an earlier round, then fresh bytes,
  // laid out contiguously at the top of the receive arena.
  if (c.carry_length > rx_.space()) {
    c.needs_round = true;
    return;
  }
  size_t avail = c.carry_length;
  if (avail) std::memcpy(rx_.top(), c.carry.data(), avail);
  c.carry_length = 0;

  for (;;) {
    if (c.payload_left > 0) {
      if (avail == 0) {
        // Receive exactly what the payload still needs (at most), so nothing
        // beyond it is ever left over from a bulk receive.
        const size_t want = static_cast<size_t>(std::min<uint64_t>(c.payload_left, rx_.space()));
        if (want == 0) {
          c.needs_round = true;
          break;
        }
        const ssize_t n = ::recv(c.fd, rx_.top(), want, MSG_DONTWAIT);
        if (n <= 0) {
          close_on_receive_end(c, n, "peer closed in the middle of a write payload");
          break;
        }
        avail = static_cast<size_t>(n);
      }
      const size_t take = static_cast<size_t>(std::min<uint64_t>(avail, c.payload_left));
      accept_payload(c, rx_.top(), take);
      rx_.commit(take);
      avail -= take;
      continue;
    }

    if (avail < nbd::request_header_size) {
      const size_t room = std::min(carry_bytes, rx_.space());
      if (room <= avail) {
        c.needs_round = true;
        break;
      }
      const ssize_t n = ::recv(c.fd, rx_.top() + avail, room - avail, MSG_DONTWAIT);
      if (n <= 0) {
        close_on_receive_end(c, n,
                             avail ? "peer closed in the middle of a request" : "peer closed");
        break;
      }
      avail += static_cast<size_t>(n);
      continue;
    }

    if (c.replies_full()) {
      c.needs_round = true;  // slots free up once this round's replies are sent
      break;
    }
    nbd::Request request{};
    if (!nbd::decode_request(rx_.top(), request)) {
      c.close("bad request magic");
      stats_.add(stats_.dropped_connections, 1);
      break;
    }
    nbd::Decision decision = nbd::decide(request, geometry_);
    if (draining) decision = refused_while_stopping(decision);
    if (decision.action == nbd::Action::read && !replies_.has_room_for_read(request.length)) {
      c.needs_round = true;  // leave the header unparsed until the send arena has room
      break;
    }
    // Elastic VRAM: pin the chunks, never sleeping on one (other requests'
    // pins are held by this worker). A chunk in motion, or a write's chunk
    // with no storage yet: the header stays unparsed until a later round,
    // for at most ChunkGate::wait_bound_ns, then the request gets EIO.
    store::ChunkPins pins;
    bool waited_too_long = false;
    if (gate_.enabled() && request.length > 0 && touches_storage(decision.action) &&
        gate_.admit(c, pins, request.offset, request.length,
                    decision.action == nbd::Action::write) == ChunkGate::Admission::wait) {
      if (!ChunkGate::waited_too_long(c, monotonic_ns())) {
        c.needs_round = true;
        break;
      }
      c.chunk_wait_since_ns = c.storage_asked_ns = 0;
      gate_.wait_failed(request.offset);
      stats_.add(stats_.io_errors, 1);
      waited_too_long = true;
      decision = decision.action == nbd::Action::write
                     ? nbd::Decision{nbd::Action::discard_payload_then_reply_error, nbd::error::eio}
                     : nbd::Decision{nbd::Action::reply_error, nbd::error::eio};
    }
    // Refusals that are no client's fault: ESHUTDOWN, a chunk that never came.
    const bool protocol_error = !draining && !waited_too_long;
    rx_.commit(nbd::request_header_size);
    avail -= nbd::request_header_size;

    switch (decision.action) {
      case nbd::Action::read: {
        Reply& r = c.push_reply(request.cookie);
        r.offset = request.offset;
        r.data_length = request.length;
        r.complete = true;
        r.pins = std::move(pins);
        stats_.add(stats_.reads, 1);
        stats_.add(stats_.bytes_read, request.length);
        if (request.length > 0) {
          replies_.stage(c, r);
          if (r.staged_length < r.data_left()) goto stop_parsing;  // the rest next round
        }
        break;
      }
      case nbd::Action::write: {
        Reply& r = c.push_reply(request.cookie);
        stats_.add(stats_.writes, 1);
        stats_.add(stats_.bytes_written, request.length);
        c.payload_reply = &r;
        c.payload_offset = request.offset;
        c.payload_left = request.length;
        c.payload_discard = false;
        r.complete = request.length == 0;
        r.pins = std::move(pins);
        gate_.written(request.offset, request.length);
        verify_.hold(r, request.offset, request.length);
        break;
      }
      case nbd::Action::write_zeroes: {
        Reply& r = c.push_reply(request.cookie);
        r.complete = true;
        stats_.add(stats_.zeroes, 1);
        if (request.length > 0) {
          r.pins = std::move(pins);
          gate_.unused(request.offset, request.length);
          verify_.hold(r, request.offset, request.length);
          verify_.record_zeroes(request.offset, request.length);
          gate_.zero(r, request.offset, request.length);
        }
        break;
      }
      case nbd::Action::reply_success:
        c.push_reply(request.cookie).complete = true;
        break;
      case nbd::Action::trim:
        // Swapped pages that are discarded are never read back, and VRAM is
        // already allocated: nothing to do but say yes (and, with elastic
        // VRAM, note the blocks as free, so that their chunk moves for
        // free; its pins go when this iteration ends).
        gate_.unused(request.offset, request.length);
        c.push_reply(request.cookie).complete = true;
        stats_.add(stats_.trims, 1);
        break;
      case nbd::Action::flush:
        // VRAM is the storage: a write is as durable as it gets once its copy
        // completed, which every earlier reply already waited for.
        c.push_reply(request.cookie).complete = true;
        stats_.add(stats_.flushes, 1);
        break;
      case nbd::Action::disconnect:
        c.disconnect_requested = true;
        goto stop_parsing;
      case nbd::Action::reply_error: {
        Reply& r = c.push_reply(request.cookie);
        r.error = decision.error;
        r.complete = true;
        if (protocol_error) stats_.add(stats_.protocol_errors, 1);
        break;
      }
      case nbd::Action::discard_payload_then_reply_error: {
        Reply& r = c.push_reply(request.cookie);
        r.error = decision.error;
        c.payload_reply = &r;
        c.payload_left = request.length;
        c.payload_discard = true;
        r.complete = request.length == 0;
        if (protocol_error) stats_.add(stats_.protocol_errors, 1);
        break;
      }
      case nbd::Action::drop_connection:
        c.close("request refused: connection dropped");
        stats_.add(stats_.dropped_connections, 1);
        goto stop_parsing;
    }
  }
stop_parsing:
  if (avail > 0 && !c.closed()) {
    // Leftover input stays with the connection (it is at most carry_bytes:
    // only header-phase receives can over-read, and they are that small).
    std::memcpy(c.carry.data(), rx_.top(), avail);
    c.carry_length = avail;
  }
}

// The next `length` bytes (at most payload_left) of the write payload that
// is arriving, in pinned memory that stays put until the round's sync.
void RequestReader::accept_payload(Connection& c, const std::byte* data, size_t length) noexcept {
  Reply& r = *c.payload_reply;
  if (!c.payload_discard) {
    verify_.absorb(c, data, length);
    if (r.error == 0 && !r.copy_failed) gate_.write(r, c.payload_offset, data, length);
  }
  c.payload_offset += length;
  c.payload_left -= length;
  if (c.payload_left == 0) {
    r.complete = true;
    c.payload_reply = nullptr;
  }
}

void RequestReader::take_received_ahead(Connection& c) noexcept {
  const size_t length = std::exchange(c.ahead_length, 0);
  accept_payload(c, std::exchange(c.ahead, nullptr), length);
}

// Runs for as long as the GPU is busy (the worker would otherwise spin in the
// sync) and one pass at least, so the path runs even when the copies are done
// at once. Only payload bytes, never more than the payload still needs
// (headers are read in the round, where reply slots and arena room are
// checked), and only for connections with no unparsed carry (it comes first
// in the stream).
void RequestReader::receive_ahead(std::span<Connection* const> round) noexcept {
  bool wanted = true;
  for (unsigned pass = 0; wanted && (pass == 0 || copies_.busy()); ++pass) {
    wanted = false;
    for (Connection* c : round) {
      if (c->phase != Phase::transmission || c->carry_length > 0 ||
          c->payload_left <= c->ahead_length) {
        continue;
      }
      // A connection's bytes ahead must be contiguous: it adds to them only
      // while nobody received after it.
      if (c->ahead_length > 0 && c->ahead + c->ahead_length != rx_ahead_.top()) continue;
      const size_t want = static_cast<size_t>(
          std::min<uint64_t>(c->payload_left - c->ahead_length, rx_ahead_.space()));
      if (want == 0) return;
      wanted = true;
      const ssize_t n = ::recv(c->fd, rx_ahead_.top(), want, MSG_DONTWAIT);
      if (n <= 0) {
        close_on_receive_end(*c, n, "peer closed in the middle of a write payload");
        continue;
      }
      if (c->ahead_length == 0) c->ahead = rx_ahead_.top();
      c->ahead_length += static_cast<size_t>(n);
      rx_ahead_.commit(static_cast<size_t>(n));
      c->needs_round = true;
    }
  }
}

}  // namespace vramswap::engine
