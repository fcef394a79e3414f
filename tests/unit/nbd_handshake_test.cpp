#include <catch2/catch.hpp>

#include <random>
#include <string>

#include "nbd/handshake.hpp"
#include "nbd/protocol.hpp"
#include "nbd_handshake_driver.hpp"
#include "nbd_wire.hpp"

namespace nbd = vramswap::nbd;
using namespace nbd_test;
using State = nbd::Handshake::State;
using namespace std::literals;

namespace {

constexpr uint64_t kSize = uint64_t{8} << 30;
// HAS_FLAGS | SEND_FLUSH | SEND_FUA | SEND_TRIM | SEND_WRITE_ZEROES | CAN_MULTI_CONN,
// spelled from the spec's bit numbers 0, 2, 3, 5, 6, 8.
constexpr uint16_t kServedFlags = 0x016d;

const nbd::ExportDescription kExport{
    .name = "vram0",
    .description = "GPU 0 VRAM swap",
    .size = kSize,
};

constexpr uint32_t kFixed = 1, kNoZeroes = 2;  // client flags

// Option codes and reply types from the spec, in numbers.
constexpr uint32_t kOptExportName = 1, kOptAbort = 2, kOptList = 3, kOptInfo = 6, kOptGo = 7;
constexpr uint32_t kRepAck = 1, kRepServer = 2, kRepInfo = 3;
constexpr uint32_t kErrUnsup = 0x80000001, kErrInvalid = 0x80000003, kErrUnknown = 0x80000006,
                   kErrTooBig = 0x80000009;
constexpr uint16_t kInfoExport = 0, kInfoName = 1, kInfoDescription = 2, kInfoBlockSize = 3;

const Bytes kGreeting = Wire{}.u64(kNbdMagic).u64(kIHaveOpt).u16(0x0003);

Bytes reply(uint32_t option, uint32_t type, const Bytes& data = {}) {
  return Wire{}
      .u64(kReplyMagic)
      .u32(option)
      .u32(type)
      .u32(static_cast<uint32_t>(data.size()))
      .raw(data);
}

Bytes info_export_reply(uint32_t option) {
  return reply(option, kRepInfo, Wire{}.u16(kInfoExport).u64(kSize).u16(kServedFlags));
}

Bytes info_block_size_reply(uint32_t option) {
  return reply(option, kRepInfo, Wire{}.u16(kInfoBlockSize).u32(512).u32(4096).u32(32u << 20));
}

// Everything the server says after the greeting.
Bytes after_greeting(const Session& s) {
  REQUIRE(s.output.size() >= kGreeting.size());
  REQUIRE(Bytes(s.output.begin(), s.output.begin() + kGreeting.size()) == kGreeting);
  return Bytes(s.output.begin() + kGreeting.size(), s.output.end());
}

const Bytes kHello = client_flags(kFixed | kNoZeroes);

}  // namespace

