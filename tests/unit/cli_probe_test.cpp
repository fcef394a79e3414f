// `vramswap probe` decisions: GPUs, free VRAM and config in; the sizes the
// daemon would allocate out.

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "cli/probe_output.hpp"
#include "cli/probe_report.hpp"
#include "common/byte_size.hpp"
#include "common/exit_codes.hpp"

using namespace vramswap;
using namespace vramswap::cli;
using Catch::Matchers::Contains;

namespace {

cuda::DeviceInfo gpu(int index, uint64_t total, std::optional<uint64_t> free) {
  cuda::DeviceInfo info;
  info.index = index;
  info.name = "Test GPU " + std::to_string(index);
  info.uuid = "GPU-0000000" + std::to_string(index) + "-1111-2222-3333-444444444444";
  info.pci_bus_id = "0000:0" + std::to_string(index + 1) + ":00.0";
  info.total_bytes = total;
  info.free_bytes = free;
  return info;
}

ProbeInputs two_gpus(const std::string& config_text) {
  ProbeInputs inputs;
  inputs.driver.checked = true;
  inputs.driver.library = "libcuda.so.1";
  inputs.driver.version = "13.0";
  // Free sizes that are not multiples of 2 MiB, as real ones are not.
  inputs.driver.gpus = {gpu(0, 16 * GiB, 15 * GiB + 123 * MiB + 4096),
                        gpu(1, 8 * GiB, 7 * GiB + 999 * KiB)};
  inputs.driver.free_errors = {"", ""};
  inputs.config.path = "/etc/vramswap.conf";
  inputs.config.report = config::parse_config_report(config_text, "/etc/vramswap.conf");
  return inputs;
}

uint64_t round_down_2mib(uint64_t bytes) {
  return bytes - bytes % (2 * MiB);
}

std::string all_text(const Messages& messages) {
  std::string text;
  for (const auto& m : messages)
    text += m.text + "\n";
  return text;
}

}  // namespace

TEST_CASE("auto takes free VRAM minus the default reserve, in whole 2 MiB") {
  ProbeInputs inputs = two_gpus("");
  inputs.config = {"/etc/vramswap.conf", "/etc/vramswap.conf: no such file; ...", true,
                   std::nullopt};
  const ProbeReport report = build_probe_report(inputs);
  REQUIRE(report.gpus.size() == 2);
  CHECK(report.reserve_bytes == GiB);
  CHECK(report.min_size_bytes == 256 * MiB);
  CHECK(report.gpus[0].auto_bytes == round_down_2mib(15 * GiB + 123 * MiB + 4096 - GiB));
  CHECK(report.gpus[1].auto_bytes == round_down_2mib(7 * GiB + 999 * KiB - GiB));
  CHECK(report.gpus[0].auto_ok);
  CHECK(report.gpus[1].auto_ok);
  CHECK_THAT(all_text(report.messages), Contains("default reserve"));
  CHECK(report.exit_status == probe_exit::ok);
}

TEST_CASE("the reserve and min_size of [global] are used") {
  const ProbeReport report =
      build_probe_report(two_gpus("[global]\nreserve = 3G\nmin_size = 5G\n"));
  CHECK(report.reserve_bytes == 3 * GiB);
  CHECK(report.min_size_bytes == 5 * GiB);
  CHECK(report.gpus[0].auto_bytes == round_down_2mib(15 * GiB + 123 * MiB + 4096 - 3 * GiB));
  CHECK(report.gpus[0].auto_ok);
  // 7 GiB free - 3 GiB is below min_size 5 GiB.
  CHECK_FALSE(report.gpus[1].auto_ok);
  CHECK_THAT(all_text(report.gpus[1].messages), Contains("less than min_size"));
  // Nothing configured would fail: still 0.
  CHECK(report.exit_status == probe_exit::ok);
}

TEST_CASE("free VRAM below the reserve leaves nothing") {
  ProbeInputs inputs = two_gpus("");
  inputs.driver.gpus[1].free_bytes = 512 * MiB;
  const ProbeReport report = build_probe_report(inputs);
  CHECK(report.gpus[1].auto_bytes == 0);
  CHECK_FALSE(report.gpus[1].auto_ok);
}

