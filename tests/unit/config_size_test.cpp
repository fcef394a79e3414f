#include <catch2/catch.hpp>

#include "common/byte_size.hpp"
#include "common/exit_codes.hpp"
#include "common/startup_error.hpp"
#include "config/config.hpp"
#include "config/size.hpp"

using namespace vramswap;
using namespace vramswap::config;

namespace {

const SizeSpec automatic{};
SizeSpec percent(unsigned p) {
  return {SizeKind::percent_of_free, 0, p};
}
SizeSpec bytes(uint64_t b) {
  return {SizeKind::bytes, b, 0};
}

DeviceConfig device(SizeSpec size, uint64_t reserve, uint64_t min_size) {
  DeviceConfig config = default_device_config(ParseOptions{4});
  config.name = std::string("0");  // not = "0": GCC 12 warns falsely (-Wrestrict)
  config.size = size;
  config.reserve = reserve;
  config.min_size = min_size;
  return config;
}

std::string refusal(const DeviceConfig& config, uint64_t free_vram) {
  try {
    (void)choose_swap_size(config, free_vram, 16 * GiB);
  } catch (const StartupError& error) {
    CHECK(error.exit_status() == exit_code::unavailable);
    return error.what();
  }
  FAIL("size accepted");
  return {};
}

}  // namespace

TEST_CASE("size = auto is free VRAM minus the reserve, in whole 2 MiB") {
  CHECK(resolve_size(automatic, GiB, 16 * GiB) == 15 * GiB);
  CHECK(resolve_size(automatic, 0, 16 * GiB) == 16 * GiB);
  CHECK(resolve_size(automatic, GiB, 16 * GiB + 3 * MiB + 5) == 15 * GiB + 2 * MiB);
  CHECK(resolve_size(automatic, 100 * MiB, 100 * MiB + MiB) == 0);
}

TEST_CASE("a reserve larger than free VRAM leaves nothing") {
  CHECK(resolve_size(automatic, 2 * GiB, GiB) == 0);
  CHECK(resolve_size(automatic, UINT64_MAX, GiB) == 0);
  CHECK(resolve_size(automatic, GiB, GiB) == 0);
  CHECK(resolve_size(automatic, GiB, 0) == 0);
}

TEST_CASE("size = N% is that share of free VRAM, in whole 2 MiB") {
  CHECK(resolve_size(percent(50), GiB, 16 * GiB) == 8 * GiB);
  CHECK(resolve_size(percent(100), GiB, 16 * GiB) == 16 * GiB);
  CHECK(resolve_size(percent(1), 0, 100 * MiB) == 0);  // 1 MiB rounds down to nothing
  CHECK(resolve_size(percent(10), 0, 10 * GiB) == GiB);
  CHECK(resolve_size(percent(33), 0, 10 * GiB) == 3378 * MiB);  // 3379.2 MiB, down to 2 MiB
  // No overflow on huge free amounts.
  CHECK(resolve_size(percent(100), 0, UINT64_MAX) == UINT64_MAX - (UINT64_MAX % (2 * MiB)));
  CHECK(resolve_size(percent(50), 0, UINT64_MAX) ==
        (UINT64_MAX / 2) - ((UINT64_MAX / 2) % (2 * MiB)));
}

TEST_CASE("size in bytes is taken as given, rounded down to 2 MiB, whatever is free") {
  CHECK(resolve_size(bytes(4 * GiB), GiB, 2 * GiB) == 4 * GiB);
  CHECK(resolve_size(bytes(3 * MiB), GiB, 16 * GiB) == 2 * MiB);
  CHECK(resolve_size(bytes(MiB), 0, 16 * GiB) == 0);
  CHECK(resolve_size(bytes(4 * GiB + 4096), 0, 16 * GiB) == 4 * GiB);
}

TEST_CASE("sizes are described as written") {
  CHECK(describe_size(automatic) == "auto");
  CHECK(describe_size(percent(40)) == "40%");
  CHECK(describe_size(bytes(16 * GiB)) == "16.0 GiB");
}

