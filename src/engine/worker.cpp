#include "engine/worker.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "common/log.hpp"
#include "common/startup_error.hpp"
#include "cuda/context.hpp"
#include "cuda/driver.hpp"
#include "nbd/protocol.hpp"
#include "store/block_checksums.hpp"

namespace vramswap::engine {
namespace {

constexpr int kMaxEvents = 64;
constexpr int kIdleWaitMs = 1000;  // wakes at least this often to expire handshakes
constexpr int kDrainWaitMs = 10;   // while stopping: how often the drain's deadline is looked at
// verify = yes: how long a block that fails its check is read again before it
// counts as corrupt (see reread_until_consistent), and how often.
constexpr int64_t kRecheckWindowNs = 250'000'000;
constexpr int64_t kRecheckIntervalNs = 500'000;

int64_t monotonic_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

bool would_block(int error) noexcept {
  return error == EAGAIN || error == EWOULDBLOCK;
}

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

}  // namespace

Worker::Worker(unsigned index, const ServingContext& context)
    : index_(index),
      context_(context),
      // Mapped into the GPU's address space, so the copy kernel can reach them.
      rx_buffer_(*context.cuda, context.options.rx_arena_bytes, cuda::CU_MEMHOSTALLOC_DEVICEMAP),
      tx_buffer_(*context.cuda, context.options.tx_arena_bytes, cuda::CU_MEMHOSTALLOC_DEVICEMAP),
      recheck_buffer_(context.checksums
                          ? store::PinnedBuffer(*context.cuda, store::BlockChecksums::kBlockBytes)
                          : store::PinnedBuffer()),
      stream_(std::make_unique<store::CopyStream>(*context.store, context.copy_kernel)),
      rx_(rx_buffer_.data(), rx_buffer_.size() / 2),
      rx_ahead_(rx_buffer_.data() + rx_buffer_.size() / 2,
                rx_buffer_.size() - rx_buffer_.size() / 2),
      tx_(tx_buffer_.data(), tx_buffer_.size()),
      epoll_(epoll_create1(EPOLL_CLOEXEC)),
      wake_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
      busy_poll_(context.options.busy_poll_mode, context.options.busy_poll_us, machine_load_) {
  if (!epoll_ || !wake_) {
    throw StartupError(
        exit_code::os_error,
        std::string("cannot create the worker's epoll/eventfd: ") + std::strerror(errno));
  }
  if (context.copy_kernel && !(stream_->map(rx_buffer_) && stream_->map(tx_buffer_))) {
    log_warning("worker %u: the GPU cannot map its staging buffers: its copies use DMA only",
                index);
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // nullptr marks the wake-up eventfd
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev) != 0) {
    throw StartupError(exit_code::os_error,
                       std::string("epoll_ctl on the worker's eventfd: ") + std::strerror(errno));
  }
  const size_t slots = context.pool->slots();
  handoffs_.reserve(slots);
  owned_.reserve(slots);
  round_.reserve(slots);
}

Worker::~Worker() {
  stop_and_join();
}

void Worker::start() {
  thread_ = std::thread([this] { run(); });
}

