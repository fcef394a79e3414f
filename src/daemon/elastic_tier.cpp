#include "daemon/elastic_tier.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "common/byte_size.hpp"
#include "common/clock.hpp"
#include "common/log.hpp"
#include "common/startup_error.hpp"

namespace vramswap::daemon {
namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

// How long a move waits for the requests already holding its chunk.
constexpr auto drain_wait = std::chrono::seconds(2);
// spill = auto leaves at least this share of the spill file's filesystem free.
constexpr uint64_t automatic_keep_free_percent = 10;

std::string directory_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == 0 ? "/" : slash == std::string::npos ? "." : path.substr(0, slash);
}

// spill = auto: a spill file only where it leaves the disk room to spare. An
// existing file (most likely our own, reused) is left to SpillArea to judge.
// Empty when there is room, else why not.
std::string automatic_room_problem(const std::string& path, uint64_t export_bytes) {
  const std::string dir = directory_of(path);
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return {};  // SpillArea says why
  struct stat st {};
  if (stat(path.c_str(), &st) == 0) return {};
  struct statvfs fs {};
  if (statvfs(dir.c_str(), &fs) != 0) return {};
  const uint64_t available = uint64_t{fs.f_bavail} * fs.f_frsize;
  const uint64_t total = uint64_t{fs.f_blocks} * fs.f_frsize;
  const uint64_t needed = export_bytes + store::SpillArea::header_bytes;
  const uint64_t keep = total / 100 * automatic_keep_free_percent;
  if (available >= needed && available - needed >= keep) return {};
  return "spill = auto: a spill file of " + format_byte_size(needed) + " in " + dir +
         " would leave less than " + std::to_string(automatic_keep_free_percent) +
         "% of that filesystem free (" + format_byte_size(available) + " free of " +
         format_byte_size(total) + "); set spill = PATH on a disk with room, or spill = no";
}

double seconds_since(steady_clock::time_point start) {
  return duration_cast<milliseconds>(steady_clock::now() - start).count() / 1000.0;
}

}  // namespace

std::unique_ptr<ElasticTier> ElasticTier::create(cuda::Context& context, store::VramStore& store,
                                                 const ElasticTierOptions& options,
                                                 const store::SavedChunks* handed_over,
                                                 std::unique_ptr<store::ChunkMap> map) {
  const char* without = "; serving from VRAM alone, nothing is moved out of it";
  // Pages of the daemon before that are in the spill area: the file must be
  // there as it was.
  const bool pages_in_spill = handed_over || (map && map->census().spill_bytes > 0);
  if (options.spill_automatic && !pages_in_spill) {
    if (const std::string problem = automatic_room_problem(options.spill_path, store.size());
        !problem.empty()) {
      log_notice("%s%s", problem.c_str(), without);
      return nullptr;
    }
  }
  const auto start = steady_clock::now();
  std::optional<store::SpillArea> spill;
  try {
    spill.emplace(store::SpillArea::open(options.spill_path, store.size(), options.instance));
  } catch (const StartupError& e) {
    log_warning("no spill area: %s%s", e.what(), without);
    return nullptr;
  }
  if (spill->created()) {
    if (pages_in_spill) {
      log_error("the spill file %s was made again: the pages handed over in it are gone",
                options.spill_path.c_str());
      return nullptr;
    }
    log_info("created the spill file %s (%s) in %.1f s", options.spill_path.c_str(),
             format_byte_size(store.size()).c_str(), seconds_since(start));
  }
  // The restart record: taken (marked so) before anything is served.
  std::optional<store::RestartStateFile> state;
  const std::string state_path = store::restart_state::path_for(options.spill_path);
  try {
    state.emplace(store::RestartStateFile::open(state_path, store.size(), store.chunk_bytes()));
  } catch (const StartupError& e) {
    if (pages_in_spill) {
      log_error("%s; the pages handed over cannot be taken safely", e.what());
      return nullptr;
    }
    log_warning("%s; a restart of this daemon will swap off first instead of handing over",
                e.what());
  }
  return std::unique_ptr<ElasticTier>(new ElasticTier(
      context, store, std::move(*spill), std::move(state), options, handed_over, std::move(map)));
}

