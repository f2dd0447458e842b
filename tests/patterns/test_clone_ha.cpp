// SPDX-License-Identifier: MPL-2.0
// test_clone_ha.cpp — Clone servers as a Binary Star pair (docs/patterns/clone.md, "A pair of
// servers"). In-process: two clients write a stream of changes through the pair while the active
// server is stopped without a goodbye; the backup takes over when a client asks, and every client
// converges to exactly the acknowledged state, with every change applied once (the backup's
// sequence counts them). Split brain: the HA link alone is cut (a relay the test stops), clients
// keep using the active, and the passive never becomes active. With real processes: `zmesh
// clone-server --ha` primary and backup, `zmesh clone set` through `--server A,B`, the active
// SIGKILLed (and, in a second case, the backup killed and restarted first): `get` and `watch`
// show the whole state from the survivor.
#include "support/process.hpp"
#include "support/support.hpp"

#include <zmesh/error.hpp>
#include <zmesh/message.hpp>
#include <zmesh/patterns/clone.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace cl = zmesh::patterns::clone;
namespace bs = zmesh::patterns::binary_star;
using state_map = std::map<std::string, std::string, std::less<>>;

namespace {

constexpr auto heartbeat = 100ms; // HA link and HUGZ
constexpr int active = 3, passive = 4;

/// One server of a pair on a thread of its own. kill() stops it without a goodbye: the loop
/// ends, the object and its sockets go; the peer just stops hearing from it.
class pair_server {
  public:
    pair_server(zmq::context_t& ctx, bs::role role, std::string ha_bind, std::string ha_peer) {
        server_ = std::make_unique<cl::server>(ctx, cl::server_options{
                                                        .bind = "tcp://127.0.0.1:*",
                                                        .hugz_interval = heartbeat,
                                                        .ha_role = role,
                                                        .ha_bind = std::move(ha_bind),
                                                        .ha_peer = std::move(ha_peer),
                                                        .ha_heartbeat = heartbeat});
        address_ = {server_->endpoint(), server_->updates_endpoint()};
        thread_ = std::thread([this] { server_->run(); });
    }
    ~pair_server() { kill(); }
    pair_server(const pair_server&) = delete;
    pair_server& operator=(const pair_server&) = delete;

    void kill() {
        if (!server_) return;
        server_->stop();
        thread_.join();
        server_.reset();
    }
    cl::server_stats stats() const { return server_->stats(); }
    const cl::server_address& address() const { return address_; }

  private:
    std::unique_ptr<cl::server> server_;
    std::thread thread_;
    cl::server_address address_;
};

cl::client_options pair_client(const pair_server& first, const pair_server& second) {
    // Generous waits: a client that gives up on a live active under load (a sanitizer build on
    // a busy machine) would ask the passive, which may then rightly take over.
    return cl::client_options{.servers = {first.address(), second.address()},
                              .timeout = 2000ms,
                              .server_ttl = 3000ms};
}

/// Forwards what a PUB at @p from publishes to a PUB bound at @p to, until cut().
class relay {
  public:
    relay(zmq::context_t& ctx, const std::string& from, const std::string& to)
        : in_(ctx, zmq::socket_type::sub), out_(ctx, zmq::socket_type::pub) {
        in_.set(zmq::sockopt::linger, 0);
        out_.set(zmq::sockopt::linger, 0);
        in_.set(zmq::sockopt::subscribe, "");
        out_.bind(to);
        in_.connect(from);
        thread_ = std::thread([this] {
            while (!stop_.load()) {
                auto m = support::recv_for(in_, 20ms);
                if (m) (void)m->send(out_, zmq::send_flags::dontwait);
            }
            in_.close();
            out_.close();
        });
    }
    ~relay() { cut(); }
    relay(const relay&) = delete;
    relay& operator=(const relay&) = delete;
    void cut() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }

  private:
    zmq::socket_t in_, out_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

/// Polls @p c until its copy is @p want, or 10 s pass.
bool converges(cl::client& c, const state_map& want) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
        c.poll(50ms);
        if (c.state() == want) return true;
    }
    return c.state() == want;
}

} // namespace