TEST_CASE("configured devices get what the daemon would allocate") {
  const ProbeReport report =
      build_probe_report(two_gpus("[global]\nreserve = 2G\n"
                                  "[device.big]\ngpu = GPU-00000001-1111-2222-3333-444444444444\n"
                                  "[device.half]\ngpu = 0000:01:00.0\nsize = 50%\n"));
  REQUIRE(report.devices.size() == 2);
  const DeviceView& big = report.devices[0];
  CHECK(big.name == "big");
  CHECK(big.gpu == "GPU-00000001-1111-2222-3333-444444444444");
  CHECK(big.gpu_index == 1);
  CHECK(big.size == "auto");
  CHECK(big.size_bytes == round_down_2mib(7 * GiB + 999 * KiB - 2 * GiB));
  CHECK(big.ok);
  const DeviceView& half = report.devices[1];
  CHECK(half.gpu_index == 0);
  CHECK(half.size == "50%");
  CHECK(half.size_bytes == round_down_2mib((15 * GiB + 123 * MiB + 4096) / 2));
  CHECK(report.exit_status == probe_exit::ok);
}

TEST_CASE("a configured device that would not start makes probe exit 1") {
  SECTION("no such GPU") {
    const ProbeReport report = build_probe_report(two_gpus("[device.x]\ngpu = 2\n"));
    CHECK_FALSE(report.devices[0].ok);
    CHECK_FALSE(report.devices[0].gpu_index);
    CHECK_THAT(all_text(report.devices[0].messages), Contains("gpu = \"2\""));
    CHECK(report.exit_status == probe_exit::trouble);
  }
  SECTION("too little VRAM for min_size") {
    const ProbeReport report = build_probe_report(two_gpus("[device.x]\ngpu = 1\nmin_size = 7G\n"));
    CHECK_FALSE(report.devices[0].ok);
    CHECK_THAT(all_text(report.devices[0].messages), Contains("min_size"));
    CHECK(report.exit_status == probe_exit::trouble);
  }
  SECTION("errors in its section") {
    const ProbeReport report = build_probe_report(two_gpus("[device.x]\nsize = lots\n"));
    CHECK_FALSE(report.devices[0].ok);
    CHECK_THAT(all_text(report.devices[0].messages), Contains("/etc/vramswap.conf:2"));
    CHECK(report.exit_status == probe_exit::trouble);
  }
}

TEST_CASE(
    "a fixed size above free VRAM gets what fits beside the reserve, or fails below min_size") {
  const ProbeReport report = build_probe_report(two_gpus("[device.x]\ngpu = 1\nsize = 7.5G\n"));
  CHECK(report.devices[0].ok);
  // 7 GiB 999 KiB free, reserve 1 GiB left.
  CHECK(report.devices[0].size_bytes == round_down_2mib(6 * GiB + 999 * KiB));
  CHECK_THAT(all_text(report.devices[0].messages), Contains("minus reserve = 1.0 GiB: taking"));
  CHECK(report.exit_status == probe_exit::ok);

  const ProbeReport too_big = build_probe_report(two_gpus("[device.x]\ngpu = 1\nsize = 100G\n"));
  CHECK_FALSE(too_big.devices[0].ok);
  CHECK_THAT(all_text(too_big.devices[0].messages),
             Contains("is more than the GPU's total memory, 8.0 GiB"));

  const ProbeReport refused =
      build_probe_report(two_gpus("[device.x]\ngpu = 1\nsize = 7.5G\nmin_size = 7G\n"));
  CHECK_FALSE(refused.devices[0].ok);
  CHECK_FALSE(refused.devices[0].size_bytes);
  CHECK_THAT(all_text(refused.devices[0].messages), Contains("less than min_size"));
  CHECK(refused.exit_status == probe_exit::trouble);
}

TEST_CASE("a device whose daemon runs shows what it holds") {
  ProbeInputs inputs = two_gpus("[device.0]\n");
  status::InstanceStatus running;
  running.instance = "0";
  running.gpu_index = 0;
  running.size_bytes = 12 * GiB;
  inputs.running.push_back(running);
  // Its own allocation is not free any more: too little for min_size.
  inputs.driver.gpus[0].free_bytes = 1 * GiB;
  const ProbeReport report = build_probe_report(inputs);
  CHECK(report.devices[0].running);
  CHECK(report.devices[0].ok);
  CHECK(report.devices[0].size_bytes == 12 * GiB);
  CHECK(report.exit_status == probe_exit::ok);
}

TEST_CASE("devices sharing a GPU with relative sizes are warned about") {
  const ProbeReport report =
      build_probe_report(two_gpus("[device.a]\ngpu = 0\n[device.b]\ngpu = 0\nsize = 1G\n"));
  CHECK_THAT(all_text(report.messages), Contains("devices a, b all use GPU 0"));
  const ProbeReport fixed =
      build_probe_report(two_gpus("[device.a]\nsize = 2G\n[device.b]\nsize = 1G\n"));
  CHECK(fixed.messages.empty());
}