void Worker::request_stop() noexcept {
  if (!thread_.joinable()) return;
  stop_.store(true, std::memory_order_relaxed);
  const uint64_t one = 1;
  ssize_t ignored = ::write(wake_.get(), &one, sizeof one);
  (void)ignored;
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::stop_and_join() {
  request_stop();
  join();
}

void Worker::adopt(Connection* c) {
  c->worker = index_;
  {
    std::lock_guard lock(handoff_mutex_);
    handoffs_.push_back(c);  // reserved for the whole pool: never allocates
  }
  connections_.fetch_add(1, std::memory_order_relaxed);
  const uint64_t one = 1;
  ssize_t ignored = ::write(wake_.get(), &one, sizeof one);
  (void)ignored;
}

void Worker::take_handoffs() noexcept {
  uint64_t counter = 0;
  ssize_t ignored = ::read(wake_.get(), &counter, sizeof counter);
  (void)ignored;
  std::lock_guard lock(handoff_mutex_);
  for (Connection* c : handoffs_)
    register_connection(*c);
  handoffs_.clear();
}

void Worker::register_connection(Connection& c) noexcept {
  c.carry_length = 0;
  c.payload_left = 0;
  c.payload_reply = nullptr;
  c.payload_checksum = {};
  c.ahead = nullptr;
  c.ahead_length = 0;
  c.reply_head = c.reply_count = 0;
  c.writable_wanted = c.needs_round = c.in_round = c.disconnect_requested = false;
  c.close_reason = nullptr;
  if (c.origin == Origin::client) {
    c.phase = Phase::handshake;
    c.handshake.emplace(context_.description);
    c.handshake_deadline_ns = monotonic_ns() + int64_t{kHandshakeTimeoutSeconds} * 1'000'000'000;
  } else {
    c.phase = Phase::transmission;
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.ptr = &c;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c.fd, &ev) != 0) {
    log_warning("worker %u: cannot watch a new connection: %s", index_, std::strerror(errno));
    c.close("epoll_ctl failed");
    retire(c);
    return;
  }
  owned_.push_back(&c);
  stats_.add(stats_.connections, 1);
  // A client is owed the greeting; a kernel socket may already hold requests.
  c.needs_round = true;
}

void Worker::update_interest(Connection& c) noexcept {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | (c.writable_wanted ? EPOLLOUT : 0u);
  ev.data.ptr = &c;
  epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd, &ev);
}

void Worker::retire(Connection& c) noexcept {
  if (c.close_reason) log_debug("worker %u: connection closed: %s", index_, c.close_reason);
  // After the round's sync: whatever its writes queued has landed or failed.
  for (size_t i = 0; i < c.reply_count; ++i)
    release_blocks(c.reply_at(i));
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c.fd, nullptr);
  ::close(c.fd);
  const bool kernel = c.origin == Origin::kernel;
  auto it = std::find(owned_.begin(), owned_.end(), &c);
  if (it != owned_.end()) {
    *it = owned_.back();
    owned_.pop_back();
    stats_.add(stats_.connections, static_cast<uint64_t>(-1));
  }
  connections_.fetch_sub(1, std::memory_order_relaxed);
  context_.pool->release(&c);
  if (kernel && context_.on_kernel_connection_closed) context_.on_kernel_connection_closed();
}

void Worker::expire_handshakes() noexcept {
  const int64_t now = monotonic_ns();
  for (Connection* c : owned_) {
    if (c->phase == Phase::handshake && now > c->handshake_deadline_ns) {
      c->close("handshake not finished in time");
      if (!c->in_round) {
        c->in_round = true;
        round_.push_back(c);
      }
    }
  }
}