TEST_CASE("the swap size must reach min_size") {
  CHECK(choose_swap_size(device(automatic, GiB, 256 * MiB), 8 * GiB, 16 * GiB).bytes == 7 * GiB);
  CHECK(choose_swap_size(device(automatic, GiB, 7 * GiB), 8 * GiB, 16 * GiB).bytes == 7 * GiB);
  CHECK(choose_swap_size(device(bytes(3 * MiB), 0, 0), 8 * GiB, 16 * GiB).bytes == 2 * MiB);

  CHECK(refusal(device(automatic, GiB, 256 * MiB), GiB + 100 * MiB) ==
        "[device.0]: size = auto leaves 100.0 MiB (free VRAM 1.1 GiB minus reserve = 1.0 GiB), "
        "less than min_size = 256.0 MiB; free some VRAM, or lower reserve or min_size");
  CHECK(refusal(device(automatic, 2 * GiB, 0), GiB) ==
        "[device.0]: size = auto leaves 0 B (free VRAM 1.0 GiB minus reserve = 2.0 GiB), less than "
        "min_size = 0 B and too little to swap on; free some VRAM, or lower reserve or min_size");
  CHECK(refusal(device(percent(10), GiB, 256 * MiB), 2 * GiB) ==
        "[device.0]: size = 10% gives 204.0 MiB of 2.0 GiB free VRAM, less than min_size = 256.0 "
        "MiB; free some VRAM, or raise size or lower min_size");
  CHECK(refusal(device(bytes(257 * MiB), 0, 257 * MiB), 8 * GiB) ==
        "[device.0]: size = 257.0 MiB gives 256.0 MiB in whole 2 MiB, less than min_size = 257.0 "
        "MiB; raise size or lower min_size");
}

TEST_CASE("a fixed size above the GPU's total memory is an error naming the total") {
  try {
    choose_swap_size(device(bytes(64 * GiB), GiB, 0), 3891 * MiB, 4 * GiB);
    FAIL("64 GiB accepted on a 4 GiB GPU");
  } catch (const StartupError& error) {
    CHECK(error.exit_status() == exit_code::config);
    CHECK(std::string(error.what()) ==
          "[device.0]: size = 64.0 GiB is more than the GPU's total memory, 4.0 GiB; lower size, "
          "or use size = auto or a percentage");
  }
}

TEST_CASE("a size that does not fit never takes the reserve") {
  // 3.5 GiB asked, 3.8 GiB free, reserve 1 GiB: 2.8 GiB, the reserve left.
  CHECK(choose_swap_size(device(bytes(3584 * MiB), GiB, 256 * MiB), 3891 * MiB, 4 * GiB).bytes ==
        2866 * MiB);
  CHECK(choose_swap_size(device(percent(100), GiB, 0), 8 * GiB, 16 * GiB).bytes == 7 * GiB);
  CHECK(choose_swap_size(device(bytes(3584 * MiB), GiB, 256 * MiB), 3891 * MiB, 4 * GiB).lowered ==
        "[device.0]: size = 3.5 GiB is more than the 3.8 GiB of free VRAM minus reserve = 1.0 GiB: "
        "taking 2.8 GiB; lower size, or reserve to leave less to other programs");
  // Within free VRAM minus the reserve: as asked.
  CHECK(choose_swap_size(device(bytes(2 * GiB), GiB, 0), 8 * GiB, 16 * GiB).bytes == 2 * GiB);
  CHECK(choose_swap_size(device(bytes(2 * GiB), GiB, 0), 8 * GiB, 16 * GiB).lowered.empty());
  // Lowered below min_size: the refusal names the reserve as the cause.
  CHECK(refusal(device(bytes(3 * GiB), 3 * GiB, 2 * GiB), 4 * GiB) ==
        "[device.0]: size = 3.0 GiB gives 1.0 GiB (free VRAM 4.0 GiB minus reserve = 3.0 GiB), "
        "less than min_size = 2.0 GiB; raise size or lower min_size");
}
