// `vramswap status` decisions: observations in, states, messages, JSON and
// exit status out. Nothing here touches the machine.

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/status_output.hpp"
#include "cli/status_report.hpp"
#include "common/byte_size.hpp"
#include "systemd/unit_name.hpp"

using namespace vramswap;
using namespace vramswap::kernel;
using namespace vramswap::cli;
using Catch::Matchers::Contains;

namespace {

constexpr int64_t kNow = 1'800'000'000;

config::ConfigReport parse(const std::string& text) {
  return config::parse_config_report(text, "/etc/vramswap.conf", {.online_cpus = 4});
}

ConfigObservation configured(const std::string& text) {
  return {"/etc/vramswap.conf", "", false, parse(text)};
}

// A healthy daemon serving 8 GiB of GPU 0 as /dev/nbd0, swap on, hardened.
status::InstanceStatus serving(const std::string& name) {
  status::InstanceStatus s;
  s.instance = name;
  s.pid = 4242;
  s.state = "serving";
  s.health = "ok";
  s.status_line = "8.0 GiB of GPU 0 (Test GPU) on /dev/nbd0";
  s.gpu_index = 0;
  s.gpu_name = "Test GPU";
  s.gpu_uuid = "GPU-00000000-1111-2222-3333-444444444444";
  s.gpu_pci_bus_id = "0000:01:00.0";
  s.gpu_total_bytes = 16 * GiB;
  s.size_bytes = 8 * GiB;
  s.device = "/dev/nbd0";
  s.link = "/dev/vramswap/" + name;
  s.kernel_connections = 4;
  s.swap_active = true;
  s.swap_size_bytes = 8 * GiB;
  s.swap_used_bytes = 100 * MiB;
  s.swap_priority = 1000;
  s.reads = 10;
  s.writes = 20;
  s.bytes_read = 40960;
  s.bytes_written = 81920;
  s.memory_locked = s.oom_protected = s.io_flusher = true;
  s.updated_unix = kNow - 2;
  return s;
}

SwapEntry swap_entry(uint64_t size, uint64_t used, int priority) {
  return {"/dev/nbd0", "partition", size, used, priority};
}

DaemonObservation live(status::InstanceStatus file, std::optional<SwapEntry> swap) {
  DaemonObservation observed;
  observed.file = std::move(file);
  observed.process = DaemonProcess::running;
  observed.live_swap = std::move(swap);
  observed.link = LinkState::ok;
  return observed;
}

StatusInputs base_inputs() {
  StatusInputs inputs;
  inputs.config = configured("[device.0]\n");
  inputs.runtime_dir = "/run/vramswap";
  inputs.systemd = true;
  inputs.now_unix = kNow;
  return inputs;
}

systemd::UnitState unit(const std::string& name, const std::string& active,
                        const std::string& sub) {
  systemd::UnitState u;
  u.name = systemd::service_unit_name(name);
  u.load_state = "loaded";
  u.active_state = active;
  u.sub_state = sub;
  u.result = "success";
  return u;
}

DriverObservation driver_error(const std::string& error) {
  DriverObservation driver;
  driver.checked = true;
  driver.error = error;
  driver.library = "libcuda.so.1";
  return driver;
}

DriverObservation driver_with(std::vector<cuda::DeviceInfo> gpus) {
  DriverObservation driver;
  driver.checked = true;
  driver.library = "libcuda.so.1";
  driver.gpus = std::move(gpus);
  return driver;
}

const InstanceView& instance(const StatusReport& report, const std::string& name) {
  for (const auto& view : report.instances) {
    if (view.name == name) return view;
  }
  FAIL("no instance " << name);
  throw std::logic_error("unreachable");
}

std::string all_text(const Messages& messages) {
  std::string text;
  for (const auto& m : messages)
    text += std::string(level_name(m.level)) + ": " + m.text + "\n";
  return text;
}

bool has_level(const Messages& messages, Message::Level level) {
  for (const auto& m : messages) {
    if (m.level == level) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("a healthy serving daemon whose swap /proc/swaps confirms exits 0") {
  StatusInputs inputs = base_inputs();
  inputs.daemons.push_back(live(serving("0"), swap_entry(8 * GiB, 300 * MiB, 1000)));
  const StatusReport report = build_status_report(inputs);
  REQUIRE(report.instances.size() == 1);
  const InstanceView& view = report.instances[0];
  CHECK(view.state == "serving");
  CHECK(view.health == "ok");
  CHECK(view.configured);
  CHECK(view.swap.active);
  CHECK(view.swap.source == "proc-swaps");
  // Used swap moves all the time: the kernel's figure, not the file's.
  CHECK(view.swap.used_bytes == 300 * MiB);
  CHECK(view.swap.priority == 1000);
  CHECK(view.status_age_s == 2);
  INFO(all_text(view.messages) << all_text(report.messages));
  CHECK(view.messages.empty());
  CHECK(report.messages.empty());
  CHECK(report.exit_status == status_exit::ok);
}

TEST_CASE("when the status file says swap is on but /proc/swaps disagrees, /proc/swaps wins") {
  StatusInputs inputs = base_inputs();
  inputs.daemons.push_back(live(serving("0"), std::nullopt));
  const StatusReport report = build_status_report(inputs);
  const InstanceView& view = instance(report, "0");
  CHECK_FALSE(view.swap.active);
  CHECK(view.swap.source == "proc-swaps");
  CHECK(view.swap.used_bytes == 0);
  CHECK_FALSE(view.swap.priority);
  const std::string text = all_text(view.messages);
  CHECK_THAT(text, Contains("/proc/swaps does not list it"));
  // An attached device that is not swap needs a look: exit 1.
  CHECK_THAT(text, Contains("not in use as swap"));
  CHECK_THAT(text, Contains("dev-vramswap-0.swap"));
  CHECK(report.exit_status == status_exit::trouble);
}

TEST_CASE("swap the file has not caught up with yet is taken from /proc/swaps") {
  StatusInputs inputs = base_inputs();
  status::InstanceStatus file = serving("0");
  file.swap_active = false;
  file.swap_priority = 0;
  inputs.daemons.push_back(live(file, swap_entry(8 * GiB, 0, 5)));
  const StatusReport report = build_status_report(inputs);
  const InstanceView& view = instance(report, "0");
  CHECK(view.swap.active);
  CHECK(view.swap.priority == 5);
  CHECK_THAT(all_text(view.messages), Contains("/proc/swaps lists it"));
  CHECK(report.exit_status == status_exit::ok);
}

TEST_CASE("a different priority in /proc/swaps is shown, and said") {
  StatusInputs inputs = base_inputs();
  inputs.daemons.push_back(live(serving("0"), swap_entry(8 * GiB, 0, 7)));
  const StatusReport report = build_status_report(inputs);
  CHECK(instance(report, "0").swap.priority == 7);
  CHECK_THAT(all_text(instance(report, "0").messages), Contains("/proc/swaps says 7"));
}

TEST_CASE("without /proc/swaps the daemon's own view is shown, marked as such") {
  StatusInputs inputs = base_inputs();
  inputs.proc_swaps_readable = false;
  inputs.proc_swaps_error = "cannot read /proc/swaps: Permission denied; mount /proc";
  inputs.daemons.push_back(live(serving("0"), std::nullopt));
  const StatusReport report = build_status_report(inputs);
  const InstanceView& view = instance(report, "0");
  CHECK(view.swap.active);
  CHECK(view.swap.source == "status-file");
  CHECK(view.swap.used_bytes == 100 * MiB);
  CHECK_THAT(all_text(report.messages), Contains("cannot read /proc/swaps"));
}

TEST_CASE("an instance served without a kernel device has no swap to check") {
  StatusInputs inputs = base_inputs();
  status::InstanceStatus file = serving("0");
  file.device.clear();
  file.link.clear();
  file.swap_active = false;
  file.listen = "/run/vramswap/0.sock";
  inputs.daemons.push_back(live(file, std::nullopt));
  const StatusReport report = build_status_report(inputs);
  CHECK(instance(report, "0").swap.source == "none");
  CHECK(instance(report, "0").messages.empty());
  CHECK(report.exit_status == status_exit::ok);
}

TEST_CASE("a dead daemon's status file is reported as not running, and needs attention") {
  StatusInputs inputs = base_inputs();
  for (const DaemonProcess process :
       {DaemonProcess::gone, DaemonProcess::other_program, DaemonProcess::newer_process}) {
    DaemonObservation observed = live(serving("0"), std::nullopt);
    observed.process = process;
    observed.file.updated_unix = kNow - 600;
    inputs.daemons = {observed};
    inputs.units.clear();
    const StatusReport report = build_status_report(inputs);
    const InstanceView& view = instance(report, "0");
    CHECK(view.state == "not-running");
    CHECK(view.stale_status_file);
    CHECK_FALSE(view.daemon);
    CHECK_FALSE(view.health);
    CHECK_FALSE(view.swap.active);
    const std::string text = all_text(view.messages);
    CHECK_THAT(text, Contains("pid 4242"));
    CHECK_THAT(text, Contains("10 min ago"));
    CHECK_THAT(text, Contains("crashed or was killed"));
    CHECK(report.exit_status == status_exit::trouble);
  }
}

TEST_CASE("a dead daemon's device still in /proc/swaps is an error of its own") {
  StatusInputs inputs = base_inputs();
  DaemonObservation observed = live(serving("0"), swap_entry(8 * GiB, 2 * GiB, 1000));
  observed.process = DaemonProcess::gone;
  inputs.daemons = {observed};
  const StatusReport report = build_status_report(inputs);
  const InstanceView& view = instance(report, "0");
  CHECK(view.swap.active);
  CHECK(view.swap.used_bytes == 2 * GiB);
  CHECK_THAT(all_text(view.messages), Contains("/dev/nbd0 is still swap"));
}

TEST_CASE("with systemd, a dead daemon's unit says how it ended") {
  StatusInputs inputs = base_inputs();
  DaemonObservation observed = live(serving("0"), std::nullopt);
  observed.process = DaemonProcess::gone;
  inputs.daemons = {observed};
  systemd::UnitState u = unit("0", "failed", "failed");
  u.result = "core-dump";
  u.exit_code = 3;
  u.exit_status = 11;
  inputs.units["0"] = u;
  const StatusReport report = build_status_report(inputs);
  const InstanceView& view = instance(report, "0");
  CHECK(view.state == "failed");
  CHECK(view.stale_status_file);
  CHECK_THAT(all_text(view.messages), Contains("crashed (SIGSEGV, core dumped)"));
  CHECK(report.exit_status == status_exit::trouble);
}

TEST_CASE("two configured devices and one daemon: both shown, exit 3") {
  StatusInputs inputs = base_inputs();
  inputs.config = configured("[device.fast]\ngpu = 0\n[device.spare]\ngpu = 1\n");
  inputs.daemons.push_back(live(serving("fast"), swap_entry(8 * GiB, 0, 1000)));
  inputs.units["spare"] = unit("spare", "inactive", "dead");
  const StatusReport report = build_status_report(inputs);
  REQUIRE(report.instances.size() == 2);
  CHECK(report.instances[0].name == "fast");
  CHECK(report.instances[0].state == "serving");
  CHECK(report.instances[1].name == "spare");
  CHECK(report.instances[1].state == "not-running");
  CHECK(report.instances[1].configured);
  CHECK_THAT(all_text(report.instances[1].messages), Contains("systemctl start vramswap@spare"));
  CHECK_THAT(all_text(report.instances[1].messages), Contains("is inactive"));
  CHECK(report.exit_status == status_exit::not_running);
}

TEST_CASE("a daemon that is not in the config file is shown after the configured ones") {
  StatusInputs inputs = base_inputs();
  inputs.daemons.push_back(live(serving("0"), swap_entry(8 * GiB, 0, 1000)));
  inputs.daemons.push_back(live(serving("adhoc"), swap_entry(8 * GiB, 0, 1000)));
  const StatusReport report = build_status_report(inputs);
  REQUIRE(report.instances.size() == 2);
  CHECK(report.instances[1].name == "adhoc");
  CHECK_FALSE(report.instances[1].configured);
  CHECK_THAT(all_text(report.instances[1].messages), Contains("not in /etc/vramswap.conf"));
  CHECK(report.exit_status == status_exit::ok);
}

TEST_CASE("a failed unit names the exit status, its meaning and the last error") {
  StatusInputs inputs = base_inputs();
  systemd::UnitState u = unit("0", "failed", "failed");
  u.result = "exit-code";
  u.exit_code = 1;
  u.exit_status = 69;
  u.history = systemd::UnitState::History::started;
  u.last_error = "no NVIDIA GPU found: the driver sees no CUDA device; check nvidia-smi";
  inputs.units["0"] = u;
  const StatusReport report = build_status_report(inputs);
  const InstanceView& view = instance(report, "0");
  CHECK(view.state == "failed");
  REQUIRE(view.messages.size() == 1);
  CHECK(view.messages[0].level == Message::Level::error);
  CHECK_THAT(view.messages[0].text, Contains("vramswap@0.service failed"));
  CHECK_THAT(view.messages[0].text, Contains("status 69"));
  CHECK_THAT(view.messages[0].text, Contains("no NVIDIA GPU found"));
  CHECK_THAT(view.messages[0].text, Contains("systemctl restart vramswap@0.service"));
  CHECK(report.exit_status == status_exit::trouble);
}

TEST_CASE("a unit that hit its start limit says to reset it") {
  StatusInputs inputs = base_inputs();
  systemd::UnitState u = unit("0", "failed", "failed");
  u.result = "start-limit-hit";
  inputs.units["0"] = u;
  const StatusReport report = build_status_report(inputs);
  CHECK_THAT(all_text(instance(report, "0").messages), Contains("systemctl reset-failed"));
}

TEST_CASE("a unit skipped for want of the NVIDIA driver is not trouble: exit 3, and why") {
  StatusInputs inputs = base_inputs();
  systemd::UnitState u = unit("0", "inactive", "dead");
  u.failed_condition = "ConditionPathExists=/sys/bus/pci/drivers/nvidia";
  inputs.units["0"] = u;
  inputs.driver = driver_error(
      "cannot load libcuda.so.1 (not found): the NVIDIA driver is not installed or not loaded; "
      "install the NVIDIA driver");
  inputs.driver.kernel_module_missing = true;
  const StatusReport report = build_status_report(inputs);
  const InstanceView& view = instance(report, "0");
  CHECK(view.state == "skipped");
  const std::string text = all_text(view.messages);
  CHECK_THAT(text, Contains("NVIDIA kernel driver is not loaded"));
  CHECK_THAT(text, Contains("ConditionPathExists=/sys/bus/pci/drivers/nvidia"));
  const std::string global = all_text(report.messages);
  CHECK_THAT(global, Contains("cannot load libcuda.so.1"));
  CHECK_THAT(global, Contains("/proc/driver/nvidia"));
  CHECK_FALSE(has_level(report.messages, Message::Level::error));
  CHECK(report.exit_status == status_exit::not_running);
}

TEST_CASE("another failed condition is named as it is") {
  StatusInputs inputs = base_inputs();
  systemd::UnitState u = unit("0", "inactive", "dead");
  u.failed_condition = "ConditionVirtualization=!container";
  inputs.units["0"] = u;
  const StatusReport report = build_status_report(inputs);
  CHECK(instance(report, "0").state == "skipped");
  CHECK_THAT(all_text(instance(report, "0").messages),
             Contains("ConditionVirtualization=!container is not met"));
}

TEST_CASE("units starting, restarting, stopped, masked or missing") {
  StatusInputs inputs = base_inputs();
  SECTION("starting") {
    inputs.units["0"] = unit("0", "activating", "start");
    const StatusReport report = build_status_report(inputs);
    CHECK(instance(report, "0").state == "starting");
    CHECK(report.exit_status == status_exit::not_running);
  }
  SECTION("restarting after a failure") {
    systemd::UnitState u = unit("0", "activating", "auto-restart");
    u.result = "signal";
    u.exit_code = 2;
    u.exit_status = 9;
    inputs.units["0"] = u;
    const StatusReport report = build_status_report(inputs);
    CHECK(instance(report, "0").state == "restarting");
    CHECK_THAT(all_text(instance(report, "0").messages), Contains("killed by SIGKILL"));
    CHECK(report.exit_status == status_exit::trouble);
  }
  SECTION("stopped by someone") {
    systemd::UnitState u = unit("0", "inactive", "dead");
    u.history = systemd::UnitState::History::started;
    inputs.units["0"] = u;
    const StatusReport report = build_status_report(inputs);
    CHECK(instance(report, "0").state == "not-running");
    CHECK_THAT(all_text(instance(report, "0").messages), Contains("was stopped"));
    CHECK(report.exit_status == status_exit::not_running);
  }
  SECTION("never started since boot") {
    systemd::UnitState u = unit("0", "inactive", "dead");
    u.history = systemd::UnitState::History::not_started;
    inputs.units["0"] = u;
    CHECK_THAT(all_text(instance(build_status_report(inputs), "0").messages),
               Contains("has not been started since boot"));
  }
  SECTION("masked") {
    systemd::UnitState u = unit("0", "inactive", "dead");
    u.load_state = "masked";
    inputs.units["0"] = u;
    CHECK_THAT(all_text(instance(build_status_report(inputs), "0").messages),
               Contains("systemctl unmask"));
  }
  SECTION("not installed") {
    systemd::UnitState u = unit("0", "inactive", "dead");
    u.load_state = "not-found";
    inputs.units["0"] = u;
    CHECK_THAT(all_text(instance(build_status_report(inputs), "0").messages),
               Contains("vramswap@.service is not installed"));
  }
  SECTION("active without a status file") {
    inputs.units["0"] = unit("0", "active", "running");
    const StatusReport report = build_status_report(inputs);
    CHECK(instance(report, "0").state == "unknown");
    CHECK(report.exit_status == status_exit::trouble);
  }
}

TEST_CASE("no config file and nothing running: says why, exit 3") {
  StatusInputs inputs = base_inputs();
  inputs.config = {"/etc/vramswap.conf",
                   "/etc/vramswap.conf: no such file; create it (see vramswap.conf(5)) or name "
                   "the right one with --config",
                   true, std::nullopt};
  inputs.driver =
      driver_error("no NVIDIA GPU found: the driver sees no CUDA device; check nvidia-smi");
  REQUIRE(needs_driver_check(inputs));
  const StatusReport report = build_status_report(inputs);
  CHECK(report.instances.empty());
  const std::string text = all_text(report.messages);
  CHECK_THAT(text, Contains("/etc/vramswap.conf: no such file"));
  CHECK_THAT(text, Contains("no NVIDIA GPU found"));
  CHECK(report.exit_status == status_exit::not_running);
  CHECK_THAT(format_status_text(report), Contains("No VRAM swap device is configured or running"));
}

TEST_CASE("a config file without devices says to add one") {
  StatusInputs inputs = base_inputs();
  inputs.config = configured("[global]\nreserve = 2G\n");
  const StatusReport report = build_status_report(inputs);
  CHECK_THAT(all_text(report.messages), Contains("configures no device"));
  CHECK(report.exit_status == status_exit::not_running);
}

TEST_CASE("configuration errors are shown where they belong and need attention") {
  StatusInputs inputs = base_inputs();
  inputs.config = configured("[device.good]\n[device.bad]\nsize = lots\n");
  inputs.units["good"] = unit("good", "inactive", "dead");
  inputs.units["bad"] = unit("bad", "inactive", "dead");
  const StatusReport report = build_status_report(inputs);
  CHECK_THAT(all_text(instance(report, "bad").messages), Contains("/etc/vramswap.conf:3"));
  CHECK_THAT(all_text(instance(report, "bad").messages), Contains("cannot start"));
  CHECK_FALSE(has_level(instance(report, "good").messages, Message::Level::error));
  CHECK(report.exit_status == status_exit::trouble);

  inputs.config = configured("colour = blue\n[device.good]\n");
  const StatusReport broken = build_status_report(inputs);
  CHECK_THAT(all_text(broken.messages), Contains("/etc/vramswap.conf:1"));
  CHECK(broken.exit_status == status_exit::trouble);
}

TEST_CASE("an unreadable config file (not a missing one) needs attention") {
  StatusInputs inputs = base_inputs();
  inputs.config = {"/etc/vramswap.conf", "/etc/vramswap.conf: permission denied; run as root",
                   false, std::nullopt};
  inputs.daemons.push_back(live(serving("0"), swap_entry(8 * GiB, 0, 1000)));
  const StatusReport report = build_status_report(inputs);
  CHECK(report.exit_status == status_exit::trouble);
  CHECK_FALSE(needs_driver_check(inputs));
}

TEST_CASE("a configured GPU that is not there is said, with the GPUs that are") {
  StatusInputs inputs = base_inputs();
  inputs.config = configured("[device.0]\ngpu = 3\n");
  inputs.units["0"] = unit("0", "inactive", "dead");
  cuda::DeviceInfo gpu;
  gpu.index = 0;
  gpu.name = "Test GPU";
  gpu.uuid = "GPU-00000000-1111-2222-3333-444444444444";
  gpu.pci_bus_id = "0000:01:00.0";
  inputs.driver = driver_with({gpu});
  const StatusReport report = build_status_report(inputs);
  const std::string text = all_text(instance(report, "0").messages);
  CHECK_THAT(text, Contains("gpu = \"3\""));
  CHECK_THAT(text, Contains("Test GPU"));
  CHECK(report.exit_status == status_exit::trouble);
}

TEST_CASE("a degraded or failed daemon needs attention") {
  StatusInputs inputs = base_inputs();
  status::InstanceStatus file = serving("0");
  SECTION("failed copies") {
    file.health = "degraded";
    file.copy_failures = 3;
    inputs.daemons.push_back(live(file, swap_entry(8 * GiB, 0, 1000)));
    const StatusReport report = build_status_report(inputs);
    CHECK(instance(report, "0").health == "degraded");
    CHECK_THAT(all_text(instance(report, "0").messages), Contains("3 VRAM copies failed"));
    CHECK(report.exit_status == status_exit::trouble);
  }
  SECTION("GPU lost") {
    file.health = "failed";
    file.device_lost = true;
    inputs.daemons.push_back(live(file, swap_entry(8 * GiB, 0, 1000)));
    const StatusReport report = build_status_report(inputs);
    CHECK_THAT(all_text(instance(report, "0").messages), Contains("GPU was lost"));
    CHECK(report.exit_status == status_exit::trouble);
  }
}

TEST_CASE("a serving daemon that stopped refreshing its status counts as stuck") {
  StatusInputs inputs = base_inputs();
  status::InstanceStatus file = serving("0");
  file.updated_unix = kNow - stuck_after_s - 1;
  inputs.daemons.push_back(live(file, swap_entry(8 * GiB, 0, 1000)));
  const StatusReport report = build_status_report(inputs);
  CHECK_THAT(all_text(instance(report, "0").messages), Contains("may be stuck"));
  CHECK(report.exit_status == status_exit::trouble);

  // swapoff can take minutes while stopping: not stuck then.
  file.state = "stopping";
  file.updated_unix = kNow - 600;
  inputs.daemons = {live(file, swap_entry(8 * GiB, 0, 1000))};
  const StatusReport stopping = build_status_report(inputs);
  CHECK(instance(stopping, "0").state == "stopping");
  CHECK(stopping.exit_status == status_exit::not_running);
}

TEST_CASE("hardening that failed is warned about without changing the exit status") {
  StatusInputs inputs = base_inputs();
  status::InstanceStatus file = serving("0");
  file.memory_locked = false;
  file.oom_protected = false;
  file.io_flusher = false;
  inputs.daemons.push_back(live(file, swap_entry(8 * GiB, 0, 1000)));
  const StatusReport report = build_status_report(inputs);
  const std::string text = all_text(instance(report, "0").messages);
  CHECK_THAT(text, Contains("LimitMEMLOCK=infinity"));
  CHECK_THAT(text, Contains("OOMScoreAdjust=-1000"));
  CHECK_THAT(text, Contains("PR_SET_IO_FLUSHER"));
  CHECK(report.exit_status == status_exit::ok);
}

TEST_CASE("a missing or wrong /dev/vramswap link is warned about") {
  StatusInputs inputs = base_inputs();
  DaemonObservation observed = live(serving("0"), swap_entry(8 * GiB, 0, 1000));
  observed.link = LinkState::missing;
  inputs.daemons = {observed};
  CHECK_THAT(all_text(instance(build_status_report(inputs), "0").messages),
             Contains("/dev/vramswap/0 does not exist"));
  inputs.daemons[0].link = LinkState::elsewhere;
  CHECK_THAT(all_text(instance(build_status_report(inputs), "0").messages),
             Contains("points to another device"));
}

TEST_CASE("outside systemd, say so once, and how to start a daemon") {
  StatusInputs inputs = base_inputs();
  inputs.systemd = false;
  const StatusReport report = build_status_report(inputs);
  CHECK_THAT(all_text(report.messages), Contains("does not run systemd"));
  CHECK_THAT(all_text(instance(report, "0").messages), Contains("vramswapd --config"));

  inputs.daemons.push_back(live(serving("0"), swap_entry(8 * GiB, 0, 1000)));
  CHECK(build_status_report(inputs).messages.empty());
}

TEST_CASE("swap units of device names with dashes are escaped as systemd names them") {
  StatusInputs inputs = base_inputs();
  inputs.config = configured("[device.my-gpu]\n");
  inputs.daemons.push_back(live(serving("my-gpu"), std::nullopt));
  CHECK_THAT(all_text(instance(build_status_report(inputs), "my-gpu").messages),
             Contains("dev-vramswap-my\\x2dgpu.swap"));
}

TEST_CASE("the JSON document has the documented fields") {
  StatusInputs inputs = base_inputs();
  inputs.config = configured("[device.0]\n[device.1]\n");
  inputs.daemons.push_back(live(serving("0"), swap_entry(8 * GiB, 300 * MiB, 1000)));
  systemd::UnitState u = unit("1", "failed", "failed");
  u.result = "exit-code";
  u.exit_code = 1;
  u.exit_status = 78;
  inputs.units["1"] = u;
  const StatusReport report = build_status_report(inputs);
  const auto j = nlohmann::json::parse(format_status_json(report));

  CHECK(j["format"] == 1);
  CHECK(j["config"]["path"] == "/etc/vramswap.conf");
  CHECK(j["config"]["found"] == true);
  CHECK(j["config"]["devices"] == 2);
  CHECK(j["systemd"] == true);
  CHECK(j["runtime_dir"] == "/run/vramswap");
  CHECK(j["exit_status"] == status_exit::trouble);
  REQUIRE(j["instances"].size() == 2);

  const auto& serving_json = j["instances"][0];
  CHECK(serving_json["name"] == "0");
  CHECK(serving_json["configured"] == true);
  CHECK(serving_json["state"] == "serving");
  CHECK(serving_json["health"] == "ok");
  CHECK(serving_json["pid"] == 4242);
  CHECK(serving_json["stale_status_file"] == false);
  CHECK(serving_json["gpu"]["index"] == 0);
  CHECK(serving_json["gpu"]["name"] == "Test GPU");
  CHECK(serving_json["gpu"]["uuid"] == "GPU-00000000-1111-2222-3333-444444444444");
  CHECK(serving_json["gpu"]["pci_bus_id"] == "0000:01:00.0");
  CHECK(serving_json["gpu"]["total_bytes"] == 16 * GiB);
  CHECK(serving_json["size_bytes"] == 8 * GiB);
  CHECK(serving_json["device"] == "/dev/nbd0");
  CHECK(serving_json["link"] == "/dev/vramswap/0");
  CHECK(serving_json["listen"].is_null());
  CHECK(serving_json["kernel_connections"] == 4);
  CHECK(serving_json["swap"]["active"] == true);
  CHECK(serving_json["swap"]["used_bytes"] == 300 * MiB);
  CHECK(serving_json["swap"]["size_bytes"] == 8 * GiB);
  CHECK(serving_json["swap"]["priority"] == 1000);
  CHECK(serving_json["swap"]["source"] == "proc-swaps");
  CHECK(serving_json["io"]["reads"] == 10);
  CHECK(serving_json["io"]["writes"] == 20);
  CHECK(serving_json["io"]["bytes_read"] == 40960);
  CHECK(serving_json["io"]["bytes_written"] == 81920);
  for (const char* key :
       {"zeroes", "trims", "flushes", "io_errors", "protocol_errors", "dropped_connections"}) {
    CHECK(serving_json["io"][key] == 0);
  }
  CHECK(serving_json["faults"]["device_lost"] == false);
  CHECK(serving_json["faults"]["copy_failures"] == 0);
  CHECK(serving_json["faults"]["checksum_failures"] == 0);
  CHECK(serving_json["hardening"]["memory_locked"] == true);
  CHECK(serving_json["hardening"]["oom_protected"] == true);
  CHECK(serving_json["hardening"]["io_flusher"] == true);
  CHECK(serving_json["kept_by_systemd"] == false);
  CHECK(serving_json["status_line"] == "8.0 GiB of GPU 0 (Test GPU) on /dev/nbd0");
  CHECK(serving_json["updated_unix"] == kNow - 2);
  CHECK(serving_json["status_age_s"] == 2);
  CHECK(serving_json["unit"].is_null());
  CHECK(serving_json["elastic"].is_null());
  CHECK(serving_json["messages"].empty());

  const auto& failed_json = j["instances"][1];
  CHECK(failed_json["state"] == "failed");
  for (const char* key :
       {"health", "pid", "gpu", "size_bytes", "device", "link", "io", "faults", "hardening",
        "status_line", "status_age_s", "kernel_connections", "elastic", "kept_by_systemd"}) {
    INFO(key);
    CHECK(failed_json[key].is_null());
  }
  CHECK(failed_json["swap"]["active"] == false);
  CHECK(failed_json["swap"]["source"] == "none");
  CHECK(failed_json["unit"]["name"] == "vramswap@1.service");
  CHECK(failed_json["unit"]["active_state"] == "failed");
  CHECK(failed_json["unit"]["result"] == "exit-code");
  CHECK(failed_json["unit"]["exit_code"] == "exited");
  CHECK(failed_json["unit"]["exit_status"] == 78);
  CHECK(failed_json["unit"]["failed_condition"].is_null());
  REQUIRE(failed_json["messages"].size() == 1);
  CHECK(failed_json["messages"][0]["level"] == "error");
  CHECK_THAT(failed_json["messages"][0]["text"].get<std::string>(),
             Contains("configuration error"));
}

TEST_CASE("the text fits 80 columns and shows what the table promises") {
  StatusInputs inputs = base_inputs();
  inputs.config = configured("[device.0]\n[device.1]\n");
  status::InstanceStatus file = serving("0");
  file.io_errors = 2;
  file.memory_locked = false;
  inputs.daemons.push_back(live(file, swap_entry(8 * GiB, 300 * MiB, 1000)));
  systemd::UnitState u = unit("1", "failed", "failed");
  u.result = "exit-code";
  u.exit_code = 1;
  u.exit_status = 69;
  u.last_error =
      "cannot load libcuda.so.1 (libcuda.so.1: cannot open shared object file: No such "
      "file or directory): the NVIDIA driver is not installed or not loaded";
  inputs.units["1"] = u;
  const std::string text = format_status_text(build_status_report(inputs));
  INFO(text);
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line))
    CHECK(line.size() <= 80);
  CHECK_THAT(text, Contains("0: serving, health ok"));
  CHECK_THAT(text, Contains("0: Test GPU (0000:01:00.0)"));
  CHECK_THAT(text, Contains("8.0 GiB served"));
  CHECK_THAT(text, Contains("/dev/nbd0 = /dev/vramswap/0, 4 kernel connections"));
  CHECK_THAT(text, Contains("300.0 MiB used of 8.0 GiB, priority 1000"));
  CHECK_THAT(text, Contains("10 reads (40.0 KiB), 20 writes (80.0 KiB)"));
  CHECK_THAT(text, Contains("2 I/O errors"));
  CHECK_THAT(text, Contains("not kept by systemd: a crash loses what is swapped here"));
  CHECK_THAT(text, Contains("warning: vramswapd's memory is not locked"));
  CHECK_THAT(text, Contains("1: failed"));
  CHECK_THAT(text, Contains("error: vramswap@1.service failed"));
}

TEST_CASE("a daemon whose VRAM systemd keeps says a crash loses nothing, in text and JSON") {
  StatusInputs inputs = base_inputs();
  inputs.config = configured("[device.0]\n");
  status::InstanceStatus file = serving("0");
  file.fd_store_handover = true;
  inputs.daemons.push_back(live(file, swap_entry(8 * GiB, 300 * MiB, 1000)));
  const StatusReport report = build_status_report(inputs);
  const std::string text = format_status_text(report);
  INFO(text);
  CHECK_THAT(text, Contains("in place: VRAM and block map kept by systemd, a crash loses nothing"));
  CHECK(nlohmann::json::parse(format_status_json(report))["instances"][0]["kept_by_systemd"] ==
        true);
}

TEST_CASE("the elastic tier shows where the export is and the last move, in text and JSON") {
  StatusInputs inputs = base_inputs();
  status::InstanceStatus file = serving("0");
  file.elastic = true;
  file.vram_bytes = 5 * GiB;
  file.spill_bytes = 2 * GiB;
  file.none_bytes = GiB;
  file.gpu_free_bytes = 3 * GiB;
  file.spill_path = "/var/lib/vramswap/0.spill";
  file.last_move =
      "released 3.0 GiB to /var/lib/vramswap/0.spill in 3.1 s: another program needed VRAM";
  file.last_move_reason = "another program needed VRAM";
  file.last_move_unix = kNow - 62;
  inputs.daemons.push_back(live(file, swap_entry(8 * GiB, 300 * MiB, 1000)));
  const StatusReport report = build_status_report(inputs);
  const std::string text = format_status_text(report);
  INFO(text);
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line))
    CHECK(line.size() <= 80);
  CHECK_THAT(text, Contains("5.0 GiB in VRAM, 2.0 GiB in /var/lib/vramswap/0.spill, 1.0 GiB"));
  CHECK_THAT(text, Contains("3.0 GiB of the GPU free"));
  CHECK_THAT(text, Contains("released 3.0 GiB to /var/lib/vramswap/0.spill in 3.1 s"));
  CHECK_THAT(text, Contains("(60 s before this status)"));
  const auto j = nlohmann::json::parse(format_status_json(report));
  const auto& elastic = j["instances"][0]["elastic"];
  CHECK(elastic["vram_bytes"] == 5 * GiB);
  CHECK(elastic["spill_bytes"] == 2 * GiB);
  CHECK(elastic["none_bytes"] == GiB);
  CHECK(elastic["gpu_free_bytes"] == 3 * GiB);
  CHECK(elastic["spill_path"] == "/var/lib/vramswap/0.spill");
  CHECK(elastic["last_move"]["reason"] == "another program needed VRAM");
  CHECK(elastic["last_move"]["unix"] == kNow - 62);
  CHECK(elastic["last_move"]["line"] == file.last_move);
}

