// SPDX-License-Identifier: MPL-2.0
// test_mdp_worker_hardening.cpp — mdp::worker behind brokers that are not zmesh's, and against
// brokers that refuse it or stop reading (issue 9, worker side).
//
// Every broker here is a bare ROUTER socket that the test drives by hand, modelled on a real one:
// the zguide's reference mdbroker (no HEARTBEAT to a busy worker, unknown protocol headers dropped
// without a word) or zmesh's broker (READY answered at once with a HEARTBEAT, a refused READY
// answered with DISCONNECT and nothing else). Short heartbeats keep the tests fast: 100 ms × 3,
// so that 300 ms of silence is what the worker takes for a dead broker.
#include <zmesh/error.hpp>
#include <zmesh/mdp/protocol.hpp>
#include <zmesh/mdp/worker.hpp>

#include "support/support.hpp"

#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using strings = std::vector<std::string>;
using support::texts;
using support::frames;
using clock_type = std::chrono::steady_clock;

const std::string ready_cmd(1, '\x01');
const std::string request_cmd(1, '\x02');
const std::string reply_cmd(1, '\x03');
const std::string heartbeat_cmd(1, '\x04');
const std::string disconnect_cmd(1, '\x05');
// ZMWC02 numbers HEARTBEAT and DISCONNECT as 18/MDP does.
const std::string v2_final_cmd(1, '\x04');
const std::string v2_heartbeat_cmd(1, '\x05');
const std::string v2_disconnect_cmd(1, '\x06');
const std::string zmwc = "ZMWC02";

constexpr auto heartbeat = 100ms;
constexpr int liveness = 3;
constexpr auto allowance = heartbeat * liveness; // broker silence the worker takes for death
/// How long a "long" request takes: well past heartbeat × liveness.
constexpr auto work_time = 1s;

/// An 8-byte ZMWC02 tag.
std::string tag(int i) {
    std::string t(zmesh::mdp::request_tag_size, '\0');
    t[0] = static_cast<char>('a' + i);
    return t;
}

/// A broker the test drives by hand: one ROUTER on a loopback port, or on inproc with a small
/// receive high-water mark (for the tests of a broker that stops reading).
struct fake_broker {
    zmq::socket_t router;
    std::string endpoint;

    explicit fake_broker(zmq::context_t& ctx) : router(ctx, zmq::socket_type::router) {
        router.set(zmq::sockopt::linger, 0);
        endpoint = support::bind_loopback(router);
    }

    /// Takes over a ROUTER already bound to @p bound_endpoint.
    fake_broker(zmq::socket_t bound, std::string bound_endpoint)
        : router(std::move(bound)), endpoint(std::move(bound_endpoint)) {}

    fake_broker(zmq::context_t& ctx, int rcvhwm) : router(ctx, zmq::socket_type::router) {
        router.set(zmq::sockopt::linger, 0);
        router.set(zmq::sockopt::rcvhwm, rcvhwm);
        endpoint = support::inproc_endpoint("hardening");
        router.bind(endpoint);
    }

    /// The next message as text frames, the peer's routing id first; empty if none in time.
    strings recv(std::chrono::milliseconds timeout = 2000ms) {
        auto m = support::recv_for(router, timeout);
        return m ? texts(*m) : strings{};
    }

    /// The next message that is not a worker HEARTBEAT.
    strings recv_skipping_heartbeats(std::chrono::milliseconds timeout = 2000ms) {
        const auto deadline = clock_type::now() + timeout;
        for (;;) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
            auto m = recv(std::max(left, 0ms));
            const bool v1_heartbeat = m.size() == 4 && m[3] == heartbeat_cmd;
            const bool v2_heartbeat = m.size() == 3 && m[1] == zmwc && m[2] == v2_heartbeat_cmd;
            if (!v1_heartbeat && !v2_heartbeat) return m;
        }
    }

    void send(const strings& parts) {
        auto m = frames(parts);
        REQUIRE(m.send(router) == zmesh::send_status::sent);
    }
};

