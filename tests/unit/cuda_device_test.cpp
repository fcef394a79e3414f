// GPU discovery and selection, against the fake driver.

#include <catch2/catch.hpp>

#include <cctype>

#include "common/byte_size.hpp"
#include "common/exit_codes.hpp"
#include "common/startup_error.hpp"
#include "cuda/context.hpp"
#include "cuda/device.hpp"
#include "fake_cuda_support.hpp"

using namespace vramswap::cuda;
using Catch::Matchers::Contains;
using vramswap::GiB;
using vramswap::MiB;
using vramswap::StartupError;
using vramswap::test::FakeCuda;

namespace {

// Two fake GPUs of 8 GiB, 1 GiB of which the "driver" keeps.
struct TwoGpus {
  TwoGpus() {
    fake.set("VRAMSWAP_FAKE_DEVICES", "2");
    fake.set("VRAMSWAP_FAKE_MEMORY", "8G");
    fake.set("VRAMSWAP_FAKE_RESERVED", "1G");
  }
  FakeCuda fake;
};

// "GPU-" then 8-4-4-4-12 lower-case hex digits.
bool is_nvidia_smi_uuid(const std::string& uuid) {
  const std::string form = "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
  if (uuid.size() != form.size()) return false;
  for (size_t i = 0; i < form.size(); ++i) {
    const bool hex =
        std::isdigit(static_cast<unsigned char>(uuid[i])) || (uuid[i] >= 'a' && uuid[i] <= 'f');
    if (form[i] == 'x' ? !hex : uuid[i] != form[i]) return false;
  }
  return true;
}

StartupError selection_failure(const std::vector<DeviceInfo>& devices, std::string_view gpu) {
  try {
    select_device(devices, gpu);
  } catch (const StartupError& error) {
    return error;
  }
  FAIL("select_device accepted \"" << gpu << "\"");
  throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("devices are listed with name, UUID, PCI bus id and memory") {
  TwoGpus setup;
  setup.fake.set("VRAMSWAP_FAKE_NAME", "Fake RTX");
  const Driver driver = Driver::load();
  const auto devices = list_devices(driver);
  REQUIRE(devices.size() == 2);
  for (int i = 0; i < 2; ++i) {
    INFO("device " << i);
    CHECK(devices[i].index == i);
    CHECK(devices[i].name == "Fake RTX");
    CHECK(is_nvidia_smi_uuid(devices[i].uuid));
    CHECK(devices[i].total_bytes == 8 * GiB);
    CHECK_FALSE(devices[i].free_bytes.has_value());  // not asked: no context was created
  }
  CHECK(devices[0].uuid != devices[1].uuid);
  CHECK(devices[0].pci_bus_id == "0000:01:00.0");
  CHECK(devices[1].pci_bus_id == "0000:3B:00.0");
  CHECK_THAT(describe_device(devices[1]),
             Contains("1: Fake RTX (GPU-") && Contains(", 0000:3B:00.0, 8.0 GiB)"));
}

TEST_CASE("free memory is reported per device and follows allocations") {
  TwoGpus setup;
  const Driver driver = Driver::load();
  auto devices = list_devices(driver, FreeMemory::query);
  REQUIRE(devices.size() == 2);
  CHECK(devices[0].free_bytes == 7 * GiB);
  CHECK(devices[1].free_bytes == 7 * GiB);
  CHECK(devices[0].free_error == CUDA_SUCCESS);

  Context context(driver, 1);
  CHECK(context.memory_info().free_bytes == 7 * GiB);
  CHECK(context.memory_info().total_bytes == 8 * GiB);
  CUdeviceptr pointer = 0;
  REQUIRE(driver.cuMemAlloc(&pointer, 512 * MiB) == CUDA_SUCCESS);
  CHECK(context.memory_info().free_bytes == 7 * GiB - 512 * MiB);
  devices = list_devices(driver, FreeMemory::query);
  CHECK(devices[0].free_bytes == 7 * GiB);
  CHECK(devices[1].free_bytes == 7 * GiB - 512 * MiB);
  REQUIRE(context.bind_current_thread().ok());  // list_devices left none current
  CHECK(driver.cuMemFree(pointer) == CUDA_SUCCESS);
  CHECK(context.memory_info().free_bytes == 7 * GiB);
}

TEST_CASE("a GPU is selected by CUDA index, UUID, UUID prefix or PCI bus id") {
  TwoGpus setup;
  const Driver driver = Driver::load();
  const auto devices = list_devices(driver);
  const std::string uuid1 = devices[1].uuid;  // "GPU-face0001-5a5a-..."
  REQUIRE(uuid1.starts_with("GPU-face0001-"));
  REQUIRE(devices[0].uuid.starts_with("GPU-face0000-"));

  SECTION("index") {
    CHECK(select_device(devices, "0").index == 0);
    CHECK(select_device(devices, "1").index == 1);
    CHECK(select_device(devices, " 1 ").index == 1);
  }
  SECTION("UUID, any case") {
    CHECK(select_device(devices, uuid1).index == 1);
    std::string upper = uuid1;
    for (char& c : upper)
      c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    CHECK(select_device(devices, upper).index == 1);
    CHECK(select_device(devices, "gpu-" + uuid1.substr(4)).index == 1);
  }
  SECTION("unique UUID prefix") {
    CHECK(select_device(devices, "GPU-face0001").index == 1);
    CHECK(select_device(devices, "GPU-FACE0000-5A").index == 0);
  }
  SECTION("PCI bus id, long, nvidia-smi's and short, any case") {
    CHECK(select_device(devices, "0000:3B:00.0").index == 1);
    CHECK(select_device(devices, "0000:3b:00.0").index == 1);
    CHECK(select_device(devices, "00000000:3B:00.0").index == 1);
    CHECK(select_device(devices, "3b:00.0").index == 1);
    CHECK(select_device(devices, "01:00.0").index == 0);
    CHECK(select_device(devices, "1:0.0").index == 0);
  }
}

TEST_CASE("a gpu value that names no GPU, or several, is refused with the list") {
  TwoGpus setup;
  const Driver driver = Driver::load();
  const auto devices = list_devices(driver);

  SECTION("no such index") {
    const StartupError error = selection_failure(devices, "2");
    CHECK(error.exit_status() == vramswap::exit_code::unavailable);
    const std::string message = error.what();
    CHECK_THAT(message, Contains("gpu = \"2\" is not the CUDA index of a GPU here"));
    CHECK_THAT(message, Contains("GPUs here: 0: vramswap fake GPU (" + devices[0].uuid +
                                 ", 0000:01:00.0, 8.0 GiB); 1: vramswap fake GPU (" +
                                 devices[1].uuid + ", 0000:3B:00.0, 8.0 GiB)"));
    CHECK(message.find('\n') == std::string::npos);
  }
  SECTION("ambiguous UUID prefix") {
    const StartupError error = selection_failure(devices, "GPU-face000");
    CHECK(error.exit_status() == vramswap::exit_code::config);
    CHECK_THAT(std::string(error.what()), Contains("matches more than one GPU"));
  }
  SECTION("unknown UUID") {
    const StartupError error = selection_failure(devices, "GPU-deadbeef");
    CHECK(error.exit_status() == vramswap::exit_code::unavailable);
    CHECK_THAT(std::string(error.what()), Contains("matches no GPU's UUID"));
    CHECK_THAT(std::string(error.what()), Contains(devices[1].uuid));
  }
  SECTION("unknown PCI bus id") {
    const StartupError error = selection_failure(devices, "0000:02:00.0");
    CHECK(error.exit_status() == vramswap::exit_code::unavailable);
    CHECK_THAT(std::string(error.what()), Contains("matches no GPU's PCI bus id"));
  }
  SECTION("malformed") {
    for (const char* bad : {"", "  ", "GPU-", "first", "-1", "0x1", "01:00", "01:00.8",
                            "0000:01:20.0", "123456789:01:00.0", "1.5"}) {
      INFO("gpu = \"" << bad << "\"");
      CHECK(selection_failure(devices, bad).exit_status() == vramswap::exit_code::config);
    }
  }
  SECTION("MIG instance") {
    const StartupError error =
        selection_failure(devices, "MIG-3f1c0000-0000-0000-0000-000000000000");
    CHECK(error.exit_status() == vramswap::exit_code::config);
    CHECK_THAT(std::string(error.what()), Contains("MIG"));
  }
}

TEST_CASE("PCI bus ids parse in the driver's and nvidia-smi's forms") {
  CHECK(parse_pci_bus_id("0000:01:00.0") == PciAddress{0, 1, 0, 0});
  CHECK(parse_pci_bus_id("00000000:3B:00.0") == PciAddress{0, 0x3b, 0, 0});
  CHECK(parse_pci_bus_id("0001:c1:1f.7") == PciAddress{1, 0xc1, 0x1f, 7});
  CHECK(parse_pci_bus_id("41:00.1") == PciAddress{0, 0x41, 0, 1});
  for (const char* bad :
       {"", "01", "01:00", "01.00.0", "0000:01:00.", "0000:01:00.0.0", "0000:100:00.0",
        "0000:01:00.8", "0000:01:20.0", "g0:00.0", "1:2:3:00.0", ":00.0", "0000::00.0"}) {
    INFO(bad);
    CHECK_FALSE(parse_pci_bus_id(bad).has_value());
  }
}

TEST_CASE("UUIDs are formatted like nvidia-smi's") {
  CUuuid uuid{};
  for (int i = 0; i < 16; ++i)
    uuid.bytes[i] = static_cast<unsigned char>(0x10 * i + 0xf - i);
  CHECK(format_uuid(uuid) == "GPU-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
}

TEST_CASE("a context on a GPU that does not exist is refused") {
  FakeCuda fake;
  const Driver driver = Driver::load();
  try {
    Context context(driver, 3);
    FAIL("a context on GPU 3 of 1 was created");
  } catch (const StartupError& error) {
    CHECK(error.exit_status() == vramswap::exit_code::unavailable);
    CHECK_THAT(std::string(error.what()),
               Contains("cannot use GPU 3: cuDeviceGet returned CUDA_ERROR_INVALID_DEVICE"));
  }
}
