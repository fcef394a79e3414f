#include <catch2/catch.hpp>

#include "common/printable.hpp"

using vramswap::escape_unprintable;

TEST_CASE("text quoted into a log line keeps valid UTF-8 and escapes every other byte") {
  CHECK(escape_unprintable("size = 2G") == "size = 2G");
  CHECK(escape_unprintable("gr\xC3\xB6\xC3\x9F"
                           "e = \xE2\x82\xAC") ==
        "gr\xC3\xB6\xC3\x9F"
        "e = \xE2\x82\xAC");
  // Latin-1, a lone continuation byte, a cut-off sequence at the end.
  CHECK(escape_unprintable("gr\xF6\xDF"
                           "e") == "gr\\xF6\\xDFe");
  CHECK(escape_unprintable("a\x80z") == "a\\x80z");
  CHECK(escape_unprintable("euro \xE2\x82") == "euro \\xE2\\x82");
  // Overlong forms and UTF-16 surrogates are not UTF-8.
  CHECK(escape_unprintable("\xC0\xAF") == "\\xC0\\xAF");
  CHECK(escape_unprintable("\xED\xA0\x80") == "\\xED\\xA0\\x80");
  CHECK(escape_unprintable("\xF4\x90\x80\x80") == "\\xF4\\x90\\x80\\x80");
  // Control characters would break the line or drive the terminal.
  CHECK(escape_unprintable("a\nb\x1B[2Jc\x7F") == "a\\x0Ab\\x1B[2Jc\\x7F");
}
