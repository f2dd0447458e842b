// SPDX-License-Identifier: MPL-2.0
// make_corpus.cpp — writes the seed corpus of every fuzz target: zmesh_fuzz_corpus <dir> fills
// <dir>/<target>/ with valid (and a few near-valid) inputs built by zmesh's own encoders and the
// frame scheme of fuzz_input.hpp. Its output is committed under tests/fuzz/corpus/; run it again
// when an encoding changes. Seeds are small on purpose: libFuzzer grows the corpus itself.
#include "fuzz_input.hpp"

#include <zmesh/codec.hpp>
#include <zmesh/header.hpp>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace {

namespace fs = std::filesystem;
using namespace std::string_view_literals;

fs::path root;

void write(const std::string& target, const std::string& name, std::string_view bytes) {
    const fs::path dir = root / target;
    fs::create_directories(dir);
    std::ofstream(dir / name, std::ios::binary).write(bytes.data(), static_cast<long>(bytes.size()));
}

/// One input of the frame scheme: the messages in order, each a list of frames.
std::string frames(std::initializer_list<std::initializer_list<std::string_view>> messages) {
    std::string out;
    bool first = true;
    for (const auto& m : messages) {
        if (!first) zmesh::fuzz::append_end_of_message(out);
        first = false;
        for (auto f : m) zmesh::fuzz::append_frame(out, f);
    }
    return out;
}

std::string bytes_of(const zmq::message_t& frame) { return zmesh::to_string(frame); }

template <class T> std::string packed(const T& value) { return bytes_of(zmesh::pack(value)); }

zmesh::message_id fixed_id(std::uint8_t seed) {
    zmesh::message_id::bytes_type b{};
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(seed + i);
    return zmesh::message_id(b);
}

void header_seeds() {
    zmesh::header typical;
    typical.id = fixed_id(1);
    typical.type = "order.created";
    typical.timestamp_ns = 1'700'000'000'000'000'000;
    write("header", "typical", bytes_of(zmesh::encode(typical)));

    zmesh::header full = typical;
    full.priority = 9;
    full.ttl_ms = 30'000;
    full.correlation_id = fixed_id(17);
    full.attempt = 3;
    full.sequence = 123'456'789;
    full.source = fixed_id(33);
    write("header", "all_fields", bytes_of(zmesh::encode(full)));

    zmesh::header ext = typical;
    ext.extensions = {{"xi", packed(42)},
                      {"xs", packed(std::string("trace"))},
                      {"xa", packed(std::vector<int>{1, 2, 3})},
                      {"xm", packed(std::map<std::string, int>{{"a", 1}})}};
    write("header", "extensions", bytes_of(zmesh::encode(ext)));

    zmesh::header minimal;
    minimal.id = fixed_id(2);
    write("header", "id_only", bytes_of(zmesh::encode(minimal)));

    // Known keys written with nil, negative time and a non-str key, as other peers may.
    msgpack::sbuffer b;
    msgpack::packer<msgpack::sbuffer> p(b);
    p.pack_map(4);
    p.pack(std::string("id"));
    p.pack_bin(16);
    p.pack_bin_body("0123456789abcdef", 16);
    p.pack(std::string("co"));
    p.pack_nil();
    p.pack(std::string("ts"));
    p.pack(std::int64_t{-5});
    p.pack(7);
    p.pack(std::string("non-str key"));
    write("header", "nil_and_odd_keys", {b.data(), b.size()});
}

struct record {
    std::string name;
    std::int64_t count = 0;
    std::vector<double> values;
    MSGPACK_DEFINE(name, count, values)
};

