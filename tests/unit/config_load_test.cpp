#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/exit_codes.hpp"
#include "common/startup_error.hpp"
#include "config/config.hpp"
#include "config/trust.hpp"

using namespace vramswap;
using namespace vramswap::config;
namespace fs = std::filesystem;

namespace {

constexpr uid_t nobody = 65534;

// A fresh directory under the system's temporary directory (root-owned and
// sticky, so trusted), removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "vramswap-config-test.XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  std::string file(const std::string& name, const std::string& text, mode_t mode = 0644) const {
    const std::string path = (path_ / name).string();
    std::ofstream(path) << text;
    REQUIRE(::chmod(path.c_str(), mode) == 0);
    return path;
  }
  std::string dir(const std::string& name, mode_t mode = 0755) const {
    const std::string path = (path_ / name).string();
    REQUIRE(::mkdir(path.c_str(), mode) == 0);
    REQUIRE(::chmod(path.c_str(), mode) == 0);  // past the umask
    return path;
  }
  std::string path() const { return path_.string(); }

 private:
  fs::path path_;
};

// Files made by a test belong to whoever runs it; the trust checks need them
// to belong to root, and chown to make them belong to someone else. These
// tests are tagged [root]; fakeroot is enough.
void require_root() {
  if (::geteuid() != 0) FAIL("this test needs root (it chowns files); run the unit tests as root");
}

void give_to_nobody(const std::string& path) {
  REQUIRE(::lchown(path.c_str(), nobody, nobody) == 0);
}

// The refusal of check_config_file_trusted(path), which must be a permission
// error.
std::string distrust(const std::string& path) {
  try {
    check_config_file_trusted(path);
  } catch (const StartupError& error) {
    CHECK(error.exit_status() == exit_code::no_permission);
    return error.what();
  }
  FAIL("trusted: " << path);
  return {};
}

template <class Call>
std::pair<int, std::string> startup_error(Call call) {
  try {
    call();
  } catch (const StartupError& error) {
    return {error.exit_status(), error.what()};
  }
  FAIL("no error");
  return {};
}

const std::string device_file = "[global]\nsize = 2G\n[device.0]\n[device.1]\npriority = 5\n";

}  // namespace

TEST_CASE("a configuration file is read and parsed") {
  TempDir dir;
  const std::string path = dir.file("vramswap.conf", device_file);
  const Config config = load_config(path, ParseOptions{2});
  CHECK(config.path == path);
  REQUIRE(config.devices.size() == 2);
  CHECK(config.devices[1].priority == 5);
  CHECK(config.devices[0].connections == 2);

  const ConfigReport report = load_config_report(path);
  CHECK(report.ok());
  CHECK(report.path == path);
  CHECK(report.devices.size() == 2);
}

TEST_CASE("content errors in a loaded file name the file and line") {
  TempDir dir;
  const std::string path = dir.file("vramswap.conf", "[device.0]\nsize = lots\n");
  const auto [status, message] = startup_error([&] { load_config(path); });
  CHECK(status == exit_code::config);
  CHECK(message.starts_with(path + ":2: size = \"lots\": not a size; "));
  CHECK(load_config_report(path).devices[0].errors.size() == 1);
}

TEST_CASE("a missing configuration file") {
  TempDir dir;
  const std::string path = dir.path() + "/absent.conf";
  const std::string expected =
      path + ": no such file; create it (see vramswap.conf(5)) or name the right one with --config";
  CHECK(startup_error([&] { load_config(path); }) == std::pair{exit_code::config, expected});
  CHECK(startup_error([&] { load_config_report(path); }) == std::pair{exit_code::config, expected});
  CHECK(startup_error([&] { check_config_file_trusted(path); }) ==
        std::pair{exit_code::config, expected});
  CHECK(startup_error([&] { load_device_config(path, "0"); }) ==
        std::pair{exit_code::config, expected});
}