/// What the fake broker received while the worker was driven, each with when it was read.
struct seen {
    strings message;
    clock_type::time_point at;
};

/// Drives @p w (take() in 20 ms slices) and reads @p broker in between, so that no message is
/// read after the socket that sent it was closed, until @p done accepts a message or @p timeout
/// passes. @p answer, if given, is the broker's reaction to each message.
std::vector<seen> drive(zmesh::mdp::worker& w, fake_broker& broker,
                        const std::function<bool(const strings&)>& done,
                        std::chrono::milliseconds timeout = 3000ms,
                        const std::function<void(const strings&)>& answer = {}) {
    std::vector<seen> out;
    const auto deadline = clock_type::now() + timeout;
    while (clock_type::now() < deadline) {
        (void)w.take(20ms);
        for (auto m = broker.recv(0ms); !m.empty(); m = broker.recv(0ms)) {
            out.push_back({m, clock_type::now()});
            if (answer) answer(m);
            if (done(m)) return out;
        }
    }
    return out;
}

/// Whether @p m is a READY of the protocol @p header: "" "MDPW01" 0x01 service, or "ZMWC02"
/// 0x01 service credit.
bool is_ready(const strings& m, const std::string& header) {
    if (header == zmwc) return m.size() == 5 && m[1] == zmwc && m[2] == ready_cmd;
    return m.size() >= 5 && m[2] == header && m[3] == ready_cmd;
}

/// Most brokers here model plain MDP/0.1 ones, so a worker with credit 1 is told so up front
/// (worker_protocol::mdp), as a user of such a broker would; with more credit it speaks ZMWC02.
zmesh::mdp::worker_options fast_worker(std::uint32_t credit = 1) {
    zmesh::mdp::worker_options o;
    if (credit == 1) o.protocol = zmesh::mdp::worker_protocol::mdp;
    o.heartbeat = heartbeat;
    o.liveness = liveness;
    o.reconnect_initial = 50ms;
    o.disconnect_linger = 500ms; // DISCONNECTs must reach the broker over TCP
    o.credit = credit;
    return o;
}

/// For the tests in which the fake broker answers READY as zmesh's does: it answers between two
/// 20 ms slices of drive(), and must do so within one heartbeat even on a loaded machine, or the
/// worker rightly falls back.
zmesh::mdp::worker_options acked_credit_worker(std::uint32_t credit) {
    auto o = fast_worker(credit);
    o.heartbeat = 500ms;
    return o;
}

/// For the refusal tests: the worker's first HEARTBEAT, which would make a late DISCONNECT an
/// ordinary one rather than a refusal, comes a whole second after READY.
zmesh::mdp::worker_options refusal_worker(std::uint32_t credit = 1) {
    auto o = fast_worker(credit);
    o.heartbeat = 1000ms;
    return o;
}

/// A DISCONNECT makes a worker register again at once: if it were going to retry, a READY
/// would reach the broker well within this.
constexpr auto retry_window = 500ms;

/// Captures what the process writes to stderr (where zmesh logs) while it lives.
class stderr_capture {
  public:
    stderr_capture() : file_(std::tmpfile()), saved_(::dup(STDERR_FILENO)) {
        REQUIRE(file_ != nullptr);
        std::fflush(stderr);
        ::dup2(::fileno(file_), STDERR_FILENO);
    }
    ~stderr_capture() {
        restore();
        std::fclose(file_);
    }
    stderr_capture(const stderr_capture&) = delete;
    stderr_capture& operator=(const stderr_capture&) = delete;

    /// Everything written so far; stops the capture.
    std::string text() {
        restore();
        std::string out;
        std::rewind(file_);
        char buf[4096];
        for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, file_)) > 0;) out.append(buf, n);
        return out;
    }

  private:
    void restore() {
        if (saved_ < 0) return;
        std::fflush(stderr);
        ::dup2(saved_, STDERR_FILENO);
        ::close(saved_);
        saved_ = -1;
    }
    std::FILE* file_;
    int saved_;
};