TEST_CASE("wire constants have the spec's values") {
  CHECK(nbd::nbd_magic == 0x4e42444d41474943);
  CHECK(nbd::ihaveopt_magic == 0x49484156454f5054);
  CHECK(nbd::option_reply_magic == 0x3e889045565a9);
  CHECK(nbd::request_magic == 0x25609513);
  CHECK(nbd::simple_reply_magic == 0x67446698);
  CHECK(nbd::served_transmission_flags == kServedFlags);
  CHECK(nbd::option::export_name == 1);
  CHECK(nbd::option::abort == 2);
  CHECK(nbd::option::list == 3);
  CHECK(nbd::option::peek_export == 4);
  CHECK(nbd::option::starttls == 5);
  CHECK(nbd::option::info == 6);
  CHECK(nbd::option::go == 7);
  CHECK(nbd::option::structured_reply == 8);
  CHECK(nbd::option::list_meta_context == 9);
  CHECK(nbd::option::set_meta_context == 10);
  CHECK(nbd::option::extended_headers == 11);
  CHECK(nbd::reply::ack == 1);
  CHECK(nbd::reply::server == 2);
  CHECK(nbd::reply::info == 3);
  CHECK(nbd::reply::meta_context == 4);
  CHECK(nbd::reply::err_unsup == 0x80000001);
  CHECK(nbd::reply::err_policy == 0x80000002);
  CHECK(nbd::reply::err_invalid == 0x80000003);
  CHECK(nbd::reply::err_platform == 0x80000004);
  CHECK(nbd::reply::err_tls_reqd == 0x80000005);
  CHECK(nbd::reply::err_unknown == 0x80000006);
  CHECK(nbd::reply::err_shutdown == 0x80000007);
  CHECK(nbd::reply::err_block_size_reqd == 0x80000008);
  CHECK(nbd::reply::err_too_big == 0x80000009);
  CHECK(nbd::reply::err_ext_header_reqd == 0x8000000a);
  CHECK(nbd::info::export_ == 0);
  CHECK(nbd::info::name == 1);
  CHECK(nbd::info::description == 2);
  CHECK(nbd::info::block_size == 3);
  CHECK(nbd::command::read == 0);
  CHECK(nbd::command::write == 1);
  CHECK(nbd::command::disc == 2);
  CHECK(nbd::command::flush == 3);
  CHECK(nbd::command::trim == 4);
  CHECK(nbd::command::cache == 5);
  CHECK(nbd::command::write_zeroes == 6);
  CHECK(nbd::command::block_status == 7);
  CHECK(nbd::command::resize == 8);
  CHECK(nbd::command_flag::fua == 1);
  CHECK(nbd::command_flag::no_hole == 2);
  CHECK(nbd::command_flag::df == 4);
  CHECK(nbd::command_flag::req_one == 8);
  CHECK(nbd::command_flag::fast_zero == 16);
  CHECK(nbd::command_flag::payload_len == 32);
  CHECK(nbd::error::eperm == 1);
  CHECK(nbd::error::eio == 5);
  CHECK(nbd::error::enomem == 12);
  CHECK(nbd::error::einval == 22);
  CHECK(nbd::error::enospc == 28);
  CHECK(nbd::error::eoverflow == 75);
  CHECK(nbd::error::enotsup == 95);
  CHECK(nbd::error::eshutdown == 108);
}

TEST_CASE("big-endian helpers round-trip") {
  std::byte b[8];
  nbd::store_be64(b, 0x0102030405060708);
  CHECK(b[0] == std::byte{1});
  CHECK(b[7] == std::byte{8});
  CHECK(nbd::load_be64(b) == 0x0102030405060708);
  CHECK(nbd::load_be32(b + 4) == 0x05060708);
  CHECK(nbd::load_be16(b + 6) == 0x0708);
  nbd::store_be16(b, 0xfffe);
  CHECK(nbd::load_be16(b) == 0xfffe);
  nbd::store_be32(b, 0x80000001);
  CHECK(nbd::load_be32(b) == 0x80000001);
}

TEST_CASE("the server greets with NBDMAGIC, IHAVEOPT and FIXED_NEWSTYLE | NO_ZEROES") {
  nbd::Handshake hs(kExport);
  CHECK(Bytes(hs.output().begin(), hs.output().end()) == kGreeting);
  CHECK(hs.state() == State::negotiating);
  CHECK(std::string(hs.close_reason()).empty());
}

TEST_CASE("input waits while output is pending") {
  nbd::Handshake hs(kExport);
  const Bytes client = concat({kHello, option(kOptList, {})});
  CHECK(hs.input(client) == 0);  // the greeting is not sent yet
  hs.output_sent(5);
  CHECK(hs.output().size() == kGreeting.size() - 5);
  CHECK(hs.input(client) == 0);
  hs.output_sent(1000);  // more than pending: clamped
  CHECK(hs.output().empty());
  CHECK(hs.input(client) == client.size());
  CHECK(!hs.output().empty());  // the LIST answer
  CHECK(hs.input(client) == 0);
}

