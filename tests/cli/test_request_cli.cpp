// SPDX-License-Identifier: MPL-2.0
// test_request_cli.cpp — `zmesh request` in ZMCT03 mode (its flags, what it prints) and
// `zmesh dlq --broker`: usage errors, a hand-driven fake broker for the exact frames, and the
// real broker for deadlines and the dead-letter queue.
#include "support/process.hpp"
#include "support/support.hpp"

#include <zmesh/header.hpp>
#include <zmesh/mdp/protocol.hpp>
#include <zmesh/message.hpp>

#include <doctest/doctest.h>

#include <future>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

using support::child_process;
using support::count_lines;
using support::run_cli;

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

struct broker_process {
    child_process process;
    std::string endpoint;
    broker_process()
        : process({support::zmesh_cli(), "broker", "--mdp", "tcp://127.0.0.1:*", "--log-level",
                   "warn"}) {
        auto line = process.read_line(5000ms);
        REQUIRE(line);
        endpoint = *line;
    }
};

const std::string some_id = "0123456789abcdef0123456789abcdef";

} // namespace

TEST_SUITE("cli.request") {

TEST_CASE("bad request flags are a one-line usage error with exit 2") {
    const std::string ep = "tcp://127.0.0.1:1";
    const std::vector<std::vector<std::string>> bad{
        {"--priority", "10"},
        {"--priority", "-1"},
        {"--id", "xyz"},
        {"--id", some_id + "0"},
        {"--id", some_id, "--plain"},
        {"--type", "t", "--plain"},
        {"--fail-fast", "--plain"},
        {"--priority", "5", "--plain"},
        {"--ttl-ms", "100", "--plain"},
        {"--type", "t", "--durable"},
        {"--id", some_id, "--durable"},
        {"--type", ""},
        {"--ttl-ms", "0"},
        {"--ttl-ms", "4294967296"},
    };
    for (const auto& extra : bad) {
        std::vector<std::string> args{"request", "--broker", ep, "--service", "s"};
        args.insert(args.end(), extra.begin(), extra.end());
        CAPTURE(extra.front() + " " + (extra.size() > 1 ? extra[1] : ""));
        auto r = run_cli(args);
        CHECK(r.code == 2);
        CHECK(count_lines(r.err) == 1);
        CHECK(r.err.rfind("zmesh: request: ", 0) == 0);
    }
}

TEST_CASE("request sends its flags in the header, prints parts as they come, the type on stderr") {
    zmq::context_t ctx;
    zmq::socket_t router(ctx, zmq::socket_type::router);
    router.set(zmq::sockopt::linger, 0);
    const auto endpoint = support::bind_loopback(router);
    auto run = std::async(std::launch::async, [&] {
        return run_cli({"request", "--broker", endpoint, "--service", "svc", "--id", some_id,
                        "--priority", "8", "--type", "order.new", "--fail-fast", "--ttl-ms",
                        "9000", "body"});
    });
    auto in = support::recv_for(router, 5s);
    REQUIRE(in);
    REQUIRE(in->size() == 5);
    CHECK(zmesh::view((*in)[1]) == "ZMCT03\x01"); // REQUEST
    CHECK(zmesh::view((*in)[2]) == "svc");
    CHECK(zmesh::view((*in)[4]) == "body");
    const auto h = zmesh::decode_header((*in)[3]);
    CHECK(h.id.to_hex() == some_id);
    CHECK(h.priority == 8);
    CHECK(h.type == "order.new");
    CHECK(zmesh::mdp::wants_fail_fast(h));
    CHECK(h.ttl_ms <= 9000);
    CHECK(h.ttl_ms > 8000);
    const std::string peer = zmesh::to_string((*in)[0]);
    auto reply = [&](char command, std::vector<std::string> body, std::string type = {}) {
        zmesh::header r = zmesh::make_header(std::move(type));
        r.correlation_id = h.id;
        zmesh::message m;
        m.push_back(peer);
        m.push_back("ZMCT03" + std::string(1, command));
        m.push_back("svc");
        m.push_back(zmesh::encode(r));
        for (const auto& f : body) m.push_back(f);
        REQUIRE(m.send(router) == zmesh::send_status::sent);
    };
    reply('\x02', {"part 1"});
    reply('\x02', {"part 2", "more"});
    reply('\x03', {"end"}, "order.done");
    REQUIRE(run.wait_for(10s) == std::future_status::ready);
    auto r = run.get();
    CHECK(r.code == 0);
    CHECK(r.out == "part 1\npart 2\nmore\nend\n");
    CHECK(r.err == "type: order.done\n");
}

TEST_CASE("request reports a zmesh.error FINAL exactly, and a look-alike body as a result") {
    zmq::context_t ctx;
    zmq::socket_t router(ctx, zmq::socket_type::router);
    router.set(zmq::sockopt::linger, 0);
    const auto endpoint = support::bind_loopback(router);
    for (const bool real_error : {true, false}) {
        CAPTURE(real_error);
        auto run = std::async(std::launch::async, [&] {
            return run_cli({"request", "--broker", endpoint, "--service", "svc", "x"});
        });
        auto in = support::recv_for(router, 5s);
        REQUIRE(in);
        zmesh::header r = zmesh::make_header(real_error ? "zmesh.error" : "");
        r.correlation_id = zmesh::decode_header((*in)[3]).id;
        zmesh::message m;
        m.push_back(zmesh::to_string((*in)[0]));
        m.push_back("ZMCT03\x03"); // FINAL
        m.push_back("svc");
        m.push_back(zmesh::encode(r));
        if (!real_error) m.push_back("zmesh.error");
        m.push_back("503");
        m.push_back("queue full");
        REQUIRE(m.send(router) == zmesh::send_status::sent);
        REQUIRE(run.wait_for(10s) == std::future_status::ready);
        auto res = run.get();
        if (real_error) {
            CHECK(res.code == 1);
            CHECK(res.out.empty());
            CHECK(res.err == "zmesh: request: service 'svc' failed: 503 queue full\n");
        } else {
            CHECK(res.code == 0);
            CHECK(res.out == "zmesh.error\n503\nqueue full\n");
        }
    }
}

TEST_CASE("a request nobody serves gets the broker's 504 at its deadline") {
    broker_process broker;
    auto r = run_cli({"request", "--broker", broker.endpoint, "--service", "nobody", "--timeout-ms",
                      "200", "--retries", "2", "x"});
    CHECK(r.code == 1);
    CHECK(count_lines(r.err) == 1);
    CHECK(contains(r.err, "service 'nobody' failed: 504"));
}

} // TEST_SUITE