TEST_SUITE("patterns.clone.ha") {

TEST_CASE("clone pair: the active stopped mid-stream loses no acknowledged change and applies none twice") {
    zmq::context_t ctx;
    const auto ha_a = support::inproc_endpoint("clone-ha-a");
    const auto ha_b = support::inproc_endpoint("clone-ha-b");
    auto a = std::make_unique<pair_server>(ctx, bs::role::primary, ha_a, ha_b);
    pair_server b(ctx, bs::role::backup, ha_b, ha_a);
    REQUIRE(support::eventually([&] {
        return a->stats().ha_state == active && b.stats().ha_state == passive;
    }));

    // A first change, once the backup has it, shows that its copy follows the active.
    state_map model;
    {
        cl::client warm(ctx, pair_client(*a, b));
        CHECK(warm.set("warm", "up") == 1);
        model["warm"] = "up";
    }
    REQUIRE(support::eventually([&] { return b.stats().sequence == 1; }));

    constexpr int per_writer = 300;
    std::atomic<int> acked{0};
    state_map models[2];
    std::vector<std::uint64_t> acks[2];
    std::string failures[2];
    cl::client_stats writer_stats[2];
    std::vector<std::thread> writers;
    for (int w = 0; w < 2; ++w)
        writers.emplace_back([&, w] {
            try {
                cl::client c(ctx, pair_client(*a, b));
                for (int i = 0; i < per_writer; ++i) {
                    const std::string key = "w" + std::to_string(w) + "-" + std::to_string(i % 25);
                    const std::string value = "v" + std::to_string(i);
                    acks[w].push_back(c.set(key, value));
                    models[w][key] = value;
                    ++acked;
                }
                writer_stats[w] = c.stats();
            } catch (const std::exception& e) {
                failures[w] = e.what();
            }
        });
    // Mid-stream: the active goes without a goodbye.
    const bool midstream = support::eventually([&] { return acked.load() >= 150; }, 20000ms);
    // Every change the active acknowledged so far waited for the passive to have it.
    const auto held_at_a = a->stats().acks_held;
    a->kill();
    for (auto& t : writers) t.join();
    REQUIRE(midstream);
    CHECK(failures[0] == "");
    CHECK(failures[1] == "");
    for (int w = 0; w < 2; ++w) {
        REQUIRE(acks[w].size() == per_writer);
        model.insert(models[w].begin(), models[w].end());
        // The sequence continues across the takeover: every ack a larger number.
        for (std::size_t i = 1; i < acks[w].size(); ++i) CHECK(acks[w][i] > acks[w][i - 1]);
        CHECK(writer_stats[w].failovers >= 1);
    }

    const auto st = b.stats();
    CHECK(st.ha_state == active);
    CHECK(st.ha_takeovers == 1);
    // Every change applied exactly once, the followed ones and those sent again after the
    // takeover: the survivor's sequence counts them.
    CHECK(st.sequence == 1 + 2 * per_writer);
    CHECK(st.keys == model.size());
    CHECK(held_at_a >= 150);
    MESSAGE("acks the active held for the passive: " << held_at_a << ", re-sends the backup "
            "recognised: " << st.duplicates << ", writers' re-sends: "
            << writer_stats[0].resent + writer_stats[1].resent);

    // Two clients, one that was on the pair before and one that joins now, converge to exactly
    // the acknowledged state.
    cl::client late(ctx, pair_client(*a, b));
    CHECK(converges(late, model));
    CHECK(late.current_server() == b.address().server);
    CHECK(late.sequence() == 1 + 2 * per_writer);
}

TEST_CASE("clone pair: a passive server refuses clients while the active is alive") {
    zmq::context_t ctx;
    const auto ha_a = support::inproc_endpoint("clone-ha-a");
    const auto ha_b = support::inproc_endpoint("clone-ha-b");
    pair_server a(ctx, bs::role::primary, ha_a, ha_b);
    pair_server b(ctx, bs::role::backup, ha_b, ha_a);
    REQUIRE(support::eventually(
        [&] { return a.stats().ha_state == active && b.stats().ha_state == passive; }));
    // Only the passive in the list: it refuses (and stays passive), so the client gives up.
    cl::client only_b(ctx, cl::client_options{.servers = {b.address()}, .timeout = 300ms});
    CHECK_THROWS_AS(only_b.set("k", "v"), zmesh::error);
    CHECK(only_b.stats().refused >= 1);
    CHECK(b.stats().ha_refused >= 1);
    CHECK(b.stats().ha_state == passive);
    // The passive first in the list: the client moves on to the active.
    cl::client c(ctx, pair_client(b, a));
    CHECK(c.set("k", "v") == 1);
    CHECK(c.current_server() == a.address().server);
    CHECK(c.stats().failovers == 1);
    CHECK(converges(c, state_map{{"k", "v"}}));
}

TEST_CASE("clone pair: with only the HA link cut the passive never becomes active") {
    zmq::context_t ctx;
    const auto ha_a = support::inproc_endpoint("clone-ha-a");
    const auto ha_b = support::inproc_endpoint("clone-ha-b");
    const auto relayed_a = support::inproc_endpoint("clone-ha-relay");
    // b hears a only through the relay.
    relay link(ctx, ha_a, relayed_a);
    pair_server a(ctx, bs::role::primary, ha_a, ha_b);
    pair_server b(ctx, bs::role::backup, ha_b, relayed_a);
    REQUIRE(support::eventually(
        [&] { return a.stats().ha_state == active && b.stats().ha_state == passive; }));

    link.cut();
    cl::client c1(ctx, pair_client(a, b));
    cl::client c2(ctx, pair_client(a, b));
    state_map model;
    int passive_samples = 0, samples = 0;
    const auto until = std::chrono::steady_clock::now() + 20 * heartbeat; // ten failover timeouts
    for (int i = 0; std::chrono::steady_clock::now() < until && i < 100000; ++i) {
        auto& c = i % 2 ? c2 : c1;
        const std::string key = "k" + std::to_string(i % 10);
        c.set(key, std::to_string(i));
        model[key] = std::to_string(i);
        c.poll(5ms);
        ++samples;
        passive_samples += b.stats().ha_state == passive;
        CHECK(a.stats().ha_state == active);
    }
    CHECK(samples > 20);
    CHECK(passive_samples == samples);
    CHECK(b.stats().ha_takeovers == 0);
    CHECK(c1.current_server() == a.address().server);
    CHECK(c2.current_server() == a.address().server);
    CHECK(converges(c1, model));
    CHECK(converges(c2, model));

    // The check above can fail: a client asking the passive itself, with the peer silent, is
    // the event that makes it active (the rule the clients never trigger while they reach the
    // active).
    cl::client only_b(ctx, cl::client_options{.servers = {b.address()}, .timeout = 1000ms});
    only_b.sync();
    CHECK(b.stats().ha_state == active);
    CHECK(b.stats().ha_takeovers == 1);
}

} // TEST_SUITE

