// SPDX-License-Identifier: MPL-2.0
// test_titanic_crash.cpp — durable requests survive kill -9.
//
// 5,000 requests are submitted to the Titanic node (titanic.request, rfc 9/TSP) by 8 client
// threads, while the node is SIGKILLed and restarted several times and the broker once. Every
// request the node acknowledged ("200" + id) must end with exactly one stored reply, equal to
// what the echo workers return for it. A submission whose acknowledgement was lost in a crash is
// simply submitted again (the client's retry), which at-least-once allows; the number of
// requests executed more than once is reported.
#include "stress.hpp"

#include <zmesh/mdp/client.hpp>
#include <zmesh/message.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <csignal>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using support::child_process;

namespace {

constexpr int submitters = 8;
constexpr int per_submitter = 625; // 5,000 in all
constexpr const char* heartbeat = "250";

child_process start_broker(const std::string& endpoint, const std::filesystem::path& err) {
    return child_process({support::zmesh_cli(), "broker", "--mdp", endpoint, "--heartbeat-ms",
                          heartbeat, "--log-level", "error"},
                         err.string());
}

child_process start_titanic(const std::string& broker, const std::filesystem::path& store,
                            const std::filesystem::path& err) {
    return child_process({support::zmesh_cli(), "titanic", "--broker", broker, "--store",
                          store.string(), "--heartbeat-ms", heartbeat, "--timeout-ms", "2000",
                          "--log-level", "error"},
                         err.string());
}

/// One TSP call; the body frames of the reply, or nothing after the client's retries.
std::optional<std::vector<std::string>> call(zmesh::mdp::client& c, const std::string& service,
                                             std::vector<std::string> frames) {
    zmesh::message body;
    for (auto& f : frames) body.push_back(f);
    std::error_code ec;
    auto reply = c.request(service, std::move(body), ec);
    if (!reply) return std::nullopt;
    std::vector<std::string> out;
    for (const auto& f : *reply) out.push_back(zmesh::to_string(f));
    return out;
}

} // namespace

