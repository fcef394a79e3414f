#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "common/byte_size.hpp"
#include "common/exit_codes.hpp"
#include "common/startup_error.hpp"
#include "config/config.hpp"

using namespace vramswap;
using namespace vramswap::config;

namespace {

constexpr const char* path = "/etc/vramswap.conf";
const ParseOptions eight_cpus{8};

Config parse(const std::string& text) {
  return parse_config(text, path, eight_cpus);
}

DeviceConfig parse_one(const std::string& text) {
  Config config = parse(text);
  REQUIRE(config.devices.size() == 1);
  return config.devices.front();
}

// The message parse_config refuses `text` with (and checks it is a config error).
std::string refusal(const std::string& text) {
  try {
    parse(text);
  } catch (const StartupError& error) {
    CHECK(error.exit_status() == exit_code::config);
    return error.what();
  }
  FAIL("accepted: " << text);
  return {};
}

}  // namespace

TEST_CASE("an empty device section gets the built-in defaults") {
  const DeviceConfig device = parse_one("[device.0]\n");
  CHECK(device.name == "0");
  CHECK(device.line == 1);
  CHECK(device.gpu.kind == GpuKind::index);
  CHECK(device.gpu.index == 0);
  CHECK(device.gpu.text == "0");
  CHECK(device.size.kind == SizeKind::automatic);
  CHECK(device.reserve == GiB);
  CHECK(device.min_size == 256 * MiB);
  CHECK(device.connections == 8);
  CHECK(device.listen.empty());
  CHECK(device.attach);
  CHECK(device.priority == 1000);
  CHECK_FALSE(device.discard);
  CHECK_FALSE(device.swap);
  CHECK_FALSE(device.nbd_index.has_value());
  CHECK_FALSE(device.timeout_s.has_value());  // auto
  CHECK_FALSE(device.verify);
  CHECK(device.socket_group.empty());
  CHECK(device.copy_kernel);
  CHECK(device.busy_poll_us == 50);
  CHECK(device.spill == SpillSpec{SpillKind::automatic, {}});
  CHECK_FALSE(device.release_on_battery);
  CHECK(device.origins.empty());
  CHECK(device.line_of("size") == 0);
}

TEST_CASE("connections default to the online CPUs, 1 to 16") {
  CHECK(default_connections(1) == 1);
  CHECK(default_connections(6) == 6);
  CHECK(default_connections(16) == 16);
  CHECK(default_connections(128) == 16);
  CHECK(parse_config("[device.0]\n", path, ParseOptions{3}).devices[0].connections == 3);
  CHECK(parse_config("[device.0]\n", path, ParseOptions{96}).devices[0].connections == 16);
  // Without a count given, the machine's is used.
  const unsigned here = parse_config("[device.0]\n", path).devices[0].connections;
  CHECK(here >= 1);
  CHECK(here <= 16);
}

TEST_CASE("every key is read from a device section") {
  const DeviceConfig device = parse_one(
      "[device.big-1]\n"
      "gpu = GPU-8c9b2f8e-1d2a-4b3c-9d8e-7f6a5b4c3d2e\n"
      "size = 12G\n"
      "reserve = 512M\n"
      "min_size = 1G\n"
      "connections = 64\n"
      "listen = /run/vramswap/big-1.sock\n"
      "attach = no\n"
      "priority = -1\n"
      "discard = yes\n"
      "swap = no\n"
      "nbd_index = 7\n"
      "timeout = 0\n"
      "verify = on\n"
      "socket_group = vramswap\n"
      "copy_kernel = no\n"
      "busy_poll = 0\n"
      "spill = /srv/big-1.spill\n"
      "on_battery = release\n");
  CHECK(device.name == "big-1");
  CHECK(device.gpu.kind == GpuKind::uuid);
  CHECK(device.gpu.text == "GPU-8c9b2f8e-1d2a-4b3c-9d8e-7f6a5b4c3d2e");
  CHECK(device.gpu.uuid[0] == 0x8c);
  CHECK(device.gpu.uuid[15] == 0x2e);
  CHECK(device.size == SizeSpec{SizeKind::bytes, 12 * GiB, 0});
  CHECK(device.reserve == 512 * MiB);
  CHECK(device.min_size == GiB);
  CHECK(device.connections == 64);
  CHECK(device.listen == "/run/vramswap/big-1.sock");
  CHECK_FALSE(device.attach);
  CHECK(device.priority == -1);
  CHECK(device.discard);
  CHECK_FALSE(device.swap);
  CHECK(device.nbd_index == 7u);
  CHECK(device.timeout_s == 0);
  CHECK(device.verify);
  CHECK(device.socket_group == "vramswap");
  CHECK_FALSE(device.copy_kernel);
  CHECK(device.busy_poll_us == 0);
  CHECK(device.spill == SpillSpec{SpillKind::path, "/srv/big-1.spill"});
  CHECK(device.release_on_battery);
  CHECK(device.origins.size() == 18);
  CHECK(device.line_of("gpu") == 2);
  CHECK(device.line_of("socket_group") == 15);
}