// ---------------------------------------------------------------------------------------------
// With real processes.

namespace {

/// `zmesh clone-server --ha ROLE` on ipc endpoints (the same after a restart).
struct clone_pair_process {
    std::string bind, ha_bind, ha_peer, role, log;
    std::vector<std::string> lines;
    support::child_process proc;

    clone_pair_process(std::string role_, std::string bind_, std::string ha_bind_,
                       std::string ha_peer_, std::string log_)
        : bind(std::move(bind_)), ha_bind(std::move(ha_bind_)), ha_peer(std::move(ha_peer_)),
          role(std::move(role_)), log(std::move(log_)), proc(start()) {}

    support::child_process start() {
        support::child_process p({support::zmesh_cli(), "clone-server", "--bind", bind, "--ha",
                                  role, "--ha-bind", ha_bind, "--ha-peer", ha_peer, "--hugz-ms",
                                  "100", "--ha-heartbeat-ms", "100", "--log-level", "info"},
                                 log);
        lines.clear();
        for (int i = 0; i < 3; ++i) { // snapshots, updates, HA link
            auto line = p.read_line(5000ms);
            REQUIRE(line.has_value());
            lines.push_back(*line);
        }
        return p;
    }
    void restart(std::string new_log) {
        proc.kill();
        log = std::move(new_log);
        proc = start();
    }
    /// Whether the log holds @p text.
    bool logged(const std::string& text) const {
        std::ifstream in(log);
        std::stringstream all;
        all << in.rdbuf();
        return all.str().find(text) != std::string::npos;
    }
};

std::vector<std::string> clone_args(const clone_pair_process& a, const clone_pair_process& b,
                                    std::vector<std::string> rest) {
    std::vector<std::string> args{"clone", "--server", a.bind + "," + b.bind, "--timeout-ms",
                                  "1000"};
    args.insert(args.end(), rest.begin(), rest.end());
    return args;
}

/// Sets key-i to value-i for i in [first, last), each with `zmesh clone set`.
void set_keys(const clone_pair_process& a, const clone_pair_process& b, int first, int last) {
    for (int i = first; i < last; ++i) {
        auto r = support::run_cli(
            clone_args(a, b, {"set", "key-" + std::to_string(i), "value-" + std::to_string(i)}));
        INFO(r.err);
        REQUIRE(r.code == 0);
    }
}

/// `zmesh clone get` of every key in [0, n) and a `watch` that prints all of them.
void check_full_state(const clone_pair_process& a, const clone_pair_process& b, int n) {
    for (int i = 0; i < n; i += 7) {
        auto r = support::run_cli(clone_args(a, b, {"get", "key-" + std::to_string(i)}));
        INFO(r.err);
        CHECK(r.out == "value-" + std::to_string(i) + "\n");
    }
    auto r = support::run_cli(clone_args(a, b, {"get", "key-" + std::to_string(n - 1)}));
    CHECK(r.out == "value-" + std::to_string(n - 1) + "\n");

    auto args = clone_args(a, b, {"watch", "key-"});
    args.insert(args.begin(), support::zmesh_cli());
    support::child_process watch(args);
    std::map<std::string, std::string> seen;
    for (int i = 0; i < n; ++i) {
        auto line = watch.read_line(5000ms);
        REQUIRE(line.has_value());
        const auto eq = line->find('=');
        REQUIRE(eq != std::string::npos);
        seen[line->substr(0, eq)] = line->substr(eq + 1);
    }
    CHECK(seen.size() == static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i)
        CHECK(seen["key-" + std::to_string(i)] == "value-" + std::to_string(i));
}

} // namespace