TEST_CASE("client flags") {
  SECTION("FIXED_NEWSTYLE alone: EXPORT_NAME reply carries the 124 zero bytes") {
    const Session s =
        run_all_ways(kExport, concat({client_flags(kFixed), option(kOptExportName, {})}));
    CHECK(after_greeting(s) == Bytes(Wire{}.u64(kSize).u16(kServedFlags).zeroes(124)));
    CHECK(s.state == State::transmission);
    CHECK_FALSE(s.no_zeroes);
  }
  SECTION("FIXED_NEWSTYLE | NO_ZEROES: EXPORT_NAME reply has no zero bytes") {
    const Session s = run_all_ways(kExport, concat({kHello, option(kOptExportName, {})}));
    CHECK(after_greeting(s) == Bytes(Wire{}.u64(kSize).u16(kServedFlags)));
    CHECK(s.state == State::transmission);
    CHECK(s.no_zeroes);
  }
  SECTION("refused flags close the connection before any option") {
    for (uint32_t flags :
         {0u, kNoZeroes, kFixed | 4u, kFixed | kNoZeroes | 0x80000000u, 0xffffffffu}) {
      INFO("client flags " << flags);
      const Session s = run_all_ways(kExport, concat({client_flags(flags), option(kOptList, {})}));
      CHECK(s.output == kGreeting);
      CHECK(s.state == State::closed);
      CHECK(s.consumed == 4);
      CHECK_FALSE(s.close_reason.empty());
    }
  }
}

TEST_CASE("NBD_OPT_EXPORT_NAME") {
  SECTION("the default export and the configured name enter transmission") {
    for (std::string_view name : {"", "vram0"}) {
      const Bytes client = concat({kHello, option(kOptExportName, text_bytes(name))});
      const Session s = run_all_ways(kExport, client);
      CHECK(after_greeting(s) == Bytes(Wire{}.u64(kSize).u16(kServedFlags)));
      CHECK(s.state == State::transmission);
      CHECK(s.consumed == client.size());
    }
  }
  SECTION("an unknown name closes without a reply (no error reply exists)") {
    for (std::string_view name : {"vram"sv, "vram00"sv, "VRAM0"sv, "vram0\0"sv, "\0"sv}) {
      const Session s =
          run_all_ways(kExport, concat({kHello, option(kOptExportName, text_bytes(name))}));
      CHECK(s.output == kGreeting);
      CHECK(s.state == State::closed);
    }
  }
  SECTION("a name of 4096 bytes is read whole; longer closes without waiting for it") {
    const Bytes longest = concat({kHello, option(kOptExportName, Bytes(4096, std::byte{'a'}))});
    Session s = run_all_ways(kExport, longest);
    CHECK(s.state == State::closed);
    CHECK(s.consumed == longest.size());

    Bytes too_long = concat({kHello, option(kOptExportName, Bytes(4097, std::byte{'a'}))});
    s = run_all_ways(kExport, too_long);
    CHECK(s.state == State::closed);
    CHECK(s.consumed == 4 + 16);
  }
  SECTION("bytes after the option are left for transmission") {
    const Bytes first_request = request(0, 0, 1, 0, 4096);
    const Bytes client =
        concat({kHello, option(kOptExportName, text_bytes("vram0")), first_request});
    const Session s = run_all_ways(kExport, client);
    CHECK(s.state == State::transmission);
    CHECK(s.consumed == client.size() - first_request.size());
  }
}

TEST_CASE("transmission starts only once the final reply is sent") {
  nbd::Handshake hs(kExport);
  hs.output_sent(hs.output().size());
  const Bytes client = concat({kHello, option(kOptGo, info_data("", {}))});
  CHECK(hs.input(client) == client.size());
  const size_t answer = hs.output().size();
  REQUIRE(answer > 1);
  hs.output_sent(answer - 1);
  CHECK(hs.state() == State::negotiating);
  hs.output_sent(1);
  CHECK(hs.state() == State::transmission);
  CHECK(hs.input(client) == 0);  // nothing more is the handshake's
}

