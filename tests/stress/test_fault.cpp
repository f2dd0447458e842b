// SPDX-License-Identifier: MPL-2.0
// test_fault.cpp — the broker's at-least-once promise under fire: 2,000 requests through a real
// `zmesh broker` while a killer thread SIGKILLs and restarts its worker processes at random.
//
// Every worker (fault_worker.cpp) logs each id it executes before it replies, so after the run
// the logs tell how many requests a kill made the broker deliver twice.
#include "stress.hpp"

#include <zmesh/mdp/client.hpp>
#include <zmesh/message.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <csignal>
#include <mutex>
#include <random>
#include <sstream>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#ifndef ZMESH_FAULT_WORKER_PATH
#error "ZMESH_FAULT_WORKER_PATH must name the fault_worker executable"
#endif

using namespace std::chrono_literals;
using support::child_process;

namespace {

constexpr int request_count = 2000;
constexpr int worker_count = 3;
constexpr int max_kills = 60;
constexpr std::size_t window = 16; // requests in flight from the client
// Heartbeat shared by broker and workers (7/MDP has no negotiation). Short, so a dead worker's
// request is re-queued after 3 × 150 ms rather than 7.5 s; long enough that a busy 2-core
// machine does not expire healthy workers all the time (that would only add duplicates).
constexpr auto heartbeat = 150ms;
const std::string service = "fault";

std::optional<int> parse_id(std::string_view s) {
    int v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size() || v < 0 || v >= request_count)
        return std::nullopt;
    return v;
}

/// The worker slots, restarted by the killer thread: one fault_worker process each.
class worker_pool {
  public:
    worker_pool(std::string endpoint, std::filesystem::path dir, std::uint32_t seed,
                std::uint32_t credit)
        : endpoint_(std::move(endpoint)), dir_(std::move(dir)), seed_(seed), credit_(credit) {
        for (int i = 0; i < worker_count; ++i) slots_.push_back(start(i));
    }

    /// SIGKILLs slot @p i (and reaps it), then starts a fresh process in its place.
    void kill_and_restart(int i) {
        auto& slot = slots_[static_cast<std::size_t>(i)];
        slot.kill();
        slot = start(i);
    }

    /// SIGTERMs every worker once it is ready for it; returns the exit codes (-1: still running
    /// 2 s later, then killed).
    std::vector<int> stop_all() {
        for (auto& p : slots_) {
            (void)p.read_line(5000ms); // "ready": the last restart may still be starting
            p.signal(SIGTERM);
        }
        std::vector<int> codes;
        for (auto& p : slots_) {
            codes.push_back(p.wait_for(2000ms).value_or(-1));
            p.kill();
        }
        return codes;
    }

  private:
    child_process start(int slot) {
        const int n = started_++;
        // Each process has its own log, so no two writers ever share a file.
        const auto name = "worker-" + std::to_string(slot) + "-" + std::to_string(n);
        return child_process({ZMESH_FAULT_WORKER_PATH, endpoint_, service,
                              std::to_string(heartbeat.count()), (dir_ / (name + ".log")).string(),
                              std::to_string(seed_ + static_cast<std::uint32_t>(n)),
                              std::to_string(credit_)},
                             (dir_ / (name + ".err")).string());
    }

    std::string endpoint_;
    std::filesystem::path dir_;
    std::uint32_t seed_;
    std::uint32_t credit_;
    int started_ = 0;
    std::vector<child_process> slots_;
};

} // namespace