ElasticTier::ElasticTier(cuda::Context& context, store::VramStore& store, store::SpillArea spill,
                         std::optional<store::RestartStateFile> state,
                         const ElasticTierOptions& options, const store::SavedChunks* handed_over,
                         std::unique_ptr<store::ChunkMap> map)
    : context_(context),
      store_(store),
      spill_(std::move(spill)),
      state_(std::move(state)),
      map_holder_(map ? std::move(map)
                      : std::make_unique<store::ChunkMap>(store.size(), store.chunk_bytes(),
                                                          store::Tier::vram)),
      map_(*map_holder_),
      mover_(map_, store_, spill_),
      options_(options),
      policy_(options.reserve, options.release_on_battery, store.chunk_bytes(),
              options.restore_after),
      power_(options.power_supply_dir),
      wanted_words_((map_.chunk_count() + 63) / 64),
      wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (!wake_fd_) {
    throw StartupError(exit_code::os_error,
                       std::string("cannot create an eventfd: ") + std::strerror(errno));
  }
  if (handed_over) handed_over->apply(map_);
  // Chunks outside VRAM at the start were handed over so: bring them back.
  restore_at_start_ = map_.census().vram_bytes < map_.export_bytes();
  wanted_ = std::make_unique<std::atomic<uint64_t>[]>(wanted_words_);
  for (size_t i = 0; i < wanted_words_; ++i)
    wanted_[i].store(0, std::memory_order_relaxed);
  log_info("elastic VRAM: chunks move to %s when another program needs the VRAM (reserve %s)%s",
           spill_.path().c_str(), format_byte_size(options.reserve).c_str(),
           options.release_on_battery ? " and while on battery" : "");
}

ElasticTier::~ElasticTier() {
  stop();
}

void ElasticTier::start() {
  if (thread_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    running_ = true;
  }
  thread_ = std::thread([this] { run(); });
}

void ElasticTier::stop() noexcept {
  stopping_.store(true, std::memory_order_release);
  wake();
  if (thread_.joinable()) thread_.join();
  finish("the daemon is stopping");
}

void ElasticTier::finish(const char* why) noexcept {
  // No more commands; a caller still waiting gets its answer.
  std::lock_guard lock(mutex_);
  running_ = false;
  if (command_ != Command::none && !command_done_) {
    answer_ = {false, why};
    command_done_ = true;
    done_.notify_all();
  }
}

void ElasticTier::wake() noexcept {
  const uint64_t one = 1;
  ssize_t ignored = ::write(wake_fd_.get(), &one, sizeof one);
  (void)ignored;
}

std::function<void(size_t)> ElasticTier::want_storage() {
  return [this](size_t chunk) { want_storage(chunk); };
}

void ElasticTier::want_storage(size_t chunk) noexcept {
  if (chunk >= map_.chunk_count()) return;
  const uint64_t bit = uint64_t{1} << (chunk % 64);
  const uint64_t before = wanted_[chunk / 64].fetch_or(bit, std::memory_order_release);
  if (!(before & bit)) wake();
}

ElasticControl::Answer ElasticTier::release(uint64_t bytes) {
  return ask(Command::release, bytes);
}

ElasticControl::Answer ElasticTier::restore() {
  return ask(Command::restore, 0);
}

std::string ElasticTier::before_sleep() noexcept {
  return ask(Command::before_sleep, 0).line;
}

std::string ElasticTier::after_resume() noexcept {
  return ask(Command::after_resume, 0).line;
}

std::string ElasticTier::at_risk() const noexcept {
  const uint64_t in_vram = map_.census().vram_bytes;
  return in_vram ? format_byte_size(in_vram) + " still in VRAM" : std::string();
}