TEST_CASE("a daemon whose predecessor died says when and what was lost, and needs attention") {
  StatusInputs inputs = base_inputs();
  status::InstanceStatus file = serving("0");
  file.health = "degraded";
  status::PreviousCrash crash;
  crash.pid = 1111;
  crash.ended_unix = kNow - 60;
  crash.end_seen = true;
  crash.cause = "killed by SIGKILL";
  crash.device = "/dev/nbd0";
  crash.swap_active = true;
  crash.swap_used_bytes = 160 * MiB;
  file.previous_crash = crash;
  inputs.daemons.push_back(live(file, swap_entry(8 * GiB, 0, 1000)));
  const StatusReport report = build_status_report(inputs);
  const InstanceView& view = instance(report, "0");
  CHECK(view.state == "serving");
  CHECK(view.health == "degraded");
  const std::string text = all_text(view.messages);
  CHECK_THAT(text, Contains("error: the previous vramswapd (pid 1111) died without stopping at "));
  CHECK_THAT(text, Contains("(killed by SIGKILL)"));
  CHECK_THAT(text, Contains("160.0 MiB were in swap on /dev/nbd0 and are lost"));
  CHECK_THAT(text, Contains("journalctl -u vramswap@0.service"));
  // Not mistaken for failed copies.
  CHECK_THAT(text, !Contains("VRAM cop"));
  CHECK(report.exit_status == status_exit::trouble);

  const auto doc = nlohmann::json::parse(format_status_json(report));
  const auto& previous = doc["instances"][0]["previous_crash"];
  CHECK(previous["pid"] == 1111);
  CHECK(previous["cause"] == "killed by SIGKILL");
  CHECK(previous["swap_lost_bytes"] == 160 * MiB);
  CHECK(previous["ended_unix"] == kNow - 60);
  CHECK(previous["count"] == 1);
  CHECK(previous["taken_over"] == false);
}

TEST_CASE("a dead daemon whose end systemd reported is named with its cause") {
  StatusInputs inputs = base_inputs();
  DaemonObservation observed = live(serving("0"), std::nullopt);
  observed.process = DaemonProcess::gone;
  REQUIRE(status::mark_ended(observed.file, "killed by SIGKILL", kNow - 5));
  inputs.daemons = {observed};
  const StatusReport report = build_status_report(inputs);
  const InstanceView& view = instance(report, "0");
  CHECK(view.stale_status_file);
  const std::string text = all_text(view.messages);
  CHECK_THAT(text, Contains("vramswapd (pid 4242) died without stopping at "));
  CHECK_THAT(text, Contains("(killed by SIGKILL)"));
  CHECK_THAT(text, Contains("100.0 MiB were in swap on /dev/nbd0 and are lost"));
  CHECK(report.exit_status == status_exit::trouble);
}
