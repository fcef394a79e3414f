// vramswap-generator: unit names, and how run() writes its files. The units
// written for each configuration are golden trees: tests/generator/CASE.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "common/exit_codes.hpp"
#include "config/config.hpp"
#include "generator/generator.hpp"
#include "generator/units.hpp"

using namespace vramswap;
using namespace vramswap::generator;
namespace fs = std::filesystem;

// run(): the files written, with real configuration files. The trust check
// wants them to belong to root, hence [root] (fakeroot is enough).
namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "vramswap-generator-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
};

void write_text(const fs::path& path, const std::string& text, mode_t mode = 0644) {
  std::ofstream(path) << text;
  REQUIRE(::chmod(path.c_str(), mode) == 0);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Every file and link under `dir`: relative path -> "file" or "-> target".
std::map<std::string, std::string> tree(const fs::path& dir) {
  std::map<std::string, std::string> found;
  for (const auto& item : fs::recursive_directory_iterator(dir)) {
    const std::string relative = item.path().lexically_relative(dir).string();
    if (item.is_symlink())
      found[relative] = "-> " + fs::read_symlink(item.path()).string();
    else if (item.is_regular_file())
      found[relative] = "file";
  }
  return found;
}

struct Run {
  int status = -1;
  std::vector<std::pair<LogLevel, std::string>> log;
};

Run run_generator(const fs::path& out, const fs::path& config, bool in_initrd = false) {
  Invocation invocation{out.string(), config.string(), "/lib/systemd/system/vramswap@.service",
                        in_initrd, ""};
  Run result;
  result.status = run(invocation, [&](LogLevel level, const std::string& text) {
    result.log.emplace_back(level, text);
  });
  return result;
}

void require_root() {
  if (::geteuid() != 0) FAIL("this test needs root (the configuration must belong to root)");
}

}  // namespace

TEST_CASE("no configuration file: nothing written, nothing said, success") {
  TempDir dir;
  fs::create_directory(dir.path / "out");
  const Run result = run_generator(dir.path / "out", dir.path / "missing.conf");
  CHECK(result.status == 0);
  CHECK(result.log.empty());
  CHECK(tree(dir.path / "out").empty());
}

TEST_CASE("the generator writes the units and links of every usable device", "[root]") {
  require_root();
  TempDir dir;
  const fs::path out = dir.path / "out";
  fs::create_directory(out);
  write_text(dir.path / "vramswap.conf",
             "[device.0]\n"
             "[device.x-y]\n"
             "discard = on\n"
             "[device.broken]\n"
             "gpu = nvidia\n"
             "[device.sock]\n"
             "attach = no\n"
             "listen = /run/vramswap/sock.sock\n");
  ::umask(077);  // the files must be readable whatever the umask
  const Run result = run_generator(out, dir.path / "vramswap.conf");
  ::umask(022);
  CHECK(result.status == 0);
  REQUIRE(result.log.size() == 2);
  CHECK(result.log[0].first == LogLevel::error);
  CHECK_THAT(result.log[0].second, Catch::Contains("vramswap.conf:5: gpu = \"nvidia\": not a GPU"));
  CHECK_THAT(result.log[1].second, Catch::EndsWith(": [device.broken] is not set up (no vramswap@ "
                                                   "service, no swap) until this is fixed; then "
                                                   "run systemctl daemon-reload"));

  const std::string unit = "-> /lib/systemd/system/vramswap@.service";
  const std::map<std::string, std::string> expected = {
      {"multi-user.target.wants/vramswap@0.service", unit},
      {"multi-user.target.wants/vramswap@x-y.service", unit},
      {"multi-user.target.wants/vramswap@sock.service", unit},
      {"sys-bus-pci-drivers-nvidia.device.wants/vramswap@0.service", unit},
      {"sys-bus-pci-drivers-nvidia.device.wants/vramswap@x-y.service", unit},
      {"sys-bus-pci-drivers-nvidia.device.wants/vramswap@sock.service", unit},
      {"vramswap-mkswap@0.service", "file"},
      {"vramswap-mkswap@x-y.service", "file"},
      {"dev-vramswap-0.swap", "file"},
      {"dev-vramswap-x\\x2dy.swap", "file"},
      // Stop-only: a swap already on would still go off before its daemon stops.
      {"dev-vramswap-broken.swap", "file"},
      {"dev-vramswap-0.device.wants/dev-vramswap-0.swap", "-> ../dev-vramswap-0.swap"},
      {"dev-vramswap-x\\x2dy.device.wants/dev-vramswap-x\\x2dy.swap",
       "-> ../dev-vramswap-x\\x2dy.swap"},
  };
  CHECK(tree(out) == expected);

  struct stat status {};
  REQUIRE(::stat((out / "dev-vramswap-x\\x2dy.swap").c_str(), &status) == 0);
  CHECK((status.st_mode & 07777) == 0644);
  REQUIRE(::stat((out / "multi-user.target.wants").c_str(), &status) == 0);
  CHECK((status.st_mode & 07777) == 0755);
  const std::string swap = read_text(out / "dev-vramswap-x\\x2dy.swap");
  CHECK_THAT(swap, Catch::Contains("\nSourcePath=" + (dir.path / "vramswap.conf").string() + "\n"));
  CHECK_THAT(swap, Catch::Contains("\nWhat=/dev/vramswap/x-y\nPriority=1000\nOptions=discard\n"));
  // A restart of the service must leave swap on (the device is handed over):
  // only Wants= and After=, none of the relations over which systemd carries
  // a restart (or a stop) of the service to the swap unit.
  CHECK_THAT(swap, Catch::Contains("\nWants=vramswap@x-y.service\nAfter=vramswap@x-y.service\n"));
  const std::string stop_only = read_text(out / "dev-vramswap-broken.swap");
  CHECK_THAT(stop_only, Catch::Contains("\nAfter=vramswap@broken.service\n"));
  for (const std::string& written : {swap, stop_only}) {
    for (const char* restart_carrier : {"BindsTo=", "PartOf=", "Requires=vramswap@",
                                        "StopPropagatedFrom=", "Wants=vramswap@broken"}) {
      CHECK_THAT(written, !Catch::Contains(restart_carrier));
    }
  }

  SECTION("running it again into the same directory gives the same result") {
    const Run again = run_generator(out, dir.path / "vramswap.conf");
    CHECK(again.status == 0);
    CHECK(tree(out) == expected);
  }
}

