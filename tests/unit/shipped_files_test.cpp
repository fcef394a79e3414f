// What the packages ship beside the programs: the default configuration and
// the page that documents it must agree with the configuration parser.
#include <catch2/catch.hpp>
#include <fstream>
#include <regex>
#include <sstream>

#include "config/config.hpp"
#include "generator/units.hpp"

using namespace vramswap;

namespace {

std::string read_source(const std::string& relative) {
  std::ifstream in(std::string(VRAMSWAP_SOURCE_DIR) + "/" + relative);
  REQUIRE(in.good());
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The keys the parser knows, from its own message for an unknown key that
// is close to none of them ("...; the keys are gpu, size, ...").
std::vector<std::string> known_keys() {
  const auto report = config::parse_config_report("[global]\nzzzzzzzzzzzz = 1\n", "test.conf");
  REQUIRE(report.file_errors.size() == 1);
  const std::string& message = report.file_errors[0].message;
  const std::string marker = "the keys are ";
  const size_t at = message.find(marker);
  REQUIRE(at != std::string::npos);
  std::vector<std::string> keys;
  std::stringstream list(message.substr(at + marker.size()));
  for (std::string key; std::getline(list, key, ',');) {
    key.erase(0, key.find_first_not_of(' '));
    keys.push_back(key);
  }
  return keys;
}

}  // namespace

TEST_CASE("vramswap.conf(5) documents every key, with its default") {
  const std::string page = read_source("man/vramswap.conf.5.scd");
  const auto keys = known_keys();
  CHECK(keys.size() >= 14);
  for (const auto& key : keys) {
    INFO("key " << key);
    // "*key =* VALUE", then an indented description that states the default.
    const std::regex entry("\n\\*" + key + " =\\*[^\n]*\n((\t[^\n]*)?\n)*?\tDefault: ");
    CHECK(std::regex_search(page, entry));
  }
}

TEST_CASE("the shipped /etc/vramswap.conf sets up swap on GPU 0 with size = auto") {
  const std::string text = read_source("vramswap.conf");
  const auto report = config::parse_config_report(text, "/etc/vramswap.conf");
  CHECK(report.all_errors().empty());
  REQUIRE(report.devices.size() == 1);
  REQUIRE(report.devices[0].config);
  const config::DeviceConfig& device = *report.devices[0].config;
  CHECK(device.name == "0");
  CHECK(device.gpu.kind == config::GpuKind::index);
  CHECK(device.gpu.index == 0);
  CHECK(device.size.kind == config::SizeKind::automatic);
  // Swap through the generator's units, at the built-in defaults.
  CHECK(device.attach);
  CHECK_FALSE(device.swap);
  CHECK(device.priority == config::default_priority);

  const auto plan = generator::plan_units(report, {"/etc/vramswap.conf", "/unit"});
  CHECK(plan.log.empty());
  REQUIRE(plan.devices.size() == 1);
  CHECK(plan.devices[0].entries.size() == 5);
}

TEST_CASE("every commented-out key of the shipped configuration is valid as written") {
  // Uncommenting a line of the example must not break the file.
  std::string text = read_source("vramswap.conf");
  text = std::regex_replace(text, std::regex("\n#([a-z_]+ = )"), "\n$1");
  const auto report = config::parse_config_report(text, "/etc/vramswap.conf");
  for (const auto& error : report.all_errors())
    FAIL_CHECK(error.message);
  REQUIRE(report.devices.size() == 1);
  CHECK(report.devices[0].config);
}