void Worker::run() noexcept {
  if (const cuda::Status bound = context_.cuda->bind_current_thread(); !bound.ok()) {
    // Every copy of this worker will fail and answer EIO; say why once.
    log_error("worker %u cannot use the GPU: %s", index_, bound.name());
  }
  if (context_.on_thread_start) context_.on_thread_start();

  epoll_event events[kMaxEvents];
  int64_t next_expiry_check = 0;
  size_t rotate = 0;
  for (;;) {
    if (!draining_ && stop_.load(std::memory_order_relaxed)) begin_drain();
    if (draining_ && (connections_.load(std::memory_order_relaxed) == 0 ||
                      monotonic_ns() >= drain_deadline_ns_)) {
      break;
    }
    // Connections that stopped for want of arena space or reply slots are
    // served again at once; so is a worker that served requests within the
    // busy-poll window, if its policy says spinning pays (the next request
    // of a burst is then picked up without a wake-up); otherwise sleep until
    // a socket wants us.
    round_.clear();
    for (Connection* c : owned_) {
      if (c->needs_round) {
        c->needs_round = false;
        c->in_round = true;
        round_.push_back(c);
      }
    }
    const bool polling = round_.empty() && busy_poll_.spin(monotonic_ns());
    const int idle_wait_ms = draining_ ? kDrainWaitMs : kIdleWaitMs;
    const int n =
        epoll_wait(epoll_.get(), events, kMaxEvents, round_.empty() && !polling ? idle_wait_ms : 0);
    for (int i = 0; i < n; ++i) {
      auto* c = static_cast<Connection*>(events[i].data.ptr);
      if (!c) {
        take_handoffs();
        continue;
      }
      if ((events[i].events & EPOLLOUT) && c->writable_wanted) {
        c->writable_wanted = false;
        update_interest(*c);
      }
      if (!c->in_round) {
        c->in_round = true;
        round_.push_back(c);
      }
    }
    const int64_t now = monotonic_ns();
    if (now >= next_expiry_check) {
      expire_handshakes();
      next_expiry_check = now + 1'000'000'000;
    }
    if (round_.empty()) continue;
    busy_poll_.work_found(now);

    // Take turns at the head of the round, so that one busy connection cannot
    // always be first to the arenas.
    if (round_.size() > 1) {
      std::rotate(round_.begin(), round_.begin() + (rotate++ % round_.size()), round_.end());
    }
    // This round receives into the half that the last one received ahead
    // into (those bytes stay); the other half's copies were synchronized.
    std::swap(rx_, rx_ahead_);
    rx_ahead_.reset();
    tx_.reset();
    copies_this_round_ = 0;
    round_error_ = cuda::Status();
    failed_calls_ = failed_requests_ = 0;
    for (Connection* c : round_) {
      if (!c->closed()) serve(*c);
    }
    bool all_lost = false;
    if (copies_this_round_ > 0) {
      // An error here comes back from synchronize() too.
      (void)stream_->flush();
      receive_ahead();
      // A copy that did not land marks its reply (the tag of its copy).
      const auto outcome =
          stream_->synchronize([](void* tag) { static_cast<Reply*>(tag)->copy_failed = true; });
      if (outcome.failed_calls > 0) copy_calls_failed(outcome.error, outcome.failed_calls);
      all_lost = outcome.all_lost;
    }
    for (Connection* c : round_) {
      if (c->phase == Phase::transmission) {
        settle(*c, all_lost);
        if (!c->closed()) send_replies(*c);
        if (draining_ && !c->closed()) close_if_drained(*c);
      }
    }
    if (failed_calls_ > 0) {
      stats_.add(stats_.failed_copy_calls, failed_calls_);
      context_.health->copy_failed(round_error_.name(), round_error_.sticky(), failed_calls_,
                                   failed_requests_);
    }
    stats_.add(stats_.rounds, 1);
    for (Connection* c : round_) {
      c->in_round = false;
      if (c->closed()) retire(*c);
    }
  }
  // Stopped: drop every connection left (the daemon disconnected the kernel
  // first), those handed over meanwhile included.
  take_handoffs();
  if (!owned_.empty()) {
    log_warning(
        "worker %u: %zu connection(s) still owed replies %u ms after the stop began (clients "
        "that do not read them, or keep sending); closed them",
        index_, owned_.size(), context_.options.stop_drain_ms);
  }
  while (!owned_.empty()) {
    Connection* c = owned_.back();
    c->close(nullptr);
    retire(*c);
  }
}

// The stop began: every connection gets a round, where requests already read
// are served as usual and later ones refused (refused_while_stopping); a
// handshake has nothing in flight and simply ends.
void Worker::begin_drain() noexcept {
  draining_ = true;
  drain_deadline_ns_ = monotonic_ns() + int64_t{context_.options.stop_drain_ms} * 1'000'000;
  for (Connection* c : owned_) {
    if (c->phase == Phase::handshake) c->close("the server is stopping");
    c->needs_round = true;
  }
}

// While stopping: a connection whose every request is answered, and whose
// client has sent nothing more, is closed. More input gets another round
// (ESHUTDOWN for each request in it).
void Worker::close_if_drained(Connection& c) noexcept {
  if (c.reply_count > 0 || c.payload_left > 0 || c.carry_length > 0 || c.ahead_length > 0) {
    return;
  }
  std::byte next;
  const ssize_t n = ::recv(c.fd, &next, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) {
    c.needs_round = true;
  } else if (n == 0 || !would_block(errno)) {
    c.close("peer closed");
  } else {
    c.close("the server is stopping: every request read was answered");
  }
}