TEST_CASE("a configuration someone else can change sets up nothing", "[root]") {
  require_root();
  TempDir dir;
  fs::create_directory(dir.path / "out");
  write_text(dir.path / "vramswap.conf", "[device.0]\n", 0666);
  const Run result = run_generator(dir.path / "out", dir.path / "vramswap.conf");
  CHECK(result.status == 0);
  CHECK(tree(dir.path / "out").empty());
  REQUIRE(result.log.size() == 2);
  CHECK_THAT(result.log[0].second, Catch::Contains("vramswap.conf"));
  CHECK_THAT(result.log[0].second, Catch::Contains("chmod"));
  CHECK(result.log[1].second ==
        "no VRAM swap device is set up; fix this and run systemctl daemon-reload");
}

TEST_CASE("in the initrd the generator does nothing", "[root]") {
  require_root();
  TempDir dir;
  fs::create_directory(dir.path / "out");
  write_text(dir.path / "vramswap.conf", "[device.0]\n");
  const Run result = run_generator(dir.path / "out", dir.path / "vramswap.conf", true);
  CHECK(result.status == 0);
  CHECK(result.log.empty());
  CHECK(tree(dir.path / "out").empty());
}

TEST_CASE("a device whose units cannot be written is left out whole", "[root]") {
  require_root();
  TempDir dir;
  const fs::path out = dir.path / "out";
  fs::create_directory(out);
  write_text(dir.path / "vramswap.conf", "[device.a]\n[device.b]\n");
  // Something in the way of device a's swap unit.
  fs::create_directory(out / "dev-vramswap-a.swap");
  const Run result = run_generator(out, dir.path / "vramswap.conf");
  CHECK(result.status == exit_code::os_error);
  REQUIRE(result.log.size() == 1);
  CHECK_THAT(result.log[0].second, Catch::StartsWith("cannot create " + out.string() +
                                                     "/dev-vramswap-a.swap: Is a directory"));
  CHECK_THAT(result.log[0].second, Catch::EndsWith("([device.a] is not set up)"));
  const auto found = tree(out);
  for (const auto& [path, what] : found)
    CHECK_THAT(path, !Catch::Contains("@a.service"));
  CHECK(found.count("vramswap-mkswap@b.service") == 1);
  CHECK(found.count("dev-vramswap-b.swap") == 1);
  CHECK(found.count("multi-user.target.wants/vramswap@b.service") == 1);
}
