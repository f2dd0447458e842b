// SPDX-License-Identifier: MPL-2.0
// test_worker_cli.cpp — `zmesh worker` behind a fake ZMWC02 broker (docs/protocol.md): the
// request's header reaches the command and the log, --exec kills the command at the request's
// deadline, --stream sends each line as a PARTIAL as it is printed, --plain speaks MDP/0.1, and
// the new flags' usage errors exit 2.
//
// The broker is a ROUTER on a loopback port that the test drives by hand, so it chooses every
// frame of the REQUEST (its header's type, priority and time left) and timestamps what comes
// back. The worker is a child process, killed if the test fails.
#include "support/process.hpp"
#include "support/support.hpp"

#include <zmesh/header.hpp>

#include <doctest/doctest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using support::child_process;
using support::run_cli;

namespace {

using strings = std::vector<std::string>;
using clock_type = std::chrono::steady_clock;

const std::string zmwc = "ZMWC02";
const std::string ready_cmd(1, '\x01');
const std::string request_cmd(1, '\x02');
const std::string partial_cmd(1, '\x03');
const std::string final_cmd(1, '\x04');
const std::string heartbeat_cmd(1, '\x05');
const std::string tag = std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8);

/// What the fake broker read, and when.
struct received {
    strings frames;
    clock_type::time_point at;
};

/// A ZMWC02 broker driven by hand: accepts one worker's READY, answers its heartbeats, sends
/// REQUESTs with headers of the test's choosing.
struct fake_broker {
    zmq::context_t ctx;
    zmq::socket_t router{ctx, zmq::socket_type::router};
    std::string endpoint;
    std::string worker_id;

    fake_broker() {
        router.set(zmq::sockopt::linger, 0);
        endpoint = support::bind_loopback(router);
    }

    /// The next message that is not a HEARTBEAT (which it answers, as zmesh's broker does, so
    /// the worker never takes it for dead); empty if none within @p timeout.
    std::optional<received> recv(std::chrono::milliseconds timeout = 5000ms) {
        const auto deadline = clock_type::now() + timeout;
        for (;;) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
            auto m = support::recv_for(router, std::max(left, 0ms));
            if (!m) return std::nullopt;
            received r{support::texts(*m), clock_type::now()};
            if (r.frames.size() == 3 && r.frames[1] == zmwc && r.frames[2] == heartbeat_cmd) {
                send({r.frames[0], zmwc, heartbeat_cmd});
                continue;
            }
            return r;
        }
    }

    void send(const strings& parts) {
        auto m = support::frames(parts);
        REQUIRE(m.send(router) == zmesh::send_status::sent);
    }

    /// Waits for the worker's ZMWC02 READY for @p service and accepts it (a HEARTBEAT at once).
    void accept(const std::string& service) {
        auto ready = recv(10000ms);
        REQUIRE(ready);
        REQUIRE(ready->frames.size() == 5);
        CHECK(ready->frames[1] == zmwc);
        CHECK(ready->frames[2] == ready_cmd);
        CHECK(ready->frames[3] == service);
        worker_id = ready->frames[0];
        send({worker_id, zmwc, heartbeat_cmd});
    }

    void request(const zmesh::header& h, const std::string& body) {
        send({worker_id, zmwc, request_cmd, tag, "client-1", "", zmesh::to_string(zmesh::encode(h)),
              body});
    }
};

/// The body frames of a PARTIAL or FINAL (after tag, client, "" and the header).
strings body_of(const received& r) { return strings(r.frames.begin() + 7, r.frames.end()); }

bool is(const received& r, const std::string& command) {
    return r.frames.size() >= 7 && r.frames[1] == zmwc && r.frames[2] == command &&
           r.frames[3] == tag && r.frames[4] == "client-1" && r.frames[5].empty();
}