// A copy for `r` was queued, or failed to be: either way the round's end
// (settle) decides its request, once every copy of the round has landed or not.
void Worker::queued(Reply& r, cuda::Status status) noexcept {
  ++copies_this_round_;
  r.copy_pending = true;
  if (status.ok()) return;
  r.copy_failed = true;
  copy_calls_failed(status, 1);
}

void Worker::copy_calls_failed(cuda::Status status, unsigned calls) noexcept {
  if (failed_calls_ == 0) round_error_ = status;
  failed_calls_ += calls;
}

void Worker::serve(Connection& c) noexcept {
  if (c.phase == Phase::handshake) {
    serve_handshake(c);
    return;
  }
  if (c.ahead_length > 0) take_received_ahead(c);
  if (c.writable_wanted) return;  // the client is not reading: wait for EPOLLOUT
  if (!stage_queued_replies(c)) {
    c.needs_round = true;
    return;
  }
  if (!c.disconnect_requested) parse_requests(c);
}

void Worker::serve_handshake(Connection& c) noexcept {
  nbd::Handshake& hs = *c.handshake;
  for (;;) {
    const auto out = hs.output();
    if (!out.empty()) {
      const ssize_t n = ::send(c.fd, out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (would_block(errno)) {
          c.writable_wanted = true;
          update_interest(c);
        } else {
          c.close("send failed during handshake");
        }
        return;
      }
      hs.output_sent(static_cast<size_t>(n));
      continue;
    }
    if (hs.state() == nbd::Handshake::State::transmission) {
      c.phase = Phase::transmission;
      c.handshake.reset();
      c.needs_round = true;  // requests may already sit in the carry or socket
      return;
    }
    if (hs.state() == nbd::Handshake::State::closed) {
      c.close(hs.close_reason());
      return;
    }
    if (c.carry_length > 0) {
      const size_t used = hs.input(std::span<const std::byte>(c.carry.data(), c.carry_length));
      if (used > 0) {
        std::memmove(c.carry.data(), c.carry.data() + used, c.carry_length - used);
        c.carry_length -= used;
        continue;
      }
    }
    if (c.carry_length == c.carry.size()) {
      c.close("handshake option larger than the input buffer");
      return;
    }
    const ssize_t n = ::recv(c.fd, c.carry.data() + c.carry_length, c.carry.size() - c.carry_length,
                             MSG_DONTWAIT);
    if (n > 0) {
      c.carry_length += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) {
      c.close("client closed during handshake");
    } else if (!would_block(errno)) {
      c.close("receive failed during handshake");
    }
    return;
  }
}

// Stages read data for replies that still owe some (a large read larger than
// one round's arena, or data a client did not take in an earlier round).
// Returns false when a reply could not be fully staged: nothing behind it can
// be sent this round, so there is no point parsing more.
bool Worker::stage_queued_replies(Connection& c) noexcept {
  for (size_t i = 0; i < c.reply_count; ++i) {
    Reply& r = c.reply_at(i);
    if (!r.complete) break;
    if (r.data_left() == 0 || r.staged) continue;
    if (!stage_read(c, r)) return false;
    if (r.staged_length < r.data_left()) return false;
  }
  return true;
}

// Queues the copy of the next piece of a read's data into the send arena.
bool Worker::stage_read(Connection& c, Reply& r) noexcept {
  (void)c;
  const uint32_t left = r.data_left();
  const uint64_t from = r.offset + r.data_sent();
  // Checksums cover whole blocks (requests are block-aligned when verify is
  // on): the staged copy starts at the block boundary at or before the first
  // unsent byte (a client that took part of a block leaves the rest
  // mid-block), and a piece of a large read ends at a boundary.
  constexpr uint32_t kBlock = store::BlockChecksums::kBlockBytes;
  const uint32_t head = context_.checksums ? static_cast<uint32_t>(from % kBlock) : 0;
  if (tx_.space() <= head) return false;
  size_t piece = std::min<size_t>(left, tx_.space() - head);
  if (context_.checksums && piece < left) piece -= (from + piece) % kBlock;
  if (piece == 0 || piece < std::min<size_t>(left, kMinReadChunk)) return false;
  std::byte* dst = tx_.top();
  tx_.commit(head + piece);
  r.staged = dst + head;
  r.staged_length = static_cast<uint32_t>(piece);
  r.staged_head = head;
  queued(r, stream_->read(dst, from - head, head + piece, &r));
  return true;
}

