// The vramswap program against real daemons on the fake CUDA driver, real
// status files and the real /proc/swaps: what `status` and `probe` print is
// what the daemons and the kernel say.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>

#include "status/instance_status.hpp"
#include "support/fake_control.hpp"
#include "support/nbd_test_client.hpp"
#include "support/test_daemon.hpp"

using namespace vramswap::test;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

constexpr int kStatusOk = 0, kStatusTrouble = 1, kStatusNotRunning = 3;
constexpr int kExitUnavailable = 69;
constexpr uint64_t kGiB = uint64_t{1} << 30, kMiB = uint64_t{1} << 20;

std::string vramswap_binary() {
  const char* named = std::getenv("VRAMSWAP_TEST_VRAMSWAP");
  return named && *named ? named : VRAMSWAP_TEST_VRAMSWAP;
}

// `vramswap ARGS...` with the daemon's runtime directory and the fake driver.
CommandResult run_vramswap(const std::vector<std::string>& args, const std::string& runtime_dir,
                           Environment environment = {}) {
  std::vector<std::string> argv = {vramswap_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"--runtime-dir", runtime_dir});
  environment.insert(environment.begin(), {"VRAMSWAP_LIBCUDA", fake_libcuda()});
  return run_command(argv, std::chrono::seconds(60), environment);
}

// The JSON document on the output; the program prints nothing else with --json.
json document(const CommandResult& result) {
  INFO(result.output);
  json parsed = json::parse(result.output, nullptr, /*allow_exceptions=*/false);
  REQUIRE_FALSE(parsed.is_discarded());
  REQUIRE(parsed["exit_status"] == result.exit_status);
  return parsed;
}

const json& instance_named(const json& doc, const std::string& name) {
  for (const auto& instance : doc["instances"]) {
    if (instance["name"] == name) return instance;
  }
  FAIL("no instance " << name << " in " << doc.dump(2));
  throw std::logic_error("unreachable");
}

std::string messages_of(const json& messages) {
  std::string text;
  for (const auto& m : messages)
    text += m["level"].get<std::string>() + ": " + m["text"].get<std::string>() + "\n";
  return text;
}