TEST_CASE("NBD_OPT_ABORT is acknowledged, then the connection closes") {
  SECTION("without data") {
    nbd::Handshake hs(kExport);
    hs.output_sent(hs.output().size());
    const Bytes client = concat({kHello, option(kOptAbort, {}), option(kOptList, {})});
    CHECK(hs.input(client) == 4 + 16);
    CHECK(Bytes(hs.output().begin(), hs.output().end()) == reply(kOptAbort, kRepAck));
    CHECK(hs.state() == State::negotiating);  // until the ACK is out
    hs.output_sent(hs.output().size());
    CHECK(hs.state() == State::closed);
    CHECK(std::string(hs.close_reason()).find("ABORT") != std::string::npos);
  }
  SECTION("with data, which is ignored") {
    const Session s =
        run_all_ways(kExport, concat({kHello, option(kOptAbort, text_bytes("bye now"))}));
    CHECK(after_greeting(s) == reply(kOptAbort, kRepAck));
    CHECK(s.state == State::closed);
  }
}

TEST_CASE("NBD_OPT_LIST") {
  SECTION("one export, its name then its description") {
    const Session s = run_all_ways(kExport, concat({kHello, option(kOptList, {})}));
    CHECK(after_greeting(s) ==
          concat({reply(kOptList, kRepServer, Wire{}.u32(5).text("vram0").text("GPU 0 VRAM swap")),
                  reply(kOptList, kRepAck)}));
    CHECK(s.state == State::negotiating);
  }
  SECTION("without a description, just the name") {
    nbd::ExportDescription plain = kExport;
    plain.description = {};
    const Session s = run_all_ways(plain, concat({kHello, option(kOptList, {})}));
    CHECK(after_greeting(s) == concat({reply(kOptList, kRepServer, Wire{}.u32(5).text("vram0")),
                                       reply(kOptList, kRepAck)}));
  }
  SECTION("with data: NBD_REP_ERR_INVALID, and the stream stays in step") {
    const Session s = run_all_ways(
        kExport, concat({kHello, option(kOptList, text_bytes("junk")), option(kOptAbort, {})}));
    CHECK(after_greeting(s) == concat({reply(kOptList, kErrInvalid), reply(kOptAbort, kRepAck)}));
    CHECK(s.state == State::closed);
  }
}

