// SPDX-License-Identifier: MPL-2.0
// test_titanic_pg_nodes.cpp — two Titanic nodes share one PostgreSQL store; one is SIGKILLed
// twice and restarted.
//
// A broker (`zmesh broker`), two nodes (`zmesh titanic --store <PostgreSQL>`, leases of 1 s) and
// an in-process echo worker that counts how often it executes each request, by the message id
// the broker hands it. The nodes dispatch each stored request with its TSP id as message id, so
// that id is the one the worker sees. 3,000 durable requests are submitted by 4 client threads;
// node A is killed with SIGKILL at about a quarter and at about three fifths of the
// acknowledgements, and started again each time. Node B takes over A's claimed requests once
// their leases end; a request A had already dispatched joins, at the broker, the execution A
// started or its kept reply (the broker's dedupe window is 60 s).
//
// Must hold: every acknowledged request ends with exactly its reply, and the worker executed
// each acknowledged request exactly once. A submission that A stored but could not acknowledge
// before it died is submitted again by its client and stored a second time under a new id (at
// least once on the way in): those extra ids are reported, not failed.
#include "pg_server.hpp"

#include "support/process.hpp"
#include "support/support.hpp"

#include <zmesh/mdp/client.hpp>
#include <zmesh/mdp/worker.hpp>
#include <zmesh/message.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <csignal>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using pg_test::pg_server;
using support::child_process;

namespace {

constexpr int submitters = 4;
constexpr int per_submitter = 750; // 3,000 in all
constexpr const char* heartbeat = "250";

child_process start_titanic(const std::string& broker, const std::string& store,
                            const std::filesystem::path& err) {
    // --timeout-ms and --max-attempts generous: a loaded machine (sanitizers) must not turn a
    // slow reply into a dead letter.
    return child_process({support::zmesh_cli(), "titanic", "--broker", broker, "--store", store,
                          "--heartbeat-ms", heartbeat, "--timeout-ms", "8000", "--lease-ms",
                          "1000", "--max-attempts", "50", "--log-level", "warn"},
                         err.string());
}

std::optional<std::vector<std::string>> call(zmesh::mdp::client& c, const std::string& service,
                                             const std::vector<std::string>& frames) {
    zmesh::message body;
    for (const auto& f : frames) body.push_back(f);
    std::error_code ec;
    auto reply = c.request(service, std::move(body), ec);
    if (!reply) return std::nullopt;
    std::vector<std::string> out;
    for (const auto& f : *reply) out.push_back(zmesh::to_string(f));
    return out;
}

} // namespace

