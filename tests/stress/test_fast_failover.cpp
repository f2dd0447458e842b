// SPDX-License-Identifier: MPL-2.0
// test_fast_failover.cpp — a worker process SIGKILLed while it holds a request: the broker, at
// its default heartbeat settings (2.5 s × 3), must hand the request to another worker within one
// second, because the kernel closes the dead process's connection at once and libzmq reports
// it (docs/broker.md, "Faults"). Heartbeat expiry alone would take 7.5 s.
#include "stress.hpp"

#include <zmesh/mdp/protocol.hpp>
#include <zmesh/message.hpp>

#include <doctest/doctest.h>

#include <csignal>
#include <fstream>
#include <string>

using namespace std::chrono_literals;
namespace mdp = zmesh::mdp;

namespace {

support::child_process worker(const std::string& endpoint, const std::string& mode,
                              const std::string& command = {}) {
    std::vector<std::string> argv{support::zmesh_cli(), "worker", "--broker", endpoint,
                                  "--service", "job", mode};
    if (!command.empty()) argv.push_back(command);
    return support::child_process(argv);
}

} // namespace

TEST_SUITE("stress.failover") {

TEST_CASE("a SIGKILLed busy worker's request is answered by another worker within 1 s at "
          "default heartbeat settings") {
    support::temp_dir dir;
    stress::broker_process broker(dir.path() / "broker.err", {});
    zmq::context_t ctx;
    auto query = stress::query_client(ctx, broker.endpoint);

    // The first worker takes the request and hangs in it; its shell writes its pid so that the
    // test can kill the command too (it would otherwise outlive its worker).
    const auto busy_mark = dir.path() / "busy.pid";
    auto doomed = worker(broker.endpoint, "--exec",
                         "cat >/dev/null; echo $$ > '" + busy_mark.string() + "'; exec sleep 30");
    REQUIRE(support::eventually([&] { return stress::workers_of(query, "job") == 1; }, 10s));

    auto client = support::dealer(ctx, broker.endpoint);
    zmesh::message req{"", mdp::client_v1, "job", "payload"};
    REQUIRE(req.send(client) == zmesh::send_status::sent);
    REQUIRE(support::eventually([&] { return std::filesystem::exists(busy_mark); }, 10s));

    auto healthy = worker(broker.endpoint, "--echo");
    REQUIRE(support::eventually([&] { return stress::workers_of(query, "job") == 2; }, 10s));

    const auto killed_at = std::chrono::steady_clock::now();
    doomed.signal(SIGKILL);
    auto reply = support::recv_for(client, 5s);
    const auto elapsed = std::chrono::steady_clock::now() - killed_at;
    REQUIRE(reply);
    CHECK(support::texts(*reply) == std::vector<std::string>{"", "MDPC01", "job", "payload"});
    MESSAGE("answered " << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()
                        << " ms after SIGKILL");
    CHECK(elapsed < 1s);

    std::ifstream pid_file(busy_mark);
    pid_t sleeper = 0;
    if (pid_file >> sleeper && sleeper > 0) ::kill(sleeper, SIGKILL);
}

} // TEST_SUITE