TEST_CASE("NBD_OPT_INFO and NBD_OPT_GO answer the export's information") {
  const uint32_t opt = GENERATE(kOptInfo, kOptGo);
  {
    INFO("option " << opt);
    const State after_success = opt == kOptGo ? State::transmission : State::negotiating;

    SECTION("no information requested: EXPORT and BLOCK_SIZE, then ACK") {
      for (std::string_view name : {"", "vram0"}) {
        const Session s = run_all_ways(kExport, concat({kHello, option(opt, info_data(name, {}))}));
        CHECK(after_greeting(s) ==
              concat({info_export_reply(opt), info_block_size_reply(opt), reply(opt, kRepAck)}));
        CHECK(s.state == after_success);
      }
    }
    SECTION("name and description when asked for") {
      const Session s = run_all_ways(
          kExport,
          concat(
              {kHello, option(opt, info_data("", {kInfoDescription, kInfoName, kInfoBlockSize}))}));
      CHECK(after_greeting(s) ==
            concat({info_export_reply(opt), info_block_size_reply(opt),
                    reply(opt, kRepInfo, Wire{}.u16(kInfoName).text("vram0")),
                    reply(opt, kRepInfo, Wire{}.u16(kInfoDescription).text("GPU 0 VRAM swap")),
                    reply(opt, kRepAck)}));
      CHECK(s.state == after_success);
    }
    SECTION("duplicate requests are answered once; unknown types are ignored") {
      const Bytes expected =
          concat({info_export_reply(opt), info_block_size_reply(opt),
                  reply(opt, kRepInfo, Wire{}.u16(kInfoName).text("vram0")), reply(opt, kRepAck)});
      const Session dup = run_all_ways(
          kExport,
          concat({kHello,
                  option(opt, info_data("vram0", {kInfoName, kInfoName, kInfoExport, kInfoExport,
                                                  kInfoBlockSize, kInfoBlockSize}))}));
      CHECK(after_greeting(dup) == expected);
      const Session unknown = run_all_ways(
          kExport,
          concat({kHello, option(opt, info_data("vram0", {4, kInfoName, 0x7fff, 0xffff}))}));
      CHECK(after_greeting(unknown) == expected);
    }
    SECTION("no description configured: NBD_INFO_DESCRIPTION is left out") {
      nbd::ExportDescription plain = kExport;
      plain.description = {};
      const Session s =
          run_all_ways(plain, concat({kHello, option(opt, info_data("", {kInfoDescription}))}));
      CHECK(after_greeting(s) ==
            concat({info_export_reply(opt), info_block_size_reply(opt), reply(opt, kRepAck)}));
    }
    SECTION("unknown name: NBD_REP_ERR_UNKNOWN, negotiation goes on") {
      for (std::string_view name : {"vram", "vram1", "vram0 ", "Vram0"}) {
        const Session s =
            run_all_ways(kExport, concat({kHello, option(opt, info_data(name, {kInfoBlockSize})),
                                          option(kOptGo, info_data("", {}))}));
        CHECK(after_greeting(s) == concat({reply(opt, kErrUnknown), info_export_reply(kOptGo),
                                           info_block_size_reply(kOptGo), reply(kOptGo, kRepAck)}));
        CHECK(s.state == State::transmission);
      }
    }
    SECTION("inconsistent lengths: NBD_REP_ERR_INVALID, negotiation goes on") {
      const Bytes valid = info_data("vram0", {kInfoName});  // 4 + 5 + 2 + 2 bytes
      std::vector<Bytes> bad;
      for (size_t n = 0; n < 6; ++n)
        bad.emplace_back(n, std::byte{0});                         // shorter than any
      bad.push_back(Bytes(valid.begin(), valid.end() - 1));        // last request cut
      bad.push_back(concat({valid, Bytes(1, std::byte{0})}));      // a trailing byte
      bad.push_back(concat({valid, Bytes(2, std::byte{0})}));      // an extra half request
      bad.push_back(Wire{}.u32(6).text("vram0").u16(0));           // name longer than the data
      bad.push_back(Wire{}.u32(8).text("vram0").u16(0));           // name runs into the count
      bad.push_back(Wire{}.u32(0xffffffff).text("vram0").u16(0));  // name length wraps
      bad.push_back(Wire{}.u32(5).text("vram0").u16(2).u16(kInfoName));  // count says two
      bad.push_back(Wire{}.u32(5).text("vram0").u16(0xffff));            // count huge
      bad.push_back(Wire{}.u32(0).u16(0).u16(0));                        // two bytes too many
      for (const Bytes& data : bad) {
        INFO("data of " << data.size() << " bytes");
        const Session s =
            run_all_ways(kExport, concat({kHello, option(opt, data), option(kOptList, {})}));
        const Bytes expected_tail = reply(kOptList, kRepAck);
        const Bytes out = after_greeting(s);
        REQUIRE(out.size() > 20);
        CHECK(Bytes(out.begin(), out.begin() + 20) == reply(opt, kErrInvalid));
        CHECK(Bytes(out.end() - 20, out.end()) == expected_tail);
        CHECK(s.state == State::negotiating);
        CHECK(s.consumed == 4 + 16 + data.size() + 16);
      }
    }
    SECTION("zero information requests with a long name still parse") {
      const std::string name(4096, 'x');
      const Session s = run_all_ways(kExport, concat({kHello, option(opt, info_data(name, {}))}));
      CHECK(after_greeting(s) == reply(opt, kErrUnknown));
    }
  }
}