TEST_CASE("keys take their largest and smallest values") {
  CHECK(parse_one("[device.0]\nconnections = 1\n").connections == 1);
  CHECK(parse_one("[device.0]\npriority = 32767\n").priority == 32767);
  CHECK(parse_one("[device.0]\nnbd_index = 0\n").nbd_index == 0u);
  CHECK(parse_one("[device.0]\nnbd_index = 1023\n").nbd_index == 1023u);
  CHECK_FALSE(parse_one("[device.0]\nnbd_index = auto\n").nbd_index.has_value());
  CHECK(parse_one("[device.0]\ntimeout = 86400\n").timeout_s == 86400);
  CHECK(parse_one("[device.0]\nbusy_poll = 10000\n").busy_poll_us == 10000);
  CHECK(
      refusal("[device.0]\nbusy_poll = 10001\n") ==
      "/etc/vramswap.conf:2: busy_poll = \"10001\": out of range; use microseconds from 0 to 10000 "
      "(0: off)");
  CHECK(parse_one("[device.0]\nsize = 1M\nmin_size = 0\n").size.bytes == MiB);
  CHECK(parse_one("[device.0]\nsize = 100%\n").size == SizeSpec{SizeKind::percent_of_free, 0, 100});
  CHECK(parse_one("[device.0]\nsize = 1%\n").size.percent == 1);
  CHECK(parse_one("[device.0]\nsize = AUTO\n").size.kind == SizeKind::automatic);
  CHECK(parse_one("[device.0]\nreserve = 0\n").reserve == 0);
  CHECK(parse_one("[device.0]\nlisten =\n").listen.empty());
  CHECK(parse_one("[device.0]\nsocket_group =\n").socket_group.empty());
  CHECK(parse_one("[device.0]\nswap = yes\n").swap);
  CHECK(parse_one("[device.0]\nattach = no\nlisten = /run/a.sock\n").listen == "/run/a.sock");
}

TEST_CASE("every spelling of a boolean") {
  const auto [spelling, value] = GENERATE(table<const char*, bool>({
      {"yes", true},
      {"YES", true},
      {"true", true},
      {"True", true},
      {"on", true},
      {"ON", true},
      {"1", true},
      {"no", false},
      {"No", false},
      {"false", false},
      {"FALSE", false},
      {"off", false},
      {"Off", false},
      {"0", false},
  }));
  INFO(spelling);
  const std::string v = spelling;
  const DeviceConfig device = parse_one("[device.0]\nlisten = /run/a.sock\nattach = " + v +
                                        "\ndiscard = " + v + "\nverify = " + v + "\n");
  CHECK(device.attach == value);
  CHECK(device.discard == value);
  CHECK(device.verify == value);
  CHECK(parse_one("[device.0]\nswap = " + v + "\n").swap == value);
}

TEST_CASE("device sections inherit what [global] sets and override it") {
  const Config config = parse(
      "[device.a]\n"
      "size = 50%\n"
      "listen = /run/a.sock\n"
      "[global]\n"  // after a device: still applies to it
      "size = 8G\n"
      "priority = 5\n"
      "attach = no\n"
      "socket_group = swapusers\n"
      "[device.b]\n"
      "listen = /run/b.sock\n"
      "[device.c]\n"
      "attach = yes\n");
  REQUIRE(config.devices.size() == 3);
  const DeviceConfig& a = config.devices[0];
  const DeviceConfig& b = config.devices[1];
  const DeviceConfig& c = config.devices[2];
  CHECK(a.name == "a");
  CHECK(b.name == "b");
  CHECK(c.name == "c");
  CHECK(a.size == SizeSpec{SizeKind::percent_of_free, 0, 50});
  CHECK(b.size == SizeSpec{SizeKind::bytes, 8 * GiB, 0});
  CHECK(c.size.bytes == 8 * GiB);
  CHECK(a.priority == 5);
  CHECK(c.priority == 5);
  CHECK(b.socket_group == "swapusers");
  CHECK(c.attach);
  CHECK(a.origins.at("size") == KeyOrigin{2, false});
  CHECK(b.origins.at("size") == KeyOrigin{5, true});
  CHECK(b.origins.at("listen") == KeyOrigin{10, false});
  CHECK(c.origins.at("attach") == KeyOrigin{12, false});
  CHECK(c.line == 11);
}

TEST_CASE("an empty file configures no device") {
  CHECK(parse("").devices.empty());
  CHECK(parse("[global]\nsize = 4G\n").devices.empty());
  CHECK(parse("\n\n; nothing\n").devices.empty());
}