child_process start_worker(const fake_broker& broker, const std::string& service,
                           std::vector<std::string> mode, const std::string& stderr_path = {}) {
    std::vector<std::string> a{support::zmesh_cli(), "worker", "--broker", broker.endpoint,
                               "--service", service, "--heartbeat-ms", "1000"};
    a.insert(a.end(), mode.begin(), mode.end());
    return child_process(a, stderr_path);
}

std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

zmesh::header request_header(std::string type, std::uint8_t priority, std::uint32_t tl) {
    auto h = zmesh::make_header(std::move(type));
    h.priority = priority;
    h.ttl_ms = tl;
    return h;
}

/// Whether process @p pid is gone (or a zombie nobody reaped yet: it runs no more either way).
bool gone(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    if (!stat) return true;
    std::string line;
    std::getline(stat, line);
    const auto close = line.rfind(')');
    return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z';
}

} // namespace

TEST_SUITE("cli.worker") {

TEST_CASE("the command gets the request's type, priority, id and time left, and the log shows "
          "them") {
    fake_broker broker;
    support::temp_dir dir;
    const auto log = dir.path() / "worker.log";
    auto worker = start_worker(
        broker, "env",
        {"--log-level", "debug", "--exec",
         "echo \"$ZMESH_TYPE|$ZMESH_PRIORITY|$ZMESH_MESSAGE_ID|${ZMESH_DEADLINE_MS:-none}\""},
        log.string());
    broker.accept("env");

    const auto h = request_header("report.daily", 7, 5000);
    broker.request(h, "");
    auto reply = broker.recv();
    REQUIRE(reply);
    REQUIRE(is(*reply, final_cmd));
    const auto body = body_of(*reply);
    REQUIRE(body.size() == 1);
    const auto prefix = "report.daily|7|" + h.id.to_hex() + "|";
    REQUIRE(body[0].rfind(prefix, 0) == 0);
    const auto left = std::stoi(body[0].substr(prefix.size()));
    CHECK(left <= 5000);
    CHECK(left > 3000);
    CHECK(zmesh::decode_header(reply->frames[6].data(), reply->frames[6].size()).correlation_id ==
          h.id);

    // Without tl: no deadline, and ZMESH_DEADLINE_MS is unset.
    const auto untimed = request_header("", 4, 0);
    broker.request(untimed, "");
    reply = broker.recv();
    REQUIRE(reply);
    CHECK(body_of(*reply) == strings{"|4|" + untimed.id.to_hex() + "|none\n"});

    worker.signal(SIGTERM);
    CHECK(worker.wait_for(5000ms) == 0);
    const auto text = read_file(log);
    CHECK(text.find("request type=report.daily priority=7 time left=") != std::string::npos);
    CHECK(text.find("request type= priority=4 time left=none") != std::string::npos);
}

TEST_CASE("--exec kills the command at the request's deadline and answers 504") {
    fake_broker broker;
    support::temp_dir dir;
    const auto log = dir.path() / "worker.log";
    const auto pid_file = dir.path() / "sleep.pid";
    // The sleep is a child of the shell, not the shell itself: killing only the shell would
    // leave it holding stdout, and the worker waiting for it.
    auto worker = start_worker(
        broker, "slow",
        {"--log-level", "warn", "--exec", "sleep 5 & echo $! > " + pid_file.string() + "; wait"},
        log.string());
    broker.accept("slow");

    const auto sent_at = clock_type::now();
    broker.request(request_header("job", 4, 700), "");
    auto reply = broker.recv(8000ms);
    REQUIRE(reply);
    const auto took = reply->at - sent_at;
    REQUIRE(is(*reply, final_cmd));
    CHECK(zmesh::decode_header(reply->frames[6].data(), reply->frames[6].size()).type ==
          "zmesh.error");
    const auto body = body_of(*reply);
    REQUIRE(body.size() == 2);
    CHECK(body[0] == "504");
    CHECK(body[1].find("deadline") != std::string::npos);
    CHECK(took >= 700ms);
    CHECK(took < 2500ms); // SIGTERM at the deadline ends it: nowhere near the 5 s of sleep

    const auto sleep_pid = std::stoi(read_file(pid_file));
    CHECK(support::eventually([&] { return gone(sleep_pid); }, 2000ms));

    // The worker serves on: a request without a deadline runs to completion.
    broker.request(request_header("job", 4, 0), "");
    CHECK_FALSE(broker.recv(1000ms)); // still sleeping: no deadline stops it
    worker.signal(SIGTERM);
    CHECK(worker.wait_for(5000ms) == 0); // a stop kills the command too
    CHECK(support::eventually([&] { return gone(std::stoi(read_file(pid_file))); }, 2000ms));

    const auto text = read_file(log);
    int lines = 0;
    for (std::size_t at = 0; (at = text.find("killed the command at the request's deadline", at)) !=
                             std::string::npos;
         ++at)
        ++lines;
    CHECK(lines == 1);
    CHECK(text.find("'slow'") != std::string::npos);
}

TEST_CASE("--stream sends each line as a PARTIAL as soon as the command prints it") {
    fake_broker broker;
    auto worker = start_worker(
        broker, "lines",
        {"--log-level", "warn", "--stream", "--exec",
         "echo a; sleep 0.3; echo b; sleep 0.3; printf 'c\\nrest'"});
    broker.accept("lines");

    const auto h = request_header("tail", 4, 0);
    broker.request(h, "");
    std::vector<received> got;
    while (got.empty() || !is(got.back(), final_cmd)) {
        auto r = broker.recv();
        REQUIRE(r);
        got.push_back(*r);
    }
    REQUIRE(got.size() == 4);
    for (int i = 0; i < 3; ++i) REQUIRE(is(got[static_cast<std::size_t>(i)], partial_cmd));
    CHECK(body_of(got[0]) == strings{"a\n"});
    CHECK(body_of(got[1]) == strings{"b\n"});
    CHECK(body_of(got[2]) == strings{"c\n"});
    CHECK(body_of(got[3]) == strings{"rest"});
    // Each part left when the command printed it: ~300 ms apart, not all at the end.
    CHECK(got[1].at - got[0].at >= 200ms);
    CHECK(got[2].at - got[1].at >= 200ms);
    for (const auto& r : got)
        CHECK(zmesh::decode_header(r.frames[6].data(), r.frames[6].size()).correlation_id ==
              h.id);
}

TEST_CASE("--stream: a FINAL after the last line has no body") {
    fake_broker broker;
    auto worker =
        start_worker(broker, "lines", {"--log-level", "warn", "--stream", "--exec", "echo x"});
    broker.accept("lines");
    broker.request(request_header("", 4, 0), "");
    auto part = broker.recv();
    REQUIRE(part);
    REQUIRE(is(*part, partial_cmd));
    CHECK(body_of(*part) == strings{"x\n"});
    auto fin = broker.recv();
    REQUIRE(fin);
    REQUIRE(is(*fin, final_cmd));
    CHECK(body_of(*fin).empty());
}

TEST_CASE("--plain registers with MDP/0.1 at once") {
    fake_broker broker;
    auto worker = start_worker(broker, "old", {"--log-level", "warn", "--plain", "--echo"});
    auto ready = broker.recv(10000ms);
    REQUIRE(ready);
    CHECK(ready->frames == strings{ready->frames[0], "", "MDPW01", ready_cmd, "old"});
}

TEST_CASE("worker flags that cannot go together are usage errors with exit 2") {
    const std::vector<std::vector<std::string>> bad{
        {"worker", "--broker", "tcp://127.0.0.1:1", "--service", "s", "--echo", "--stream"},
        {"worker", "--broker", "tcp://127.0.0.1:1", "--service", "s", "--echo", "--plain",
         "--credit", "4"},
    };
    for (const auto& args : bad) {
        CAPTURE(args.back());
        auto r = run_cli(args);
        CHECK(r.code == 2);
        CHECK(support::count_lines(r.err) == 1);
        CHECK(r.err.rfind("zmesh: worker: ", 0) == 0);
    }
}

} // TEST_SUITE