TEST_SUITE("cli.dlq_broker") {

TEST_CASE("dlq source flags: exactly one of --store and --broker") {
    const std::vector<std::vector<std::string>> bad{
        {"dlq", "list"},
        {"dlq", "list", "--store", "/nonexistent", "--broker", "tcp://127.0.0.1:1"},
        {"dlq", "list", "--broker", "udp://x:1"},
        {"dlq", "list", "--broker", "tcp://127.0.0.1:1", "--timeout-ms", "0"},
        {"dlq", "list", "--store", "/nonexistent", "--timeout-ms", "100"},
        {"dlq", "show", "not-an-id", "--broker", "tcp://127.0.0.1:1"},
        {"dlq", "replay", "--broker", "tcp://127.0.0.1:1"},
    };
    for (const auto& args : bad) {
        CAPTURE(args.back());
        auto r = run_cli(args);
        CHECK(r.code == 2);
        CHECK(count_lines(r.err) == 1);
    }
}

TEST_CASE("dlq --broker with no broker there fails after --timeout-ms naming the endpoint") {
    // Bound but never read: a connect succeeds, no answer ever comes.
    zmq::context_t ctx;
    zmq::socket_t silent(ctx, zmq::socket_type::router);
    silent.set(zmq::sockopt::linger, 0);
    const auto endpoint = support::bind_loopback(silent);
    auto r = run_cli({"dlq", "list", "--broker", endpoint, "--timeout-ms", "300"});
    CHECK(r.code == 1);
    CHECK(count_lines(r.err) == 1);
    CHECK(contains(r.err, endpoint));
}

TEST_CASE("dlq --broker lists, shows and purges a request that expired") {
    broker_process broker;
    auto req = run_cli({"request", "--broker", broker.endpoint, "--service", "ledger", "--id",
                        some_id, "--type", "entry.add", "--priority", "6", "--ttl-ms", "100",
                        "--timeout-ms", "1000", "--retries", "1", "+42"});
    CHECK(req.code == 1);
    CHECK(contains(req.err, "504"));

    auto list = run_cli({"dlq", "list", "--broker", broker.endpoint});
    CHECK(list.code == 0);
    CHECK(list.out.rfind(some_id + " ledger attempts=0 reason=", 0) == 0);
    CHECK(count_lines(list.out) == 1);

    auto show = run_cli({"dlq", "show", some_id, "--broker", broker.endpoint});
    CHECK(show.code == 0);
    for (const char* line : {"id: 0123456789abcdef0123456789abcdef\n", "service: ledger\n",
                             "type: entry.add\n", "priority: 6\n", "code: 504\n",
                             "body[0]: +42\n"}) {
        CAPTURE(line);
        CHECK(contains(show.out, line));
    }
    CHECK(contains(show.out, "dead since: "));

    auto missing = run_cli({"dlq", "show", "ffffffffffffffffffffffffffffffff", "--broker",
                            broker.endpoint});
    CHECK(missing.code == 1);
    CHECK(count_lines(missing.err) == 1);

    auto purge = run_cli({"dlq", "purge", "--all", "--broker", broker.endpoint});
    CHECK(purge.code == 0);
    CHECK(purge.out == "purged 1 dead requests\n");
    auto empty = run_cli({"dlq", "list", "--broker", broker.endpoint});
    CHECK(empty.code == 0);
    CHECK(empty.out.empty());
}

} // TEST_SUITE