TEST_CASE("comments, blank lines and whitespace") {
  const DeviceConfig device = parse_one(
      "# vramswap configuration\n"
      "; also a comment\n"
      "\n"
      "   \t\n"
      "  [device.0]   ; the laptop's GPU\n"
      "\tsize=4G\n"
      "  priority   =   7   ; above zram\n"
      "gpu: 01:00.0\n"
      "   # indented comment\n"
      "verify = yes ; an inline comment\n");
  CHECK(device.verify);
  CHECK(device.size.bytes == 4 * GiB);
  CHECK(device.priority == 7);
  CHECK(device.gpu.kind == GpuKind::pci_bus_id);
  CHECK(device.gpu.pci_bus_id == "0000:01:00.0");
  CHECK(device.line_of("priority") == 7);
  CHECK(device.line == 5);
  // ";not..." without a space before it is part of the value, which is then wrong.
  CHECK(refusal("[device.0]\nverify = yes;x\n") ==
        "/etc/vramswap.conf:2: verify = \"yes;x\": not yes or no; use yes or no (true/false, "
        "on/off and 1/0 work too)");
}

TEST_CASE("indented lines do not continue the previous value") {
  // inih would glue an indented line onto the previous value; here it is a
  // line of its own.
  const DeviceConfig device = parse_one("[device.0]\nsize = 4G\n    reserve = 2G\n");
  CHECK(device.size.bytes == 4 * GiB);
  CHECK(device.reserve == 2 * GiB);
  CHECK(refusal("[device.0]\nsize = 4G\n    and more\n") ==
        "/etc/vramswap.conf:3: \"and more\" is not a key = value line, a [section] or a comment; "
        "fix or remove it");
}

TEST_CASE("CRLF line ends, a UTF-8 byte order mark and a missing last newline") {
  const Config config = parse(
      "\xEF\xBB\xBF[global]\r\n"
      "size = 2G\r\n"
      "\r\n"
      "[device.0]\r\n"
      "priority = 3\r\n"
      "[device.1]\r\n"
      "listen = /run/one.sock");
  REQUIRE(config.devices.size() == 2);
  CHECK(config.devices[0].size.bytes == 2 * GiB);
  CHECK(config.devices[0].priority == 3);
  CHECK(config.devices[0].line_of("priority") == 5);
  CHECK(config.devices[1].listen == "/run/one.sock");
  CHECK(config.devices[1].line_of("listen") == 7);
}

TEST_CASE("lines up to the length limit are read whole") {
  const std::string path_key = "listen = /run/" + std::string(102, 'x');  // a 107-byte path
  std::string line = path_key + " ;";
  line += std::string(size_t(max_line_length) - line.size(), 'c');
  REQUIRE(line.size() == size_t(max_line_length));
  const DeviceConfig device = parse_one("[device.0]\n" + line + "\r\nsize = 2G\n");
  CHECK(device.listen == "/run/" + std::string(102, 'x'));
  CHECK(device.size.bytes == 2 * GiB);
  CHECK(device.line_of("size") == 3);

  const std::string comment = "# " + std::string(size_t(max_line_length) - 2, 'c');
  CHECK(parse_one(comment + "\n[device.0]\n").line == 2);
}

TEST_CASE("device names: letters, digits, '_' and '-', 1 to 32") {
  CHECK(parse_one("[device.Ab_9-z]\n").name == "Ab_9-z");
  const std::string longest(max_device_name_length, 'n');
  CHECK(parse_one("[device." + longest + "]\n").name == longest);
  CHECK(parse_one("[ device.0 ]\n").name == "0");
}

TEST_CASE("devices keep the order of the file") {
  const Config config = parse("[device.z]\n[device.a]\n[device.m]\n");
  REQUIRE(config.devices.size() == 3);
  CHECK(config.devices[0].name == "z");
  CHECK(config.devices[1].name == "a");
  CHECK(config.devices[2].name == "m");
  CHECK(&find_device(config, "a") == &config.devices[1]);
}

TEST_CASE("spill and on_battery take their spellings and refuse the rest") {
  CHECK(parse_one("[device.0]\nspill = auto\n").spill.kind == SpillKind::automatic);
  CHECK(parse_one("[device.0]\nspill = no\n").spill.kind == SpillKind::off);
  CHECK(parse_one("[device.0]\nspill = off\n").spill.kind == SpillKind::off);
  CHECK(parse_one("[global]\nspill = no\n[device.0]\n").spill.kind == SpillKind::off);
  CHECK(parse_one("[device.0]\nspill = /var/tmp/0.spill\n").spill.path == "/var/tmp/0.spill");
  CHECK(refusal("[device.0]\nspill = yes\n") ==
        "/etc/vramswap.conf:2: spill = \"yes\": not auto, no or an absolute path; use auto "
        "(/var/lib/vramswap/NAME.spill), no, or a file such as /var/lib/vramswap/NAME.spill");
  CHECK(refusal("[device.0]\nspill = spill/0\n").find("not auto, no or an absolute path") !=
        std::string::npos);
  CHECK(refusal("[device.0]\nspill = /var/lib/vramswap/\n") ==
        "/etc/vramswap.conf:2: spill = \"/var/lib/vramswap/\": names a directory; name the "
        "spill file (/var/lib/vramswap/NAME.spill)");
  CHECK(parse_one("[device.0]\non_battery = release\n").release_on_battery);
  CHECK_FALSE(parse_one("[device.0]\non_battery = keep\n").release_on_battery);
  CHECK(refusal("[device.0]\non_battery = yes\n") ==
        "/etc/vramswap.conf:2: on_battery = \"yes\": not release or keep; use release (give "
        "the VRAM back while on battery) or keep");
}