TEST_CASE("oversized NBD_OPT_INFO/GO data is skipped without buffering and refused") {
  // The largest data still parsed: a 4096-byte name and 256 requests.
  std::initializer_list<uint16_t> none = {};
  Bytes largest = info_data(std::string(4096, 'x'), none);
  largest.resize(largest.size() - 2);
  largest = concat({largest, Wire{}.u16(256)});
  for (int i = 0; i < 256; ++i)
    largest = concat({largest, Wire{}.u16(kInfoName)});
  REQUIRE(largest.size() == nbd::Handshake::max_option_data);
  Session s = run_all_ways(kExport, concat({kHello, option(kOptInfo, largest)}));
  CHECK(after_greeting(s) == reply(kOptInfo, kErrUnknown));

  SECTION("one byte more: NBD_REP_ERR_TOO_BIG once all of it was consumed") {
    const Bytes client = concat(
        {kHello, option(kOptGo, concat({largest, Bytes(1, std::byte{0})})), option(kOptList, {})});
    s = run_all_ways(kExport, client);
    CHECK(after_greeting(s) ==
          concat({reply(kOptGo, kErrTooBig),
                  reply(kOptList, kRepServer, Wire{}.u32(5).text("vram0").text("GPU 0 VRAM swap")),
                  reply(kOptList, kRepAck)}));
    CHECK(s.consumed == client.size());
    CHECK(s.state == State::negotiating);
  }
  SECTION("64 KiB of data arriving in small chunks") {
    const Bytes client = concat({kHello, option(kOptInfo, Bytes(64 * 1024, std::byte{0x5a}))});
    s = run_all_ways(kExport, client);
    CHECK(after_greeting(s) == reply(kOptInfo, kErrTooBig));
  }
  SECTION("a 4 GiB option is consumed as it arrives, nothing buffered or answered early") {
    nbd::Handshake hs(kExport);
    hs.output_sent(hs.output().size());
    const Bytes header = Wire{}.raw(kHello).u64(kIHaveOpt).u32(kOptGo).u32(0xffffffff);
    CHECK(hs.input(header) == header.size());
    const Bytes chunk(100000, std::byte{0x11});
    for (int i = 0; i < 100; ++i) {
      REQUIRE(hs.input(chunk) == chunk.size());
      REQUIRE(hs.output().empty());
    }
    CHECK(hs.state() == State::negotiating);
  }
}

TEST_CASE("options this server does not support get NBD_REP_ERR_UNSUP") {
  // PEEK_EXPORT, STARTTLS, STRUCTURED_REPLY, LIST_META_CONTEXT,
  // SET_META_CONTEXT, EXTENDED_HEADERS, and codes nobody defined.
  for (uint32_t opt : {4u, 5u, 8u, 9u, 10u, 11u, 0u, 12u, 0x12345678u, 0xffffffffu}) {
    INFO("option " << opt);
    for (const Bytes& data :
         {Bytes{}, Bytes(info_data("vram0", {1})), Bytes(10000, std::byte{7})}) {
      const Session s =
          run_all_ways(kExport, concat({kHello, option(opt, data), option(kOptAbort, {})}));
      CHECK(after_greeting(s) == concat({reply(opt, kErrUnsup), reply(kOptAbort, kRepAck)}));
    }
  }
}

TEST_CASE("an option without the IHAVEOPT magic closes the connection") {
  const Bytes client =
      concat({kHello, Wire{}.u64(kIHaveOpt ^ 1).u32(kOptList).u32(0), option(kOptList, {})});
  const Session s = run_all_ways(kExport, client);
  CHECK(s.output == kGreeting);
  CHECK(s.state == State::closed);
  CHECK(s.consumed == 4 + 16);
}

TEST_CASE("a connection answers at most 64 options") {
  Bytes client = kHello;
  Bytes expected;
  for (int i = 0; i < 63; ++i) {
    client = concat({client, option(8, {})});
    expected = concat({expected, reply(8, kErrUnsup)});
  }
  SECTION("the 64th may still enter transmission") {
    const Session s = run_all_ways(kExport, concat({client, option(kOptGo, info_data("", {}))}));
    CHECK(after_greeting(s) == concat({expected, info_export_reply(kOptGo),
                                       info_block_size_reply(kOptGo), reply(kOptGo, kRepAck)}));
    CHECK(s.state == State::transmission);
  }
  SECTION("the 65th closes without an answer") {
    client = concat({client, option(kOptList, {})});
    expected = concat(
        {expected, reply(kOptList, kRepServer, Wire{}.u32(5).text("vram0").text("GPU 0 VRAM swap")),
         reply(kOptList, kRepAck)});
    const Session s = run_all_ways(kExport, concat({client, option(kOptGo, info_data("", {}))}));
    CHECK(after_greeting(s) == expected);
    CHECK(s.state == State::closed);
    CHECK(s.consumed == client.size() + 16);
  }
}