TEST_CASE("without a driver probe exits 69 with the cause") {
  ProbeInputs inputs = two_gpus("");
  inputs.driver = {};
  inputs.driver.checked = true;
  inputs.driver.error =
      "cannot load libcuda.so.1 (...): the NVIDIA driver is not installed or "
      "not loaded; install the NVIDIA driver";
  const ProbeReport report = build_probe_report(inputs);
  CHECK(report.exit_status == exit_code::unavailable);
  CHECK(report.gpus.empty());
  const auto j = nlohmann::json::parse(format_probe_json(report));
  CHECK(j["exit_status"] == 69);
  CHECK(j["gpus"].empty());
  CHECK_THAT(j["driver"]["error"].get<std::string>(), Contains("cannot load libcuda.so.1"));
}

TEST_CASE("a GPU whose free VRAM cannot be read says why") {
  ProbeInputs inputs = two_gpus("[device.0]\ngpu = 1\n");
  inputs.driver.gpus[1].free_bytes.reset();
  inputs.driver.free_errors[1] = "cannot read the free VRAM of GPU 1: CUDA_ERROR_OUT_OF_MEMORY";
  const ProbeReport report = build_probe_report(inputs);
  CHECK_FALSE(report.gpus[1].auto_bytes);
  CHECK_THAT(all_text(report.gpus[1].messages), Contains("CUDA_ERROR_OUT_OF_MEMORY"));
  CHECK_FALSE(report.devices[0].ok);
  CHECK(report.exit_status == probe_exit::trouble);
}

TEST_CASE("the probe JSON document has the documented fields") {
  const ProbeReport report = build_probe_report(two_gpus("[device.0]\n"));
  const auto j = nlohmann::json::parse(format_probe_json(report));
  CHECK(j["format"] == 1);
  CHECK(j["driver"]["library"] == "libcuda.so.1");
  CHECK(j["driver"]["cuda_version"] == "13.0");
  CHECK(j["driver"]["error"].is_null());
  CHECK(j["config"]["path"] == "/etc/vramswap.conf");
  CHECK(j["config"]["found"] == true);
  CHECK(j["config"]["devices"] == 1);
  CHECK(j["config"]["errors"] == 0);
  CHECK(j["reserve_bytes"] == GiB);
  CHECK(j["min_size_bytes"] == 256 * MiB);
  REQUIRE(j["gpus"].size() == 2);
  const auto& g = j["gpus"][1];
  CHECK(g["index"] == 1);
  CHECK(g["name"] == "Test GPU 1");
  CHECK(g["uuid"] == "GPU-00000001-1111-2222-3333-444444444444");
  CHECK(g["pci_bus_id"] == "0000:02:00.0");
  CHECK(g["total_bytes"] == 8 * GiB);
  CHECK(g["free_bytes"] == 7 * GiB + 999 * KiB);
  CHECK(g["auto_size_bytes"] == round_down_2mib(7 * GiB + 999 * KiB - GiB));
  CHECK(g["auto_ok"] == true);
  CHECK(g["messages"].empty());
  REQUIRE(j["devices"].size() == 1);
  const auto& d = j["devices"][0];
  CHECK(d["name"] == "0");
  CHECK(d["gpu"] == "0");
  CHECK(d["gpu_index"] == 0);
  CHECK(d["size"] == "auto");
  CHECK(d["size_bytes"] == j["gpus"][0]["auto_size_bytes"]);
  CHECK(d["running"] == false);
  CHECK(d["ok"] == true);
  CHECK(j["exit_status"] == 0);
}

TEST_CASE("the probe text names each GPU and what auto takes") {
  const std::string text = format_probe_text(build_probe_report(two_gpus("[device.0]\n")));
  INFO(text);
  CHECK_THAT(text, Contains("GPU 0: Test GPU 0"));
  CHECK_THAT(text, Contains("GPU-00000001-1111-2222-3333-444444444444"));
  CHECK_THAT(text, Contains("16.0 GiB total, 15.1 GiB free"));
  CHECK_THAT(text, Contains("(free VRAM minus reserve 1.0 GiB)"));
  CHECK_THAT(text, Contains("[device.0]: gpu = 0 (GPU 0), size = auto: would get"));
}
