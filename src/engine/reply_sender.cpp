#include "engine/reply_sender.hpp"

#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "common/geometry.hpp"
#include "engine/limits.hpp"
#include "engine/nonblocking.hpp"
#include "nbd/protocol.hpp"
#include "nbd/transmission.hpp"

namespace vramswap::engine {

bool ReplySender::has_room_for_read(uint32_t length) const noexcept {
  return length == 0 || tx_.space() >= std::min<size_t>(length, min_read_chunk);
}

// Room left in the connection's socket for this round's staging, asked of
// the kernel once a round and only when the round stages more than
// min_read_chunk for it: small replies never cost a system call, and what a
// full socket makes the next round copy again stays below that. An empty
// socket is always offered a piece stage() takes, so a connection always
// gets on.
size_t ReplySender::socket_room(Connection& c, size_t wanted) noexcept {
  if (c.send_buffer == 0 || c.staged_bytes + wanted <= min_read_chunk) return wanted;
  if (c.send_room == Connection::unasked_room) {
    // SIOCOUTQ: the bytes the peer has not read yet, as the buffer counts them.
    int queued = 0;
    if (ioctl(c.fd, SIOCOUTQ, &queued) != 0) return wanted;
    const size_t used = static_cast<size_t>(std::max(queued, 0));
    // However small the buffer, an empty one gets a block or more (stage()).
    constexpr size_t least = Reply::header_bytes + 3 * size_t{export_block_bytes};
    c.send_room = used == 0              ? std::max(c.send_buffer, least)
                  : c.send_buffer > used ? c.send_buffer - used
                                         : 0;
  }
  return c.send_room > c.staged_bytes ? std::min(wanted, c.send_room - c.staged_bytes) : 0;
}

bool ReplySender::stage(Connection& c, Reply& r) noexcept {
  const uint32_t left = r.data_left();
  const uint64_t from = r.offset + r.data_sent();
  // With verify, the copy starts at a block boundary (a client that took
  // part of a block leaves the rest mid-block) and a piece ends at one.
  const uint32_t head = verify_.head_before(from);
  if (tx_.space() <= head) return false;
  const size_t arena_piece = std::min<size_t>(left, tx_.space() - head);
  const size_t overhead = Reply::header_bytes + head;
  const size_t room = socket_room(c, overhead + arena_piece);
  const size_t fits = room > overhead ? room - overhead : 0;
  const size_t piece = verify_.whole_blocks(from, std::min(arena_piece, fits), left);
  // Not worth a copy: a piece smaller than min_read_chunk, unless it is the
  // whole rest, or more than a quarter of the socket (it is writable again,
  // EPOLLOUT, once three quarters of it are free: then that much fits).
  const size_t worthwhile = std::min<size_t>(
      {left, min_read_chunk, c.send_buffer > 0 ? c.send_buffer / 4 : min_read_chunk});
  if (piece == 0 || piece < worthwhile) {
    if (fits < arena_piece) c.socket_full = true;
    return false;
  }
  c.staged_bytes += Reply::header_bytes + head + piece;
  std::byte* dst = tx_.top();
  tx_.commit(head + piece);
  r.staged = dst + head;
  r.staged_length = static_cast<uint32_t>(piece);
  r.staged_head = head;
  gate_.read(r, dst, from - head, head + piece);
  return true;
}

bool ReplySender::stage_queued(Connection& c) noexcept {
  c.new_send_round();
  for (size_t i = 0; i < c.reply_count; ++i) {
    Reply& r = c.reply_at(i);
    if (!r.complete) break;
    if (r.data_left() == 0 || r.staged) continue;
    if (!stage(c, r)) return false;
    if (r.staged_length < r.data_left()) return false;
  }
  return true;
}

void ReplySender::settle(Connection& c, bool all_lost) noexcept {
  for (size_t i = 0; i < c.reply_count; ++i) {
    Reply& r = c.reply_at(i);
    if (r.complete) {
      verify_.release(r);  // its last copy was queued by this round at the latest
      if (r.data_length == 0) r.pins.release();
    }
    if (!r.copy_pending) continue;
    r.copy_pending = false;
    if (!std::exchange(r.copy_failed, false) && !all_lost) {
      // Landed; with verify, read data must also pass its check.
      if (!r.staged || verify_.staged_read_intact(r)) continue;
    } else {
      copies_.request_failed();
    }
    if (!fail(c, r)) return;
  }
}

// The request's data did not land (or failed its check): it gets EIO, unless
// its reply header is already out promising data, which cannot be taken back:
// then the connection must go. False when it went.
bool ReplySender::fail(Connection& c, Reply& r) noexcept {
  stats_.add(stats_.io_errors, 1);
  if (r.data_length > 0 && r.sent > 0 && r.error == 0) {
    c.close("VRAM data lost after the reply header was sent");
    return false;
  }
  r.error = nbd::error::eio;
  r.unstage();
  r.pins.release();  // no data owed any more
  return true;
}

bool ReplySender::send(Connection& c) noexcept {
  iovec iov[2 * reply_slots];
  int iov_count = 0;
  size_t offered = 0;
  for (size_t i = 0; i < c.reply_count; ++i) {
    Reply& r = c.reply_at(i);
    if (!r.complete) break;
    const bool owes_data = r.data_left() > 0;
    if (owes_data && !r.staged) break;  // nothing staged: the header waits with its data
    if (r.sent < Reply::header_bytes) {
      nbd::encode_simple_reply(r.header.data(), r.error, r.cookie);
      iov[iov_count++] = {r.header.data() + r.sent, Reply::header_bytes - r.sent};
      offered += Reply::header_bytes - r.sent;
    }
    if (owes_data) {
      iov[iov_count++] = {r.staged, r.staged_length};
      offered += r.staged_length;
      if (r.staged_length < r.data_left()) break;  // the rest is staged next round
    }
  }
  bool slow_reader = false;
  if (iov_count > 0) {
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(iov_count);
    ssize_t n = ::sendmsg(c.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (!would_block(errno)) {
        c.close("send failed");
        return false;
      }
      n = 0;
    }
    // Credit what went out, oldest reply first; retire replies fully sent.
    size_t credit = static_cast<size_t>(n);
    while (credit > 0 && c.reply_count > 0) {
      Reply& r = c.reply_at(0);
      const size_t owed = r.total_bytes() - r.sent;
      const size_t take = std::min(owed, credit);
      r.sent += static_cast<uint32_t>(take);
      credit -= take;
      if (r.sent == r.total_bytes()) c.pop_reply();
    }
    if (static_cast<size_t>(n) < offered) {
      c.writable_wanted = true;
      slow_reader = true;
    }
  }
  bool owes_more = false;
  for (size_t i = 0; i < c.reply_count; ++i) {
    Reply& r = c.reply_at(i);
    r.unstage();
    if (r.complete && r.data_left() > 0) owes_more = true;
  }
  if (owes_more && !c.writable_wanted) c.needs_round = true;
  if (c.disconnect_requested && c.reply_count == 0) c.close(nullptr);
  return slow_reader;
}

}  // namespace vramswap::engine