TEST_CASE("a configuration path that is not a regular file") {
  TempDir dir;
  const std::string fifo = dir.path() + "/fifo.conf";
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  const std::string directory = dir.dir("conf.d");
  // Neither hangs on the FIFO nor reads the directory.
  CHECK(startup_error([&] { load_config(fifo); }) ==
        std::pair{exit_code::config,
                  fifo + ": not a regular file; name the configuration file with --config"});
  CHECK(startup_error([&] { load_config(directory); }) ==
        std::pair{exit_code::config,
                  directory + ": not a regular file; name the configuration file with --config"});
  const std::string under_file = dir.file("plain", "") + "/vramswap.conf";
  CHECK(startup_error([&] { load_config(under_file); }) ==
        std::pair{exit_code::config, under_file +
                                         ": cannot open: Not a directory; check the path given "
                                         "with --config"});
}

TEST_CASE("a file far too large to be a configuration") {
  TempDir dir;
  const std::string path = dir.file("huge.conf", "");
  REQUIRE(::truncate(path.c_str(), 2 << 20) == 0);
  CHECK(startup_error([&] { load_config(path); }) ==
        std::pair{exit_code::config, path + ": 2.0 MiB is too large for a configuration file (over "
                                            "1.0 MiB); name the right file with --config"});
}

TEST_CASE("a file only root can change is trusted", "[root]") {
  require_root();
  TempDir dir;
  check_config_file_trusted(dir.file("ok.conf", device_file, 0644));
  check_config_file_trusted(dir.file("private.conf", device_file, 0600));
  // A sticky world-writable directory (like /tmp) on the way is fine.
  const std::string sticky = dir.dir("sticky", 01777);
  check_config_file_trusted(dir.file("sticky/ok.conf", device_file));
  // Links within trusted places are followed.
  const std::string target = dir.file("real.conf", device_file);
  REQUIRE(::symlink(target.c_str(), (dir.path() + "/link.conf").c_str()) == 0);
  check_config_file_trusted(dir.path() + "/link.conf");
  REQUIRE(::symlink("real.conf", (dir.path() + "/relative-link.conf").c_str()) == 0);
  check_config_file_trusted(dir.path() + "/relative-link.conf");
  check_config_file_trusted(sticky + "/../ok.conf");
}

TEST_CASE("a file someone else owns or can write is refused", "[root]") {
  require_root();
  TempDir dir;
  const std::string owned = dir.file("owned.conf", device_file);
  give_to_nobody(owned);
  CHECK(distrust(owned) == owned +
                               " is owned by nobody (uid 65534), not root, and the daemon runs as "
                               "root on what it says; fix: chown root:root " +
                               owned);

  const auto mode = GENERATE(0664, 0646, 0666, 0620, 0602);
  const std::string writable = dir.file("writable.conf", device_file, mode_t(mode));
  char octal[8];
  std::snprintf(octal, sizeof octal, "%04o", mode);
  CHECK(distrust(writable) == writable + " is writable by group or others (mode " + octal +
                                  "), and the daemon runs as root on what it says; fix: chmod "
                                  "go-w " +
                                  writable);
}

TEST_CASE("a directory on the way that someone else owns or can write is refused", "[root]") {
  require_root();
  TempDir dir;
  const std::string owned = dir.dir("owned");
  const std::string in_owned = dir.file("owned/vramswap.conf", device_file);
  give_to_nobody(owned);
  CHECK(distrust(in_owned) == in_owned + ": directory " + owned +
                                  " is owned by nobody (uid 65534), not root, so its owner can "
                                  "replace the configuration of a root daemon; fix: chown root " +
                                  owned + " (or keep the file in /etc)");

  // Higher up counts too.
  dir.dir("owned/sub");
  const std::string deep = dir.file("owned/sub/vramswap.conf", device_file);
  CHECK(distrust(deep).starts_with(deep + ": directory " + owned + " is owned by nobody"));
}

TEST_CASE("a group- or world-writable directory without the sticky bit is refused", "[root]") {
  require_root();
  TempDir dir;
  const auto mode = GENERATE(0775, 0757, 0777);
  const std::string open = dir.dir("open", mode_t(mode));
  dir.dir("open/below");
  const std::string path = dir.file("open/below/vramswap.conf", device_file);
  char octal[8];
  std::snprintf(octal, sizeof octal, "%04o", mode);
  CHECK(distrust(path) == path + ": directory " + open + " is writable by group or others (mode " +
                              octal +
                              "), so they can replace the configuration of a root daemon; fix: "
                              "chmod go-w " +
                              open + " (or keep the file in /etc)");
}