TEST_SUITE("cli.clone.ha") {

TEST_CASE("clone-server pair: the active SIGKILLed, get and watch show the whole state from the backup") {
    support::temp_dir dir;
    const auto base = "ipc://" + (dir.path() / "").string();
    const auto log_a = (dir.path() / "a.log").string(), log_b = (dir.path() / "b.log").string();
    clone_pair_process a("primary", base + "a.clone", base + "a.ha", base + "b.ha", log_a);
    clone_pair_process b("backup", base + "b.clone", base + "b.ha", base + "a.ha", log_b);
    REQUIRE(support::eventually([&] { return b.logged("took the active's snapshot"); }, 5000ms));

    set_keys(a, b, 0, 20);
    a.proc.kill(); // SIGKILL
    set_keys(a, b, 20, 30);
    CHECK(b.logged("failover: the active is silent and a client asks us"));
    check_full_state(a, b, 30);
}

TEST_CASE("clone-server pair: the backup killed and restarted re-syncs, and serves after the active is SIGKILLed") {
    support::temp_dir dir;
    const auto base = "ipc://" + (dir.path() / "").string();
    const auto log_a = (dir.path() / "a.log").string();
    clone_pair_process a("primary", base + "a.clone", base + "a.ha", base + "b.ha", log_a);
    clone_pair_process b("backup", base + "b.clone", base + "b.ha", base + "a.ha",
                         (dir.path() / "b1.log").string());
    REQUIRE(support::eventually([&] { return b.logged("took the active's snapshot"); }, 5000ms));

    set_keys(a, b, 0, 15);
    b.proc.kill();
    set_keys(a, b, 15, 25); // the primary alone (its acks no longer wait for the backup)
    b.restart((dir.path() / "b2.log").string());
    REQUIRE(support::eventually([&] { return b.logged("took the active's snapshot"); }, 5000ms));
    set_keys(a, b, 25, 35);
    a.proc.kill();
    set_keys(a, b, 35, 40);
    CHECK(b.logged("failover: the active is silent and a client asks us"));
    check_full_state(a, b, 40);
}

} // TEST_SUITE
