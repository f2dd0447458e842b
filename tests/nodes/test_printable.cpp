// SPDX-License-Identifier: MPL-2.0
// test_printable.cpp — nodes/broker/printable.hpp (internal): how the broker shows peer-supplied
// bytes in its logs and reason texts.
#include "broker/printable.hpp"

#include <doctest/doctest.h>

#include <string>

using zmesh::nodes::detail::printable;
using namespace std::string_literals;

TEST_SUITE("nodes.printable") {

TEST_CASE("printable ASCII is kept as it is") {
    CHECK(printable("") == "");
    CHECK(printable("prices.eur ~!{}") == "prices.eur ~!{}");
}

TEST_CASE("control, DEL and non-ASCII bytes are escaped, and so is the backslash") {
    CHECK(printable("\x1b[31mred\n"s) == "\\x1b[31mred\\x0a");
    CHECK(printable("\0zmesh.probe.\x7f"s) == "\\x00zmesh.probe.\\x7f");
    CHECK(printable("caf\xc3\xa9"s) == "caf\\xc3\\xa9");
    // A literal "\x41" in the input cannot pass for an escaped byte.
    CHECK(printable("a\\x41") == "a\\x5cx41");
}

TEST_CASE("long input is cut after max bytes and its length given") {
    const std::string topic(1000, 't');
    CHECK(printable(topic) == std::string(64, 't') + "... (1000 bytes)");
    CHECK(printable(topic, 3) == "ttt... (1000 bytes)");
    CHECK(printable("abc", 3) == "abc");
    CHECK(printable("abcd", 0) == "... (4 bytes)");
    // The bound holds for the worst input: every byte escaped.
    const std::string worst(10000, '\x01');
    CHECK(printable(worst).size() <= 4 * 64 + 32);
}

}
