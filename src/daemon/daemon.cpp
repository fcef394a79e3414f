#include "daemon/daemon.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <thread>

#include "common/byte_size.hpp"
#include "common/log.hpp"
#include "common/startup_error.hpp"
#include "config/config.hpp"
#include "config/size.hpp"
#include "cuda/context.hpp"
#include "cuda/device.hpp"
#include "cuda/driver.hpp"
#include "daemon/connection_plan.hpp"
#include "daemon/control_socket.hpp"
#include "daemon/elastic_tier.hpp"
#include "daemon/fd_store_handover.hpp"
#include "daemon/handover.hpp"
#include "daemon/instance_lock.hpp"
#include "daemon/kernel_device.hpp"
#include "daemon/preflight.hpp"
#include "daemon/previous_run.hpp"
#include "daemon/signals.hpp"
#include "daemon/sleep_watch.hpp"
#include "daemon/status_publisher.hpp"
#include "daemon/stop_request.hpp"
#include "engine/server.hpp"
#include "kernel/hardening.hpp"
#include "store/vram_store.hpp"
#include "systemd/fd_store.hpp"
#include "systemd/notify.hpp"
#include "systemd/unit_job.hpp"

namespace vramswap::daemon {
namespace {

using std::chrono::steady_clock;

constexpr int serving_tick_ms = 5000;   // status refresh while serving
constexpr int stopping_tick_ms = 1000;  // how often to look for swapoff while stopping
constexpr auto swapoff_retry = std::chrono::seconds(30);
constexpr auto kernel_close_wait = std::chrono::seconds(10);
// At most one attempt this often to give the kernel back dropped connections.
constexpr auto restore_interval = std::chrono::seconds(5);

// The device's configuration, and the report it came from, whose file names
// the startup checks point at.
struct Configured {
  config::ConfigReport report;
  config::DeviceConfig device;
};

Configured load_device(const CommandLine& command_line) {
  config::ConfigReport report = config::load_trusted_config_report(command_line.config_path);
  std::string instance = command_line.instance;
  if (instance.empty()) {
    // Without --instance, a file with exactly one device names it.
    if (report.devices.size() != 1) {
      std::string names;
      for (const auto& d : report.devices)
        names += (names.empty() ? "" : ", ") + d.name;
      throw StartupError(exit_code::usage, command_line.config_path + " configures " +
                                               std::to_string(report.devices.size()) +
                                               " devices (" + (names.empty() ? "none" : names) +
                                               "); name one with --instance NAME");
    }
    instance = report.devices.front().name;
  }
  config::DeviceConfig device = config::select_device(report, instance);
  return {std::move(report), std::move(device)};
}

engine::ServerOptions server_options(const config::DeviceConfig& device, const ConnectionPlan& plan,
                                     std::string description) {
  engine::ServerOptions options;
  options.export_name = device.name;
  options.export_description = std::move(description);
  options.listen_path = device.listen;
  options.socket_group = device.socket_group;
  options.kernel_connections = plan.kernel_connections;
  options.engine.workers = plan.workers;
  options.engine.copy_kernel = device.copy_kernel;
  options.engine.busy_poll_us = device.busy_poll_us;
  options.engine.busy_poll_mode = device.origins.contains("busy_poll")
                                      ? engine::BusyPollMode::fixed
                                      : engine::BusyPollMode::adaptive;
  options.engine.verify = device.verify;
  // Every worker serves the kernel's swap I/O: mark each as an I/O flusher.
  options.on_thread_start = [] { kernel::become_io_flusher(); };
  return options;
}

// The spill file of spill = auto.
constexpr const char* automatic_spill_directory = "/var/lib/vramswap";

// Test knobs (vramswapd(8), ENVIRONMENT): where the batteries are, how long
// free VRAM must stay free before chunks come back, and how often the
// triggers are looked at.
ElasticTierOptions elastic_options(const config::DeviceConfig& device) {
  ElasticTierOptions options;
  options.instance = device.name;
  options.spill_automatic = device.spill.kind == config::SpillKind::automatic;
  options.spill_path = options.spill_automatic
                           ? std::string(automatic_spill_directory) + "/" + device.name + ".spill"
                           : device.spill.path;
  options.reserve = device.reserve;
  options.release_on_battery = device.release_on_battery;
  if (const char* dir = std::getenv("VRAMSWAP_POWER_SUPPLY_DIR"); dir && *dir)
    options.power_supply_dir = dir;
  if (const char* after = std::getenv("VRAMSWAP_RESTORE_AFTER_MS"); after && *after)
    options.restore_after = std::chrono::milliseconds(std::strtoul(after, nullptr, 10));
  if (const char* tick = std::getenv("VRAMSWAP_TIER_TICK_MS"); tick && *tick)
    options.tick = std::chrono::milliseconds(std::max(1ul, std::strtoul(tick, nullptr, 10)));
  return options;
}

// A device taken over keeps what it was made with: the daemon before made
// its block map (spill) and checksums (verify) in the region. A changed
// setting applies once the device is stopped (swapoff) and made again, but
// a map without a spill area would have nowhere to find the pages it placed
// there: refused (returned as the line to say), like a changed section.
std::string changed_layout(store::HandoverLayout layout, bool with_spill, bool verify) {
  if (layout.checksums != verify) {
    log_notice(
        "verify = %s applies once the device is stopped (swapoff): the handed-over "
        "device keeps verify = %s",
        verify ? "yes" : "no", layout.checksums ? "yes" : "no");
  }
  if (!layout.chunk_map && with_spill) {
    log_notice(
        "spill applies once the device is stopped (swapoff): the handed-over device "
        "has no spill area");
  }
  if (layout.chunk_map && !with_spill) {
    return "spill = no, but the handed-over device keeps pages in its spill area; set spill "
           "back until the device is stopped (swapoff)";
  }
  return "";
}

KernelDeviceOptions kernel_device_options(const config::DeviceConfig& device,
                                          const ConnectionPlan& plan) {
  return {device.name,     device.nbd_index, plan.kernel_connections,  plan.timeout_s,
          device.priority, device.discard,   dead_connection_timeout_s};
}

}  // namespace

int run(const CommandLine& command_line) {
  const Configured configured = load_device(command_line);
  const config::DeviceConfig& device = configured.device;
  const ConnectionPlan plan = plan_connections(device);
  log_init("vramswapd", device.name);
  const InstanceLock lock(device.name, device.attach);
  // Before this daemon writes its own status over the record of the last one.
  std::optional<status::PreviousCrash> previous_crash = take_previous_crash(device.name);
  // What systemd kept for the instance in its file descriptor store.
  std::vector<NamedFd> passed = systemd::fd_store::take_passed();
  systemd::fd_store::Sink fd_store;
  check_before_allocating(configured.report, device);
  // A kernel without the nbd driver is refused before the VRAM is taken.
  std::optional<kernel::NbdNetlink> netlink;
  if (device.attach) netlink.emplace(kernel::NbdNetlink::open());
  // Live restart (vramswapd(8), RESTART), judged before any VRAM is taken:
  // first what the daemon before left in systemd's file descriptor store
  // (its VRAM and block map: after a restart or a crash); else the device it
  // left and its record in the spill area. A device it left with neither is
  // disconnected here.
  const ElasticTierOptions tier_options = elastic_options(device);
  std::optional<StoredState> stored =
      take_stored_state(std::move(passed), netlink ? &*netlink : nullptr, device.name,
                        store::VramStore::default_chunk_bytes, fd_store);
  if (previous_crash) {
    // Whatever the store was to keep, this is what came back.
    previous_crash->taken_over = stored.has_value();
    previous_crash->vram_kept = stored.has_value();
  }
  log_previous_crash(previous_crash);
  std::optional<Handover> handover;
  if (netlink && !stored) {
    handover = find_handover(*netlink, device.name,
                             device.spill.kind == config::SpillKind::off
                                 ? std::string()
                                 : store::restart_state::path_for(tier_options.spill_path),
                             store::VramStore::default_chunk_bytes);
  }

  // The GPU and its memory.
  const cuda::Driver driver = cuda::Driver::load();
  const std::vector<cuda::DeviceInfo> gpus = cuda::list_devices(driver);
  const cuda::DeviceInfo& gpu = cuda::select_device(gpus, device.gpu.text);
  cuda::Context context(driver, gpu.index);
  const cuda::MemoryInfo memory = context.memory_info();
  const config::SwapSize wanted =
      config::choose_swap_size(device, memory.free_bytes, memory.total_bytes);
  if (!wanted.lowered.empty()) log_warning("%s", wanted.lowered.c_str());

  // Lock the daemon in RAM now, with the driver loaded and before anything
  // large is mapped: MCL_FUTURE then covers every later allocation of the
  // I/O path (staging, threads, connection slots), while VRAM itself is not
  // host memory (the test suite's fake driver keeps its stand-in VRAM out of
  // the lock the same way).
  kernel::lock_memory();
  kernel::protect_from_oom();
  store::VramStore store(context);
  const std::string gpu_label = "GPU " + std::to_string(gpu.index) + " (" + gpu.name + ")";
  // The live state region (the chunk map and the checksums live in it) and
  // the VRAM parked in systemd's store: fd_store_handover.hpp.
  std::unique_ptr<FdStoreHandover> handover_state;
  std::unique_ptr<store::ChunkMap> taken_map;
  std::optional<uint32_t> taken_index;  // the device taken over from the store
  std::optional<std::chrono::system_clock::time_point> taken_since;
  const char* taken_since_what = "";
  const bool taken_over = stored.has_value();
  if (stored) {
    taken_index = stored->nbd_index;
    try {
      taken_map = take_over_export(*stored, store);
    } catch (const StartupError& e) {
      // Never reattach with other bytes: the device goes, and the store is
      // emptied so that the next start is a fresh one.
      if (stored->nbd_index) release_left_device(*netlink, *stored->nbd_index, e.what());
      forget_stored_state(*stored, fd_store);
      throw StartupError(exit_code::software,
                         std::string("the handed-over device could not be taken over (") +
                             e.what() + "); the next start makes a new one");
    }
    if (store.size() != wanted.bytes) {
      log_notice(
          "the handed-over device keeps its %s; the configured size (%s) applies once it "
          "is stopped (swapoff)",
          format_byte_size(store.size()).c_str(), format_byte_size(wanted.bytes).c_str());
    }
    // Unserved since the handover, or since the daemon before died.
    if (stored->handed_at) {
      taken_since = *stored->handed_at;
      taken_since_what = "the handover";
    } else if (previous_crash && previous_crash->end_seen) {
      taken_since = std::chrono::system_clock::from_time_t(previous_crash->ended_unix);
      taken_since_what = "the death of the vramswapd before (to the second)";
    }
    handover_state = std::make_unique<FdStoreHandover>(std::move(*stored), fd_store);
  } else if (handover) {
    // The handed-over export keeps its size; its chunks come back to VRAM
    // from the spill area once serving.
    const uint64_t handed = store.reserve_released(handover->saved.identity.export_bytes);
    if (handed != wanted.bytes) {
      log_notice(
          "the handed-over device keeps its %s; the configured size (%s) applies once it "
          "is stopped (swapoff)",
          format_byte_size(handed).c_str(), format_byte_size(wanted.bytes).c_str());
    }
  } else {
    store.allocate(wanted.bytes, device.min_size);
    log_info("%s of VRAM on %s (%s free of %s)", format_byte_size(store.size()).c_str(),
             gpu_label.c_str(), format_byte_size(memory.free_bytes).c_str(),
             format_byte_size(memory.total_bytes).c_str());
  }

  const bool with_spill = device.spill.kind != config::SpillKind::off;
  if (!handover_state) {
    handover_state = std::make_unique<FdStoreHandover>(
        store::HandoverRegion::create({device.name, store.size(), store.chunk_bytes()},
                                      {with_spill, device.verify}),
        fd_store);
  }
  const store::HandoverLayout layout = handover_state->region().layout();
  if (taken_over) {
    if (std::string refused = changed_layout(layout, with_spill, device.verify); !refused.empty()) {
      if (taken_index) release_left_device(*netlink, *taken_index, refused);
      handover_state->discard();
      throw StartupError(exit_code::config, refused);
    }
  }

  // Elastic VRAM: after the store it moves, before the Server that serves
  // its map; destroyed after the Server, before the store.
  std::unique_ptr<ElasticTier> tier;
  if (layout.chunk_map) {
    std::unique_ptr<store::ChunkMap> map =
        taken_map ? std::move(taken_map)
                  : std::make_unique<store::ChunkMap>(store.size(), store.chunk_bytes(),
                                                      handover_state->region().chunk_map_storage(),
                                                      store::Tier::vram);
    tier = ElasticTier::create(context, store, tier_options, handover ? &handover->saved : nullptr,
                               std::move(map));
  }
  if ((handover || taken_over) && layout.chunk_map && !tier) {
    // The pages cannot be served: never reattach with other bytes.
    const std::optional<uint32_t> index =
        handover ? std::optional<uint32_t>(handover->nbd_index) : taken_index;
    if (index) release_left_device(*netlink, *index, "its spill area cannot be used");
    handover_state->discard();
    throw StartupError(exit_code::unavailable,
                       "the handed-over device could not be taken over; the next start makes a "
                       "new one");
  }
  if (layout.chunk_map && !tier) {
    // No spill area after all: the region's map would not follow the export.
    handover_state = std::make_unique<FdStoreHandover>(
        store::HandoverRegion::create({device.name, store.size(), store.chunk_bytes()},
                                      {false, device.verify}),
        fd_store);
  }
  if (std::string why; !handover_state->arm(store, why)) {
    log_notice(
        "the VRAM is not kept in systemd's file descriptor store (%s): a restart goes through "
        "the spill area, and a crash loses what is swapped here",
        why.c_str());
  }
  engine::ServerOptions options = server_options(device, plan, "vramswap on " + gpu_label);
  options.engine.verify = handover_state->region().layout().checksums;
  if (options.engine.verify) {
    options.checksum_storage = handover_state->region().checksum_storage();
    options.checksums_taken_over = taken_over;
  }
  if (tier) {
    options.chunks = tier->chunks();
    options.spill = tier->spill();
    options.want_storage = tier->want_storage();
  }
  engine::Server server(store, context, std::move(options));
  server.start();
  if (tier) {
    tier->share_gpu_with(
        {[&server] { return server.detach_gpu(); }, [&server] { return server.attach_gpu(); }});
    tier->start();
  }
  // Sleep (vramswapd(8), SLEEP): a logind delay inhibitor, and the moves to
  // the spill area before a sleep and back after it. After the tier it
  // drives, stopped before it (below).
  std::unique_ptr<SleepWatch> sleep_watch;
  if (tier) {
    sleep_watch = SleepWatch::start(*tier, device.name);
  } else {
    say_sleep_without_spill_area();
  }

  std::optional<KernelDevice> kernel;
  if (device.attach) {
    kernel.emplace(kernel_device_options(device, plan), std::move(*netlink), server,
                   handover ? std::optional<uint32_t>(handover->nbd_index) : taken_index);
    if (handover) log_unserved_gap(*handover);
    if (taken_index) log_unserved_gap(*taken_index, taken_since, taken_since_what);
  }
  if (device.swap) kernel->enable_swap();

  UniqueFd signals = open_signalfd();
  StatusPublisher status(device, gpu, memory.total_bytes, server, kernel, previous_crash,
                         tier.get(), handover_state.get());
  const std::string ready_line = status.publish({});
  // The admin's control socket (vramswap release / restore), after the status
  // file, next to which it lives. Without an elastic tier it answers that the
  // device has no spill area. The tier outlives it (declared above), and its
  // moves stop before the socket does (below).
  std::unique_ptr<ControlSocket> control = open_control_socket(device.name, tier.get());
  systemd::notify::ready(ready_line);
  log_info("ready: %s", ready_line.c_str());

  bool stopping = false;
  bool handing_over = false;
  bool in_place = false;  // through systemd's store, not the spill area
  // Under systemd a stop turns the device's swap off itself (its swap unit
  // no longer stops first, so that a restart can leave it on); swap = yes
  // always does.
  bool swap_off_first = device.swap;
  bool told_waiting = false;
  steady_clock::time_point next_swapoff = steady_clock::now();
  std::string waiting_for;
  steady_clock::time_point next_restore = steady_clock::now();
  // Stops serving for a restart if the device can be handed over, else
  // stops as for a stop, swap off first.
  const auto hand_over_or_stop = [&] {
    std::string why;
    if (handover_state->ready()) {
      // Everything the next daemon needs is in systemd's store already.
      handing_over = in_place = true;
      return;
    }
    handing_over = prepare_handover(tier.get(), kernel ? &*kernel : nullptr, why);
    if (!handing_over) {
      swap_off_first = swap_off_first || systemd::own_unit().has_value();
      log_warning(
          "restart requested, but the device cannot be handed over (%s): stopping as for a "
          "stop, swap off first",
          why.c_str());
    }
  };
  for (;;) {
    pollfd fds[2] = {{signals.get(), POLLIN, 0}, {server.kernel_connection_closed_fd(), POLLIN, 0}};
    poll(fds, 2, stopping ? stopping_tick_ms : serving_tick_ms);
    if (fds[1].revents) {
      uint64_t closed = 0;
      ssize_t ignored = ::read(fds[1].fd, &closed, sizeof closed);
      (void)ignored;
    }
    switch (read_signals(signals.get())) {
      case SignalEvent::stop:
        if (!stopping) {
          stopping = true;
          systemd::notify::stopping();
          const StopRequest request = judge_sigterm(command_line.config_path, device.name);
          swap_off_first = swap_off_first || request.under_systemd;
          if (request.restart) hand_over_or_stop();
        }
        break;
      case SignalEvent::reload:
        log_info("SIGHUP ignored: restart the service to apply a changed configuration");
        break;
      case SignalEvent::restart:
        if (!stopping && may_hand_over_on_sigusr2()) {
          stopping = true;
          systemd::notify::stopping();
          hand_over_or_stop();
        }
        break;
      case SignalEvent::none:
        break;
    }
    if (handing_over) break;
    if (kernel && !stopping && server.live_kernel_connections() < kernel->connections() &&
        steady_clock::now() >= next_restore) {
      // The kernel gives up on a connection whose request outlived the
      // timeout and moves its requests to the others; hand it a fresh one so
      // the device keeps its parallelism.
      const unsigned live = server.live_kernel_connections();
      try {
        const unsigned restored = kernel->restore_connections(server);
        log_warning(
            "the kernel dropped %u of the %u connections of %s (a request took longer "
            "than %u s); gave it new ones",
            restored, kernel->connections(), kernel->path().c_str(), plan.timeout_s);
      } catch (const StartupError& e) {
        log_error("cannot replace the dropped connections of %s (%u of %u left): %s",
                  kernel->path().c_str(), live, kernel->connections(), e.what());
      }
      next_restore = steady_clock::now() + restore_interval;
    }
    if (kernel && server.live_kernel_connections() == 0) {
      // Disconnected by someone else: there is nothing left to serve.
      log_error(
          "the kernel closed every connection of %s (was it disconnected by another "
          "program?); anything swapped to it is lost",
          kernel->path().c_str());
      status.publish("the kernel dropped the device");
      if (tier) tier->stop();
      server.stop();
      handover_state->discard();
      return 1;
    }
    if (stopping) {
      if (!kernel) break;
      if (swap_off_first && steady_clock::now() >= next_swapoff) {
        std::string why;
        if (!kernel->disable_swap(why)) {
          log_warning("swapoff %s failed: %s; still serving, retrying in %lld s",
                      kernel->path().c_str(), why.c_str(),
                      static_cast<long long>(swapoff_retry.count()));
          next_swapoff = steady_clock::now() + swapoff_retry;
        }
      }
      std::string holder;
      if (!kernel->in_use(holder)) break;
      waiting_for = kernel->path() + " is in use (" + holder + "), waiting for swapoff";
      if (!told_waiting) {
        told_waiting = true;
        log_notice("%s before releasing the VRAM", waiting_for.c_str());
      }
    }
    systemd::notify::status(status.publish(stopping ? waiting_for : std::string()));
  }

  if (handing_over) {
    // Serving ends first (the kernel queues the device's requests from here
    // on), then the moves: the map holds still while it is recorded.
    systemd::notify::status(status.publish("handing the device over"));
    server.stop();
    if (tier) tier->stop();
    sleep_watch.reset();
    control.reset();
    if (in_place) {
      // The map and the checksums are in the region as the last request
      // left them, the VRAM parked: nothing to write.
      handover_state->note_handed_over();
      if (kernel) kernel->keep_for_next_daemon();
      log_info(
          "handed over %s in place: %s of VRAM and the block map stay in systemd's file "
          "descriptor store; the kernel queues its requests for up to %u s until the next "
          "vramswapd reattaches",
          kernel ? kernel->path().c_str() : "the export",
          format_byte_size(store.committed_bytes()).c_str(), dead_connection_timeout_s);
      status::remove_status_file(device.name);
      return exit_code::ok;
    }
    const int handed = finish_handover(*tier, *kernel);
    status::remove_status_file(device.name);
    return handed;
  }

  // No move from here on: a sweep in progress ends between chunks and its
  // caller gets its answer, so closing the control socket waits for nothing;
  // nor may a move start while the workers stop.
  if (tier) tier->stop();
  sleep_watch.reset();
  control.reset();
  systemd::notify::status(status.publish("releasing the device"));
  if (kernel) {
    kernel->disconnect();
    const auto deadline = steady_clock::now() + kernel_close_wait;
    while (server.live_kernel_connections() > 0 && steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kernel.reset();
  }
  server.stop();
  // Nothing is left to hand over: the VRAM goes with this daemon.
  handover_state->discard();
  status::remove_status_file(device.name);
  log_info("stopped");
  return exit_code::ok;
}

}  // namespace vramswap::daemon
