#include <catch2/catch.hpp>

#include "common/byte_size.hpp"
#include "daemon/status_line.hpp"

using vramswap::GiB;
using vramswap::MiB;
using vramswap::daemon::compose_status_line;
using vramswap::status::InstanceStatus;

namespace {

InstanceStatus serving_swap(unsigned connections) {
  InstanceStatus s;
  s.gpu_index = 0;
  s.gpu_name = "NVIDIA GeForce RTX 4060 Laptop GPU";
  s.size_bytes = 6 * GiB;
  s.device = "/dev/nbd0";
  s.kernel_connections = connections;
  s.swap_active = true;
  s.swap_used_bytes = 300 * MiB;
  s.swap_priority = 1000;
  return s;
}

}  // namespace

TEST_CASE("the status line says what is served, where, how much swap is used and the connections") {
  CHECK(compose_status_line(serving_swap(4), "") ==
        "6.0 GiB of GPU 0 (NVIDIA GeForce RTX 4060 Laptop GPU) on /dev/nbd0, swap 300.0 MiB "
        "used, priority 1000, 4 connections");
  CHECK(compose_status_line(serving_swap(1), "") ==
        "6.0 GiB of GPU 0 (NVIDIA GeForce RTX 4060 Laptop GPU) on /dev/nbd0, swap 300.0 MiB "
        "used, priority 1000, 1 connection");
}

TEST_CASE("the status line says when the device is not swap, and why the daemon is still there") {
  InstanceStatus s = serving_swap(2);
  s.swap_active = false;
  CHECK(compose_status_line(s, "") ==
        "6.0 GiB of GPU 0 (NVIDIA GeForce RTX 4060 Laptop GPU) on /dev/nbd0, not swap, "
        "2 connections");
  CHECK(compose_status_line(serving_swap(2), "/dev/nbd0 is in use (swap), waiting for swapoff") ==
        "stopping: /dev/nbd0 is in use (swap), waiting for swapoff; 6.0 GiB of GPU 0 (NVIDIA "
        "GeForce RTX 4060 Laptop GPU) on /dev/nbd0, swap 300.0 MiB used, priority 1000, "
        "2 connections");
}

TEST_CASE("the status line of a daemon whose predecessor died says so first") {
  InstanceStatus s = serving_swap(4);
  vramswap::status::PreviousCrash crash;
  crash.pid = 1111;
  crash.ended_unix = 1'800'000'000;
  crash.end_seen = true;
  crash.cause = "killed by SIGKILL";
  crash.device = "/dev/nbd0";
  crash.swap_active = true;
  crash.swap_used_bytes = 160 * MiB;
  s.previous_crash = crash;
  const std::string line = compose_status_line(s, "");
  INFO(line);
  CHECK(line.starts_with("PREVIOUS DAEMON DIED at "));
  CHECK(line.find("(killed by SIGKILL), 160.0 MiB of swap lost; 6.0 GiB of GPU 0") !=
        std::string::npos);
}

TEST_CASE("the status line says where the elastic tier keeps the export once any of it left VRAM") {
  InstanceStatus s = serving_swap(4);
  s.elastic = true;
  s.vram_bytes = 6 * GiB;
  s.spill_path = "/var/lib/vramswap/0.spill";
  const std::string plain = compose_status_line(s, "");
  CHECK(plain.find("spill") == std::string::npos);
  s.vram_bytes = 2 * GiB;
  s.spill_bytes = 3 * GiB;
  s.none_bytes = GiB;
  s.last_move_reason = "another program needed VRAM";
  CHECK(compose_status_line(s, "") ==
        plain +
            "; 2.0 GiB in VRAM, 3.0 GiB in /var/lib/vramswap/0.spill, 1.0 GiB with no storage "
            "(another program needed VRAM)");
}