// --- what a broken file is told ---------------------------------------------

TEST_CASE("unknown keys, with a suggestion for near misses") {
  CHECK(refusal("[device.0]\nsise = 4G\n") ==
        "/etc/vramswap.conf:2: unknown key \"sise\" in [device.0]; did you mean size?");
  CHECK(refusal("[global]\nminsize = 4G\n") ==
        "/etc/vramswap.conf:2: unknown key \"minsize\" in [global]; did you mean min_size?");
  CHECK(refusal("[global]\nfoo = 1\n") ==
        "/etc/vramswap.conf:2: unknown key \"foo\" in [global]; the keys are gpu, size, reserve, "
        "min_size, connections, listen, attach, priority, discard, swap, nbd_index, timeout, "
        "verify, socket_group, copy_kernel, busy_poll, spill, on_battery");
  // Keys are lower case.
  CHECK(refusal("[device.0]\nSize = 4G\n") ==
        "/etc/vramswap.conf:2: unknown key \"Size\" in [device.0]; did you mean size?");
}

TEST_CASE("unknown sections") {
  CHECK(
      refusal("[devices.0]\n") ==
      "/etc/vramswap.conf:1: unknown section [devices.0]; sections are [global] and [device.NAME]");
  CHECK(refusal("[Global]\n") ==
        "/etc/vramswap.conf:1: unknown section [Global]; sections are [global] and [device.NAME]");
  CHECK(refusal("[device]\n") ==
        "/etc/vramswap.conf:1: unknown section [device]; sections are [global] and [device.NAME]");
  CHECK(refusal("[]\n") ==
        "/etc/vramswap.conf:1: unknown section []; sections are [global] and [device.NAME]");
}

TEST_CASE("a key before any section") {
  CHECK(refusal("size = 4G\n[device.0]\n") ==
        "/etc/vramswap.conf:1: size = \"4G\" is outside any section; put it under [global] or a "
        "[device.NAME] section");
}

TEST_CASE("duplicate keys and sections") {
  CHECK(refusal("[device.0]\nsize = 4G\nsize = 8G\n") ==
        "/etc/vramswap.conf:3: size is set twice in [device.0] (first at line 2); keep one");
  CHECK(
      refusal("[device.0]\n[device.1]\n[device.0]\n") ==
      "/etc/vramswap.conf:3: duplicate section [device.0] (first at line 1); merge them into one");
  CHECK(refusal("[global]\n[device.0]\n[global]\n") ==
        "/etc/vramswap.conf:3: duplicate section [global] (first at line 1); merge them into one");
  // The same key in a device and in [global] is inheritance, not a duplicate.
  CHECK(parse_one("[global]\nsize = 4G\n[device.0]\nsize = 8G\n").size.bytes == 8 * GiB);
}

TEST_CASE("bad device names") {
  const auto refused_name = [](const std::string& name) {
    return "/etc/vramswap.conf:1: invalid device name \"" + name + "\" in [device." + name +
           "]; use 1 to 32 letters, digits, '_' or '-'";
  };
  for (const std::string& name :
       std::vector<std::string>{"my gpu", "", "a/b", "a.b", "caf\xC3\xA9", "x@y", "a\\b",
                                std::string(max_device_name_length + 1, 'n')}) {
    INFO(name);
    CHECK(refusal("[device." + name + "]\n") == refused_name(name));
  }
}

