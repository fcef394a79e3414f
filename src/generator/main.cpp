// vramswap-generator: turns the [device.NAME] sections of /etc/vramswap.conf
// into systemd units at boot and at every daemon-reload. See
// vramswap-generator(8).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "common/exit_codes.hpp"
#include "generator/generator.hpp"
#include "generator/generator_log.hpp"

namespace {

const char* environment(const char* name) {
  const char* value = std::getenv(name);
  return value && *value ? value : nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace vramswap;
  // systemd passes the normal, early and late directories; tests may pass
  // only the first (systemd.generator(7)).
  if (argc != 2 && argc != 4) {
    std::fputs(
        "Usage: vramswap-generator NORMAL_DIR [EARLY_DIR LATE_DIR]\n"
        "Writes systemd units for /etc/vramswap.conf (or $VRAMSWAP_CONFIG) into NORMAL_DIR.\n"
        "systemd runs it at boot and on daemon-reload; see vramswap-generator(8).\n",
        stderr);
    return exit_code::usage;
  }
  generator::Invocation invocation;
  invocation.output_dir = argv[1];
  const char* config = environment("VRAMSWAP_CONFIG");
  invocation.config_path = config ? config : VRAMSWAP_CONFIG_FILE;
  invocation.template_unit = VRAMSWAP_TEMPLATE_UNIT;
  const char* initrd = environment("SYSTEMD_IN_INITRD");
  invocation.in_initrd = initrd && std::strcmp(initrd, "1") == 0;
  const char* runtime_dir = environment("VRAMSWAP_RUNTIME_DIR");
  invocation.runtime_dir = runtime_dir ? runtime_dir : "/run/vramswap";

  generator::GeneratorLog log = generator::GeneratorLog::open_default();
  try {
    return generator::run(
        invocation, [&log](LogLevel level, const std::string& text) { log.write(level, text); });
  } catch (const std::exception& e) {
    // Never expected; the boot goes on regardless, so say what happened.
    log.write(LogLevel::error, std::string("internal error: ") + e.what());
    return exit_code::software;
  }
}
