#pragma once

// Drives a Handshake the way an event loop does, with the received bytes
// arriving in chunks of any size and output leaving in chunks of any size, so
// tests can check that chunking never changes what the server says.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstddef>
#include <limits>
#include <string>

#include "nbd/handshake.hpp"
#include "nbd_wire.hpp"

namespace nbd_test {

using vramswap::nbd::ExportDescription;
using vramswap::nbd::Handshake;

struct Session {
  Bytes output;  // everything the server sent
  Handshake::State state = Handshake::State::negotiating;
  std::string close_reason;
  size_t consumed = 0;   // client bytes the handshake consumed
  bool stalled = false;  // input buffer full, yet nothing consumed and nothing to send
  bool no_zeroes = false;
};

inline bool operator==(const Session& a, const Session& b) {
  return a.output == b.output && a.state == b.state && a.close_reason == b.close_reason &&
         a.consumed == b.consumed && a.stalled == b.stalled && a.no_zeroes == b.no_zeroes;
}

// The client's bytes arrive `receive_chunk` at a time into a buffer holding at
// most Handshake::max_buffered_input unconsumed bytes (what the engine is told
// to provide); output is sent `send_chunk` bytes per turn.
inline Session run(const ExportDescription& exported, const Bytes& client, size_t receive_chunk,
                   size_t send_chunk) {
  Handshake hs(exported);
  Session s;
  Bytes buffer;
  size_t arrived = 0;
  for (;;) {
    bool progress = false;
    if (const auto out = hs.output(); !out.empty()) {
      const size_t n = std::min(send_chunk, out.size());
      s.output.insert(s.output.end(), out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n));
      hs.output_sent(n);
      progress = true;
    }
    if (hs.state() != Handshake::State::negotiating) break;

    const size_t room = Handshake::max_buffered_input - buffer.size();
    const size_t n = std::min({receive_chunk, room, client.size() - arrived});
    buffer.insert(buffer.end(), client.begin() + static_cast<std::ptrdiff_t>(arrived),
                  client.begin() + static_cast<std::ptrdiff_t>(arrived + n));
    arrived += n;
    progress = progress || n > 0;

    const size_t used = hs.input(buffer);
    REQUIRE(used <= buffer.size());
    buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(used));
    s.consumed += used;
    progress = progress || used > 0;

    if (!progress) {
      s.stalled = buffer.size() == Handshake::max_buffered_input;
      break;
    }
  }
  s.state = hs.state();
  s.close_reason = hs.close_reason();
  s.no_zeroes = hs.no_zeroes();
  return s;
}

// Runs `client` with many chunkings, checks they all give the same result
// (byte-at-a-time included), that none stalls, and returns that result.
inline Session run_all_ways(const ExportDescription& exported, const Bytes& client) {
  constexpr size_t whole = std::numeric_limits<size_t>::max();
  const Session reference = run(exported, client, whole, whole);
  CHECK_FALSE(reference.stalled);
  for (size_t receive : {size_t{1}, size_t{2}, size_t{3}, size_t{7}, size_t{16}, size_t{4096}}) {
    for (size_t send : {size_t{1}, size_t{5}, whole}) {
      INFO("receive chunk " << receive << ", send chunk " << send);
      CHECK(run(exported, client, receive, send) == reference);
    }
  }
  return reference;
}

}  // namespace nbd_test