TEST_CASE("bad values name the key and say what to write") {
  const auto [line, message] = GENERATE(table<const char*, const char*>({
      {"size = lots",
       "size = \"lots\": not a size; use bytes with a K/M/G/T suffix (16G), a percentage of free "
       "VRAM (50%), or auto"},
      {"size =",
       "size = \"\": not a size; use bytes with a K/M/G/T suffix (16G), a percentage of free VRAM "
       "(50%), or auto"},
      {"size = 4096",
       "size = \"4096\": 4096 bytes is under 1 MiB, surely a mistake; give a unit (4096M, 16G)"},
      {"size = 1023K",
       "size = \"1023K\": 1047552 bytes is under 1 MiB, surely a mistake; give a unit (4096M, "
       "16G)"},
      {"size = 0%", "size = \"0%\": out of range; use a percentage of free VRAM from 1% to 100%"},
      {"size = 101%",
       "size = \"101%\": out of range; use a percentage of free VRAM from 1% to 100%"},
      {"size = 12.5%",
       "size = \"12.5%\": not a percentage; use a whole percentage of free VRAM from 1% to 100%"},
      {"size = 99999999999999999999999%",
       "size = \"99999999999999999999999%\": out of range; use a percentage of free VRAM from 1% "
       "to 100%"},
      {"size = 18446744073709551616",
       "size = \"18446744073709551616\": not a size; use bytes with a K/M/G/T suffix (16G), a "
       "percentage of free VRAM (50%), or auto"},
      {"size = 16777216T",
       "size = \"16777216T\": not a size; use bytes with a K/M/G/T suffix (16G), a percentage of "
       "free VRAM (50%), or auto"},
      {"size = -4G",
       "size = \"-4G\": not a size; use bytes with a K/M/G/T suffix (16G), a percentage of free "
       "VRAM (50%), or auto"},
      {"reserve = lots", "reserve = \"lots\": not a size; use bytes with a K/M/G/T suffix (1G)"},
      {"reserve = 20%", "reserve = \"20%\": not a size; use bytes with a K/M/G/T suffix (1G)"},
      {"min_size = -1", "min_size = \"-1\": not a size; use bytes with a K/M/G/T suffix (256M)"},
      {"min_size = 99999999T",
       "min_size = \"99999999T\": not a size; use bytes with a K/M/G/T suffix (256M)"},
      {"connections = 0", "connections = \"0\": out of range; use 1 to 64"},
      {"connections = 65", "connections = \"65\": out of range; use 1 to 64"},
      {"connections = -3", "connections = \"-3\": out of range; use 1 to 64"},
      {"connections = four", "connections = \"four\": not a whole number; use 1 to 64"},
      {"connections = 4.0", "connections = \"4.0\": not a whole number; use 1 to 64"},
      {"connections = 99999999999999999999999",
       "connections = \"99999999999999999999999\": out of range; use 1 to 64"},
      {"priority = -2",
       "priority = \"-2\": out of range; use -1 to 32767 (higher is used first; -1 lets the kernel "
       "choose)"},
      {"priority = 32768",
       "priority = \"32768\": out of range; use -1 to 32767 (higher is used first; -1 lets the "
       "kernel choose)"},
      {"priority = high",
       "priority = \"high\": not a whole number; use -1 to 32767 (higher is used first; -1 lets "
       "the "
       "kernel choose)"},
      {"timeout = -1",
       "timeout = \"-1\": out of range; use seconds from 1 to 86400, 0 for no timeout, or auto"},
      {"timeout = 86401",
       "timeout = \"86401\": out of range; use seconds from 1 to 86400, 0 for no timeout, or auto"},
      {"timeout = 30s",
       "timeout = \"30s\": not a whole number; use seconds from 1 to 86400, 0 for no timeout, or "
       "auto"},
      {"nbd_index = 1024",
       "nbd_index = \"1024\": out of range; use 0 to 1023, or auto to let the kernel pick"},
      {"nbd_index = nbd3",
       "nbd_index = \"nbd3\": not a whole number; use 0 to 1023, or auto to let the kernel pick"},
      {"attach = maybe",
       "attach = \"maybe\": not yes or no; use yes or no (true/false, on/off and 1/0 work too)"},
      {"discard = 2",
       "discard = \"2\": not yes or no; use yes or no (true/false, on/off and 1/0 work too)"},
      {"swap = y",
       "swap = \"y\": not yes or no; use yes or no (true/false, on/off and 1/0 work too)"},
      {"verify =",
       "verify = \"\": not yes or no; use yes or no (true/false, on/off and 1/0 work too)"},
      {"gpu = first",
       "gpu = \"first\": not a GPU; use a CUDA index (0), a UUID as nvidia-smi -L prints it "
       "(GPU-...) or a PCI bus id (0000:01:00.0)"},
      {"gpu = -1",
       "gpu = \"-1\": not a GPU; use a CUDA index (0), a UUID as nvidia-smi -L prints it (GPU-...) "
       "or a PCI bus id (0000:01:00.0)"},
      {"gpu = 99999999999",
       "gpu = \"99999999999\": GPU index too large; use the CUDA index (0, 1, ...)"},
      {"gpu = GPU-1234",
       "gpu = \"GPU-1234\": not a GPU UUID; copy it from nvidia-smi -L "
       "(GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"},
      {"gpu = 0000:01:00",
       "gpu = \"0000:01:00\": not a PCI bus id; use domain:bus:device.function as lspci -D prints "
       "it (0000:01:00.0)"},
      {"listen = vramswap.sock",
       "listen = \"vramswap.sock\": not an absolute path; use one like /run/vramswap/NAME.sock"},
      {"listen = /run/vramswap/",
       "listen = \"/run/vramswap/\": names a directory; name the socket file "
       "(/run/vramswap/NAME.sock)"},
      {"socket_group = swap users",
       "socket_group = \"swap users\": not a group name; use the name of an existing group "
       "(vramswap)"},
      {"socket_group = 1000",
       "socket_group = \"1000\": not a group name; use the name of an existing group (vramswap)"},
  }));
  INFO(line);
  CHECK(refusal(std::string("[device.0]\n") + line + "\n") ==
        std::string("/etc/vramswap.conf:2: ") + message);
}

