#include <catch2/catch.hpp>

#include "common/byte_size.hpp"

using vramswap::GiB;
using vramswap::KiB;
using vramswap::MiB;
using vramswap::parse_byte_size;

TEST_CASE("byte sizes parse with binary suffixes") {
  CHECK(parse_byte_size("4096") == 4096u);
  CHECK(parse_byte_size("512K") == 512 * KiB);
  CHECK(parse_byte_size("16G") == 16 * GiB);
  CHECK(parse_byte_size("16g") == 16 * GiB);
  CHECK(parse_byte_size("8GiB") == 8 * GiB);
  CHECK(parse_byte_size(" 2 MiB ") == 2 * MiB);
  CHECK(parse_byte_size("1.5G") == GiB + GiB / 2);
  CHECK(parse_byte_size("1T") == 1024 * GiB);
  CHECK(parse_byte_size("0") == 0u);
}

TEST_CASE("byte sizes reject garbage and overflow") {
  for (const char* bad : {"", "G", "-1G", "1.5", "12X", "1GG", "1.G", "18446744073709551616",
                          "16777216T", "1.0000000001G", "0x10"}) {
    INFO(bad);
    CHECK_FALSE(parse_byte_size(bad).has_value());
  }
}

TEST_CASE("byte sizes format for humans") {
  CHECK(vramswap::format_byte_size(512) == "512 B");
  CHECK(vramswap::format_byte_size(16 * GiB) == "16.0 GiB");
  CHECK(vramswap::format_byte_size(1536 * KiB) == "1.5 MiB");
}