/// Lines of @p text that contain @p needle.
int lines_with(const std::string& text, const std::string& needle) {
    int n = 0;
    std::size_t start = 0;
    while (start < text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        if (text.substr(start, end - start).find(needle) != std::string::npos) ++n;
        start = end + 1;
    }
    return n;
}

std::string what_of(const std::function<void()>& f, std::error_code& code) {
    try {
        f();
    } catch (const zmesh::error& e) {
        code = e.code();
        return e.what();
    }
    code = {};
    return {};
}

} // namespace

TEST_SUITE("lib.mdp.hardening") {

// ---------------------------------------------------------------------------------------------
// 1. A long request behind a broker that never heartbeats a busy worker

TEST_CASE("a request held past heartbeat x liveness is answered behind a broker silent to busy "
          "workers") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "slow", fast_worker());
    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);
    const auto id = ready[0];

    // As the zguide broker does: HEARTBEATs while the worker is idle, then the request, then
    // nothing at all until the reply.
    broker.send({id, "", "MDPW01", heartbeat_cmd});
    broker.send({id, "", "MDPW01", request_cmd, "client-1", "", "work"});
    auto body = w.recv(2s);
    REQUIRE(body);

    // The handler works for work_time and calls keepalive() as it goes (as `zmesh worker --exec`
    // does); the broker hears only HEARTBEATs from the same worker, never a new registration.
    const auto done_at = clock_type::now() + work_time;
    while (clock_type::now() < done_at) {
        w.keepalive();
        auto m = broker.recv(heartbeat / 2);
        if (!m.empty()) CHECK(m == strings{id, "", "MDPW01", heartbeat_cmd});
    }
    w.reply(zmesh::message{"done"});
    CHECK(broker.recv_skipping_heartbeats() ==
          strings{id, "", "MDPW01", reply_cmd, "client-1", "", "done"});
    CHECK(w.stats().reconnects == 0);
    CHECK(w.stats().replies == 1);
    CHECK(w.stats().replies_dropped == 0);
}

TEST_CASE("after a held request is answered the broker gets heartbeat x liveness again, then "
          "its silence counts") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "slow", fast_worker());
    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);
    const auto id = ready[0];
    broker.send({id, "", "MDPW01", request_cmd, "client-1", "", "work"});
    auto r = w.take(2s);
    REQUIRE(r);

    // A handler that does no I/O at all while it works: the worker is not even called.
    CHECK(broker.recv(work_time).empty());
    const auto replied = clock_type::now();
    w.reply(std::move(r->token), zmesh::message{"done"});
    CHECK(broker.recv_skipping_heartbeats() ==
          strings{id, "", "MDPW01", reply_cmd, "client-1", "", "done"});

    // The broker was silent through the work, but that was normal: it gets a full allowance
    // from the reply on before the worker gives up on it.
    CHECK_FALSE(w.recv(heartbeat));
    CHECK(w.stats().reconnects == 0);

    // It stays silent: now that counts. The worker says DISCONNECT and registers again.
    std::string new_id;
    clock_type::time_point registered_again{};
    bool disconnected = false;
    (void)drive(w, broker, [&](const strings& m) {
        if (is_ready(m, "MDPW01") && m[0] != id) {
            new_id = m[0];
            registered_again = clock_type::now();
        }
        disconnected = disconnected || m == strings{id, "", "MDPW01", disconnect_cmd};
        return !new_id.empty() && disconnected;
    });
    REQUIRE_FALSE(new_id.empty());
    CHECK(disconnected);
    CHECK(registered_again - replied >= allowance);
    CHECK(w.stats().reconnects == 1);
}