TEST_SUITE("stress.titanic") {

TEST_CASE("every acknowledged durable request gets exactly its reply across kill -9 of titanic and broker") {
    const auto seed = stress::seed();
    std::mt19937 rng(seed);
    support::temp_dir dir;
    const auto store = dir.path() / "titanic.db";

    // The broker first binds a free port; restarts reuse it, as a real broker's address is fixed.
    auto broker = std::make_unique<child_process>(
        start_broker("tcp://127.0.0.1:*", dir.path() / "broker.err"));
    auto first_line = broker->read_line(10s);
    REQUIRE(first_line);
    const std::string endpoint = *first_line;

    std::vector<std::unique_ptr<child_process>> workers;
    for (int i = 0; i < 3; ++i) {
        workers.push_back(std::make_unique<child_process>(std::vector<std::string>{
            ZMESH_FAULT_WORKER_PATH, endpoint, "work", heartbeat,
            (dir.path() / ("worker-" + std::to_string(i) + ".log")).string(),
            std::to_string(seed + static_cast<unsigned>(i))}));
        REQUIRE(workers.back()->read_line(10s) == std::optional<std::string>("ready"));
    }
    std::mutex titanic_mutex; // guards titanic (the killer replaces it)
    auto titanic = std::make_unique<child_process>(start_titanic(endpoint, store, dir.path() / "t.err"));

    // Acknowledged submissions: id -> body.
    std::mutex acked_mutex;
    std::map<std::string, std::string> acked;
    std::atomic<int> resubmitted{0}, done{0};
    std::atomic<bool> failed{false};
    std::vector<std::thread> clients;
    for (int t = 0; t < submitters; ++t) {
        clients.emplace_back([&, t] {
            zmq::context_t ctx(1);
            // Generous retries: the node or the broker may be down for a while.
            zmesh::mdp::client c(ctx, endpoint, {.timeout = 1000ms, .retries = 30});
            for (int i = 0; i < per_submitter && !failed; ++i) {
                const std::string body = "req-" + std::to_string(t) + "-" + std::to_string(i);
                for (;;) {
                    auto reply = call(c, "titanic.request", {"work", body});
                    if (!reply) {
                        failed = true;
                        break;
                    }
                    if (reply->size() == 2 && (*reply)[0] == "200" && (*reply)[1].size() == 32) {
                        std::lock_guard lock(acked_mutex);
                        acked.emplace((*reply)[1], body);
                        break;
                    }
                    ++resubmitted; // "500": not stored; try again
                }
            }
            ++done;
        });
    }

    // The killer: titanic 4 times, the broker once, while submissions run. Each kill waits for a
    // random share of the submissions to be acknowledged (rounds spread between 5% and 90%), not
    // for a time: a node fast enough to finish early must still be killed mid-stream.
    int titanic_kills = 0, broker_kills = 0;
    const std::size_t total = static_cast<std::size_t>(submitters * per_submitter);
    std::uniform_int_distribution<std::size_t> jitter(0, total * 12 / 100);
    auto acked_count = [&] {
        std::lock_guard lock(acked_mutex);
        return acked.size();
    };
    for (int round = 0; round < 5 && done < submitters && !failed; ++round) {
        const std::size_t at = total * (5 + 17 * static_cast<std::size_t>(round)) / 100 + jitter(rng);
        while (acked_count() < at && done < submitters && !failed)
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        if (done >= submitters || failed) break;
        if (round == 2) {
            broker->kill();
            ++broker_kills;
            broker = std::make_unique<child_process>(start_broker(endpoint, dir.path() / "broker.err"));
            REQUIRE(broker->read_line(10s));
        } else {
            std::lock_guard lock(titanic_mutex);
            titanic->kill();
            ++titanic_kills;
            titanic = std::make_unique<child_process>(start_titanic(endpoint, store, dir.path() / "t.err"));
        }
    }
    for (auto& c : clients) c.join();
    REQUIRE_FALSE(failed);
    REQUIRE(acked.size() == static_cast<std::size_t>(submitters * per_submitter));

    // Every acknowledged request must reach "200" with its own body as the reply.
    zmq::context_t ctx(1);
    zmesh::mdp::client c(ctx, endpoint, {.timeout = 2000ms, .retries = 10});
    std::size_t replied = 0, wrong = 0;
    const auto deadline = std::chrono::steady_clock::now() + 40s;
    for (const auto& [id, body] : acked) {
        for (;;) {
            auto reply = call(c, "titanic.reply", {id});
            REQUIRE(reply);
            if (!reply->empty() && (*reply)[0] == "200") {
                if (reply->size() == 2 && (*reply)[1] == body) ++replied;
                else ++wrong;
                break;
            }
            REQUIRE_MESSAGE((*reply)[0] == "300", "titanic.reply answered " << (*reply)[0]);
            REQUIRE(std::chrono::steady_clock::now() < deadline);
            std::this_thread::sleep_for(20ms);
        }
    }
    CHECK(wrong == 0);
    CHECK(replied == acked.size());

    // How many bodies were executed more than once (allowed by at-least-once; reported).
    std::map<std::string, int> executions;
    for (int i = 0; i < 3; ++i) {
        std::istringstream log(stress::read_file(dir.path() / ("worker-" + std::to_string(i) + ".log")));
        for (std::string line; std::getline(log, line);) ++executions[line];
    }
    std::size_t twice = 0;
    for (const auto& [body, n] : executions) twice += n > 1 ? 1 : 0;
    MESSAGE("seed " << seed << ": " << acked.size() << " acknowledged, " << replied
                    << " replied, titanic killed " << titanic_kills << "x, broker " << broker_kills
                    << "x, " << resubmitted.load() << " submissions answered 500, " << twice
                    << " requests executed more than once");
    CHECK(titanic_kills >= 1);
    CHECK(broker_kills == 1);
    {
        std::lock_guard lock(titanic_mutex);
        titanic->signal(SIGTERM);
        CHECK(titanic->wait_for(5s) == std::optional<int>(0));
    }
}

}