TEST_SUITE("stress.broker") {

TEST_CASE("every request is answered with its own id while workers are SIGKILLed and restarted") {
    std::uint32_t credit = 1;
    SUBCASE("plain MDP/0.1 workers, one request each") {}
    // A killed worker with credit takes several requests down with it: all must come back.
    SUBCASE("workers with credit 8 (ZMWC02)") { credit = 8; }
    const auto seed = stress::seed();
    MESSAGE("seed " << seed << " (replay with ZMESH_STRESS_SEED=" << seed << ")");
    const auto started = std::chrono::steady_clock::now();
    support::temp_dir dir;
    stress::broker_process broker(dir.path() / "broker.err",
                                  {"--heartbeat-ms", std::to_string(heartbeat.count()),
                                   "--liveness", "3",
                                   // A request may meet several dying workers in a row; it must
                                   // not be rejected for that in this test.
                                   "--max-attempts", "50", "--log-level", "warn"});
    zmq::context_t ctx;
    worker_pool pool(broker.endpoint, dir.path(), seed, credit);
    {
        // Start only once all three are registered, so the first kills hit working workers.
        auto q = stress::query_client(ctx, broker.endpoint);
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while (stress::workers_of(q, service) < worker_count &&
               std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(support::settle_time);
        REQUIRE(stress::workers_of(q, service) == worker_count);
    }

    // The killer: one worker every 30–200 ms, at most max_kills, until the client is done. It
    // owns the pool while it runs; the jthread is joined (stop requested) before the pool dies,
    // on failure too.
    int kills = 0;
    std::string killer_error;
    std::mutex killer_mutex;
    std::condition_variable_any killer_cv;
    std::jthread killer([&](std::stop_token stop) {
        std::mt19937 rng(seed ^ 0x5bd1e995u);
        std::uniform_int_distribution<int> pause_ms(30, 200), pick(0, worker_count - 1);
        try {
            while (kills < max_kills) {
                std::unique_lock lock(killer_mutex);
                // Returns early, and only, when a stop is requested.
                (void)killer_cv.wait_for(lock, stop, std::chrono::milliseconds(pause_ms(rng)),
                                         [] { return false; });
                if (stop.stop_requested()) return;
                pool.kill_and_restart(pick(rng));
                ++kills;
            }
        } catch (const std::exception& e) {
            killer_error = e.what();
        }
    });

    // Asynchronous mode with a window rather than request(): its Lazy Pirate resend would cover up
    // a request the broker lost, while here nothing but the broker's re-queue can bring a reply,
    // so a loss shows as a missing id. Every reply is still checked: the worker echoes the id,
    // which says which request a reply answers and that it answers it exactly once.
    std::vector<int> answers(request_count, 0);
    std::vector<std::string> errors;
    auto error = [&](std::string e) {
        if (errors.size() < 10) errors.push_back(std::move(e));
    };
    zmesh::mdp::client client(ctx, broker.endpoint, {.timeout = 10s, .window = window});
    {
        int sent = 0, received = 0;
        const auto deadline = started + 45s;
        while (received < request_count) {
            while (sent < request_count && client.outstanding() < window)
                client.send(service, zmesh::message{std::to_string(sent++)});
            // 10 s without any reply: the pipeline is stuck, some request is lost.
            auto r = client.recv(10s);
            if (!r) {
                error("no reply within 10 s; " + std::to_string(client.outstanding()) +
                      " requests unanswered");
                break;
            }
            ++received;
            if (r->service != service || r->body.size() != 1) {
                error("reply from '" + r->service + "' with " + std::to_string(r->body.size()) +
                      " frames, first: " +
                      (r->body.empty() ? std::string() : zmesh::to_string(r->body[0])));
                continue;
            }
            const auto body = zmesh::to_string(r->body[0]);
            const auto id = parse_id(body);
            if (!id) error("reply with a body that is no id: '" + body.substr(0, 40) + "'");
            else if (++answers[static_cast<std::size_t>(*id)] > 1) error("id " + body + " answered twice");
            if (std::chrono::steady_clock::now() > deadline) {
                error("not done after 45 s");
                break;
            }
        }
    }
    const auto client_done = std::chrono::steady_clock::now();
    killer.request_stop();
    killer.join();
    // Stop every worker before reading the logs, so no execution is still being written. They
    // must exit 0 (DISCONNECT sent; under a sanitizer, no error at exit either).
    for (int code : pool.stop_all()) CHECK_MESSAGE(code == 0, "a worker exited with " << code);

    CHECK(killer_error.empty());
    for (const auto& e : errors) FAIL_CHECK(e);
    const auto unanswered = std::count(answers.begin(), answers.end(), 0);
    CHECK_MESSAGE(unanswered == 0, unanswered << " of " << request_count << " requests got no reply");

    // Executions per id, from every worker log of the run.
    std::vector<int> runs(request_count, 0);
    std::size_t log_files = 0, bad_lines = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
        if (entry.path().extension() != ".log") continue;
        ++log_files;
        std::istringstream lines(stress::read_file(entry.path()));
        for (std::string line; std::getline(lines, line);) {
            if (auto id = parse_id(line)) ++runs[static_cast<std::size_t>(*id)];
            else ++bad_lines;
        }
    }
    const auto never_run = std::count(runs.begin(), runs.end(), 0);
    const auto duplicated = std::count_if(runs.begin(), runs.end(), [](int n) { return n > 1; });
    std::uint64_t extra_runs = 0; // executions beyond the first
    for (int n : runs) extra_runs += static_cast<std::uint64_t>(std::max(n - 1, 0));
    const auto max_runs = *std::max_element(runs.begin(), runs.end());
    const auto stats = client.stats();
    MESSAGE(request_count << " requests in "
                          << std::chrono::duration_cast<std::chrono::milliseconds>(client_done - started).count()
                          << " ms; " << kills << " kills; " << log_files << " worker processes; "
                          << duplicated << " ids executed more than once (at most " << max_runs
                          << " times); client: " << stats.replies << " replies, "
                          << stats.unexpected << " unexpected, " << stats.malformed << " malformed");
    CHECK(kills > 0);
    CHECK(bad_lines == 0);
    CHECK_MESSAGE(never_run == 0, never_run << " ids were never executed");

    // The broker's side of the story: re-queues, and no request given up on.
    {
        auto q = stress::query_client(ctx, broker.endpoint);
        auto counters = stress::stats(q);
        REQUIRE_MESSAGE(counters, "zmesh.stats did not answer");
        MESSAGE("broker: " << (*counters)["dispatched"] << " dispatched, " << (*counters)["requeued"]
                           << " re-queued, " << (*counters)["workers_expired"] << " workers expired, "
                           << (*counters)["rejected"] << " rejected");
        CHECK((*counters)["rejected"] == 0);
        // Only a re-queue sends a request to a second worker (the client never resends here), so
        // more executions than re-queues would mean one request was handed out twice at once.
        CHECK((*counters)["requeued"] >= extra_runs);
    }

    // The broker lived through it all and still stops cleanly.
    broker.process.signal(SIGTERM);
    auto code = broker.process.wait_for(2000ms);
    REQUIRE(code);
    CHECK(*code == 0);
}

}