TEST_CASE("a request abandoned by destroying its token no longer keeps a silent broker alive") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "slow", fast_worker());
    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);
    broker.send({ready[0], "", "MDPW01", request_cmd, "client-1", "", "work"});
    {
        auto r = w.take(2s);
        REQUIRE(r);
    } // abandoned without a reply

    const auto start = clock_type::now();
    auto log = drive(w, broker, [&](const strings& m) {
        return is_ready(m, "MDPW01") && m[0] != ready[0];
    });
    REQUIRE_FALSE(log.empty());
    CHECK(is_ready(log.back().message, "MDPW01"));
    CHECK(log.back().at - start < 2s);
    CHECK(w.stats().reconnects == 1);
}

// ---------------------------------------------------------------------------------------------
// 2. ZMWC02 against zmesh's broker and against one without it

TEST_CASE("a credit worker keeps its credit behind a broker that answers READY at once") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    const auto o = acked_credit_worker(8);
    zmesh::mdp::worker w(ctx, broker.endpoint, "batch", o);

    // Like zmesh's broker: READY answered by a HEARTBEAT at once, then one per interval.
    std::string id;
    auto log = drive(w, broker, [&](const strings& m) {
        if (is_ready(m, zmwc)) {
            id = m[0];
            broker.send({id, zmwc, v2_heartbeat_cmd});
        }
        return !id.empty();
    });
    REQUIRE_FALSE(id.empty());
    CHECK(log.back().message == strings{id, zmwc, ready_cmd, "batch", "8"});
    for (int i = 0; i < 4; ++i) {
        CHECK_FALSE(w.take(o.heartbeat));
        broker.send({id, zmwc, v2_heartbeat_cmd});
        for (auto m = broker.recv(0ms); !m.empty(); m = broker.recv(0ms))
            CHECK(m == strings{id, zmwc, v2_heartbeat_cmd});
    }
    CHECK(w.credit() == 8);
    CHECK(w.protocol() == zmesh::mdp::worker_protocol::zmesh);
    CHECK(w.stats().reconnects == 0);

    broker.send({id, zmwc, request_cmd, tag(1), "client-1", "", "", "one"});
    broker.send({id, zmwc, request_cmd, tag(2), "client-2", "", "", "two"});
    auto first = w.take(2s);
    auto second = w.take(2s);
    REQUIRE(first);
    REQUIRE(second);
    w.reply(std::move(second->token), zmesh::message{"2"});
    auto final_frames = broker.recv_skipping_heartbeats();
    REQUIRE(final_frames.size() == 8);
    final_frames.erase(final_frames.begin() + 6); // the reply's header: see test_mdp_worker_v2
    CHECK(final_frames == strings{id, zmwc, v2_final_cmd, tag(2), "client-2", "", "2"});
}

