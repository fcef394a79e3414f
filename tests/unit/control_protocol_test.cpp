// The control socket's line protocol (status/control_protocol.hpp): what the
// CLI sends, what the daemon accepts, and the replies both ways.
#include <catch2/catch.hpp>

#include "common/byte_size.hpp"
#include "status/control_protocol.hpp"

using namespace vramswap;
using namespace vramswap::status;
using Catch::Matchers::Contains;
using Verb = ControlRequest::Verb;

TEST_CASE("control protocol: the requests the daemon accepts") {
  CHECK(parse_control_request("restore").request == ControlRequest{Verb::restore});
  CHECK(parse_control_request("release all").request ==
        ControlRequest{Verb::release, ControlRequest::all_bytes});
  CHECK(parse_control_request("release 2147483648").request ==
        ControlRequest{Verb::release, 2 * GiB});
  // What an admin typing into the socket by hand would write.
  CHECK(parse_control_request("release 2G").request == ControlRequest{Verb::release, 2 * GiB});
  CHECK(parse_control_request("release 512M").request == ControlRequest{Verb::release, 512 * MiB});
}

TEST_CASE("control protocol: anything else is refused with a line that says what to send") {
  for (const char* line : {"", "hello", "release", "release ", "restore now", "RESTORE",
                           "release  all", "release all extra", "status"}) {
    INFO(line);
    const ParsedRequest parsed = parse_control_request(line);
    CHECK_FALSE(parsed.request);
    CHECK_THAT(parsed.error, Contains("release all"));
  }
  CHECK_THAT(parse_control_request("hello").error, Contains("unknown request \"hello\""));
  CHECK_THAT(parse_control_request("release 0").error, Contains("bad size \"0\""));
  CHECK_THAT(parse_control_request("release lots").error, Contains("bad size \"lots\""));
  CHECK_THAT(parse_control_request("release 99999999999T").error, Contains("bad size"));
  // What is quoted back stays printable and short.
  const std::string error = parse_control_request("\x1b[31m" + std::string(100, 'x')).error;
  CHECK_THAT(error, Contains("\\x1B"));
  CHECK_THAT(error, Contains("...\""));
  CHECK(error.size() < 200);
}

TEST_CASE("control protocol: what the CLI sends parses back to the same request") {
  for (const ControlRequest request :
       {ControlRequest{Verb::restore}, ControlRequest{Verb::release},
        ControlRequest{Verb::release, 2 * GiB}, ControlRequest{Verb::release, 4096}}) {
    const std::string line = format_control_request(request);
    REQUIRE(line.back() == '\n');
    CHECK(parse_control_request(line.substr(0, line.size() - 1)).request == request);
  }
  CHECK(format_control_request({Verb::release}) == "release all\n");
  CHECK(format_control_request({Verb::release, 2 * GiB}) == "release 2147483648\n");
  CHECK(format_control_request({Verb::restore}) == "restore\n");
}

TEST_CASE("control protocol: replies are one line, ok or error") {
  CHECK(format_control_reply({true, "released 2.0 GiB"}) == "ok released 2.0 GiB\n");
  CHECK(format_control_reply({false, "no room"}) == "error no room\n");
  CHECK(format_control_reply({false, "two\nlines\r"}) == "error two lines \n");
  CHECK(parse_control_reply("ok released 2.0 GiB") == ControlReply{true, "released 2.0 GiB"});
  CHECK(parse_control_reply("error no room") == ControlReply{false, "no room"});
  CHECK_FALSE(parse_control_reply("okay"));
  CHECK_FALSE(parse_control_reply(""));
  CHECK_FALSE(parse_control_reply("HTTP/1.1 200 OK"));
}

TEST_CASE("control protocol: the socket lives next to the status file") {
  setenv("VRAMSWAP_RUNTIME_DIR", "/run/test-vramswap", 1);
  CHECK(control_socket_path("gpu0") == "/run/test-vramswap/gpu0.control");
  unsetenv("VRAMSWAP_RUNTIME_DIR");
  CHECK(control_socket_path("gpu0") == "/run/vramswap/gpu0.control");
}