void codec_seeds() {
    write("codec", "uint", packed(std::uint64_t{1} << 40));
    write("codec", "negative", packed(std::int64_t{-123456}));
    write("codec", "string", packed(std::string("hello, zmesh")));
    write("codec", "double", packed(3.25));
    write("codec", "float", packed(1.5F));
    write("codec", "bool_nil", packed(std::make_tuple(true, msgpack::type::nil_t())));
    write("codec", "vector", packed(std::vector<std::int64_t>{1, -2, 300, 70000}));
    write("codec", "map", packed(std::map<std::string, std::string>{{"k", "v"}, {"sku", "A-17"}}));
    write("codec", "tuple", packed(std::make_tuple(std::int64_t{5}, std::string("five"))));
    write("codec", "record", packed(record{"order", 3, {1.0, 2.5}}));
    write("codec", "nested",
          packed(std::vector<std::map<std::string, std::vector<int>>>{{{"a", {1, 2}}}, {}}));
    msgpack::sbuffer b;
    msgpack::packer<msgpack::sbuffer> p(b);
    p.pack_array(2);
    p.pack_bin(3);
    p.pack_bin_body("\x00\x01\x02", 3);
    p.pack_ext(4, 1);
    p.pack_ext_body("abcd", 4);
    write("codec", "bin_ext", {b.data(), b.size()});
}

void message_seeds() {
    // The first frame is the script: one operation per byte (fuzz_message.cpp).
    write("message", "router_envelope",
          frames({{"\x00\x01\x02\x05\x00"sv, "peer-1", "peer-2", "", "MDPC01", "echo", "body"}}));
    write("message", "all_operations",
          frames({{"\x00\x01\x02\x03\x04\x05\x06\x07\x08"sv, "a", "", "b", "c"}}));
    write("message", "no_delimiter", frames({{"\x00\x01\x05"sv, "only", "frames"}}));
    write("message", "empty_frames", frames({{"\x05\x00\x03\x01"sv, "", "", ""}}));
    write("message", "no_frames", frames({{"\x00\x01\x03\x04\x05\x06"sv}}));
}

void mdp_seeds() {
    write("mdp_protocol", "worker_ready", frames({{"", "MDPW01", "\x01", "echo"}}));
    write("mdp_protocol", "worker_request", frames({{"", "MDPW01", "\x02", "client", "", "body"}}));
    write("mdp_protocol", "worker_reply", frames({{"", "MDPW01", "\x03", "client", "", "answer"}}));
    write("mdp_protocol", "worker_heartbeat", frames({{"", "MDPW01", "\x04"}}));
    write("mdp_protocol", "worker_disconnect", frames({{"", "MDPW01", "\x05"}}));
    write("mdp_protocol", "credit_ready", frames({{"", "ZMWC01", "\x01", "echo", "8"}}));
    write("mdp_protocol", "credit_ready_max", frames({{"", "ZMWC01", "\x01", "echo", "1024"}}));
    write("mdp_protocol", "credit_reply",
          frames({{"", "ZMWC01", "\x03", "tag-8byt", "client", "", "answer"}}));
    write("mdp_protocol", "client_request", frames({{"", "MDPC01", "echo", "hello"}}));
    write("mdp_protocol", "client_mmi", frames({{"", "MDPC01", "mmi.service", "echo"}}));
    write("mdp_protocol", "tagged_request", frames({{"", "ZMCT01", "zmesh.stats", "t1", "x"}}));
    write("mdp_protocol", "bad_credits", frames({{"0", "01", "1025", "99999", "-1", "+5", " 7"}}));
}

