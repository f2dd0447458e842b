// SPDX-License-Identifier: MPL-2.0
// test_broker_codec.cpp — the broker's typed parse layer (nodes/broker/codec/) and its worker
// state table (nodes/broker/worker_table.hpp), without sockets.
#include "broker/codec/decode.hpp"
#include "broker/worker_table.hpp"

#include <zmesh/mdp/protocol.hpp>

#include "support/support.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <string>

namespace codec = zmesh::nodes::detail::codec;
namespace mdp = zmesh::mdp;
using zmesh::nodes::detail::worker_action;
using zmesh::nodes::detail::worker_event;
using zmesh::nodes::detail::worker_state;
using zmesh::nodes::detail::worker_table;
using zmesh::nodes::detail::worker_transition_for;

namespace {

/// A message as the ROUTER delivers it: routing id "peer", then @p frames.
zmesh::message from_peer(std::vector<std::string> frames) {
    frames.insert(frames.begin(), "peer");
    return support::frames(frames);
}

std::string cmd(mdp::worker_command c) { return std::string(1, static_cast<char>(c)); }

template <class T> const T& as(const codec::decoded& d) {
    REQUIRE(std::holds_alternative<T>(d.cmd));
    return std::get<T>(d.cmd);
}

} // namespace

TEST_SUITE("nodes.broker.codec") {

TEST_CASE("MDPC01 and ZMCT01 requests decode to the service, tag and body positions") {
    auto plain = from_peer({"", "MDPC01", "echo", "a", "b"});
    auto d = codec::decode(plain);
    CHECK(d.proto == codec::protocol::mdpc01);
    auto& r = as<codec::client_request>(d);
    CHECK(r.service == "echo");
    CHECK(r.service_ok);
    CHECK(r.tag_at == 0);
    CHECK(r.body_at == 4);

    auto tagged = from_peer({"", "ZMCT01", "echo", "tag-1", "a"});
    d = codec::decode(tagged);
    CHECK(d.proto == codec::protocol::zmct01);
    auto& t = as<codec::client_request>(d);
    CHECK(t.tag_at == 4);
    CHECK(t.body_at == 5);
}

TEST_CASE("client requests without a body, or with an empty or oversized tag, are malformed") {
    for (auto frames : {std::vector<std::string>{"", "MDPC01", "echo"},
                        {"", "MDPC01"},
                        {"", "ZMCT01", "echo", "tag"},
                        {"", "ZMCT01", "echo", "", "body"},
                        {"", "ZMCT01", "echo", std::string(256, 't'), "body"},
                        {"x", "MDPC01", "echo", "body"},
                        {"", "MDPX01", "echo", "body"}}) {
        auto m = from_peer(frames);
        CHECK(std::holds_alternative<codec::malformed>(codec::decode(m).cmd));
    }
}

TEST_CASE("service names must be 1..255 printable ASCII bytes without spaces") {
    CHECK(codec::valid_service_name("titanic.request"));
    CHECK(codec::valid_service_name(std::string(255, 'a')));
    for (std::string bad : {std::string(), std::string(256, 'a'), std::string("a b"),
                            std::string("tab\t"), std::string("nul\0x", 5), std::string("caf\xc3\xa9")})
        CHECK_FALSE(codec::valid_service_name(bad));
    auto m = from_peer({"", "MDPC01", "a b", "body"});
    CHECK_FALSE(as<codec::client_request>(codec::decode(m)).service_ok);
}

TEST_CASE("MDPW01 commands decode by their byte and their exact frames") {
    using c = mdp::worker_command;
    auto ready = from_peer({"", "MDPW01", cmd(c::ready), "svc"});
    auto d = codec::decode(ready);
    CHECK(d.proto == codec::protocol::mdpw01);
    CHECK(as<codec::worker_ready>(d).credit == 1);
    CHECK(as<codec::worker_ready>(d).service == "svc");

    auto reply = from_peer({"", "MDPW01", cmd(c::reply), "handle", "", "body"});
    d = codec::decode(reply);
    CHECK(as<codec::worker_reply>(d).client == "handle");
    CHECK(as<codec::worker_reply>(d).body_at == 6);
    auto bodyless = from_peer({"", "MDPW01", cmd(c::reply), "handle", ""});
    CHECK(as<codec::worker_reply>(codec::decode(bodyless)).body_at == 6);

    auto beat = from_peer({"", "MDPW01", cmd(c::heartbeat)});
    CHECK(std::holds_alternative<codec::worker_heartbeat>(codec::decode(beat).cmd));
    auto bye = from_peer({"", "MDPW01", cmd(c::disconnect)});
    CHECK(std::holds_alternative<codec::worker_disconnect>(codec::decode(bye).cmd));
    auto wrong_way = from_peer({"", "MDPW01", cmd(c::request), "x", "", "y"});
    CHECK(std::holds_alternative<codec::worker_request>(codec::decode(wrong_way).cmd));

    // A valid command byte with wrong frames keeps the command, so the peer is known a worker.
    for (auto frames : {std::vector<std::string>{"", "MDPW01", cmd(c::ready)},
                        {"", "MDPW01", cmd(c::ready), "svc", "extra"},
                        {"", "MDPW01", cmd(c::reply), "handle"},
                        {"", "MDPW01", cmd(c::reply), "handle", "not-empty", "body"},
                        {"", "MDPW01", cmd(c::heartbeat), "extra"}}) {
        auto m = from_peer(frames);
        const auto decoded = codec::decode(m); // as<> returns a reference into it
        auto& bad = as<codec::malformed>(decoded);
        CAPTURE(bad.why);
        CHECK(bad.command.has_value());
    }
    for (auto frames : {std::vector<std::string>{"", "MDPW01"}, {"", "MDPW01", "\x09"},
                        {"", "MDPW01", "\x01\x01", "svc"}, {"", "MDPW01", ""}}) {
        auto m = from_peer(frames);
        CHECK_FALSE(as<codec::malformed>(codec::decode(m)).command.has_value());
    }
}

TEST_CASE("ZMWC01 READY carries a credit of 1..1024 and REPLY an 8-byte tag") {
    using c = mdp::worker_command;
    auto ready = from_peer({"", "ZMWC01", cmd(c::ready), "svc", "64"});
    auto d = codec::decode(ready);
    CHECK(d.proto == codec::protocol::zmwc01);
    CHECK(as<codec::worker_ready>(d).credit == 64);
    for (std::string credit : {"0", "1025", "", "12a", "01"}) {
        auto m = from_peer({"", "ZMWC01", cmd(c::ready), "svc", credit});
        CHECK(as<codec::malformed>(codec::decode(m)).command == c::ready);
    }
    codec::request_tag tag{3, 77};
    std::string tag_bytes(sizeof tag, '\0');
    std::memcpy(tag_bytes.data(), &tag, sizeof tag);
    auto reply = from_peer({"", "ZMWC01", cmd(c::reply), tag_bytes, "handle", "", "body"});
    const auto decoded = codec::decode(reply);
    auto& r = as<codec::worker_reply>(decoded);
    CHECK(r.tag.slot == 3);
    CHECK(r.tag.generation == 77);
    CHECK(r.body_at == 7);
    auto short_tag = from_peer({"", "ZMWC01", cmd(c::reply), "1234567", "handle", "", "body"});
    CHECK(std::holds_alternative<codec::malformed>(codec::decode(short_tag).cmd));
}

TEST_CASE("encoders write the frames each protocol expects") {
    zmesh::message out;
    codec::request_envelope(out, codec::protocol::mdpw01, "w", {}, "handle");
    CHECK(support::texts(out) == std::vector<std::string>{"w", "", "MDPW01", cmd(mdp::worker_command::request), "handle", ""});
    out.clear();
    codec::request_envelope(out, codec::protocol::zmwc01, "w", {1, 2}, "handle");
    CHECK(out.size() == 7);
    CHECK(out[4].size() == mdp::request_tag_size);
    out.clear();
    codec::reply_envelope(out, codec::protocol::mdpc01, "c", "svc", zmq::message_t());
    CHECK(support::texts(out) == std::vector<std::string>{"c", "", "MDPC01", "svc"});
    out.clear();
    codec::reply_envelope(out, codec::protocol::zmct01, "c", "svc",
                          zmq::message_t(std::string_view("t")));
    CHECK(support::texts(out) == std::vector<std::string>{"c", "", "ZMCT01", "svc", "t"});
    out.clear();
    codec::reply_envelope(out, codec::protocol::mdpc02, "c", "svc", {}, {}, false);
    CHECK(support::texts(out) == std::vector<std::string>{"c", "MDPC02", "\x02", "svc"});
    out.clear();
    codec::reply_envelope(out, codec::protocol::zmct02, "c", "svc", {},
                          zmq::message_t(std::string_view("H")), true);
    CHECK(support::texts(out) == std::vector<std::string>{"c", "ZMCT02", "\x03", "svc", "H"});
    out.clear();
    codec::reply_envelope(out, codec::protocol::zmct03, "c", "svc", {},
                          zmq::message_t(std::string_view("H")), false);
    CHECK(support::texts(out) == std::vector<std::string>{"c", "ZMCT03\x02", "svc", "H"});
    out.clear();
    codec::reply_envelope(out, codec::protocol::zmct03, "c", "svc", {},
                          zmq::message_t(std::string_view("H")), true);
    CHECK(support::texts(out) == std::vector<std::string>{"c", "ZMCT03\x03", "svc", "H"});
    out.clear();
    codec::request_envelope(out, codec::protocol::mdpw02, "w", {}, "handle");
    CHECK(support::texts(out) == std::vector<std::string>{"w", "MDPW02", "\x02", "handle", ""});
    out.clear();
    codec::request_envelope(out, codec::protocol::zmwc02, "w", {1, 2}, "handle",
                            zmq::message_t(std::string_view("H")));
    REQUIRE(out.size() == 7);
    CHECK(zmesh::view(out[1]) == "ZMWC02");
    CHECK(out[3].size() == mdp::request_tag_size);
    CHECK(zmesh::view(out[6]) == "H");
    out.clear();
    codec::command_message(out, codec::protocol::mdpw02, "w", mdp::worker_command::heartbeat);
    CHECK(support::texts(out) == std::vector<std::string>{"w", "MDPW02", "\x05"});
    out.clear();
    codec::command_message(out, codec::protocol::zmwc02, "w", mdp::worker_command::disconnect);
    CHECK(support::texts(out) == std::vector<std::string>{"w", "ZMWC02", "\x06"});
}

TEST_CASE("18/MDP and zmesh's 02 protocols decode by their first frame, without a delimiter") {
    using zmesh::message;
    const std::string b1("\x01", 1), b3("\x03", 1), b4("\x04", 1), b5("\x05", 1), b7("\x07", 1);
    auto d = codec::decode(message{"id", "MDPC02", b1, "echo", "x"});
    REQUIRE(std::holds_alternative<codec::client_request>(d.cmd));
    CHECK(d.proto == codec::protocol::mdpc02);
    CHECK(std::get<codec::client_request>(d.cmd).body_at == 4);
    CHECK(std::get<codec::client_request>(d.cmd).header_at == 0);
    d = codec::decode(message{"id", "ZMCT02", b1, "echo", "H", "x"});
    REQUIRE(std::holds_alternative<codec::client_request>(d.cmd));
    CHECK(d.proto == codec::protocol::zmct02);
    CHECK(std::get<codec::client_request>(d.cmd).header_at == 4);
    CHECK(std::get<codec::client_request>(d.cmd).body_at == 5);
    // A ZMCT02 request needs its header; a client sends only REQUESTs.
    CHECK(std::holds_alternative<codec::malformed>(codec::decode(message{"id", "ZMCT02", b1, "echo"}).cmd));
    CHECK(std::holds_alternative<codec::malformed>(codec::decode(message{"id", "MDPC02", b3, "echo"}).cmd));
    // ZMCT03: the command byte ends the protocol frame, so the service and header come a frame
    // earlier than in ZMCT02.
    const message v3{"id", "ZMCT03" + b1, "echo", "H", "x", "y"}; // the command views its frames
    d = codec::decode(v3);
    REQUIRE(std::holds_alternative<codec::client_request>(d.cmd));
    CHECK(d.proto == codec::protocol::zmct03);
    CHECK(std::get<codec::client_request>(d.cmd).service == "echo");
    CHECK(std::get<codec::client_request>(d.cmd).service_ok);
    CHECK(std::get<codec::client_request>(d.cmd).header_at == 3);
    CHECK(std::get<codec::client_request>(d.cmd).body_at == 4);
    d = codec::decode(message{"id", "ZMCT03" + b1, "echo", "H"}); // no body: allowed, as in 18/MDP
    REQUIRE(std::holds_alternative<codec::client_request>(d.cmd));
    CHECK(std::get<codec::client_request>(d.cmd).body_at == 4);
    // Malformed: no header; an empty header; a reply's command; no command byte; a longer frame.
    const std::vector<std::vector<std::string>> bad_v3{
        {"id", "ZMCT03" + b1, "echo"},       {"id", "ZMCT03" + b1, "echo", "", "x"},
        {"id", "ZMCT03" + b3, "echo", "H", "x"}, {"id", "ZMCT03", "echo", "H", "x"},
        {"id", "ZMCT03" + b1 + b1, "echo", "H", "x"}};
    for (const auto& frames : bad_v3) {
        CAPTURE(frames);
        message bad;
        for (const auto& f : frames) bad.push_back(f);
        CHECK(std::holds_alternative<codec::malformed>(codec::decode(bad).cmd));
    }
    // Workers: READY, PARTIAL/FINAL, HEARTBEAT; a bad command byte.
    d = codec::decode(message{"w", "ZMWC02", b1, "echo", "8"});
    REQUIRE(std::holds_alternative<codec::worker_ready>(d.cmd));
    CHECK(std::get<codec::worker_ready>(d.cmd).credit == 8);
    d = codec::decode(message{"w", "MDPW02", b1, "echo"});
    REQUIRE(std::holds_alternative<codec::worker_ready>(d.cmd));
    CHECK(d.proto == codec::protocol::mdpw02);
    const std::string tag(8, 'T');
    d = codec::decode(message{"w", "ZMWC02", b3, tag, "client", "", "H", "part"});
    REQUIRE(std::holds_alternative<codec::worker_reply>(d.cmd));
    CHECK_FALSE(std::get<codec::worker_reply>(d.cmd).final);
    CHECK(std::get<codec::worker_reply>(d.cmd).header_at == 6);
    CHECK(std::get<codec::worker_reply>(d.cmd).body_at == 7);
    d = codec::decode(message{"w", "MDPW02", b4, "client", "", "done"});
    REQUIRE(std::holds_alternative<codec::worker_reply>(d.cmd));
    CHECK(std::get<codec::worker_reply>(d.cmd).final);
    CHECK(std::get<codec::worker_reply>(d.cmd).body_at == 5);
    CHECK(std::holds_alternative<codec::worker_heartbeat>(codec::decode(message{"w", "MDPW02", b5}).cmd));
    CHECK(std::holds_alternative<codec::malformed>(codec::decode(message{"w", "MDPW02", b7}).cmd));
    // A FINAL without its empty frame, a ZMWC02 FINAL with a short tag.
    CHECK(std::holds_alternative<codec::malformed>(codec::decode(message{"w", "MDPW02", b4, "client", "x"}).cmd));
    CHECK(std::holds_alternative<codec::malformed>(codec::decode(message{"w", "ZMWC02", b4, "T", "client", "", "H"}).cmd));
}

TEST_CASE("the worker table has a row with a cited rule for every state and event") {
    for (const auto& row : worker_table) CHECK_FALSE(row.rule.empty());
    using a = worker_action;
    using e = worker_event;
    using s = worker_state;
    CHECK(worker_transition_for(s::unknown, e::ready).action == a::register_worker);
    CHECK(worker_transition_for(s::unknown, e::heartbeat).action == a::refuse);
    CHECK(worker_transition_for(s::unknown, e::disconnect).action == a::ignore);
    CHECK(worker_transition_for(s::registered, e::ready).action == a::disconnect_worker);
    CHECK(worker_transition_for(s::registered, e::reply).action == a::deliver_reply);
    CHECK(worker_transition_for(s::registered, e::disconnect).action == a::forget);
    CHECK(worker_transition_for(s::registered, e::other_protocol).action == a::disconnect_worker);
    // Only malformed frames from an unknown peer are dropped without a word.
    for (const auto& row : worker_table)
        if (row.action == a::drop) CHECK(row.protocol_error);
}

} // TEST_SUITE
