#include <catch2/catch.hpp>

#include <climits>
#include <string>
#include <vector>

#include "common/byte_size.hpp"
#include "config/values.hpp"

using namespace vramswap;
using namespace vramswap::config;

TEST_CASE("GPU by CUDA index") {
  const auto gpu = parse_gpu_selector("3");
  REQUIRE(gpu.value);
  CHECK(gpu.value->kind == GpuKind::index);
  CHECK(gpu.value->index == 3);
  CHECK(gpu.value->text == "3");
  CHECK(parse_gpu_selector("2147483647").value->index == 2147483647u);
  CHECK_FALSE(parse_gpu_selector("2147483648").value);
  CHECK_FALSE(parse_gpu_selector("").value);
  CHECK_FALSE(parse_gpu_selector("+1").value);
  CHECK_FALSE(parse_gpu_selector("0x1").value);
}

TEST_CASE("GPU by UUID, as nvidia-smi -L prints it") {
  const auto gpu = parse_gpu_selector("GPU-8C9B2F8E-1d2a-4b3c-9d8e-7f6a5b4c3d2e");
  REQUIRE(gpu.value);
  CHECK(gpu.value->kind == GpuKind::uuid);
  CHECK(gpu.value->text == "GPU-8C9B2F8E-1d2a-4b3c-9d8e-7f6a5b4c3d2e");
  const std::array<uint8_t, 16> bytes{0x8c, 0x9b, 0x2f, 0x8e, 0x1d, 0x2a, 0x4b, 0x3c,
                                      0x9d, 0x8e, 0x7f, 0x6a, 0x5b, 0x4c, 0x3d, 0x2e};
  CHECK(gpu.value->uuid == bytes);
  // A MIG instance, and a lower-case prefix.
  CHECK(parse_gpu_selector("MIG-8c9b2f8e-1d2a-4b3c-9d8e-7f6a5b4c3d2e").value->uuid == bytes);
  CHECK(parse_gpu_selector("gpu-8c9b2f8e-1d2a-4b3c-9d8e-7f6a5b4c3d2e").value->uuid == bytes);
  for (const char* bad :
       {"GPU-", "GPU-8c9b2f8e1d2a4b3c9d8e7f6a5b4c3d2e", "GPU-8c9b2f8e-1d2a-4b3c-9d8e-7f6a5b4c3d2",
        "GPU-8c9b2f8e-1d2a-4b3c-9d8e-7f6a5b4c3d2e0", "GPU-8c9b2f8e-1d2a-4b3c-9d8e_7f6a5b4c3d2e",
        "GPU-8c9b2f8g-1d2a-4b3c-9d8e-7f6a5b4c3d2e"}) {
    INFO(bad);
    const auto parsed = parse_gpu_selector(bad);
    CHECK_FALSE(parsed.value);
    CHECK(parsed.problem.starts_with("not a GPU UUID; "));
  }
}

TEST_CASE("GPU by PCI bus id, as lspci, CUDA or nvidia-smi write it") {
  const auto [text, normalized] = GENERATE(table<const char*, const char*>({
      {"0000:01:00.0", "0000:01:00.0"},
      {"01:00.0", "0000:01:00.0"},
      {"00000000:C1:00.0", "0000:c1:00.0"},  // nvidia-smi
      {"1:0.0", "0000:01:00.0"},
      {"0001:ff:1f.7", "0001:ff:1f.7"},
      {"10000:e2:00.1", "10000:e2:00.1"},  // a VMD domain
  }));
  INFO(text);
  const auto gpu = parse_gpu_selector(text);
  REQUIRE(gpu.value);
  CHECK(gpu.value->kind == GpuKind::pci_bus_id);
  CHECK(gpu.value->text == text);
  CHECK(gpu.value->pci_bus_id == normalized);
}