void directory_seeds() {
    write("directory", "register_resolve",
          frames({{"register", "prices", "tcp://10.0.0.7:6000", "30000"},
                  {"resolve", "prices"},
                  {"list"},
                  {"unregister", "prices", "tcp://10.0.0.7:6000"},
                  {"resolve", "prices"}}));
    write("directory", "transports",
          frames({{"register", "a", "ipc:///tmp/zmesh-a.sock", "1000"},
                  {"register", "a", "inproc://a", "1"},
                  {"register", "b", "tcp://[::1]:80", "86400000"},
                  {"resolve", "a"},
                  {"list"},
                  {"resolve", "a"}}));
    write("directory", "expiry_and_renewal",
          frames({{"register", "n", "tcp://h:1", "600"},
                  {"register", "n", "tcp://h:1", "600"},
                  {"resolve", "n"},
                  {"resolve", "n"},
                  {"resolve", "n"},
                  {"resolve", "n"},
                  {"list"}}));
    write("directory", "full",
          frames({{"register", "n1", "tcp://h:1", "60000"}, {"register", "n2", "tcp://h:2", "60000"},
                  {"register", "n3", "tcp://h:3", "60000"}, {"register", "n4", "tcp://h:4", "60000"},
                  {"register", "n5", "tcp://h:5", "60000"}, {"register", "n6", "tcp://h:6", "60000"},
                  {"register", "n7", "tcp://h:7", "60000"}, {"register", "n8", "tcp://h:8", "60000"},
                  {"register", "n9", "tcp://h:9", "60000"}, {"register", "n1", "tcp://h:1", "5"},
                  {"list"}}));
    write("directory", "malformed",
          frames({{},
                  {"register", "x"},
                  {"register", "bad\x01name", "tcp://h:1", "10"},
                  {"register", "x", "tcp://*:1", "10"},
                  {"register", "x", "tcp://h:1", "0"},
                  {"register", "x", "udp://h:1", "10"},
                  {"resolve"},
                  {"list", "extra"},
                  {"frobnicate"}}));
}

void titanic_seeds() {
    write("titanic_store", "request",
          frames({{"echo", "failed 3 attempts; last: no reply within 5000 ms", "hello"}}));
    write("titanic_store", "binary_frames",
          frames({{"svc\xff\xfe"sv, "worker said: \x1b[31m"sv, "", "\x00\x01\x02"sv, "tail"}}));
    write("titanic_store", "ids_as_frames",
          frames({{"echo", "r", "0123456789abcdef0123456789abcdef",
                   "0123456789ABCDEF0123456789ABCDEF", "0123456789abcdef"}}));
    write("titanic_store", "no_body", frames({{"echo"}}));
}

void endpoint_seeds() {
    for (auto [name, ep] :
         std::initializer_list<std::pair<const char*, std::string_view>>{
             {"tcp", "tcp://127.0.0.1:5555"},
             {"tcp_wildcard", "tcp://*:*"},
             {"tcp_ipv6", "tcp://[::1]:80"},
             {"tcp_source", "tcp://eth0;192.168.1.1:9"},
             {"tcp_name", "tcp://localhost:65535"},
             {"ipc", "ipc:///tmp/zmesh.sock"},
             {"inproc", "inproc://broker"},
             {"bad_port", "tcp://127.0.0.1:70000"},
             {"bad_host", "tcp://bad host:80"},
             {"bad_scheme", "udp://127.0.0.1:5555"}})
        write("endpoint", name, ep);
}

void subscriber_seeds() {
    // [topic][header][payload...] as a zmesh publisher sends them (docs/pubsub.md).
    auto data = [](std::uint64_t sequence, std::uint8_t source) {
        zmesh::header h;
        h.id = fixed_id(static_cast<std::uint8_t>(sequence));
        h.type = "tick";
        h.sequence = sequence;
        if (source != 0) h.source = fixed_id(source);
        return bytes_of(zmesh::encode(h));
    };
    const std::string s1 = data(1, 7), s2 = data(2, 7), s5 = data(5, 7), o1 = data(1, 9);
    const std::string plain = data(0, 0);
    write("subscriber", "in_order", frames({{"prices", s1, "a"}, {"prices", s2, "b", "c"}}));
    write("subscriber", "gap_and_duplicate",
          frames({{"prices", s1, "a"}, {"prices", s5, "b"}, {"prices", s2, "c"}, {"prices", s5}}));
    write("subscriber", "sources_and_topics",
          frames({{"prices", s1}, {"prices", o1}, {"quotes", s1}, {"news", plain, "x"}}));
    write("subscriber", "eviction",
          frames({{"t1", s1}, {"t2", s1}, {"t3", s1}, {"t4", s1}, {"t5", s1}, {"t1", s5}}));
    write("subscriber", "control_and_malformed",
          frames({{"\0zmesh.probe.0123"sv, plain},
                  {"no-header"},
                  {"bad-header", "\x81\xa2id\xc0"sv},
                  {"", plain, ""}}));
}

} // namespace