TEST_CASE("links are followed to where the file really is", "[root]") {
  require_root();
  TempDir dir;
  // A link to a file in a directory someone else owns.
  const std::string elsewhere = dir.dir("home");
  const std::string real = dir.file("home/vramswap.conf", device_file);
  give_to_nobody(elsewhere);
  const std::string link = dir.path() + "/vramswap.conf";
  REQUIRE(::symlink(real.c_str(), link.c_str()) == 0);
  CHECK(distrust(link) == link + ": directory " + elsewhere +
                              " is owned by nobody (uid 65534), not root, so its owner can replace "
                              "the configuration of a root daemon; fix: chown root " +
                              elsewhere + " (or keep the file in /etc)");

  // A link to a file someone else owns names that file.
  const std::string theirs = dir.file("theirs.conf", device_file);
  give_to_nobody(theirs);
  const std::string link2 = dir.path() + "/link2.conf";
  REQUIRE(::symlink("theirs.conf", link2.c_str()) == 0);
  CHECK(distrust(link2) == link2 + ": " + theirs +
                               " is owned by nobody (uid 65534), not root, and the daemon runs as "
                               "root on what it says; fix: chown root:root " +
                               theirs);

  // A linked directory on the way, pointing somewhere untrusted.
  const std::string etc = dir.dir("etc");
  REQUIRE(::symlink(elsewhere.c_str(), (etc + "/linked").c_str()) == 0);
  const std::string through = etc + "/linked/vramswap.conf";
  CHECK(
      distrust(through).starts_with(through + ": directory " + elsewhere + " is owned by nobody"));

  // A link someone else owns in a trusted directory changes nothing: only
  // root can replace it there.
  const std::string own_link = dir.path() + "/own-link.conf";
  REQUIRE(::symlink("real-root.conf", own_link.c_str()) == 0);
  dir.file("real-root.conf", device_file);
  give_to_nobody(own_link);
  check_config_file_trusted(own_link);
}

TEST_CASE("a relative path is checked from the working directory", "[root]") {
  require_root();
  TempDir dir;
  const std::string owned = dir.dir("owned");
  dir.file("owned/vramswap.conf", device_file);
  give_to_nobody(owned);
  const fs::path before = fs::current_path();
  fs::current_path(dir.path());
  std::string refusal;
  try {
    check_config_file_trusted("owned/vramswap.conf");
  } catch (const StartupError& error) {
    refusal = error.what();
  }
  fs::current_path(before);
  CHECK(refusal.starts_with("owned/vramswap.conf: directory " + owned + " is owned by nobody"));
}

TEST_CASE("the daemon's way in checks trust, then selects its device", "[root]") {
  require_root();
  TempDir dir;
  const std::string path = dir.file("vramswap.conf", device_file + "[device.bad]\nsize = lots\n");
  const DeviceConfig device = load_device_config(path, "1", ParseOptions{4});
  CHECK(device.name == "1");
  CHECK(device.priority == 5);
  CHECK(device.size.bytes == 2ull << 30);
  CHECK(device.connections == 4);
  // Another device's error does not stop this one; its own does.
  CHECK(startup_error([&] { load_device_config(path, "bad"); }) ==
        std::pair{exit_code::config, path + ":7: size = \"lots\": not a size; use bytes with a "
                                            "K/M/G/T suffix (16G), a percentage of free VRAM "
                                            "(50%), or auto"});
  CHECK(startup_error([&] { load_device_config(path, "2"); }) ==
        std::pair{exit_code::config, path +
                                         ": no [device.2] section; configured devices: 0, 1, bad; "
                                         "add [device.2] or use one of those names "
                                         "(vramswap@NAME)"});
  // Distrust comes first, before the content is even read.
  REQUIRE(::chmod(path.c_str(), 0666) == 0);
  CHECK(startup_error([&] { load_device_config(path, "1"); }).first == exit_code::no_permission);
}