void Worker::parse_requests(Connection& c) noexcept {
  // The unparsed input: the carry from an earlier round, then fresh bytes,
  // laid out contiguously at the top of the receive arena (pinned, so write
  // payloads are copied to VRAM straight from where they were received).
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
          if (n == 0)
            c.close("peer closed in the middle of a write payload");
          else if (!would_block(errno))
            c.close("receive failed");
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
      const size_t room = std::min(kCarryBytes, rx_.space());
      if (room <= avail) {
        c.needs_round = true;
        break;
      }
      const ssize_t n = ::recv(c.fd, rx_.top() + avail, room - avail, MSG_DONTWAIT);
      if (n <= 0) {
        if (n == 0)
          c.close(avail ? "peer closed in the middle of a request" : "peer closed");
        else if (!would_block(errno))
          c.close("receive failed");
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
    nbd::Decision decision = nbd::decide(request, context_.geometry);
    if (draining_) decision = refused_while_stopping(decision);
    if (decision.action == nbd::Action::read && request.length > 0 &&
        tx_.space() < std::min<size_t>(request.length, kMinReadChunk)) {
      c.needs_round = true;  // leave the header unparsed until the send arena has room
      break;
    }
    rx_.commit(nbd::request_header_size);
    avail -= nbd::request_header_size;

    switch (decision.action) {
      case nbd::Action::read: {
        Reply& r = c.push_reply(request.cookie);
        r.offset = request.offset;
        r.data_length = request.length;
        r.complete = true;
        stats_.add(stats_.reads, 1);
        stats_.add(stats_.bytes_read, request.length);
        if (request.length > 0) {
          stage_read(c, r);
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
        hold_blocks(r, request.offset, request.length);
        break;
      }
      case nbd::Action::write_zeroes: {
        Reply& r = c.push_reply(request.cookie);
        r.complete = true;
        stats_.add(stats_.zeroes, 1);
        if (request.length > 0) {
          hold_blocks(r, request.offset, request.length);
          if (context_.checksums) context_.checksums->record_zeroes(request.offset, request.length);
          queued(r, stream_->zero(request.offset, request.length));
        }
        break;
      }
      case nbd::Action::reply_success:
        c.push_reply(request.cookie).complete = true;
        break;
      case nbd::Action::trim:
        // Swapped pages that are discarded are never read back, and VRAM is
        // already allocated: nothing to do but say yes.
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
        if (!draining_) stats_.add(stats_.protocol_errors, 1);  // ESHUTDOWN is no client's fault
        break;
      }
      case nbd::Action::discard_payload_then_reply_error: {
        Reply& r = c.push_reply(request.cookie);
        r.error = decision.error;
        c.payload_reply = &r;
        c.payload_left = request.length;
        c.payload_discard = true;
        r.complete = request.length == 0;
        if (!draining_) stats_.add(stats_.protocol_errors, 1);
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
    // Leftover input stays with the connection (it is at most kCarryBytes:
    // only header-phase receives can over-read, and they are that small).
    std::memcpy(c.carry.data(), rx_.top(), avail);
    c.carry_length = avail;
  }
}

// The next `length` bytes (at most payload_left) of the write payload that
// is arriving, in pinned memory that stays put until the round's sync.
void Worker::accept_payload(Connection& c, const std::byte* data, size_t length) noexcept {
  Reply& r = *c.payload_reply;
  if (context_.checksums && !c.payload_discard) {
    // Recorded whether or not the copy succeeds: a block whose copy failed
    // then fails its check on read instead of returning old data.
    context_.checksums->absorb(c.payload_checksum, c.payload_offset, data, length);
  }
  if (!c.payload_discard && r.error == 0 && !r.copy_failed) {
    queued(r, stream_->write(c.payload_offset, data, length, &r));
  }
  c.payload_offset += length;
  c.payload_left -= length;
  if (c.payload_left == 0) {
    r.complete = true;
    c.payload_reply = nullptr;
  }
}

// Payload bytes received ahead come first: they are the stream's next bytes,
// and they need neither a reply slot nor send-arena room, so nothing that
// holds the rest of the connection back holds them.
void Worker::take_received_ahead(Connection& c) noexcept {
  const size_t length = std::exchange(c.ahead_length, 0);
  accept_payload(c, std::exchange(c.ahead, nullptr), length);
}

// Runs between queueing a round's copies and waiting for them: receives what
// the round's connections send of the write payloads they are in the middle
// of, into the other receive half, for the next round, for as long as the GPU
// is busy (the worker would otherwise spin in the sync) and one pass at least,
// so the path runs even when the copies are done at once. Only payload bytes,
// never more than the payload still needs (headers are parsed in the round,
// where reply slots and arena room are checked), and only for connections
// with no unparsed carry (it comes first in the stream).
void Worker::receive_ahead() noexcept {
  bool wanted = true;
  for (unsigned pass = 0; wanted && (pass == 0 || stream_->busy()); ++pass) {
    wanted = false;
    for (Connection* c : round_) {
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
        if (n == 0)
          c->close("peer closed in the middle of a write payload");
        else if (!would_block(errno))
          c->close("receive failed");
        continue;
      }
      if (c->ahead_length == 0) c->ahead = rx_ahead_.top();
      c->ahead_length += static_cast<size_t>(n);
      rx_ahead_.commit(static_cast<size_t>(n));
      c->needs_round = true;
    }
  }
}

// verify = yes: a write or zero-fill counts as in flight on its blocks from
// before its checksums are recorded until its copies have landed.
void Worker::hold_blocks(Reply& r, uint64_t offset, uint32_t length) noexcept {
  if (!context_.checksums || length == 0) return;
  context_.checksums->writes_begin(offset, length);
  r.held_offset = offset;
  r.held_length = length;
}

void Worker::release_blocks(Reply& r) noexcept {
  if (r.held_length == 0) return;
  context_.checksums->writes_end(r.held_offset, r.held_length);
  r.held_length = 0;
}

// After the round's sync: every copy queued this round either landed or not
// (all_lost: the sync could not say which, so none counts as landed).
void Worker::settle(Connection& c, bool all_lost) noexcept {
  for (size_t i = 0; i < c.reply_count; ++i) {
    Reply& r = c.reply_at(i);
    if (r.complete) release_blocks(r);  // its last copy was queued by this round at the latest
    if (!r.copy_pending) continue;
    r.copy_pending = false;
    if (!std::exchange(r.copy_failed, false) && !all_lost) {
      if (r.staged && context_.checksums && !check_staged_read(c, r)) return;
      continue;
    }
    ++failed_requests_;
    if (!fail_copy(c, r)) return;
  }
}

// The request's data did not land (or failed its check): it gets EIO, unless
// its reply header is already out promising data, which cannot be taken back:
// then the connection must go. False when it went.
bool Worker::fail_copy(Connection& c, Reply& r) noexcept {
  stats_.add(stats_.io_errors, 1);
  if (r.data_length > 0 && r.sent > 0 && r.error == 0) {
    c.close("VRAM data lost after the reply header was sent");
    return false;
  }
  r.error = nbd::error::eio;
  r.staged = nullptr;
  r.staged_length = r.staged_head = 0;
  return true;
}

// verify = yes: read data staged this round must match the checksums of its
// blocks. A mismatch fails the read (EIO) rather than hand out wrong data;
// false when the connection had to be closed for it.
bool Worker::check_staged_read(Connection& c, Reply& r) noexcept {
  constexpr uint32_t kBlock = store::BlockChecksums::kBlockBytes;
  uint64_t offset = r.offset + r.data_sent() - r.staged_head;
  std::byte* data = r.staged - r.staged_head;
  size_t length = r.staged_head + r.staged_length;
  for (;;) {
    const uint64_t bad = context_.checksums->first_mismatch(offset, data, length);
    if (bad == store::BlockChecksums::kNoMismatch) return true;
    if (!reread_until_consistent(bad, data + (bad - offset))) {
      context_.health->checksum_mismatch(bad);
      return fail_copy(c, r);
    }
    const uint64_t checked = bad + kBlock - offset;
    offset += checked;
    data += checked;
    length -= checked;
  }
}

// A block that fails its check is not always corrupt: a write of the same
// block on another connection records its checksum as its payload arrives,
// before its copy lands, so a read that overlaps it (NBD leaves such reads
// undefined, and the kernel never issues one) can meet old data under the new
// checksum. Reads the block again for a while: once it matches, the fresh
// copy replaces the staged one. Corrupt VRAM never matches. A block that two
// writes raced for matches neither's checksum for sure: once they have
// landed, what is there is taken (BlockChecksums::adopt). Rare, so waiting
// here, holding up this worker's other connections, costs nothing in
// practice.
bool Worker::reread_until_consistent(uint64_t offset, std::byte* block) noexcept {
  constexpr uint32_t kBlock = store::BlockChecksums::kBlockBytes;
  store::BlockChecksums& checksums = *context_.checksums;
  const int64_t deadline = monotonic_ns() + kRecheckWindowNs;
  do {
    const timespec pause{0, kRecheckIntervalNs};
    nanosleep(&pause, nullptr);
    const std::optional<uint32_t> raced = checksums.raced_checksum(offset);
    cuda::Status status = stream_->read(recheck_buffer_.data(), offset, kBlock);
    const cuda::Status synchronized = stream_->synchronize();
    if (status.ok()) status = synchronized;
    if (!status.ok()) return false;
    if (checksums.first_mismatch(offset, recheck_buffer_.data(), kBlock) ==
            store::BlockChecksums::kNoMismatch ||
        (raced && checksums.adopt(offset, *raced, recheck_buffer_.data()))) {
      std::memcpy(block, recheck_buffer_.data(), kBlock);
      return true;
    }
  } while (monotonic_ns() < deadline);
  return false;
}

void Worker::send_replies(Connection& c) noexcept {
  iovec iov[2 * kReplySlots];
  int iov_count = 0;
  size_t offered = 0;
  for (size_t i = 0; i < c.reply_count; ++i) {
    Reply& r = c.reply_at(i);
    if (!r.complete) break;
    const bool owes_data = r.data_left() > 0;
    if (owes_data && !r.staged) break;  // nothing staged: the header waits with its data
    if (r.sent < Reply::kHeaderBytes) {
      nbd::encode_simple_reply(r.header.data(), r.error, r.cookie);
      iov[iov_count++] = {r.header.data() + r.sent, Reply::kHeaderBytes - r.sent};
      offered += Reply::kHeaderBytes - r.sent;
    }
    if (owes_data) {
      iov[iov_count++] = {r.staged, r.staged_length};
      offered += r.staged_length;
      if (r.staged_length < r.data_left()) break;  // the rest is staged next round
    }
  }
  if (iov_count > 0) {
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(iov_count);
    ssize_t n = ::sendmsg(c.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (!would_block(errno)) {
        c.close("send failed");
        return;
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
      c.writable_wanted = true;  // the client is slow to read: wait for room
      update_interest(c);
    }
  }
  // Staged data lives in this round's arena only.
  bool owes_more = false;
  for (size_t i = 0; i < c.reply_count; ++i) {
    Reply& r = c.reply_at(i);
    r.staged = nullptr;
    r.staged_length = r.staged_head = 0;
    if (r.complete && r.data_left() > 0) owes_more = true;
  }
  if (owes_more && !c.writable_wanted) c.needs_round = true;
  if (c.disconnect_requested && c.reply_count == 0) c.close(nullptr);
}

}  // namespace vramswap::engine