TEST_CASE("quoted values") {
  CHECK(refusal("[device.0]\nsize = \"4G\"\n") ==
        "/etc/vramswap.conf:2: size = \"4G\": values take no quotes; remove them");
  CHECK(refusal("[device.0]\nlisten = '/run/a b.sock'\n") ==
        "/etc/vramswap.conf:2: listen = '/run/a b.sock': values take no quotes; remove them");
  CHECK(refusal("[device.0]\nlisten = \"\"\n") ==
        "/etc/vramswap.conf:2: listen = \"\": values take no quotes; remove them");
  // A quote inside a value is just a character.
  CHECK(parse_one("[device.0]\nlisten = /run/a\"b.sock\n").listen == "/run/a\"b.sock");
}

TEST_CASE("a socket path must fit a Unix socket address") {
  const std::string fits = "/run/" + std::string(102, 's');
  REQUIRE(fits.size() == max_socket_path_length);
  CHECK(parse_one("[device.0]\nlisten = " + fits + "\n").listen == fits);
  const std::string too_long = fits + "s";
  CHECK(refusal("[device.0]\nlisten = " + too_long + "\n") ==
        "/etc/vramswap.conf:2: listen = \"" + too_long +
            "\": 108 bytes, more than the 107 a Unix socket address holds; use a shorter path");
}

TEST_CASE("over-long lines are refused, not split") {
  const std::string line = "size = 4G ;" + std::string(size_t(max_line_length) - 10, 'c');
  REQUIRE(line.size() == size_t(max_line_length) + 1);
  CHECK(refusal("[device.0]\n" + line + "\n") ==
        "/etc/vramswap.conf:2: line is 198 characters long, over the limit of 197; shorten it");
  CHECK(refusal("[device.0]\n" + std::string(5000, 'x') + "\n") ==
        "/etc/vramswap.conf:2: line is 5000 characters long, over the limit of 197; shorten it");
}

TEST_CASE("lines that are not INI") {
  CHECK(refusal("[device.0]\njust words\n") ==
        "/etc/vramswap.conf:2: \"just words\" is not a key = value line, a [section] or a comment; "
        "fix or remove it");
  CHECK(refusal("[device.0\nsize = 4G\n") ==
        "/etc/vramswap.conf:1: section header \"[device.0\" has no closing ']'; write it as "
        "[global] or [device.NAME]");
  CHECK(
      refusal("[device.0] # main GPU\n") ==
      "/etc/vramswap.conf:1: unexpected text \"# main GPU\" after [device.0]; comments start with "
      "';' (or a line of their own starting with '#')");
  CHECK(refusal("[device.0]\n= 4G\n") ==
        "/etc/vramswap.conf:2: \"= 4G\" has no key before '='; write key = value");
  CHECK(refusal("[device.0]\nsize = 4\x01G\n") ==
        "/etc/vramswap.conf:2: line contains the control character 0x01; remove it (is this a text "
        "file?)");
  CHECK(refusal(std::string("[device.0]\nsize = 4", 19) + '\0' + "G\n") ==
        "/etc/vramswap.conf:2: line contains the control character 0x00; remove it (is this a text "
        "file?)");
  CHECK(refusal("[device.0]\rsize = 4G\r") ==
        "/etc/vramswap.conf:1: line contains the control character 0x0d; remove it (is this a text "
        "file?)");
}

TEST_CASE("keys that only a device section may set") {
  CHECK(
      refusal("[global]\nlisten = /run/vramswap.sock\n[device.0]\n") ==
      "/etc/vramswap.conf:2: listen cannot be in [global]: each device needs its own socket; move "
      "it to a [device.NAME] section");
  CHECK(refusal("[global]\nnbd_index = 0\n") ==
        "/etc/vramswap.conf:2: nbd_index cannot be in [global]: each device needs its own nbd "
        "device; move it to a [device.NAME] section");
}

TEST_CASE("settings that contradict each other") {
  CHECK(
      refusal("[device.0]\nattach = no\n") ==
      "/etc/vramswap.conf:2: [device.0]: attach = no and no listen socket: the daemon would serve "
      "nothing; set listen = /run/vramswap/0.sock or attach = yes");
  CHECK(refusal("[global]\nattach = no\n[device.gpu1]\n") ==
        "/etc/vramswap.conf:2: [device.gpu1]: attach = no (set in [global]) and no listen socket: "
        "the daemon would serve nothing; set listen = /run/vramswap/gpu1.sock or attach = yes");
  CHECK(refusal("[device.0]\nattach = no\nlisten = /run/a.sock\nswap = yes\n") ==
        "/etc/vramswap.conf:4: [device.0]: swap = yes cannot work with attach = no: swap goes on "
        "the kernel's nbd device; set attach = yes or swap = no");
  CHECK(refusal("[global]\nswap = yes\n[device.0]\nattach = no\nlisten = /run/a.sock\n") ==
        "/etc/vramswap.conf:2: [device.0]: swap = yes (set in [global]) cannot work with attach = "
        "no: swap goes on the kernel's nbd device; set attach = yes or swap = no");
  CHECK(refusal("[device.0]\nsize = 128M\n") ==
        "/etc/vramswap.conf:2: [device.0]: size = 128.0 MiB is below min_size = 256.0 MiB; raise "
        "size or lower min_size");
  CHECK(refusal("[global]\nmin_size = 8G\n[device.0]\nsize = 4G\n") ==
        "/etc/vramswap.conf:4: [device.0]: size = 4.0 GiB is below min_size = 8.0 GiB; raise size "
        "or lower min_size");
  // A value that failed is not checked against the others as well.
  const ConfigReport report =
      parse_config_report("[device.0]\nattach = no\nlisten = relative\n", path, eight_cpus);
  REQUIRE(report.devices.size() == 1);
  REQUIRE(report.devices[0].errors.size() == 1);
  CHECK(report.devices[0].errors[0].line == 3);
}