TEST_CASE("PCI bus id fields") {
  const auto gpu = parse_gpu_selector("0002:41:1e.3");
  REQUIRE(gpu.value);
  CHECK(gpu.value->pci == PciAddress{2, 0x41, 0x1e, 3});
  for (const char* bad :
       {"01:00", "0000:01:00.8", "0000:01:20.0", "0000:100:00.0", "000000000:01:00.0", ":01:00.0",
        "0000:01:00.", "0000:01:00.0.0", "a:b:c:d.0", "0000:0g:00.0"}) {
    INFO(bad);
    const auto parsed = parse_gpu_selector(bad);
    CHECK_FALSE(parsed.value);
    CHECK(parsed.problem.starts_with("not a PCI bus id; "));
  }
}

TEST_CASE("sizes") {
  CHECK(parse_size_spec("auto").value == SizeSpec{});
  CHECK(parse_size_spec("Auto").value == SizeSpec{});
  CHECK(parse_size_spec("16G").value == SizeSpec{SizeKind::bytes, 16 * GiB, 0});
  CHECK(parse_size_spec("1.5T").value == SizeSpec{SizeKind::bytes, 1536 * GiB, 0});
  CHECK(parse_size_spec("1048576").value == SizeSpec{SizeKind::bytes, MiB, 0});
  CHECK(parse_size_spec("50%").value == SizeSpec{SizeKind::percent_of_free, 0, 50});
  CHECK(parse_size_spec("50 %").value == SizeSpec{SizeKind::percent_of_free, 0, 50});
  CHECK_FALSE(parse_size_spec("1048575").value);
  CHECK_FALSE(parse_size_spec("%").value);
  CHECK_FALSE(parse_size_spec("-5%").value);
  CHECK_FALSE(parse_size_spec("automatic").value);
}

TEST_CASE("whole numbers in a range") {
  CHECK(parse_integer("-1", -1, 5).value == -1);
  CHECK(parse_integer("5", -1, 5).value == 5);
  CHECK(parse_integer("-0", 0, 5).value == 0);
  CHECK(parse_integer("9223372036854775807", 0, LLONG_MAX).value == LLONG_MAX);
  CHECK(parse_integer("-9223372036854775808", LLONG_MIN, 0).value == LLONG_MIN);
  CHECK(parse_integer("9223372036854775808", 0, LLONG_MAX).problem ==
        "out of range; use 0 to 9223372036854775807");
  CHECK(parse_integer("-18446744073709551615", -1, 5).problem == "out of range; use -1 to 5");
  CHECK(parse_integer("6", -1, 5).problem == "out of range; use -1 to 5");
  for (const char* bad : {"", "-", "+1", " 1", "1 ", "0x1", "1e3", "--1"}) {
    INFO(bad);
    CHECK(parse_integer(bad, -1, 5).problem == "not a whole number; use -1 to 5");
  }
  CHECK(parse_integer("61", 1, 60, {"seconds", ", or auto"}).problem ==
        "out of range; use seconds from 1 to 60, or auto");
}

TEST_CASE("group names") {
  CHECK(parse_group_name("").value == std::string());  // none
  for (const char* good : {"vramswap", "swap-users", "_nbd", "Admins.2", "host$", "1abc"}) {
    INFO(good);
    CHECK(parse_group_name(good).value == std::string(good));
  }
  for (const std::string& bad :
       std::vector<std::string>{"-x", "a b", "a:b", "123", "$", "a/b", std::string(33, 'g')}) {
    INFO(bad);
    CHECK(parse_group_name(bad).problem ==
          "not a group name; use the name of an existing group (vramswap)");
  }
}

TEST_CASE("device name check") {
  CHECK(is_valid_device_name("0"));
  CHECK(is_valid_device_name("laptop_GPU-2"));
  CHECK(is_valid_device_name(std::string(32, 'a')));
  CHECK_FALSE(is_valid_device_name(""));
  CHECK_FALSE(is_valid_device_name(std::string(33, 'a')));
  CHECK_FALSE(is_valid_device_name("a.b"));
  CHECK_FALSE(is_valid_device_name("a b"));
  CHECK_FALSE(is_valid_device_name("a/b"));
}