ElasticControl::Answer ElasticTier::ask(Command command, uint64_t bytes) {
  std::lock_guard caller(caller_mutex_);
  std::unique_lock lock(mutex_);
  if (!running_) return {false, "the daemon is stopping, or its mover's thread has ended"};
  command_ = command;
  command_bytes_ = bytes;
  command_done_ = false;
  wake();
  done_.wait(lock, [this] { return command_done_; });
  command_ = Command::none;
  return std::move(answer_);
}

ElasticSnapshot ElasticTier::snapshot() const {
  ElasticSnapshot s;
  s.census = map_.census();
  s.gpu_free_bytes = gpu_free_bytes_.load(std::memory_order_relaxed);
  s.spill_path = spill_.path();
  std::lock_guard lock(mutex_);
  s.last_move = last_move_;
  s.last_move_reason = last_reason_;
  s.last_move_unix = last_move_unix_;
  s.gpu_released = gpu_released_seen_.load(std::memory_order_relaxed);
  return s;
}

void ElasticTier::run() noexcept {
  const cuda::Status bound = context_.bind_current_thread();
  if (!bound.ok()) {
    log_error("elastic VRAM is off: the mover's thread cannot use the GPU (%s)", bound.name());
    finish("the mover's thread cannot use the GPU");
    return;
  }
  if (restore_at_start_) {
    // Handed over by the daemon before: everything is in the spill area and
    // served from there; bring it back while serving, as after a release.
    const std::optional<uint64_t> free = gpu_free();
    const uint64_t budget = free && *free > options_.reserve ? *free - options_.reserve : 0;
    (void)bring_back(budget, "handed over by the vramswapd before");
  }
  const int64_t tick_ns = options_.tick.count();
  int64_t next_tick = monotonic_ns();
  while (!stopping_.load(std::memory_order_acquire)) {
    const int64_t wait_ns = next_tick - monotonic_ns();
    pollfd fd{wake_fd_.get(), POLLIN, 0};
    if (wait_ns > 0) poll(&fd, 1, static_cast<int>((wait_ns + 999'999) / 1'000'000));
    uint64_t count = 0;
    ssize_t ignored = ::read(wake_fd_.get(), &count, sizeof count);
    (void)ignored;
    if (stopping_.load(std::memory_order_acquire)) break;
    serve_wants();
    take_command();
    if (monotonic_ns() >= next_tick) {
      tick();
      next_tick = monotonic_ns() + tick_ns;
    }
  }
}

std::optional<uint64_t> ElasticTier::gpu_free() noexcept {
  try {
    const uint64_t free = context_.memory_info().free_bytes;
    gpu_free_bytes_.store(free, std::memory_order_relaxed);
    return free;
  } catch (const std::exception& e) {
    static int64_t said_ns = INT64_MIN / 2;
    if (monotonic_ns() - said_ns > 60'000'000'000) {
      said_ns = monotonic_ns();
      log_warning("cannot read the GPU's free memory: %s", e.what());
    }
    return std::nullopt;
  }
}

void ElasticTier::tick() noexcept {
  if (gpu_released_) {
    // Nothing to watch on a GPU we let go of (reading its free memory would
    // take a context again) until the hold ends: the admin's restore, AC,
    // or the resume.
    if (asleep_ || policy_.held() || (options_.release_on_battery && power_.on_battery())) {
      return;
    }
    std::string line;
    if (!take_gpu_back(line)) {
      static int64_t said_ns = INT64_MIN / 2;
      if (monotonic_ns() - said_ns > 60'000'000'000) {
        said_ns = monotonic_ns();
        log_warning("%s; serving from %s, trying again", line.c_str(), spill_.path().c_str());
      }
      return;
    }
    log_info("%s", line.c_str());
  }
  const std::optional<uint64_t> free = gpu_free();
  if (!free) return;
  last_gpu_free_ = *free;
  const store::ChunkMap::Census census = map_.census();
  TierInputs in;
  in.now_ns = monotonic_ns();
  in.gpu_free_bytes = *free;
  in.on_battery = options_.release_on_battery && power_.on_battery();
  in.vram_bytes = census.vram_bytes;
  in.elsewhere_bytes = census.spill_bytes + census.none_bytes;
  const TierDecision decision = policy_.decide(in);
  if (decision.action == TierAction::none) return;
  if (asleep_ && decision.action == TierAction::restore) return;  // held until resume
  const Answer answer = decision.action == TierAction::evict
                            ? evict(decision.bytes, decision.everything, decision.reason)
                            : bring_back(decision.bytes, decision.reason);
  policy_.sweep_done(decision, !answer.ok, monotonic_ns(), map_.census().vram_bytes);
  if (answer.ok && decision.everything && holding_back()) {
    std::string line;
    (void)let_go_of_gpu(line);
    log_info("%s", line.c_str());
  }
}

void ElasticTier::take_command() noexcept {
  Command command;
  uint64_t bytes;
  {
    std::lock_guard lock(mutex_);
    if (command_ == Command::none || command_done_) return;
    command = command_;
    bytes = command_bytes_;
  }
  Answer answer;
  std::string gpu_line;
  if (command == Command::before_sleep) {
    answer = sleep_now();
  } else if (command == Command::after_resume) {
    answer = resume_now();
  } else if (asleep_ && command == Command::restore) {
    answer = {false, "the system is going to sleep: chunks come back after resume"};
  } else if (command == Command::release) {
    policy_.hold(true);
    answer = evict(bytes, bytes == all_bytes, "asked by the administrator");
    // All of it: the GPU may hold nothing of ours at all.
    if (answer.ok && bytes == all_bytes) {
      (void)let_go_of_gpu(gpu_line);
      answer.line += "; " + gpu_line;
    }
  } else {
    policy_.hold(false);
    if (gpu_released_ && !holding_back() && !take_gpu_back(gpu_line)) {
      answer = {false, gpu_line};
    } else {
      const std::optional<uint64_t> free = gpu_free();
      const uint64_t budget = free && *free > options_.reserve ? *free - options_.reserve : 0;
      answer = bring_back(budget, "asked by the administrator");
      if (!gpu_line.empty()) answer.line = gpu_line + "; " + answer.line;
    }
  }
  if (!gpu_line.empty()) log_info("%s", gpu_line.c_str());
  std::lock_guard lock(mutex_);
  answer_ = std::move(answer);
  command_done_ = true;
  done_.notify_all();
}

void ElasticTier::serve_wants() noexcept {
  // A write to a chunk with no storage must go on. While the VRAM is held
  // back (the admin released it, the laptop is on battery, another program
  // needs it) the chunk takes its place in the spill area, or every write
  // would undo the release; otherwise VRAM, or the spill area if the GPU has
  // none left.
  const bool keep_out =
      holding_back() || gpu_released_ || last_gpu_free_ < options_.reserve + map_.chunk_bytes();
  const store::ChunkMover::Placement placement = keep_out
                                                     ? store::ChunkMover::Placement::spill_only
                                                     : store::ChunkMover::Placement::vram_or_spill;
  size_t failed = 0;
  store::MoveResult failure;
  for (size_t word = 0; word < wanted_words_; ++word) {
    uint64_t bits = wanted_[word].exchange(0, std::memory_order_acquire);
    while (bits) {
      const size_t chunk = word * 64 + static_cast<size_t>(__builtin_ctzll(bits));
      bits &= bits - 1;
      if (map_.tier(chunk) == store::Tier::vram) continue;
      const store::MoveResult result =
          mover_.restore(chunk, store::Deadline::after(drain_wait), placement);
      if (result.outcome == store::MoveOutcome::failed) {
        ++failed;
        failure = result;
      }
    }
  }
  if (failed == 0) return;
  static int64_t said_ns = INT64_MIN / 2;
  if (monotonic_ns() - said_ns < 10'000'000'000) return;
  said_ns = monotonic_ns();
  log_warning(
      "cannot give %zu chunk%s written to VRAM: %s (%s); those writes fail until the "
      "GPU has room",
      failed, failed == 1 ? "" : "s", failure.cause ? failure.cause : "restore",
      failure.cuda_status.ok() ? std::strerror(failure.error_number) : failure.cuda_status.name());
}

namespace {

// ", 3 chunks busy; stopped: copy VRAM to staging (CUDA_ERROR_...)"
std::string sweep_trouble(size_t busy, const store::MoveResult* failure) {
  std::string text;
  if (busy) text += "; " + std::to_string(busy) + " chunks held by requests were left";
  if (failure) {
    text += std::string("; stopped: ") + (failure->cause ? failure->cause : "move failed") + " (" +
            (failure->cuda_status.ok() ? std::strerror(failure->error_number)
                                       : failure->cuda_status.name()) +
            ")";
  }
  return text;
}

}  // namespace

ElasticControl::Answer ElasticTier::evict(uint64_t bytes, bool everything, const char* reason,
                                          uint64_t* copied) noexcept {
  const auto start = steady_clock::now();
  uint64_t released = 0;
  size_t busy = 0;
  std::optional<store::MoveResult> failure;
  for (size_t chunk = map_.chunk_count(); chunk-- > 0;) {
    if (!everything && released >= bytes) break;
    if (stopping_.load(std::memory_order_acquire)) break;
    serve_wants();
    if (map_.tier(chunk) != store::Tier::vram) continue;
    const store::MoveResult result = mover_.evict(chunk, store::Deadline::after(drain_wait));
    if (result.moved()) {
      released += store_.chunk_bytes();
      if (copied && result.outcome == store::MoveOutcome::moved) *copied += store_.chunk_bytes();
    } else if (result.outcome == store::MoveOutcome::busy) {
      ++busy;
    } else if (result.outcome == store::MoveOutcome::failed) {
      failure = result;
      break;
    }
  }
  const bool ok = !failure && (everything ? busy == 0 : released >= bytes);
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.1f s", seconds_since(start));
  std::string line = "released " + format_byte_size(released) + " to " + spill_.path() + " in " +
                     seconds + ": " + reason + sweep_trouble(busy, failure ? &*failure : nullptr);
  if (!ok && !failure && !everything && released < bytes) line += "; nothing more to release";
  record(line.c_str(), reason, copied == nullptr);
  return {ok, std::move(line)};
}

ElasticControl::Answer ElasticTier::bring_back(uint64_t budget, const char* reason,
                                               uint64_t* copied) noexcept {
  if (gpu_released_) {
    return {false, "the GPU is released; nothing comes back to VRAM until it is taken again"};
  }
  const auto start = steady_clock::now();
  uint64_t restored = 0;
  size_t busy = 0;
  size_t left = 0;
  std::optional<store::MoveResult> failure;
  for (size_t chunk = 0; chunk < map_.chunk_count(); ++chunk) {
    if (stopping_.load(std::memory_order_acquire)) break;
    serve_wants();
    if (map_.tier(chunk) == store::Tier::vram) continue;
    if (failure || restored + store_.chunk_bytes() > budget) {
      ++left;
      continue;
    }
    const store::MoveResult result = mover_.restore(chunk, store::Deadline::after(drain_wait));
    if (result.moved()) {
      restored += store_.chunk_bytes();
      if (copied && result.outcome == store::MoveOutcome::moved) *copied += store_.chunk_bytes();
    } else if (result.outcome == store::MoveOutcome::busy) {
      ++busy;
    } else if (result.outcome == store::MoveOutcome::failed) {
      failure = result;
      ++left;
    }
  }
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.1f s", seconds_since(start));
  std::string line = "restored " + format_byte_size(restored) + " from " + spill_.path() + " in " +
                     seconds + ": " + reason + sweep_trouble(busy, failure ? &*failure : nullptr);
  if (left && !failure) {
    line += "; " + format_byte_size(left * store_.chunk_bytes()) +
            " stay out of VRAM: the GPU has no more room above the reserve";
  }
  const bool ok = !failure && busy == 0 && left == 0;
  if (restored || !ok) record(line.c_str(), reason, copied == nullptr);
  return {ok, std::move(line)};
}

ElasticControl::Answer ElasticTier::sleep_now() noexcept {
  // From now until resume nothing comes back to VRAM, so that what the sleep
  // may lose holds no swapped page.
  asleep_ = true;
  const auto start = steady_clock::now();
  uint64_t copied = 0;
  Answer swept = evict(all_bytes, true, "the system is going to sleep", &copied);
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.1f s", seconds_since(start));
  std::string line =
      "suspend: saved " + format_byte_size(copied) + " to the spill area in " + seconds;
  if (!swept.ok) {
    const uint64_t left = map_.census().vram_bytes;
    line += "; " + format_byte_size(left) + " stay in VRAM and are lost if the GPU loses power (" +
            swept.line + ")";
  } else {
    // Nothing of ours left on the GPU: whatever the sleep does to it (power
    // off without preserving VRAM) costs nothing, and resume starts afresh.
    std::string gpu_line;
    (void)let_go_of_gpu(gpu_line);
    line += "; " + gpu_line;
  }
  record(line.c_str(), "the system went to sleep", false);
  return {swept.ok, std::move(line)};
}

ElasticControl::Answer ElasticTier::resume_now() noexcept {
  asleep_ = false;
  // The admin's release and the battery keep holding the VRAM back; their
  // own restore brings the chunks back later.
  const char* held =
      policy_.held() ? "released by the administrator"
      : policy_.battery_released() || (options_.release_on_battery && power_.on_battery())
          ? "on battery"
          : nullptr;
  if (held) {
    std::string line = std::string("resume: ") + format_byte_size(map_.census().spill_bytes) +
                       " stay in the spill area: " + held;
    record(line.c_str(), "the system resumed", false);
    return {true, std::move(line)};
  }
  const auto start = steady_clock::now();
  std::string gpu_line;
  if (!gpu_released_ && !gpu_free() && map_.census().vram_bytes == 0) {
    // The context did not survive the sleep (it was kept: letting go of it
    // before the sleep failed) and nothing of the export is in VRAM: start
    // the GPU afresh, as after a release.
    (void)let_go_of_gpu(gpu_line, /*lost=*/true);
  }
  if (gpu_released_ && !take_gpu_back(gpu_line)) {
    std::string line = "resume: " + format_byte_size(map_.census().spill_bytes) +
                       " stay in the spill area and are served from there: " + gpu_line;
    record(line.c_str(), "the system resumed", false);
    return {false, std::move(line)};
  }
  const std::optional<uint64_t> free = gpu_free();
  const uint64_t budget = free && *free > options_.reserve ? *free - options_.reserve : 0;
  uint64_t copied = 0;
  Answer swept = bring_back(budget, "the system resumed", &copied);
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.1f s", seconds_since(start));
  std::string line = "resume: restored " + format_byte_size(copied) + " in " + seconds;
  if (!swept.ok) {
    line += "; " + format_byte_size(map_.census().spill_bytes) +
            " stay in the spill area and are served from there (" +
            (free ? swept.line : std::string("cannot read the GPU's free memory")) + ")";
  }
  record(line.c_str(), "the system resumed", false);
  return {swept.ok, std::move(line)};
}

bool ElasticTier::save_for_restart(uint32_t nbd_index, std::string& why) noexcept {
  if (!state_) {
    why = "there is no restart record file";
    return false;
  }
  if (thread_.joinable()) {
    why = "the tier still runs";
    return false;
  }
  const int error = state_->save(map_, options_.instance, nbd_index, why);
  if (error == 0) return true;
  if (error != EBUSY) why = state_->path() + ": " + std::strerror(error);
  return false;
}

void ElasticTier::record(const char* line, const char* reason, bool log) noexcept {
  if (log) log_info("%s", line);
  std::lock_guard lock(mutex_);
  std::snprintf(last_move_, sizeof last_move_, "%s", line);
  std::snprintf(last_reason_, sizeof last_reason_, "%s", reason);
  last_move_unix_ = time(nullptr);
}

}  // namespace vramswap::daemon