TEST_SUITE("postgres.titanic.nodes") {

TEST_CASE("two titanic nodes on one PostgreSQL store answer every acknowledged request once across kill -9") {
    pg_server* server = nullptr;
    try {
        server = &pg_server::shared();
    } catch (const std::exception& e) {
        FAIL("cannot start the test's PostgreSQL server: " << e.what());
    }
    REQUIRE(server != nullptr);
    const std::string store = server->conninfo(pg_server::fresh_schema("nodes"));
    support::temp_dir dir;

    child_process broker({support::zmesh_cli(), "broker", "--mdp", "tcp://127.0.0.1:*",
                          "--heartbeat-ms", heartbeat, "--log-level", "error"},
                         (dir.path() / "broker.err").string());
    auto first_line = broker.read_line(10s);
    REQUIRE(first_line);
    const std::string endpoint = *first_line;

    // The worker: counts executions per message id, answers "done:" + body.
    std::mutex exec_mutex;
    std::map<std::string, int> executions; // message id (hex) -> times executed
    std::atomic<int> without_id{0};
    std::atomic<bool> stop_worker{false};
    std::thread worker_thread([&] {
        zmq::context_t ctx(1);
        zmesh::mdp::worker w(ctx, endpoint, "work",
                             {.heartbeat = 250ms, .liveness = 3, .credit = 16});
        while (!stop_worker) {
            auto r = w.take(50ms);
            if (!r) continue;
            {
                std::lock_guard lock(exec_mutex);
                if (r->header)
                    ++executions[r->header->id.to_hex()];
                else
                    ++without_id;
            }
            std::string body = r->body.empty() ? std::string() : zmesh::to_string(r->body[0]);
            w.reply(std::move(r->token), zmesh::message{"done:" + body});
        }
    });
    struct joiner {
        std::atomic<bool>& stop;
        std::thread& t;
        ~joiner() {
            stop = true;
            if (t.joinable()) t.join();
        }
    } join_worker{stop_worker, worker_thread};

    std::mutex nodes_mutex; // guards node_a (the killer replaces it)
    auto node_a = std::make_unique<child_process>(start_titanic(endpoint, store, dir.path() / "a.err"));
    auto node_b = std::make_unique<child_process>(start_titanic(endpoint, store, dir.path() / "b.err"));

    std::mutex acked_mutex;
    std::map<std::string, std::string> acked; // TSP id -> body
    std::atomic<int> not_stored{0}, done{0};
    std::atomic<bool> failed{false};
    std::vector<std::thread> clients;
    for (int t = 0; t < submitters; ++t) {
        clients.emplace_back([&, t] {
            zmq::context_t ctx(1);
            zmesh::mdp::client c(ctx, endpoint, {.timeout = 1000ms, .retries = 30});
            for (int i = 0; i < per_submitter && !failed; ++i) {
                const std::string body = "req-" + std::to_string(t) + "-" + std::to_string(i);
                for (int attempt = 0;; ++attempt) {
                    auto reply = call(c, "titanic.request", {"work", body});
                    if (!reply || attempt > 50) {
                        failed = true;
                        break;
                    }
                    if (reply->size() == 2 && (*reply)[0] == "200" && (*reply)[1].size() == 32) {
                        std::lock_guard lock(acked_mutex);
                        acked.emplace((*reply)[1], body);
                        break;
                    }
                    ++not_stored; // "500": not stored; submit again
                }
            }
            ++done;
        });
    }
    struct client_joiner {
        std::vector<std::thread>& ts;
        std::atomic<bool>& failed;
        ~client_joiner() {
            failed = true; // ends the loops early if the test is leaving by an exception
            for (auto& th : ts)
                if (th.joinable()) th.join();
        }
    } join_clients{clients, failed};

    const std::size_t total = static_cast<std::size_t>(submitters * per_submitter);
    auto acked_count = [&] {
        std::lock_guard lock(acked_mutex);
        return acked.size();
    };
    int kills = 0;
    const auto started = std::chrono::steady_clock::now();
    for (std::size_t at : {total / 4, total * 3 / 5}) {
        for (int i = 0; i < 15000 && acked_count() < at && done < submitters && !failed; ++i)
            std::this_thread::sleep_for(2ms);
        if (done >= submitters || failed) break;
        std::lock_guard lock(nodes_mutex);
        node_a->kill();
        ++kills;
        node_a = std::make_unique<child_process>(start_titanic(endpoint, store, dir.path() / "a.err"));
    }
    for (auto& c : clients) c.join();
    REQUIRE_FALSE(failed);
    REQUIRE(acked.size() == total);
    const auto submitted_in = std::chrono::steady_clock::now() - started;

    // Every acknowledged request reaches "200" with its own reply.
    zmq::context_t ctx(1);
    zmesh::mdp::client c(ctx, endpoint, {.timeout = 2000ms, .retries = 10});
    std::size_t replied = 0, wrong = 0;
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    for (const auto& [id, body] : acked) {
        for (;;) {
            auto reply = call(c, "titanic.reply", {id});
            REQUIRE(reply);
            REQUIRE(!reply->empty());
            if ((*reply)[0] == "200") {
                if (reply->size() == 2 && (*reply)[1] == "done:" + body)
                    ++replied;
                else
                    ++wrong;
                break;
            }
            REQUIRE_MESSAGE((*reply)[0] == "300", "titanic.reply for " << id << " answered "
                                                                        << (*reply)[0]);
            REQUIRE(std::chrono::steady_clock::now() < deadline);
            std::this_thread::sleep_for(20ms);
        }
    }
    CHECK(wrong == 0);
    CHECK(replied == total);

    // Executions at the worker: each acknowledged request exactly once.
    std::size_t once = 0, more = 0, never = 0, extra_ids = 0, total_runs = 0;
    {
        std::lock_guard lock(exec_mutex);
        for (const auto& [id, body] : acked) {
            auto it = executions.find(id);
            const int n = it == executions.end() ? 0 : it->second;
            once += n == 1;
            more += n > 1;
            never += n == 0;
        }
        for (const auto& [id, n] : executions) {
            total_runs += static_cast<std::size_t>(n);
            extra_ids += acked.count(id) == 0;
        }
    }
    MESSAGE("3,000 acknowledged in " << std::chrono::duration_cast<std::chrono::milliseconds>(submitted_in).count()
                                     << " ms, node A killed " << kills << "x; worker executions: "
                                     << total_runs << " in all, " << once
                                     << " acknowledged requests once, " << more << " more than once, "
                                     << never << " never; " << extra_ids
                                     << " ids stored but never acknowledged (their submission "
                                        "was resubmitted); "
                                     << not_stored.load() << " submissions answered 500");
    CHECK(kills == 2);
    CHECK(without_id == 0);
    CHECK(once == total);
    CHECK(more == 0);
    CHECK(never == 0);

    // Both nodes still serve and stop cleanly.
    std::lock_guard lock(nodes_mutex);
    node_a->signal(SIGTERM);
    node_b->signal(SIGTERM);
    CHECK(node_a->wait_for(5s) == std::optional<int>(0));
    CHECK(node_b->wait_for(5s) == std::optional<int>(0));
}

}