// Runs `vramswap status --json` until `ready` holds for the document (the
// daemon rewrites its file every 5 s), at most ~20 s.
json status_when(const TestDaemon& daemon, const std::string& config,
                 const std::function<bool(const json&)>& ready) {
  json doc;
  for (int attempt = 0; attempt < 100; ++attempt) {
    doc = document(run_vramswap({"status", "--json", "--config", config}, daemon.dir().path()));
    if (ready(doc)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return doc;
}

// A small loop device made swap with `swapon -p PRIORITY`, undone at the end.
class LoopSwap {
 public:
  LoopSwap(const TempDir& dir, int priority) {
    const std::string image = dir.file("swap.img");
    write_file(image, "");
    REQUIRE(truncate(image.c_str(), 16 << 20) == 0);
    const CommandResult loop = run_command({"losetup", "--find", "--show", image});
    INFO(loop.output);
    REQUIRE(loop.exit_status == 0);
    device_ = loop.output.substr(0, loop.output.find('\n'));
    const CommandResult made = run_command({"mkswap", device_});
    INFO(made.output);
    REQUIRE(made.exit_status == 0);
    const CommandResult on = run_command({"swapon", "-p", std::to_string(priority), device_});
    INFO(on.output);
    REQUIRE(on.exit_status == 0);
    on_ = true;
  }
  ~LoopSwap() {
    off();
    if (!device_.empty()) run_command({"losetup", "--detach", device_});
  }
  void off() {
    if (on_) run_command({"swapoff", device_});
    on_ = false;
  }
  const std::string& device() const { return device_; }

 private:
  std::string device_;
  bool on_ = false;
};

struct ProcSwapsLine {
  uint64_t size_bytes = 0, used_bytes = 0;
  int priority = 0;
};

// This device's line of /proc/swaps, read here independently of the program.
std::optional<ProcSwapsLine> proc_swaps_line(const std::string& device) {
  std::istringstream lines(read_file("/proc/swaps"));
  std::string line;
  std::getline(lines, line);  // header
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string path, type;
    ProcSwapsLine entry;
    uint64_t size_kib = 0, used_kib = 0;
    if (fields >> path >> type >> size_kib >> used_kib >> entry.priority && path == device) {
      entry.size_bytes = size_kib * 1024;
      entry.used_bytes = used_kib * 1024;
      return entry;
    }
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("status --json agrees with a running daemon's status file and state", "[cli][fake]") {
  TestDaemon daemon({.size = "512M", .connections = 2});
  REQUIRE(daemon.start());
  {
    NbdTestClient client(daemon.socket_path());
    REQUIRE(client.negotiate() == 1);
    REQUIRE(client.write(0, random_bytes(256 << 10, 7)) == 0);
    std::vector<uint8_t> back;
    REQUIRE(client.read(0, 128 << 10, back) == 0);
    client.disconnect();
  }
  // The write shows once the daemon has refreshed its file.
  const json doc = status_when(daemon, daemon.config_path(), [](const json& d) {
    return d["instances"].size() == 1 && d["instances"][0]["io"].is_object() &&
           d["instances"][0]["io"]["reads"] == 1;
  });
  INFO(doc.dump(2));
  const json file = json::parse(read_file(daemon.dir().file("test.json")));

  CHECK(doc["format"] == 1);
  CHECK(doc["config"]["path"] == daemon.config_path());
  CHECK(doc["config"]["found"] == true);
  CHECK(doc["config"]["devices"] == 1);
  CHECK(doc["runtime_dir"] == daemon.dir().path());
  REQUIRE(doc["instances"].size() == 1);
  const json& instance = doc["instances"][0];
  CHECK(instance["name"] == "test");
  CHECK(instance["configured"] == true);
  CHECK(instance["state"] == "serving");
  CHECK(instance["health"] == "ok");
  CHECK(instance["pid"] == daemon.pid());
  CHECK(instance["stale_status_file"] == false);
  CHECK(instance["size_bytes"] == 512 * kMiB);
  CHECK(instance["listen"] == daemon.socket_path());
  CHECK(instance["device"].is_null());
  CHECK(instance["swap"]["active"] == false);
  CHECK(instance["swap"]["source"] == "none");
  CHECK(instance["status_line"] == daemon.last_status());
  // Field for field what the daemon published.
  CHECK(instance["gpu"]["index"] == file["gpu_index"]);
  CHECK(instance["gpu"]["name"] == file["gpu_name"]);
  CHECK(instance["gpu"]["uuid"] == file["gpu_uuid"]);
  CHECK(instance["gpu"]["pci_bus_id"] == file["gpu_pci_bus_id"]);
  CHECK(instance["gpu"]["total_bytes"] == file["gpu_total_bytes"]);
  CHECK(instance["gpu"]["name"] == "vramswap fake GPU");
  for (const char* key : {"reads", "writes", "bytes_read", "bytes_written", "zeroes", "trims",
                          "flushes", "io_errors", "protocol_errors", "dropped_connections"}) {
    INFO(key);
    CHECK(instance["io"][key] == file[key]);
  }
  CHECK(instance["io"]["writes"] == 1);
  CHECK(instance["io"]["bytes_written"] == 256 << 10);
  CHECK(instance["io"]["bytes_read"] == 128 << 10);
  for (const char* key : {"memory_locked", "oom_protected", "io_flusher"}) {
    INFO(key);
    CHECK(instance["hardening"][key] == file[key]);
  }
  CHECK(instance["faults"]["copy_failures"] == 0);
  CHECK(instance["updated_unix"] == file["updated_unix"]);
  // Hardening a test machine cannot grant is a warning, not a failure.
  CHECK(doc["exit_status"] == kStatusOk);

  const CommandResult text =
      run_vramswap({"status", "--config", daemon.config_path()}, daemon.dir().path());
  INFO(text.output);
  CHECK(text.exit_status == kStatusOk);
  CHECK_THAT(text.output, Contains("test: serving, health ok"));
  CHECK_THAT(text.output, Contains("512.0 MiB served, pid " + std::to_string(daemon.pid())));
  CHECK_THAT(text.output, Contains(daemon.socket_path()));
  CHECK(daemon.stop() == 0);
}

TEST_CASE("a daemon that failed copies makes status say degraded and exit 1", "[cli][fake]") {
  TestDaemon daemon({.size = "256M"});
  REQUIRE(daemon.start());
  FakeControl control(daemon.control_path());
  NbdTestClient client(daemon.socket_path());
  REQUIRE(client.negotiate() == 1);
  control->fail_next_copies.store(1);
  CHECK(client.write(0, random_bytes(4096, 1)) == 5);  // EIO
  const json doc = status_when(daemon, daemon.config_path(), [](const json& d) {
    return d["instances"].size() == 1 && d["instances"][0]["health"] == "degraded";
  });
  INFO(doc.dump(2));
  const json& instance = doc["instances"][0];
  CHECK(instance["health"] == "degraded");
  CHECK(instance["faults"]["copy_failures"] == 1);
  CHECK_THAT(messages_of(instance["messages"]), Contains("1 VRAM copy failed"));
  CHECK(doc["exit_status"] == kStatusTrouble);
}

TEST_CASE("a killed daemon's stale status file is reported as not running", "[cli][fake]") {
  TestDaemon daemon;
  REQUIRE(daemon.start());
  const pid_t pid = daemon.pid();
  REQUIRE(kill(pid, SIGKILL) == 0);
  REQUIRE(daemon.wait(std::chrono::seconds(10)) == 128 + SIGKILL);
  // It had no chance to remove its file.
  REQUIRE(access(daemon.dir().file("test.json").c_str(), F_OK) == 0);

  const CommandResult result =
      run_vramswap({"status", "--json", "--config", daemon.config_path()}, daemon.dir().path());
  const json doc = document(result);
  INFO(doc.dump(2));
  const json& instance = instance_named(doc, "test");
  CHECK(instance["state"] == "not-running");
  CHECK(instance["stale_status_file"] == true);
  CHECK(instance["pid"].is_null());
  CHECK(instance["health"].is_null());
  CHECK_THAT(messages_of(instance["messages"]), Contains("pid " + std::to_string(pid)));
  CHECK_THAT(messages_of(instance["messages"]), Contains("crashed or was killed"));
  CHECK(result.exit_status == kStatusTrouble);

  const CommandResult text =
      run_vramswap({"status", "--config", daemon.config_path()}, daemon.dir().path());
  INFO(text.output);
  CHECK_THAT(text.output, Contains("test: not running (stale status file)"));
  CHECK(text.exit_status == kStatusTrouble);
}

TEST_CASE("release and restore reach the daemon's control socket, which goes with a clean stop",
          "[cli][fake]") {
  TestDaemon daemon;
  REQUIRE(daemon.start());
  const std::string control = daemon.dir().file("test.control");
  struct stat st {};
  REQUIRE(lstat(control.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0600);
  // No elastic tier in this daemon yet: the answer says so, exit 1.
  for (const auto& args : {std::vector<std::string>{"release", "test", "2G"},
                           std::vector<std::string>{"restore", "test"}}) {
    const CommandResult result = run_vramswap(args, daemon.dir().path());
    INFO(result.output);
    CHECK(result.exit_status == kStatusTrouble);
    CHECK_THAT(result.output, Contains("vramswap: test: this device has no spill area"));
  }
  REQUIRE(daemon.stop() == 0);
  CHECK(lstat(control.c_str(), &st) != 0);
  const CommandResult gone = run_vramswap({"release", "test"}, daemon.dir().path());
  INFO(gone.output);
  CHECK(gone.exit_status == kStatusNotRunning);
  CHECK_THAT(gone.output, Contains("test is not running"));
}

// What systemd's ExecStopPost= runs after the daemon exited, with what
// systemd tells it of the end, and its notify socket (the test daemon's).
CommandResult record_exit(const TestDaemon& daemon, const std::string& code,
                          const std::string& status) {
  return run_command({vramswapd_binary(), "--record-exit", "--instance", "test"},
                     std::chrono::seconds(30),
                     {{"VRAMSWAP_RUNTIME_DIR", daemon.dir().path()},
                      {"NOTIFY_SOCKET", daemon.dir().file("notify")},
                      {"EXIT_CODE", code},
                      {"EXIT_STATUS", status}});
}

TEST_CASE("a daemon killed with data written is named by the next one, until a clean stop",
          "[cli][fake][crash]") {
  TestDaemon daemon({.size = "256M"});
  REQUIRE(daemon.start());
  {
    NbdTestClient client(daemon.socket_path());
    REQUIRE(client.negotiate() == 1);
    REQUIRE(client.write(0, random_bytes(1 << 20, 11)) == 0);
  }
  const pid_t dead = daemon.pid();
  REQUIRE(kill(dead, SIGKILL) == 0);
  REQUIRE(daemon.wait(std::chrono::seconds(10)) == 128 + SIGKILL);

  // systemd runs the unit's ExecStopPost=: the dead daemon's STATUS= line is
  // replaced by what happened, and its file records how it ended.
  const CommandResult recorded = record_exit(daemon, "killed", "KILL");
  INFO(recorded.output);
  CHECK(recorded.exit_status == 0);
  CHECK(daemon.status_shows("DIED: vramswapd (pid " + std::to_string(dead) +
                            ") died without stopping at "));
  CHECK_THAT(daemon.last_status(), Contains("(killed by SIGKILL)"));
  CHECK_THAT(recorded.output, Contains("vramswapd (pid " + std::to_string(dead) + ")"));

  // The restarted daemon says so in the journal, its STATUS= line, its file
  // and vramswap status.
  REQUIRE(daemon.start());
  const std::string crash_words =
      "the previous vramswapd (pid " + std::to_string(dead) + ") died without stopping at ";
  CHECK_THAT(daemon.log(), Contains(crash_words));
  CHECK_THAT(daemon.log(), Contains("(killed by SIGKILL)"));
  CHECK(daemon.status_shows("PREVIOUS DAEMON DIED at "));
  CHECK_THAT(daemon.last_status(), Contains("(killed by SIGKILL), its clients' data lost; "));
  const json file_doc = json::parse(read_file(daemon.dir().file("test.json")));
  CHECK(file_doc["health"] == "degraded");
  CHECK(file_doc["previous_crash"]["pid"] == dead);
  CHECK(file_doc["previous_crash"]["cause"] == "killed by SIGKILL");
  CHECK(file_doc["previous_crash"]["end_seen"] == true);

  const CommandResult result =
      run_vramswap({"status", "--json", "--config", daemon.config_path()}, daemon.dir().path());
  const json doc = document(result);
  INFO(doc.dump(2));
  const json& instance = instance_named(doc, "test");
  CHECK(instance["state"] == "serving");
  CHECK(instance["health"] == "degraded");
  CHECK(instance["previous_crash"]["pid"] == dead);
  CHECK_THAT(messages_of(instance["messages"]), Contains(crash_words));
  CHECK(result.exit_status == kStatusTrouble);
  const CommandResult text =
      run_vramswap({"status", "--config", daemon.config_path()}, daemon.dir().path());
  INFO(text.output);
  CHECK_THAT(text.output, Contains("test: serving, health degraded"));
  CHECK_THAT(text.output, Contains("the previous vramswapd (pid " + std::to_string(dead) + ")"));

  // A clean stop leaves nothing behind: no status file, no lock file; the
  // next daemon starts healthy.
  REQUIRE(daemon.stop() == 0);
  CHECK(access(daemon.dir().file("test.json").c_str(), F_OK) != 0);
  CHECK(access(daemon.dir().file("test.lock").c_str(), F_OK) != 0);
  REQUIRE(daemon.start());
  CHECK(daemon.status_shows("256.0 MiB of GPU 0"));
  CHECK_THAT(daemon.last_status(), !Contains("PREVIOUS"));
  const json after = document(
      run_vramswap({"status", "--json", "--config", daemon.config_path()}, daemon.dir().path()));
  CHECK(instance_named(after, "test")["health"] == "ok");
  CHECK(instance_named(after, "test")["previous_crash"].is_null());
  REQUIRE(daemon.stop() == 0);
}

TEST_CASE("without systemd, a killed daemon is named by the next one from its last status",
          "[cli][fake][crash]") {
  TestDaemon daemon({.size = "256M"});
  REQUIRE(daemon.start());
  const pid_t dead = daemon.pid();
  REQUIRE(kill(dead, SIGKILL) == 0);
  REQUIRE(daemon.wait(std::chrono::seconds(10)) == 128 + SIGKILL);
  REQUIRE(daemon.start());
  CHECK_THAT(daemon.log(), Contains("the previous vramswapd (pid " + std::to_string(dead) +
                                    ") died without stopping after "));
  CHECK_THAT(daemon.log(), Contains("(its last status)"));
  CHECK(daemon.status_shows("PREVIOUS DAEMON DIED after "));
  REQUIRE(daemon.stop() == 0);
}

TEST_CASE("a config with two devices and one daemon shows both", "[cli][fake]") {
  TestDaemon daemon;
  REQUIRE(daemon.start());
  // The daemon's own section, and one more that nothing serves.
  const std::string config = daemon.dir().file("two.conf");
  write_file(config,
             read_file(daemon.config_path()) +
                 "[device.spare]\ngpu = 0\nsize = 1G\nattach = no\nlisten = " +
                 daemon.dir().file("spare.sock") + "\n",
             0644);
  const CommandResult result =
      run_vramswap({"status", "--json", "--config", config}, daemon.dir().path());
  const json doc = document(result);
  INFO(doc.dump(2));
  REQUIRE(doc["instances"].size() == 2);
  CHECK(doc["instances"][0]["name"] == "test");
  CHECK(doc["instances"][0]["state"] == "serving");
  CHECK(doc["instances"][1]["name"] == "spare");
  CHECK(doc["instances"][1]["configured"] == true);
  CHECK(doc["instances"][1]["state"] == "not-running");
  CHECK(doc["instances"][1]["gpu"].is_null());
  CHECK(doc["config"]["devices"] == 2);
  CHECK(result.exit_status == kStatusNotRunning);

  const CommandResult text = run_vramswap({"status", "--config", config}, daemon.dir().path());
  INFO(text.output);
  CHECK_THAT(text.output, Contains("test: serving"));
  CHECK_THAT(text.output, Contains("spare: not running"));
  CHECK(text.exit_status == kStatusNotRunning);
}

TEST_CASE("status takes swap from /proc/swaps when the status file disagrees", "[cli][swap]") {
  // A real swap area on a loop device, and a status file that names it, as
  // a daemon serving /dev/loopN would (the running test daemon lends its pid
  // so the file counts as live).
  TestDaemon daemon;
  REQUIRE(daemon.start());
  LoopSwap swap(daemon.dir(), 7);
  vramswap::status::InstanceStatus claimed;
  claimed.instance = "looped";
  claimed.pid = daemon.pid();
  claimed.state = "serving";
  claimed.health = "ok";
  claimed.device = swap.device();
  claimed.size_bytes = 16 * kMiB;
  claimed.swap_active = false;  // stale: /proc/swaps already lists it
  claimed.memory_locked = claimed.oom_protected = claimed.io_flusher = true;
  claimed.updated_unix = time(nullptr);
  write_file(daemon.dir().file("looped.json"), vramswap::status::to_json(claimed), 0644);

  const auto line = proc_swaps_line(swap.device());
  REQUIRE(line);
  json doc = document(
      run_vramswap({"status", "--json", "--config", daemon.config_path()}, daemon.dir().path()));
  INFO(doc.dump(2));
  const json& looped = instance_named(doc, "looped");
  CHECK(looped["configured"] == false);
  CHECK(looped["device"] == swap.device());
  CHECK(looped["swap"]["active"] == true);
  CHECK(looped["swap"]["source"] == "proc-swaps");
  CHECK(looped["swap"]["priority"] == 7);
  CHECK(looped["swap"]["size_bytes"] == line->size_bytes);
  CHECK(looped["swap"]["used_bytes"] == line->used_bytes);
  CHECK_THAT(messages_of(looped["messages"]), Contains("/proc/swaps lists it"));
  CHECK(doc["exit_status"] == kStatusOk);

  // Now the other way round: the file says swap, the kernel no longer has it.
  swap.off();
  claimed.swap_active = true;
  claimed.swap_priority = 7;
  claimed.swap_size_bytes = line->size_bytes;
  claimed.updated_unix = time(nullptr);
  write_file(daemon.dir().file("looped.json"), vramswap::status::to_json(claimed), 0644);
  REQUIRE_FALSE(proc_swaps_line(swap.device()));
  doc = document(
      run_vramswap({"status", "--json", "--config", daemon.config_path()}, daemon.dir().path()));
  const json& gone = instance_named(doc, "looped");
  CHECK(gone["swap"]["active"] == false);
  CHECK(gone["swap"]["priority"].is_null());
  CHECK_THAT(messages_of(gone["messages"]), Contains("/proc/swaps does not list it"));
  CHECK_THAT(messages_of(gone["messages"]), Contains("not in use as swap"));
  CHECK(doc["exit_status"] == kStatusTrouble);
}

TEST_CASE("status on a machine with nothing set up says why", "[cli]") {
  TempDir dir;
  const CommandResult result =
      run_vramswap({"status", "--config", dir.file("missing.conf")}, dir.path(),
                   {{"VRAMSWAP_LIBCUDA", "/nonexistent/libcuda.so.1"}});
  INFO(result.output);
  CHECK(result.exit_status == kStatusNotRunning);
  CHECK_THAT(result.output, Contains("No VRAM swap device is configured or running"));
  CHECK_THAT(result.output, Contains("missing.conf: no such file"));
  CHECK_THAT(result.output, Contains("cannot load /nonexistent/libcuda.so.1"));

  write_file(dir.file("empty.conf"), "[global]\nreserve = 2G\n", 0644);
  const CommandResult empty =
      run_vramswap({"status", "--config", dir.file("empty.conf")}, dir.path());
  INFO(empty.output);
  CHECK(empty.exit_status == kStatusNotRunning);
  CHECK_THAT(empty.output, Contains("configures no device"));
}

TEST_CASE("probe on two fake GPUs shows both with the size auto would take", "[cli][fake]") {
  TempDir dir;
  const std::string config = dir.file("vramswap.conf");
  write_file(config, "[global]\nreserve = 1G\n[device.second]\ngpu = 1\n", 0644);
  const Environment two_gpus = {{"VRAMSWAP_FAKE_DEVICES", "2"},
                                {"VRAMSWAP_FAKE_MEMORY", "8G"},
                                {"VRAMSWAP_FAKE_RESERVED", "256M"},
                                {"VRAMSWAP_FAKE_NAME", "Fake RTX"}};
  // The fake driver keeps 256 MiB of each GPU's 8 GiB for itself.
  const uint64_t free_bytes = 8 * kGiB - 256 * kMiB;
  const uint64_t auto_bytes = free_bytes - kGiB;  // a multiple of 2 MiB already

  const CommandResult result =
      run_vramswap({"probe", "--json", "--config", config}, dir.path(), two_gpus);
  const json doc = document(result);
  INFO(doc.dump(2));
  CHECK(result.exit_status == 0);
  CHECK(doc["reserve_bytes"] == kGiB);
  REQUIRE(doc["gpus"].size() == 2);
  for (int index = 0; index < 2; ++index) {
    const json& gpu = doc["gpus"][index];
    CHECK(gpu["index"] == index);
    CHECK(gpu["name"] == "Fake RTX");
    CHECK(gpu["total_bytes"] == 8 * kGiB);
    CHECK(gpu["free_bytes"] == free_bytes);
    CHECK(gpu["auto_size_bytes"] == auto_bytes);
    CHECK(gpu["auto_ok"] == true);
  }
  CHECK(doc["gpus"][0]["pci_bus_id"] == "0000:01:00.0");
  CHECK(doc["gpus"][1]["pci_bus_id"] == "0000:3B:00.0");
  REQUIRE(doc["devices"].size() == 1);
  CHECK(doc["devices"][0]["name"] == "second");
  CHECK(doc["devices"][0]["gpu_index"] == 1);
  CHECK(doc["devices"][0]["size_bytes"] == auto_bytes);

  const CommandResult text = run_vramswap({"probe", "--config", config}, dir.path(), two_gpus);
  INFO(text.output);
  CHECK(text.exit_status == 0);
  CHECK_THAT(text.output, Contains("GPU 0: Fake RTX"));
  CHECK_THAT(text.output, Contains("GPU 1: Fake RTX"));
  CHECK_THAT(text.output, Contains("8.0 GiB total, 7.8 GiB free"));
  CHECK_THAT(text.output, Contains("6.8 GiB (free VRAM minus reserve 1.0 GiB)"));
  CHECK_THAT(text.output, Contains("[device.second]: gpu = 1 (GPU 1), size = auto: would get"));
}

TEST_CASE("probe recommends exactly what the daemon then allocates", "[cli][fake]") {
  const Environment memory = {{"VRAMSWAP_FAKE_MEMORY", "6G"}, {"VRAMSWAP_FAKE_RESERVED", "300M"}};
  TestDaemon daemon({.size = "auto", .extra_config = "reserve = 1500M\n", .environment = memory});
  const CommandResult probed = run_vramswap({"probe", "--json", "--config", daemon.config_path()},
                                            daemon.dir().path(), memory);
  const json doc = document(probed);
  INFO(doc.dump(2));
  REQUIRE(doc["devices"].size() == 1);
  REQUIRE(doc["devices"][0]["ok"] == true);
  const uint64_t recommended = doc["devices"][0]["size_bytes"];
  REQUIRE(daemon.start());
  const json file = json::parse(read_file(daemon.dir().file("test.json")));
  CHECK(file["size_bytes"] == recommended);
  // And probe now says it runs and holds that.
  const json after = document(run_vramswap({"probe", "--json", "--config", daemon.config_path()},
                                           daemon.dir().path(), memory));
  CHECK(after["devices"][0]["running"] == true);
  CHECK(after["devices"][0]["size_bytes"] == recommended);
}

TEST_CASE("probe without a driver or a GPU says so and exits 69", "[cli]") {
  TempDir dir;
  const CommandResult missing =
      run_vramswap({"probe"}, dir.path(), {{"VRAMSWAP_LIBCUDA", "/nonexistent/libcuda.so.1"}});
  INFO(missing.output);
  CHECK(missing.exit_status == kExitUnavailable);
  CHECK_THAT(missing.output, Contains("cannot load /nonexistent/libcuda.so.1"));
  // One line: cause and fix.
  CHECK(missing.output.find('\n') == missing.output.size() - 1);

  const CommandResult json_missing = run_vramswap(
      {"probe", "--json"}, dir.path(), {{"VRAMSWAP_LIBCUDA", "/nonexistent/libcuda.so.1"}});
  const json doc = document(json_missing);
  CHECK(json_missing.exit_status == kExitUnavailable);
  CHECK(doc["gpus"].empty());
  CHECK_THAT(doc["driver"]["error"].get<std::string>(), Contains("cannot load"));
}

TEST_CASE("probe on a driver that sees no GPU says so and exits 69", "[cli][fake]") {
  TempDir dir;
  const CommandResult result =
      run_vramswap({"probe"}, dir.path(), {{"VRAMSWAP_FAKE_DEVICES", "0"}});
  INFO(result.output);
  CHECK(result.exit_status == kExitUnavailable);
  CHECK_THAT(result.output, Contains("no NVIDIA GPU"));
  CHECK(result.output.find('\n') == result.output.size() - 1);
}

TEST_CASE("vramswap --help, --version and wrong words", "[cli]") {
  TempDir dir;
  const CommandResult help = run_vramswap({"--help"}, dir.path());
  CHECK(help.exit_status == 0);
  CHECK_THAT(help.output, Contains("Usage: vramswap"));
  const CommandResult version = run_vramswap({"--version"}, dir.path());
  CHECK(version.exit_status == 0);
  CHECK_THAT(version.output, Contains("vramswap "));
  for (const std::vector<std::string>& wrong :
       {std::vector<std::string>{"frobnicate"}, {"status", "--frobnicate"}, {"probe", "extra"}}) {
    const CommandResult result = run_vramswap(wrong, dir.path());
    INFO(result.output);
    CHECK(result.exit_status == 64);
    CHECK(result.output.find('\n') == result.output.size() - 1);
    CHECK_THAT(result.output, Contains("vramswap --help"));
  }
}

TEST_CASE("hibernate resume: a broken record is one line naming the file and the fix", "[cli]") {
  TempDir dir;
  const std::string record = dir.file("hibernate.record");
  write_file(record, "{\"format\": 1, \"devices\": [{\"instance\": \"0\"}]}", 0644);
  const CommandResult result = run_vramswap({"hibernate", "resume"}, dir.path());
  INFO(result.output);
  CHECK(result.exit_status == kStatusTrouble);
  CHECK_THAT(result.output, Contains(record + " is not a record of vramswap hibernate prepare"));
  CHECK_THAT(result.output, Contains("remove it, and start the swap units"));
  CHECK(std::count(result.output.begin(), result.output.end(), '\n') == 1);
  // Left for the admin to look at.
  CHECK(access(record.c_str(), F_OK) == 0);
}

TEST_CASE("hibernate resume: a recorded device that is gone is left to its own units", "[cli]") {
  TempDir dir;
  const std::string record = dir.file("hibernate.record");
  write_file(record,
             R"({"format": 1, "devices": [{"instance": "0", "device": "/dev/nbd1023",
                 "backend": "vramswap/0", "priority": 1000, "discard": false}]})",
             0644);
  const CommandResult result = run_vramswap({"hibernate", "resume"}, dir.path());
  INFO(result.output);
  CHECK(result.exit_status == kStatusOk);
  CHECK_THAT(result.output, Contains("/dev/nbd1023 is not swapped on for vramswap 0: it is no "
                                     "longer connected"));
  CHECK(access(record.c_str(), F_OK) != 0);
  const CommandResult again = run_vramswap({"hibernate", "resume"}, dir.path());
  CHECK(again.exit_status == kStatusOk);
  CHECK_THAT(again.output, Contains("nothing to swap on"));
}

TEST_CASE("hibernate prepare: a daemon whose device is not swap leaves nothing to do",
          "[cli][fake]") {
  TestDaemon daemon({.size = "64M"});
  const CommandResult result =
      run_vramswap({"hibernate", "prepare", "--config", daemon.config_path()}, daemon.dir().path());
  INFO(result.output);
  CHECK(result.exit_status == kStatusOk);
  CHECK_THAT(result.output, Contains("no VRAM swap is active; nothing to swap off"));
  CHECK(access(daemon.dir().file("hibernate.record").c_str(), F_OK) != 0);
}

TEST_CASE("hibernate prepare and resume need root, and say so in one line", "[cli]") {
  // As nobody (the integration tests run as root).
  TempDir dir;
  for (const std::string step : {"prepare", "resume"}) {
    const CommandResult result =
        run_command({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                     vramswap_binary(), "hibernate", step, "--runtime-dir", dir.path()});
    INFO(result.output);
    CHECK(result.exit_status == 77);
    CHECK_THAT(result.output, Contains("hibernate " + step + " needs root"));
    CHECK(std::count(result.output.begin(), result.output.end(), '\n') == 1);
  }
}