TEST_CASE("an nbdinfo-like exchange decodes as a client expects") {
  // What libnbd does by default: ask for structured replies and a metadata
  // context, fall back on UNSUP, then GO with the information it wants.
  const Bytes set_meta = Wire{}.u32(0).u32(1).u32(15).text("base:allocation");
  const Bytes client =
      concat({client_flags(kFixed | kNoZeroes), option(8, {}), option(10, set_meta),
              option(kOptGo, info_data("", {kInfoBlockSize, kInfoName, kInfoDescription})),
              request(0, 0, 0x1122, 0, 512)});
  const Session s = run_all_ways(kExport, client);
  REQUIRE(s.state == State::transmission);

  Reader greeting(s.output);
  CHECK(greeting.u64() == kNbdMagic);
  CHECK(greeting.u64() == kIHaveOpt);
  CHECK((greeting.u16() & 1) == 1);  // the client insists on FIXED_NEWSTYLE

  bool ok = false;
  const std::vector<OptionReply> replies = option_replies(s.output, 18, ok);
  REQUIRE(ok);
  REQUIRE(replies.size() == 7);
  CHECK(replies[0].option == 8);
  CHECK(replies[0].type == kErrUnsup);
  CHECK(replies[1].option == 10);
  CHECK(replies[1].type == kErrUnsup);

  uint64_t size = 0;
  uint16_t flags = 0;
  uint32_t min_block = 0, preferred = 0, max_payload = 0;
  std::string name, description;
  int exports = 0, block_sizes = 0;
  for (size_t i = 2; i + 1 < replies.size(); ++i) {
    CHECK(replies[i].option == kOptGo);
    REQUIRE(replies[i].type == kRepInfo);
    Reader r(replies[i].data);
    switch (r.u16()) {
      case kInfoExport:
        REQUIRE(replies[i].data.size() == 12);
        size = r.u64();
        flags = r.u16();
        ++exports;
        break;
      case kInfoBlockSize:
        REQUIRE(replies[i].data.size() == 14);
        min_block = r.u32();
        preferred = r.u32();
        max_payload = r.u32();
        ++block_sizes;
        break;
      case kInfoName:
        name = r.text(r.left());
        break;
      case kInfoDescription:
        description = r.text(r.left());
        break;
      default:
        FAIL("unexpected information type");
    }
  }
  CHECK(replies.back().option == kOptGo);
  CHECK(replies.back().type == kRepAck);
  CHECK(replies.back().data.empty());
  CHECK(exports == 1);
  CHECK(block_sizes == 1);
  CHECK(size == kSize);
  CHECK(flags == kServedFlags);
  CHECK(min_block == 512);
  CHECK(preferred == 4096);
  CHECK(max_payload == 32u << 20);
  CHECK(name == "vram0");
  CHECK(description == "GPU 0 VRAM swap");
  // The READ that followed GO was left for transmission.
  CHECK(s.consumed == client.size() - 28);
}

TEST_CASE("an invalid export description closes at once, without a greeting") {
  nbd::ExportDescription bad = kExport;
  bad.min_block = 3;
  nbd::Handshake hs(bad);
  CHECK(hs.output().empty());
  CHECK(hs.state() == State::closed);
  CHECK(hs.input(kHello) == 0);
}

