// The names systemd gives vramswap's units and the facts read back from it.
#include <catch2/catch.hpp>

#include "systemd/unit_name.hpp"
#include "systemd/unit_state.hpp"

using namespace vramswap::systemd;

TEST_CASE("unit names are derived from paths as systemd-escape --path does") {
  CHECK(escape_path("/dev/vramswap/0") == "dev-vramswap-0");
  CHECK(escape_path("/dev/vramswap/a_b") == "dev-vramswap-a_b");
  // '-' separates path components in unit names, so a '-' inside one is escaped.
  CHECK(escape_path("/dev/vramswap/my-dev") == "dev-vramswap-my\\x2ddev");
  CHECK(escape_path("/dev/vramswap/Ab-9_z-") == "dev-vramswap-Ab\\x2d9_z\\x2d");
  CHECK(escape_path("//dev//x/") == "dev-x");
  CHECK(escape_path("/") == "-");
  CHECK(escape_path("/.hidden/a b") == "\\x2ehidden-a\\x20b");
  CHECK(escape_path("/a/.b") == "a-.b");
  CHECK(escape_path("/a/\xc3\xbc") == "a-\\xc3\\xbc");
}

TEST_CASE("the names of a device's units") {
  CHECK(device_link("my-dev") == "/dev/vramswap/my-dev");
  CHECK(device_unit_name("my-dev") == "dev-vramswap-my\\x2ddev.device");
  CHECK(swap_unit_name("my-dev") == "dev-vramswap-my\\x2ddev.swap");
  // Instance names keep '-': the template uses %i, which does not unescape.
  CHECK(service_unit_name("my-dev") == "vramswap@my-dev.service");
  CHECK(mkswap_unit_name("my-dev") == "vramswap-mkswap@my-dev.service");
  CHECK(swap_unit_name("gpu_0") == "dev-vramswap-gpu_0.swap");
}

TEST_CASE("systemd's journal line about a skipped start names the condition") {
  CHECK(skipped_condition("vramswap@0.service - VRAM swap device 0 was skipped because of an "
                          "unmet condition check (ConditionPathExists=/sys/bus/pci/drivers/"
                          "nvidia).") == "ConditionPathExists=/sys/bus/pci/drivers/nvidia");
  CHECK(skipped_condition("Started vramswap@0.service - VRAM swap device 0.").empty());
  CHECK(skipped_condition("").empty());
}