TEST_CASE("two devices cannot share a socket or an nbd index") {
  CHECK(refusal("[device.a]\nlisten = /run/x.sock\n[device.b]\nlisten = /run/x.sock\n") ==
        "/etc/vramswap.conf:4: listen = \"/run/x.sock\" is also the socket of [device.a] (line 2); "
        "give each device its own socket");
  CHECK(refusal("[device.a]\nnbd_index = 3\n[device.b]\nnbd_index = 3\n") ==
        "/etc/vramswap.conf:4: nbd_index = 3 is also used by [device.a] (line 2); pick another or "
        "use auto");
  CHECK(parse("[device.a]\nnbd_index = 3\n[device.b]\nnbd_index = 4\n").devices.size() == 2);
}

TEST_CASE("a device that is not configured") {
  const Config config = parse("[device.0]\n[device.big]\n");
  try {
    find_device(config, "x");
    FAIL("found a device that is not there");
  } catch (const StartupError& error) {
    CHECK(error.exit_status() == exit_code::config);
    CHECK(std::string(error.what()) ==
          "/etc/vramswap.conf: no [device.x] section; configured devices: 0, big; add [device.x] "
          "or use one of those names (vramswap@NAME)");
  }
  try {
    find_device(parse("[global]\n"), "0");
    FAIL("found a device that is not there");
  } catch (const StartupError& error) {
    CHECK(std::string(error.what()) ==
          "/etc/vramswap.conf: no [device.0] section, and no devices are configured; add a "
          "[device.0] section (see vramswap.conf(5))");
  }
}

// --- per-device results, for the generator ------------------------------------

TEST_CASE("an error in one device section leaves the others usable") {
  const ConfigReport report = parse_config_report(
      "[global]\nsize = 4G\n"
      "[device.a]\nsize = lots\npriority = high\n"
      "[device.b]\npriority = 9\n"
      "[device.c]\njust words\n",
      path, eight_cpus);
  CHECK_FALSE(report.ok());
  CHECK(report.file_errors.empty());
  REQUIRE(report.devices.size() == 3);
  const DeviceResult& a = report.devices[0];
  const DeviceResult& b = report.devices[1];
  const DeviceResult& c = report.devices[2];
  CHECK(a.name == "a");
  CHECK(a.line == 3);
  CHECK_FALSE(a.config.has_value());
  REQUIRE(a.errors.size() == 2);
  CHECK(a.errors[0].line == 4);
  CHECK(a.errors[1].line == 5);
  REQUIRE(b.config.has_value());
  CHECK(b.errors.empty());
  CHECK(b.config->priority == 9);
  CHECK(b.config->size.bytes == 4 * GiB);
  CHECK_FALSE(c.config.has_value());
  REQUIRE(c.errors.size() == 1);
  CHECK(c.errors[0].message ==
        "/etc/vramswap.conf:9: \"just words\" is not a key = value line, a [section] or a "
        "comment; fix or remove it");

  CHECK(select_device(report, "b").priority == 9);
  try {
    select_device(report, "a");
    FAIL("a broken device was selected");
  } catch (const StartupError& error) {
    CHECK(error.exit_status() == exit_code::config);
    CHECK(std::string(error.what()) == a.errors[0].message);
  }
  // The strict path stops at the first error in the file.
  CHECK(refusal("[global]\nsize = 4G\n[device.a]\nsize = lots\n[device.b]\n") ==
        a.errors[0].message);
  const auto all = report.all_errors();
  REQUIRE(all.size() == 3);
  CHECK(all[0].line == 4);
  CHECK(all[2].line == 9);
  CHECK(report.errors_for(b).empty());
  CHECK(report.find("c") == &c);
  CHECK(report.find("d") == nullptr);
}