// The whole-broker harness (fuzz_broker.cpp): each message starts with a control frame, whose
// first byte is the peer (bits 0-2), what the outbox answers (bits 3-4) and the time that
// passes first (bits 5-7, x 400 ms). "$" stands for the handle (and tag) of the peer's last
// REQUEST.
void broker_seeds() {
    write("broker", "plain_round_trip",
          frames({{"\x00"sv, "", "MDPW01", "\x01", "echo"},
                  {"\x01"sv, "", "MDPC01", "echo", "hello"},
                  {"\x00"sv, "", "MDPW01", "\x03", "$", "", "hello"}}));
    write("broker", "credit_round_trip",
          frames({{"\x02"sv, "", "ZMWC01", "\x01", "echo", "4"},
                  {"\x03"sv, "", "ZMCT01", "echo", "t1", "a"},
                  {"\x03"sv, "", "ZMCT01", "echo", "t2", "b"},
                  {"\x02"sv, "", "ZMWC01", "\x03", "$", "", "b"},
                  {"\x02"sv, "", "ZMWC01", "\x04"}}));
    write("broker", "worker_dies_and_requests_move_on",
          frames({{"\x00"sv, "", "MDPW01", "\x01", "job"},
                  {"\x01"sv, "", "MDPC01", "job", "work"},
                  {"\xe4"sv, "", "MDPW01", "\x01", "job"}, // 2.8 s later: the first expires
                  {"\xe4"sv, "", "MDPW01", "\x04"},
                  {"\x04"sv, "", "MDPW01", "\x03", "$", "", "done"},
                  {"\x00"sv, "", "MDPW01", "\x05"}}));
    write("broker", "internal_services",
          frames({{"\x05"sv, "", "MDPC01", "mmi.service", "echo"},
                  {"\x05"sv, "", "MDPC01", "zmesh.services", ""},
                  {"\x05"sv, "", "ZMCT01", "zmesh.stats", "t", ""},
                  {"\x05"sv, "", "MDPC01", "zmesh.nothing", ""}}));
    write("broker", "slow_and_vanished_peers",
          frames({{"\x00"sv, "", "MDPW01", "\x01", "echo"},
                  {"\x11"sv, "", "MDPC01", "echo", "x"},          // would block
                  {"\x19"sv, "", "MDPC01", "echo", "y"},          // unroutable
                  {"\x00"sv, "", "MDPW01", "\x03", "$", "", "x"}}));
    write("broker", "refusals_and_limits",
          frames({{"\x00"sv, "", "MDPW01", "\x01", "mmi.service"},
                  {"\x01"sv, "", "MDPW01", "\x01", "bad name"},
                  {"\x02"sv, "", "ZMWC01", "\x01", "s1", "1025"},
                  {"\x03"sv, "", "MDPC01", "s2", "q"},
                  {"\x03"sv, "", "MDPC01", "s3", "q"},
                  {"\x03"sv, "", "MDPC01", "s4", "q"},
                  {"\x03"sv, "", "MDPC01", "s5", "q"},
                  {"\x03"sv, "", "MDPC01", "\x01", "q"},
                  {"\xe3"sv, "", "MDPC01", "s2", "late"}}));
    // docs/protocol.md: headers (id; id, tl 500, pr 9; id with fail fast), 18/MDP streaming,
    // joined retries, a refusal, expiry into the DLQ and its service.
    const auto id = "\x81\xa2id\xc4\x10" "0123456789abcdef"sv;
    const auto timed = "\x83\xa2id\xc4\x10" "fedcba9876543210" "\xa2tl\xcd\x01\xf4\xa2pr\x09"sv;
    const auto fast = "\x82\xa2id\xc4\x10" "0123456789abcdeX" "\xa2" "ff" "\xc3"sv;
    write("broker", "v2_stream_round_trip",
          frames({{"\x00"sv, "MDPW02", "\x01", "echo"},
                  {"\x01"sv, "ZMCT02", "\x01", "echo", id, "hello"},
                  {"\x01"sv, "ZMCT02", "\x01", "echo", id, "hello"}, // a retry: joins
                  {"\x00"sv, "MDPW02", "\x03", "$", "", "part"},
                  {"\x00"sv, "MDPW02", "\x04", "$", "", "final"},
                  {"\x02"sv, "ZMCT02", "\x01", "echo", id, "hello"}, // gets the kept reply
                  {"\x03"sv, "MDPC02", "\x01", "echo"}}));
    write("broker", "zmesh_worker_priority_refusal",
          frames({{"\x04"sv, "MDPC01", "x"},
                  {"\x01"sv, "ZMCT02", "\x01", "job", timed, "urgent"},
                  {"\x01"sv, "ZMCT02", "\x01", "job", id, "normal"},
                  {"\x00"sv, "ZMWC02", "\x01", "job", "2"},
                  {"\x00"sv, "ZMWC02", "\x04", "$", "", id, "no"},
                  {"\x00"sv, "ZMWC02", "\x04", "$", "", "\x82\xa2id\xc4\x10" "0123456789abcdeY" "\xa2ty\xadzmesh.refused"sv, "bad"},
                  {"\x00"sv, "ZMWC02", "\x05"},
                  {"\x05"sv, "", "MDPC01", "zmesh.dlq", "list"},
                  {"\x00"sv, "ZMWC02", "\x06"}}));
    write("broker", "deadline_fail_fast_dlq",
          frames({{"\x01"sv, "ZMCT02", "\x01", "nobody", timed, "late"},
                  {"\x01"sv, "ZMCT02", "\x01", "nobdy", fast, "x"},
                  {"\x41"sv, "ZMCT02", "\x01", "echo", "not a header", "x"},
                  {"\x05"sv, "", "MDPC01", "zmesh.dlq", "list"},
                  {"\x05"sv, "", "MDPC01", "zmesh.dlq", "replay", "all"},
                  {"\x05"sv, "", "MDPC01", "zmesh.dlq", "show", "66656463626139383736353433323130"},
                  {"\x00"sv, "ZMWC02", "\x01", "nobody", "1"},
                  {"\xe5"sv, "", "MDPC01", "zmesh.dlq", "purge", "all"}}));
    // ZMCT03, what zmesh's client library speaks: the command byte ends the protocol frame.
    write("broker", "zmct03_round_trip",
          frames({{"\x00"sv, "ZMWC02", "\x01", "echo", "4"},
                  {"\x01"sv, "ZMCT03\x01", "echo", id, "hello"},
                  {"\x01"sv, "ZMCT03\x01", "echo", id, "hello"}, // a retry: joins
                  {"\x00"sv, "ZMWC02", "\x03", "$", "", "", "part"},
                  {"\x00"sv, "ZMWC02", "\x04", "$", "", "", "final"},
                  {"\x02"sv, "ZMCT03\x01", "echo", id, "hello"}, // gets the kept reply
                  {"\x02"sv, "ZMCT03\x01", "nobdy", fast, "x"},
                  {"\x03"sv, "ZMCT03\x03", "echo", id, "a reply's command"},
                  {"\x03"sv, "ZMCT03\x01", "echo", "not a header"},
                  {"\x03"sv, "ZMCT03\x01", "echo"}}));
}

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: zmesh_fuzz_corpus <tests/fuzz/corpus>\n");
        return 2;
    }
    root = argv[1];
    header_seeds();
    codec_seeds();
    message_seeds();
    mdp_seeds();
    directory_seeds();
    titanic_seeds();
    endpoint_seeds();
    broker_seeds();
    subscriber_seeds();
    return 0;
}