TEST_CASE("a ZMWC02 worker falls back to MDP/0.1 with one warning behind a broker that drops "
          "ZMWC02") {
    // With credit (the old ZMWC01 case) and with the default credit 1, which speaks ZMWC02 too.
    std::uint32_t credit = 8;
    SUBCASE("credit 8") { credit = 8; }
    SUBCASE("credit 1, the default protocol") { credit = 1; }
    zmq::context_t ctx;
    fake_broker broker(ctx);
    stderr_capture err;
    const auto start = clock_type::now();
    auto o = fast_worker(credit);
    o.protocol = zmesh::mdp::worker_protocol::zmesh;
    zmesh::mdp::worker w(ctx, broker.endpoint, "batch", o);

    // Like the zguide broker: an unknown protocol frame is logged and dropped, so the worker
    // hears nothing. It must say DISCONNECT (ZMWC02) and register again as a plain worker.
    std::string id, new_id;
    strings new_ready;
    clock_type::time_point disconnect_at{};
    (void)drive(w, broker, [&](const strings& m) {
        if (is_ready(m, zmwc)) {
            id = m[0];
            CHECK(m[4] == std::to_string(credit));
        }
        if (!id.empty() && m == strings{id, zmwc, v2_disconnect_cmd})
            disconnect_at = clock_type::now();
        if (is_ready(m, "MDPW01")) {
            new_id = m[0];
            new_ready = m;
        }
        return !new_id.empty() && disconnect_at != clock_type::time_point{};
    });
    REQUIRE_FALSE(id.empty());
    REQUIRE_FALSE(new_id.empty());
    CHECK(new_id != id);
    CHECK(new_ready == strings{new_id, "", "MDPW01", ready_cmd, "batch"});
    CHECK(disconnect_at != clock_type::time_point{}); // the old registration was withdrawn
    CHECK(disconnect_at - start >= heartbeat);       // not before one heartbeat of silence
    CHECK(w.credit() == 1);
    CHECK(w.protocol() == zmesh::mdp::worker_protocol::mdp);

    // It serves as a plain MDP/0.1 worker, heartbeated by the broker while idle.
    broker.send({new_id, "", "MDPW01", heartbeat_cmd});
    broker.send({new_id, "", "MDPW01", request_cmd, "client-1", "", "hello"});
    auto r = w.take(2s);
    REQUIRE(r);
    w.reply(std::move(r->token), std::move(r->body));
    CHECK(broker.recv_skipping_heartbeats() ==
          strings{new_id, "", "MDPW01", reply_cmd, "client-1", "", "hello"});
    for (int i = 0; i < 5; ++i) {
        CHECK_FALSE(w.take(heartbeat));
        broker.send({new_id, "", "MDPW01", heartbeat_cmd});
    }
    CHECK(w.credit() == 1);
    CHECK(w.stats().reconnects == 1);

    const auto text = err.text();
    CHECK(lines_with(text, "does not speak ZMWC02") == 1);
    CHECK(lines_with(text, broker.endpoint) == 1);
    CHECK(lines_with(text, "'batch'") == 1);
}

TEST_CASE("a credit worker started before its broker waits for it instead of falling back") {
    zmq::context_t ctx;
    // A loopback port that nothing listens on yet: bound, read back, released.
    std::string endpoint;
    {
        zmq::socket_t probe(ctx, zmq::socket_type::router);
        probe.set(zmq::sockopt::linger, 0);
        endpoint = support::bind_loopback(probe);
        probe.unbind(endpoint);
    }
    const auto o = acked_credit_worker(8);
    zmesh::mdp::worker w(ctx, endpoint, "batch", o);
    // Several heartbeat intervals without a broker: no READY went anywhere, so nothing to
    // conclude from the silence.
    CHECK_FALSE(w.take(4 * o.heartbeat));
    CHECK(w.credit() == 8);

    zmq::socket_t router(ctx, zmq::socket_type::router);
    router.set(zmq::sockopt::linger, 0);
    REQUIRE(support::eventually([&] {
        try {
            router.bind(endpoint);
            return true;
        } catch (const zmq::error_t&) {
            return false; // the released listener may take a moment to go
        }
    }));
    fake_broker broker{std::move(router), endpoint};
    std::string id;
    auto log = drive(w, broker, [&](const strings& m) {
        if (is_ready(m, zmwc)) {
            id = m[0];
            broker.send({id, zmwc, v2_heartbeat_cmd});
        }
        return !id.empty();
    });
    REQUIRE_FALSE(id.empty());
    for (const auto& s : log) CHECK_FALSE(is_ready(s.message, "MDPW01"));
    CHECK_FALSE(w.take(2 * o.heartbeat)); // past the one heartbeat the worker waits for an answer
    CHECK(w.credit() == 8);
}

// ---------------------------------------------------------------------------------------------
// 3. A READY the broker refuses, and names checked before they reach the wire