TEST_CASE("an error outside the device sections breaks every device") {
  for (const std::string& broken : {
           std::string("[global]\nsize = lots\n"),  // [global] feeds every device
           std::string("size = 4G\n"),              // meant for [global]?
           std::string("[gloabl]\nsize = 4G\n"),    // misspelt [global]?
           std::string("[device.a b]\n"),           // cannot be a unit
           std::string("[global]\nlisten = /run/x.sock\n"),
           std::string("[global]\ngarbage\n"),
           std::string("[global\n"),
           std::string("[global]\n") + std::string(300, 'x') + "\n",
       }) {
    INFO(broken);
    const ConfigReport report =
        parse_config_report(broken + "[device.a]\n[device.b]\nsize = 2G\n", path, eight_cpus);
    CHECK(report.file_errors.size() == 1);
    REQUIRE(report.devices.size() == 2);
    for (const auto& device : report.devices) {
      CHECK_FALSE(device.config.has_value());
      CHECK(device.errors.empty());
      CHECK(report.errors_for(device).size() == 1);
    }
    try {
      select_device(report, "b");
      FAIL("a device was selected from a broken file");
    } catch (const StartupError& error) {
      CHECK(std::string(error.what()) == report.file_errors[0].message);
    }
  }
}

TEST_CASE("keys of a broken section header belong to no device") {
  // The over-long line may have been a header: what follows is not given
  // to [device.a].
  const ConfigReport report = parse_config_report(
      "[device.a]\n[" + std::string(300, 'x') + "]\nsize = lots\n[device.b]\n", path, eight_cpus);
  REQUIRE(report.file_errors.size() == 1);
  CHECK(report.file_errors[0].line == 2);
  REQUIRE(report.devices.size() == 2);
  CHECK(report.devices[0].errors.empty());
  // An over-long key line inside a device section is that device's problem.
  const ConfigReport local = parse_config_report(
      "[device.a]\nsize = " + std::string(300, '9') + "\n[device.b]\n", path, eight_cpus);
  CHECK(local.file_errors.empty());
  CHECK(local.devices[0].errors.size() == 1);
  CHECK(local.devices[1].config.has_value());
}

TEST_CASE("a duplicate device section breaks that device only") {
  const ConfigReport report = parse_config_report(
      "[device.a]\nsize = 2G\n[device.b]\n[device.a]\npriority = 4\n", path, eight_cpus);
  CHECK(report.file_errors.empty());
  REQUIRE(report.devices.size() == 2);
  REQUIRE(report.devices[0].errors.size() == 1);
  CHECK(report.devices[0].errors[0].line == 4);
  CHECK(report.devices[1].config.has_value());
}

TEST_CASE("timeout = auto waits forever on one connection and 30 s on several") {
  using vramswap::config::effective_timeout_s;
  auto device = [](const std::string& text) {
    return vramswap::config::parse_config(text, "/etc/vramswap.conf").devices.at(0);
  };
  CHECK(effective_timeout_s(device("[device.0]\nconnections = 1\n")) == 0);
  CHECK(effective_timeout_s(device("[device.0]\nconnections = 4\n")) == 30);
  CHECK(effective_timeout_s(device("[device.0]\nconnections = 4\ntimeout = auto\n")) == 30);
  CHECK(effective_timeout_s(device("[device.0]\nconnections = 4\ntimeout = 0\n")) == 0);
  CHECK(effective_timeout_s(device("[device.0]\nconnections = 1\ntimeout = 120\n")) == 120);
  CHECK(effective_timeout_s(device("[global]\ntimeout = 45\n[device.0]\n")) == 45);
}

TEST_CASE("an error quoting bytes that are not UTF-8 escapes them, and keeps UTF-8 as it is") {
  const std::string latin1 = refusal("[device.0]\nsiz\xE9 = 2G\n");
  CHECK_THAT(latin1, Catch::Matchers::Contains("/etc/vramswap.conf:2: unknown key \"siz\\xE9\""));
  CHECK(latin1.find('\xE9') == std::string::npos);
  const std::string value = refusal("[device.0]\nsize = 2\xFFG\n");
  CHECK_THAT(value, Catch::Matchers::Contains("size = \"2\\xFFG\""));
  CHECK(value.find('\xFF') == std::string::npos);
  const std::string utf8 = refusal(
      "[device.0]\ngr\xC3\xB6\xC3\x9F"
      "e = 2G\n");
  CHECK_THAT(utf8, Catch::Matchers::Contains("\"gr\xC3\xB6\xC3\x9F"
                                             "e\""));
}

TEST_CASE("key_place points at the line that set a key, or at the section for a default") {
  const ConfigReport report =
      parse_config_texts({{"/etc/vramswap.conf",
                           "[global]\nreserve = 2G\n\n[device.0]\nlisten = /run/vramswap/0.sock\n"},
                          {"/etc/vramswap.conf.d/gpu.conf", "[device.0]\ngpu = 1\n"}},
                         eight_cpus);
  REQUIRE(report.ok());
  const DeviceConfig device = select_device(report, "0");
  CHECK(key_place(report, device, "listen") == "/etc/vramswap.conf:5");
  CHECK(key_place(report, device, "reserve") == "/etc/vramswap.conf:2");  // from [global]
  CHECK(key_place(report, device, "gpu") == "/etc/vramswap.conf.d/gpu.conf:2");
  CHECK(key_place(report, device, "connections") == "/etc/vramswap.conf:4");  // the header
}
