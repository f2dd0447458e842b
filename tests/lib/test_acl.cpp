// SPDX-License-Identifier: MPL-2.0
// test_acl.cpp — the access list (security/acl.hpp): its file format, with errors that name the
// line, and what each rule allows and does not.
#include <zmesh/error.hpp>
#include <zmesh/security/acl.hpp>

#include <doctest/doctest.h>

using zmesh::security::access_list;
using zmesh::security::permission;

TEST_SUITE("lib.security.acl") {

TEST_CASE("rules allow exact names, prefixes and everything, and nothing else is allowed") {
    const auto acl = access_list::parse(R"(
# traders call the order services; the risk engine serves them
alice     call       orders.* prices      # a comment after a rule
risk      serve      orders.*
feed      publish    prices.*
alice     subscribe  prices.* news.eu
ops       admin
*         call       health
)",
                                        "acl.conf");
    CHECK(acl.size() == 6);
    CHECK(acl.allows("alice", permission::call, "orders.new"));
    CHECK(acl.allows("alice", permission::call, "orders."));
    CHECK(acl.allows("alice", permission::call, "prices"));
    CHECK_FALSE(acl.allows("alice", permission::call, "prices.eu")); // exact, not a prefix
    CHECK_FALSE(acl.allows("alice", permission::call, "order"));
    CHECK_FALSE(acl.allows("alice", permission::serve, "orders.new"));
    CHECK(acl.allows("risk", permission::serve, "orders.new"));
    CHECK_FALSE(acl.allows("risk", permission::call, "orders.new"));
    CHECK(acl.allows("bob", permission::call, "health")); // '*' is every key
    CHECK(acl.allows("alice", permission::call, "health"));
    CHECK_FALSE(acl.allows("bob", permission::call, "orders.new"));
    CHECK(acl.allows("feed", permission::publish, "prices.eu.xyz"));
    CHECK_FALSE(acl.allows("feed", permission::publish, "news.eu"));
    CHECK(acl.allows("ops", permission::admin, ""));
    CHECK_FALSE(acl.allows("alice", permission::admin, ""));
    CHECK_FALSE(acl.allows("", permission::call, "orders.new")); // no name: only '*' rules
}

TEST_CASE("a subscription is allowed only if every topic it could receive is") {
    const auto acl = access_list::parse("alice subscribe prices.* news.eu\nbob subscribe *\n", "t");
    CHECK(acl.allows("alice", permission::subscribe, "prices.eu"));
    CHECK(acl.allows("alice", permission::subscribe, "prices."));
    CHECK_FALSE(acl.allows("alice", permission::subscribe, "prices")); // would get "pricesX"
    CHECK_FALSE(acl.allows("alice", permission::subscribe, ""));       // everything
    CHECK(acl.allows("alice", permission::subscribe, "news.eu"));
    CHECK_FALSE(acl.allows("alice", permission::subscribe, "news.eu.fr")); // exact only
    CHECK(acl.allows("bob", permission::subscribe, ""));
}

TEST_CASE("mmi.* is open to every key, and zmesh.* needs admin or a rule that names it") {
    const auto acl = access_list::parse(
        "alice call *\nops admin\ncarol call zmesh.directory\n", "t");
    CHECK(acl.may_call("alice", "orders"));
    CHECK(acl.may_call("nobody", "mmi.service"));
    CHECK_FALSE(acl.may_call("alice", "zmesh.dlq")); // '*' does not reach the broker's own
    CHECK(acl.may_call("ops", "zmesh.dlq"));
    CHECK(acl.may_call("ops", "zmesh.stats"));
    CHECK(acl.may_call("carol", "zmesh.directory"));
    CHECK_FALSE(acl.may_call("carol", "zmesh.dlq"));
    CHECK_FALSE(acl.may_call("ops", "orders")); // admin is only the broker's services
}

TEST_CASE("errors name the source and the line") {
    auto fails = [](const char* text, const char* want) {
        CAPTURE(text);
        CHECK_THROWS_WITH_AS((void)access_list::parse(text, "acl.conf"), doctest::Contains(want),
                             zmesh::error);
    };
    fails("alice call x\nbob\n", "acl.conf:2:");
    fails("alice eat orders\n", "unknown permission 'eat'");
    fails("\n\nalice call or*ders\n", "acl.conf:3:");
    fails("alice call\n", "needs at least one pattern");
    fails("ops admin zmesh.*\n", "admin takes no patterns");
    CHECK_THROWS_WITH_AS((void)access_list::load("/nonexistent/acl.conf"),
                         doctest::Contains("/nonexistent/acl.conf"), zmesh::error);
}

TEST_CASE("an empty list allows nothing") {
    const auto acl = access_list::parse("# nothing yet\n\n", "t");
    CHECK(acl.size() == 0);
    CHECK_FALSE(acl.allows("alice", permission::call, "orders"));
    CHECK(acl.may_call("alice", "mmi.service"));
}

TEST_CASE("the example in docs/ parses, and means what its comments say") {
    const auto acl = access_list::load(ZMESH_SOURCE_DIR "/docs/acl.example.conf");
    CHECK(acl.may_call("order-desk", "orders.new"));
    CHECK(acl.may_call("order-desk", "prices.quote"));
    CHECK_FALSE(acl.may_call("order-desk", "prices.history"));
    CHECK(acl.allows("matcher", permission::serve, "orders.match"));
    CHECK_FALSE(acl.allows("matcher", permission::serve, "prices.quote"));
    CHECK(acl.may_call("anyone", "health"));
    CHECK(acl.may_call("ops", "zmesh.dlq"));
    CHECK_FALSE(acl.may_call("order-desk", "zmesh.dlq"));
}

} // TEST_SUITE