TEST_CASE("a READY answered only by DISCONNECT stops the worker with an error naming the broker "
          "and the service") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "over.limit", refusal_worker());
    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);
    broker.send({ready[0], "", "MDPW01", disconnect_cmd}); // as zmesh's broker refuses

    std::error_code code;
    auto what = what_of([&] { (void)w.recv(2s); }, code);
    CHECK(code == zmesh::errc::invalid_argument);
    CHECK(what.find("refused") != std::string::npos);
    CHECK(what.find(broker.endpoint) != std::string::npos);
    CHECK(what.find("'over.limit'") != std::string::npos);
    CHECK(what.find("reserved") != std::string::npos);
    CHECK(what.find("service limit") != std::string::npos);
    CHECK(what.find('\n') == std::string::npos);
    CHECK_FALSE(w.is_open());

    // No retry: the broker hears nothing more.
    CHECK(broker.recv(retry_window).empty());
    CHECK(w.stats().reconnects == 0);
    CHECK(w.stats().disconnects == 1);

    // Every later call reports the refusal, not only the first.
    std::error_code again;
    CHECK(what_of([&] { (void)w.take(0ms); }, again) == what);
    CHECK(again == zmesh::errc::invalid_argument);
    CHECK(what_of([&] { w.reply(zmesh::message{"x"}); }, again) == what);
    CHECK_NOTHROW(w.keepalive());
}

TEST_CASE("a refused credit worker stops too, without falling back") {
    zmq::context_t ctx;
    fake_broker broker(ctx, 1000);
    zmesh::mdp::worker w(ctx, broker.endpoint, "over.limit", refusal_worker(4));
    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);
    CHECK(ready[1] == zmwc);
    broker.send({ready[0], zmwc, v2_disconnect_cmd});

    std::error_code code;
    auto what = what_of([&] { (void)w.take(2s); }, code);
    CHECK(code == zmesh::errc::invalid_argument);
    CHECK(what.find("refused") != std::string::npos);
    CHECK(broker.recv(retry_window).empty()); // neither a retry nor an MDPW01 READY
    CHECK(w.credit() == 4);
}

TEST_CASE("a DISCONNECT after the broker has spoken is not a refusal, and a refused "
          "re-registration seen by keepalive is reported by the next call") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "svc", refusal_worker());
    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);
    broker.send({ready[0], "", "MDPW01", heartbeat_cmd});
    broker.send({ready[0], "", "MDPW01", request_cmd, "client-1", "", "work"});
    REQUIRE(w.recv(2s));

    // The broker forgets the worker while it handles the request: it registers again.
    broker.send({ready[0], "", "MDPW01", disconnect_cmd});
    strings again;
    for (auto until = clock_type::now() + 2s; again.empty() && clock_type::now() < until;) {
        w.keepalive();
        for (auto m = broker.recv(20ms); !m.empty(); m = broker.recv(0ms))
            if (is_ready(m, "MDPW01")) again = m;
    }
    REQUIRE(again.size() == 5);
    CHECK(again[0] != ready[0]);
    CHECK(w.is_open());

    // This time the broker refuses the READY (say it reached its service limit meanwhile).
    // keepalive() notes it without throwing, so a handler needs no error path.
    broker.send({again[0], "", "MDPW01", disconnect_cmd});
    bool closed = false;
    for (auto until = clock_type::now() + 2s; !closed && clock_type::now() < until;) {
        CHECK_NOTHROW(w.keepalive());
        closed = !w.is_open();
        if (!closed) CHECK(broker.recv(20ms).empty());
    }
    REQUIRE(closed);
    std::error_code code;
    CHECK(what_of([&] { w.reply(zmesh::message{"late"}); }, code).find("refused") !=
          std::string::npos);
    CHECK(code == zmesh::errc::invalid_argument);
    CHECK(what_of([&] { (void)w.recv(0ms); }, code).find("refused") != std::string::npos);
    CHECK(w.stats().replies == 0);
}

