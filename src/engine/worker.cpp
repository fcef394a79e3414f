#include "engine/worker.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "common/clock.hpp"
#include "common/log.hpp"
#include "common/startup_error.hpp"
#include "cuda/context.hpp"
#include "cuda/driver.hpp"
#include "engine/nonblocking.hpp"

namespace vramswap::engine {
namespace {

constexpr int max_events = 64;
constexpr int max_idle_wait_ms = 1000;  // wakes at least this often to expire handshakes
constexpr int drain_wait_ms = 10;  // while stopping: how often the drain's deadline is looked at
constexpr int chunk_wait_ms = 1;   // how often a request waiting for a chunk in motion looks again

}  // namespace

Worker::Worker(unsigned index, const ServingContext& context)
    : index_(index),
      context_(context),
      // Mapped into the GPU's address space, so the copy kernel can reach them.
      rx_buffer_(*context.cuda, context.options.rx_arena_bytes, cuda::CU_MEMHOSTREGISTER_DEVICEMAP),
      tx_buffer_(*context.cuda, context.options.tx_arena_bytes, cuda::CU_MEMHOSTREGISTER_DEVICEMAP),
      stream_(std::make_unique<store::CopyStream>(*context.store, context.copy_kernel)),
      rx_(rx_buffer_.data(), rx_buffer_.size() / 2),
      rx_ahead_(rx_buffer_.data() + rx_buffer_.size() / 2,
                rx_buffer_.size() - rx_buffer_.size() / 2),
      tx_(tx_buffer_.data(), tx_buffer_.size()),
      copies_(*stream_),
      verify_(context.checksums, *context.cuda, *stream_, *context.health),
      gate_(context.chunks, context.spill, context.want_storage, copies_, *context.health),
      replies_(tx_, copies_, verify_, gate_, stats_),
      requests_(rx_, rx_ahead_, context.geometry, copies_, verify_, gate_, replies_, stats_),
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
  wake();
}

void Worker::wake() noexcept {
  const uint64_t one = 1;
  ssize_t ignored = ::write(wake_.get(), &one, sizeof one);
  (void)ignored;
}

void Worker::want_gpu(bool attached) noexcept {
  gpu_wanted_.store(attached, std::memory_order_release);
  wake();
}

// Between rounds: nothing of this worker's is queued on the GPU (the last
// round synchronized), so its stream and registrations can go; the bytes in
// its buffers (payloads received ahead) stay where they are.
void Worker::follow_gpu() noexcept {
  const bool wanted = gpu_wanted_.load(std::memory_order_acquire);
  const GpuState state = gpu_state_.load(std::memory_order_relaxed);
  if (wanted == (state == GpuState::attached)) return;
  if (!wanted) {
    if (state == GpuState::detached) return;
    // Each part tries even when one before it failed: the context is going.
    const cuda::Status stream = stream_->detach();
    const cuda::Status verify = verify_.detach();
    const cuda::Status tx = tx_buffer_.detach();
    const cuda::Status rx = rx_buffer_.detach();
    for (const cuda::Status& s : {stream, verify, tx, rx}) {
      if (!s.ok()) {
        log_warning("worker %u: letting go of the GPU: %s", index_, s.name());
        break;
      }
    }
    gpu_state_.store(GpuState::detached, std::memory_order_release);
    return;
  }
  cuda::Status status = context_.cuda->bind_current_thread();
  if (status.ok()) status = rx_buffer_.attach();
  if (status.ok()) status = tx_buffer_.attach();
  if (status.ok()) status = verify_.attach();
  if (status.ok()) status = stream_->attach();
  if (!status.ok()) log_error("worker %u cannot use the GPU again: %s", index_, status.name());
  gpu_state_.store(status.ok() ? GpuState::attached : GpuState::failed, std::memory_order_release);
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
  wake();
}

void Worker::take_handoffs() noexcept {
  uint64_t counter = 0;
  ssize_t ignored = ::read(wake_.get(), &counter, sizeof counter);
  (void)ignored;
  follow_gpu();
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
  c.chunk_wait_since_ns = c.storage_asked_ns = 0;
  c.close_reason = nullptr;
  c.new_send_round();
  int send_buffer = 0;
  socklen_t length = sizeof send_buffer;
  c.send_buffer =
      getsockopt(c.fd, SOL_SOCKET, SO_SNDBUF, &send_buffer, &length) == 0 && send_buffer > 0
          ? static_cast<size_t>(send_buffer)
          : 0;
  if (c.origin == Origin::client) {
    c.phase = Phase::handshake;
    c.handshake.emplace(context_.description);
    c.handshake_deadline_ns = monotonic_ns() + int64_t{handshake_timeout_seconds} * 1'000'000'000;
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
  for (size_t i = 0; i < c.reply_count; ++i) {
    verify_.release(c.reply_at(i));
    c.reply_at(i).pins.release();
  }
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

  epoll_event events[max_events];
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
    // Connections that only wait for a chunk in motion (elastic VRAM) come
    // back after a short sleep instead: a move takes milliseconds, and the
    // worker must not spin a CPU for it.
    round_.clear();
    bool only_chunk_waits = true;
    for (Connection* c : owned_) {
      if (c->needs_round) {
        c->needs_round = false;
        c->in_round = true;
        round_.push_back(c);
        if (c->chunk_wait_since_ns == 0) only_chunk_waits = false;
      }
    }
    const bool polling = round_.empty() && busy_poll_.spin(monotonic_ns());
    const int idle_wait_ms = draining_ ? drain_wait_ms : max_idle_wait_ms;
    const int wait_ms =
        round_.empty() ? (polling ? 0 : idle_wait_ms) : (only_chunk_waits ? chunk_wait_ms : 0);
    const int n = epoll_wait(epoll_.get(), events, max_events, wait_ms);
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
    copies_.begin();
    for (Connection* c : round_) {
      if (!c->closed()) serve(*c);
    }
    bool all_lost = false;
    if (copies_.any_queued()) {
      copies_.flush();
      requests_.receive_ahead(round_);
      all_lost = copies_.synchronize();
    }
    for (Connection* c : round_) {
      if (c->phase == Phase::transmission) {
        replies_.settle(*c, all_lost);
        if (!c->closed() && replies_.send(*c)) update_interest(*c);
        if (draining_ && !c->closed()) close_if_drained(*c);
      }
    }
    report_failed_copies();
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

// The round's failed copy calls: counted, and one line for the round.
void Worker::report_failed_copies() noexcept {
  if (copies_.failed_calls() == 0) return;
  stats_.add(stats_.failed_copy_calls, copies_.failed_calls());
  context_.health->copy_failed(copies_.first_error().name(), copies_.first_error().sticky(),
                               copies_.failed_calls(), copies_.failed_requests());
}

void Worker::serve(Connection& c) noexcept {
  if (c.phase == Phase::handshake) {
    serve_handshake(c);
    return;
  }
  if (c.ahead_length > 0) requests_.take_received_ahead(c);
  if (c.writable_wanted) return;  // the client is not reading: wait for EPOLLOUT
  if (!replies_.stage_queued(c)) {
    if (c.socket_full) {
      // The client has not read what was sent: come back once it has.
      c.writable_wanted = true;
      update_interest(c);
    } else {
      c.needs_round = true;  // the send arena is full: the next round has room
    }
    return;
  }
  if (!c.disconnect_requested) requests_.read_requests(c, draining_);
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

}  // namespace vramswap::engine