TEST_CASE("export descriptions are checked against the spec's rules") {
  CHECK(nbd::export_description_problem(kExport) == nullptr);
  nbd::ExportDescription d = kExport;
  d.name = "";
  CHECK(nbd::export_description_problem(d) == nullptr);  // only the default export

  const std::string long_text(257, 'n');
  auto problem = [](auto change) {
    nbd::ExportDescription e = kExport;
    change(e);
    return nbd::export_description_problem(e) != nullptr;
  };
  CHECK(problem([&](auto& e) { e.name = long_text; }));
  CHECK(problem([&](auto& e) { e.description = long_text; }));
  CHECK(problem([](auto& e) { e.name = std::string_view("a\0b", 3); }));
  CHECK(problem([](auto& e) { e.description = std::string_view("a\0b", 3); }));
  CHECK(problem([](auto& e) { e.transmission_flags = 0; }));
  CHECK(problem([](auto& e) { e.min_block = 0; }));
  CHECK(problem([](auto& e) { e.min_block = 768; }));
  CHECK(problem([](auto& e) { e.min_block = 131072; }));
  CHECK(problem([](auto& e) { e.preferred_block = 256; }));
  CHECK(problem([](auto& e) { e.preferred_block = 6144; }));
  CHECK(problem([](auto& e) { e.max_payload = 2048; }));
  CHECK(problem([](auto& e) { e.size = kSize + 256; }));
  CHECK_FALSE(problem([](auto& e) { e.min_block = 4096; }));
  CHECK_FALSE(problem([](auto& e) { e.max_payload = 0xffffffff; }));
  CHECK_FALSE(problem([&](auto& e) { e.name = std::string_view(long_text).substr(1); }));
}

TEST_CASE("random client streams never stall the handshake or garble its output") {
  std::mt19937_64 rng(7);
  auto pick = [&](uint64_t n) { return rng() % n; };
  auto random_bytes = [&](size_t n) {
    Bytes b(n);
    for (auto& x : b)
      x = static_cast<std::byte>(rng());
    return b;
  };
  int ended[3] = {};  // per final state: the streams must reach all three
  for (int round = 0; round < 3000; ++round) {
    Bytes client = client_flags(pick(8) == 0 ? static_cast<uint32_t>(rng()) : kFixed | kNoZeroes);
    const int options = static_cast<int>(pick(70));
    for (int i = 0; i < options; ++i) {
      const uint32_t code =
          pick(6) == 0 ? static_cast<uint32_t>(rng()) : static_cast<uint32_t>(pick(13));
      Bytes data;
      switch (pick(4)) {
        case 0: {
          const std::string name = pick(3) == 0 ? "vram0" : pick(2) ? "" : "x";
          data = info_data(name, {static_cast<uint16_t>(pick(5)), static_cast<uint16_t>(pick(5))});
          break;
        }
        case 1:
          data = random_bytes(pick(16));
          break;
        case 2:
          data = random_bytes(pick(6000));
          break;
        default:
          break;
      }
      Bytes opt = option(code, data);
      if (pick(50) == 0) opt[static_cast<size_t>(pick(16))] ^= std::byte{0x40};  // header damage
      if (pick(20) == 0) opt.resize(static_cast<size_t>(pick(opt.size() + 1)));  // truncated
      client = concat({client, opt});
    }
    const size_t receive = 1 + pick(pick(2) ? 8 : 8000);
    const size_t send = 1 + pick(pick(2) ? 8 : 1000);
    const Session s = run(kExport, client, receive, send);
    INFO("round " << round);
    REQUIRE_FALSE(s.stalled);
    REQUIRE(s.consumed <= client.size());
    ++ended[static_cast<int>(s.state)];
    if (s.output.empty()) continue;
    REQUIRE(s.output.size() >= kGreeting.size());

    // A client must be able to split the output into whole option replies,
    // apart from an NBD_OPT_EXPORT_NAME answer that ends it.
    Bytes out = s.output;
    bool ok = false;
    std::vector<OptionReply> replies = option_replies(out, kGreeting.size(), ok);
    if (!ok && s.state == State::transmission) {
      out.resize(out.size() - (s.no_zeroes ? 10 : 134));
      replies = option_replies(out, kGreeting.size(), ok);
    }
    REQUIRE(ok);
    for (const OptionReply& r : replies)
      REQUIRE(r.data.size() <= nbd::Handshake::max_output);
  }
  CHECK(ended[static_cast<int>(State::negotiating)] > 100);
  CHECK(ended[static_cast<int>(State::transmission)] > 100);
  CHECK(ended[static_cast<int>(State::closed)] > 100);
}