TEST_CASE("the worker rejects a service name that no broker should see, before connecting") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    const strings bad{"",
                      std::string(256, 'a'),
                      "two words",
                      "tab\there",
                      "line\nbreak",
                      std::string("nul\0byte", 8),
                      "del\x7f",
                      "caf\xc3\xa9",
                      "mmi.service",
                      "mmi.anything",
                      "zmesh.stats"};
    for (const auto& name : bad) {
        CAPTURE(name);
        std::error_code code;
        auto what = what_of(
            [&] { zmesh::mdp::worker w(ctx, broker.endpoint, name, fast_worker()); }, code);
        CHECK(code == zmesh::errc::invalid_argument);
        CHECK(what.find("service name") != std::string::npos);
        CHECK(what.find('\n') == std::string::npos);
        CHECK(!zmesh::mdp::worker_service_name_problem(name).empty());
    }
    std::error_code code;
    CHECK(what_of([&] { zmesh::mdp::worker w(ctx, broker.endpoint, "two words", {}); }, code)
              .find("'two words'") != std::string::npos);
    CHECK(what_of([&] { zmesh::mdp::worker w(ctx, broker.endpoint, "line\nbreak", {}); }, code)
              .find("line\\x0abreak") != std::string::npos);
    CHECK(what_of([&] { zmesh::mdp::worker w(ctx, broker.endpoint, std::string(256, 'a'), {}); },
                  code)
              .find("(256 bytes)") != std::string::npos);
    CHECK(broker.recv(support::settle_time).empty()); // none of them reached the wire

    // The edges of what is allowed.
    for (const auto& name : strings{std::string(255, 'a'), "!", "~", "a.b-c_d/1:2@host"}) {
        CAPTURE(name);
        fake_broker own(ctx); // the last one's DISCONNECT must not be read for this READY
        zmesh::mdp::worker w(ctx, own.endpoint, name, fast_worker());
        auto ready = own.recv();
        REQUIRE(ready.size() == 5);
        CHECK(ready[4] == name);
    }
}

TEST_CASE("service names: reserved ones may be called but not registered") {
    using zmesh::mdp::service_name_problem;
    using zmesh::mdp::worker_service_name_problem;
    CHECK(service_name_problem("mmi.service").empty());
    CHECK(service_name_problem("zmesh.services").empty());
    CHECK_FALSE(worker_service_name_problem("mmi.service").empty());
    CHECK_FALSE(worker_service_name_problem("zmesh.services").empty());
    CHECK(service_name_problem("echo").empty());
    CHECK(worker_service_name_problem("echo").empty());
    CHECK(service_name_problem("") == "is empty");
    CHECK_FALSE(service_name_problem(std::string(256, 'x')).empty());
    CHECK(service_name_problem(std::string(255, 'x')).empty());
    CHECK_FALSE(service_name_problem(" ").empty());
    static_assert(zmesh::mdp::service_name_problem("ok").empty(), "usable at compile time");
}

// ---------------------------------------------------------------------------------------------
// 4. Starting over says DISCONNECT on the old socket

TEST_CASE("a worker that gives up on a silent broker says DISCONNECT before registering again") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "svc", fast_worker());
    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);
    const auto id = ready[0];
    broker.send({id, "", "MDPW01", heartbeat_cmd}); // registered; silent from here on

    // Both sockets' messages are collected: the two connections need not deliver in order.
    strings old_socket, new_socket;
    (void)drive(w, broker, [&](const strings& m) {
        const bool old = m[0] == id;
        (old ? old_socket : new_socket).push_back(strings(m.begin() + 3, m.end()).front());
        return !old_socket.empty() && old_socket.back() == disconnect_cmd && !new_socket.empty();
    });
    // The old socket said only HEARTBEATs, then DISCONNECT as its last word; the new one READY.
    REQUIRE_FALSE(old_socket.empty());
    CHECK(old_socket.back() == disconnect_cmd);
    for (std::size_t i = 0; i + 1 < old_socket.size(); ++i) CHECK(old_socket[i] == heartbeat_cmd);
    REQUIRE_FALSE(new_socket.empty());
    CHECK(new_socket.front() == ready_cmd);
    CHECK(w.stats().reconnects == 1);
}

