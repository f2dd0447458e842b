// SPDX-License-Identifier: MPL-2.0
// test_mdp_protocol.cpp — MDP/0.1 wire constants and command-frame parsing.
#include <zmesh/mdp/protocol.hpp>

#include <doctest/doctest.h>

#include <string>

namespace mdp = zmesh::mdp;

TEST_SUITE("lib.mdp") {

TEST_CASE("the protocol headers and command bytes are those of 7/MDP") {
    CHECK(mdp::client_v1 == "MDPC01");
    CHECK(mdp::worker_v1 == "MDPW01");
    CHECK(static_cast<int>(mdp::worker_command::ready) == 1);
    CHECK(static_cast<int>(mdp::worker_command::request) == 2);
    CHECK(static_cast<int>(mdp::worker_command::reply) == 3);
    CHECK(static_cast<int>(mdp::worker_command::heartbeat) == 4);
    CHECK(static_cast<int>(mdp::worker_command::disconnect) == 5);
}

TEST_CASE("a command frame is exactly one known byte") {
    for (int b = 0; b < 256; ++b) {
        const auto byte = static_cast<unsigned char>(b);
        zmq::message_t frame(&byte, 1);
        auto c = mdp::parse_worker_command(frame);
        CAPTURE(b);
        CHECK(c.has_value() == (b >= 1 && b <= 5));
        if (c) {
            CHECK(static_cast<int>(*c) == b);
            auto again = mdp::command_frame(*c);
            CHECK(again.size() == 1);
            CHECK(*static_cast<const unsigned char*>(again.data()) == byte);
            CHECK_FALSE(mdp::to_string(*c).empty());
        }
    }
    CHECK_FALSE(mdp::parse_worker_command(zmq::message_t()));
    CHECK_FALSE(mdp::parse_worker_command(zmq::message_t(std::string_view("\x01\x01"))));
    CHECK_FALSE(mdp::parse_worker_command(zmq::message_t(std::string_view("READY"))));
}

TEST_CASE("the broker reserves mmi and zmesh services and nothing else") {
    CHECK(mdp::is_broker_service("mmi.service"));
    CHECK(mdp::is_broker_service("mmi."));
    CHECK(mdp::is_broker_service("zmesh.services"));
    CHECK(mdp::is_broker_service("zmesh.anything"));
    CHECK_FALSE(mdp::is_broker_service("echo"));
    CHECK_FALSE(mdp::is_broker_service("mmi"));
    CHECK_FALSE(mdp::is_broker_service("zmeshy"));
    CHECK_FALSE(mdp::is_broker_service("titanic.request"));
}

}