// ---------------------------------------------------------------------------------------------
// 5. Replies at the high-water mark

// The fake broker's ROUTER takes 1 message into its receive queue; the worker's DEALER queues
// its default 1000. Over inproc the two make one pipe of about 1001 messages, so the replies
// beyond that meet a full socket while the broker does not read.
constexpr int requests_past_hwm = 1200;

/// Sends @p n requests to the worker @p id and takes them all.
std::vector<zmesh::mdp::held_request> take_many(zmesh::mdp::worker& w, fake_broker& broker,
                                                const std::string& id, int n) {
    for (int i = 0; i < n; ++i)
        broker.send({id, "", "MDPW01", request_cmd, "client-" + std::to_string(i), "",
                     std::to_string(i)});
    std::vector<zmesh::mdp::held_request> held;
    for (int i = 0; i < n; ++i) {
        auto r = w.take(2s);
        REQUIRE(r);
        held.push_back(std::move(*r));
    }
    return held;
}

TEST_CASE("a reply at the high-water mark waits for a slow broker instead of being dropped") {
    zmq::context_t ctx;
    fake_broker broker(ctx, 1);
    auto o = fast_worker();
    o.heartbeat = 1000ms; // the wait may last 3 s, far more than the broker's pause
    zmesh::mdp::worker w(ctx, broker.endpoint, "svc", o);
    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);
    auto held = take_many(w, broker, ready[0], requests_past_hwm);

    // The broker starts reading only once the replies have stopped going out (the worker is
    // waiting for room) or all are out.
    std::atomic<int> started{0};
    int received = 0;
    std::thread reader([&] {
        int last = -1;
        auto since = clock_type::now();
        (void)support::eventually(
            [&] {
                const int now_started = started.load();
                if (now_started != last) {
                    last = now_started;
                    since = clock_type::now();
                }
                return clock_type::now() - since >= support::settle_time;
            },
            10s);
        while (received < requests_past_hwm) {
            auto m = support::recv_for(broker.router, 2s);
            if (!m) break;
            if (m->size() >= 4 && zmesh::view((*m)[3]) == reply_cmd) ++received;
        }
    });
    for (auto& r : held) {
        started.fetch_add(1);
        w.reply(std::move(r.token), std::move(r.body));
    }
    reader.join();
    CHECK(received == requests_past_hwm);
    CHECK(w.stats().replies == static_cast<std::uint64_t>(requests_past_hwm));
    CHECK(w.stats().replies_dropped == 0);
    CHECK(w.stats().reply_waits >= 1); // the wait was really exercised
    CHECK(w.stats().reconnects == 0);
}

TEST_CASE("a reply stuck at the high-water mark for heartbeat x liveness makes the worker start "
          "over") {
    zmq::context_t ctx;
    fake_broker broker(ctx, 1);
    zmesh::mdp::worker w(ctx, broker.endpoint, "svc", fast_worker());
    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);
    const auto id = ready[0];
    auto held = take_many(w, broker, id, requests_past_hwm);

    // The broker never reads.
    const auto start = clock_type::now();
    for (auto& r : held) w.reply(std::move(r.token), std::move(r.body));
    const auto took = clock_type::now() - start;
    CHECK(took >= allowance);
    CHECK(took < 5s);
    const auto s = w.stats();
    CHECK(s.reconnects == 1);
    CHECK(s.reply_waits == 1);
    CHECK(s.replies_dropped >= 1); // the stuck one, and the later ones of the old connection
    CHECK(s.replies + s.replies_dropped == static_cast<std::uint64_t>(requests_past_hwm));

    // The worker registers again on a new socket.
    auto log = drive(
        w, broker, [&](const strings& m) { return is_ready(m, "MDPW01") && m[0] != id; }, 5s);
    REQUIRE_FALSE(log.empty());
    CHECK(is_ready(log.back().message, "MDPW01"));
    CHECK(log.back().message[0] != id);
}

} // TEST_SUITE
