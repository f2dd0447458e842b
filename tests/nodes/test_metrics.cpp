// SPDX-License-Identifier: MPL-2.0
// test_metrics.cpp — broker::metrics() and its Prometheus text (nodes/metrics_text.hpp): the
// per-service counters, state and latency histogram a broker keeps, read back through the
// snapshot, and the exposition format written from them. The whole path through HTTP, a real
// Prometheus server and a real browser is tests/interop/test_metrics.py.
#include <zmesh/nodes/broker.hpp>
#include <zmesh/nodes/metrics_text.hpp>

#include <zmesh/mdp/protocol.hpp>
#include <zmesh/message.hpp>

#include "support/support.hpp"
#include "tcp_broker.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <sstream>
#include <string>

using namespace std::chrono_literals;
namespace mdp = zmesh::mdp;
using zmesh::nodes::broker_metrics;
using zmesh::nodes::service_metrics;

namespace {

const service_metrics* find_service(const broker_metrics& m, const std::string& name) {
    auto it = std::find_if(m.services.begin(), m.services.end(),
                           [&](const service_metrics& s) { return s.name == name; });
    return it == m.services.end() ? nullptr : &*it;
}

/// The lines of @p text that start with @p prefix.
std::vector<std::string> lines_starting(const std::string& text, const std::string& prefix) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        if (line.rfind(prefix, 0) == 0) out.push_back(line);
    return out;
}

void send_frames(zmq::socket_t& s, zmesh::message m) {
    REQUIRE(m.send(s) == zmesh::send_status::sent);
}

} // namespace

TEST_SUITE("nodes.metrics") {

TEST_CASE("every broker counter has one metric, named once, with help") {
    const auto fields = zmesh::nodes::broker_stat_fields();
    // broker_stats is all std::uint64_t: a field added there and not to the table fails here.
    REQUIRE(fields.size() * sizeof(std::uint64_t) == sizeof(zmesh::nodes::broker_stats));
    std::set<std::string> names, metrics;
    // Each entry writes its own member: numbered through the table, the struct holds every
    // number once.
    zmesh::nodes::broker_stats numbered{};
    std::uint64_t i = 0;
    for (const auto& f : fields) numbered.*f.field = ++i;
    std::vector<std::uint64_t> words(sizeof numbered / sizeof(std::uint64_t));
    std::memcpy(words.data(), &numbered, sizeof numbered);
    std::sort(words.begin(), words.end());
    for (std::size_t k = 0; k < words.size(); ++k) CHECK(words[k] == k + 1);
    for (const auto& f : fields) {
        CAPTURE(f.name);
        CHECK(names.insert(f.name).second);
        CHECK(metrics.insert(f.metric).second);
        CHECK(std::string(f.help).size() > 10);
        const std::string metric = f.metric;
        CHECK((metric.size() > 6 && metric.substr(metric.size() - 6) == "_total") == f.counter);
    }
}

TEST_CASE("the text has HELP and TYPE for each metric, cumulative buckets and escaped labels") {
    broker_metrics m;
    m.running = true;
    m.max_memory = 1024;
    m.totals.requests = 7;
    m.totals.workers = 2;
    service_metrics s;
    s.name = "odd\"name\\x";
    s.requests = 5;
    s.replies = 4;
    s.workers = 2;
    s.latency_counts[0] = 1;  // <= 100 us
    s.latency_counts[3] = 2;  // <= 1 ms
    s.latency_counts.back() = 1; // over 10 s
    s.latency_sum = 12.5;
    m.services.push_back(s);
    const auto text = zmesh::nodes::prometheus_text(m);
    CAPTURE(text);
    CHECK(lines_starting(text, "zmesh_broker_requests_total ") ==
          std::vector<std::string>{"zmesh_broker_requests_total 7"});
    CHECK(lines_starting(text, "zmesh_broker_workers ") ==
          std::vector<std::string>{"zmesh_broker_workers 2"});
    CHECK(lines_starting(text, "zmesh_broker_up ") == std::vector<std::string>{"zmesh_broker_up 1"});
    CHECK(lines_starting(text, "# TYPE zmesh_broker_requests_total ") ==
          std::vector<std::string>{"# TYPE zmesh_broker_requests_total counter"});
    CHECK(lines_starting(text, "# TYPE zmesh_broker_workers ") ==
          std::vector<std::string>{"# TYPE zmesh_broker_workers gauge"});
    // The label value escapes " and \ as the format requires.
    const std::string label = R"({service="odd\"name\\x")";
    CHECK(lines_starting(text, "zmesh_service_requests_total" + label + "} ") ==
          std::vector<std::string>{"zmesh_service_requests_total" + label + "} 5"});
    // Buckets are cumulative and end with +Inf; _count equals the +Inf bucket.
    const auto buckets = lines_starting(text, "zmesh_service_latency_seconds_bucket");
    REQUIRE(buckets.size() == service_metrics::latency_bounds.size() + 1);
    CHECK(buckets[0] == "zmesh_service_latency_seconds_bucket" + label + ",le=\"0.0001\"} 1");
    CHECK(buckets[2] == "zmesh_service_latency_seconds_bucket" + label + ",le=\"0.0005\"} 1");
    CHECK(buckets[3] == "zmesh_service_latency_seconds_bucket" + label + ",le=\"0.001\"} 3");
    CHECK(buckets[15] == "zmesh_service_latency_seconds_bucket" + label + ",le=\"10\"} 3");
    CHECK(buckets[16] == "zmesh_service_latency_seconds_bucket" + label + ",le=\"+Inf\"} 4");
    CHECK(lines_starting(text, "zmesh_service_latency_seconds_count") ==
          std::vector<std::string>{"zmesh_service_latency_seconds_count" + label + "} 4"});
    CHECK(lines_starting(text, "zmesh_service_latency_seconds_sum") ==
          std::vector<std::string>{"zmesh_service_latency_seconds_sum" + label + "} 12.5"});
    CHECK(lines_starting(text, "# TYPE zmesh_service_latency_seconds ") ==
          std::vector<std::string>{"# TYPE zmesh_service_latency_seconds histogram"});
    // Every sample line belongs to a metric declared by a TYPE line before it.
    std::set<std::string> declared;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("# TYPE ", 0) == 0) {
            declared.insert(line.substr(7, line.find(' ', 7) - 7));
            continue;
        }
        if (line.empty() || line[0] == '#') continue;
        auto name = line.substr(0, line.find_first_of("{ "));
        for (const char* suffix : {"_bucket", "_sum", "_count"})
            if (name.size() > std::string(suffix).size() &&
                name.substr(name.size() - std::string(suffix).size()) == suffix &&
                declared.count(name.substr(0, name.size() - std::string(suffix).size())))
                name = name.substr(0, name.size() - std::string(suffix).size());
        CAPTURE(line);
        CHECK(declared.count(name) == 1);
    }
}

TEST_CASE("a broker counts each service's requests, replies, rejections and latency") {
    support::tcp_broker b;
    b.config.metrics_interval = 20ms;
    b.config.request_ttl = 300ms;
    b.config.heartbeat_interval = 100ms;
    b.start();
    // metrics() reports the loop running once it does.
    REQUIRE(support::eventually([&] { return b.broker->metrics().running; }));

    auto worker = support::dealer(b.ctx, b.endpoint);
    zmesh::message ready{"", mdp::worker_v1};
    ready.push_back(mdp::command_frame(mdp::worker_command::ready));
    ready.push_back(std::string("echo"));
    send_frames(worker, std::move(ready));
    auto client = support::dealer(b.ctx, b.endpoint);
    constexpr int n = 25;
    for (int i = 0; i < n; ++i) {
        send_frames(client, zmesh::message{"", mdp::client_v1, "echo", "body"});
        // The worker answers each request as the spec frames it.
        std::optional<zmesh::message> req;
        while ((req = support::recv_for(worker, 3000ms)) &&
               mdp::parse_worker_command((*req)[2]) == mdp::worker_command::heartbeat) {
        }
        REQUIRE(req);
        REQUIRE(req->size() == 6);
        zmesh::message rep{"", mdp::worker_v1};
        rep.push_back(mdp::command_frame(mdp::worker_command::reply));
        rep.push_back(zmesh::to_string((*req)[3]));
        rep.push_back(std::string_view());
        rep.push_back(std::string("body"));
        send_frames(worker, std::move(rep));
        REQUIRE(support::recv_for(client, 3000ms));
    }
    // A request nobody serves: it expires at request_ttl and is counted as rejected and expired.
    send_frames(client, zmesh::message{"", mdp::client_v1, "nobody", "x"});
    REQUIRE(support::recv_for(client, 3000ms)); // the 504

    broker_metrics m;
    REQUIRE(support::eventually(
        [&] {
            m = b.broker->metrics();
            const auto* nobody = find_service(m, "nobody");
            const auto* echo = find_service(m, "echo");
            return echo && echo->replies == n && nobody && nobody->expired == 1;
        },
        5000ms));
    const auto* echo = find_service(m, "echo");
    CHECK(echo->requests == n);
    CHECK(echo->workers == 1);
    CHECK(echo->queued == 0);
    CHECK(echo->in_flight == 0);
    CHECK(echo->rejected == 0);
    std::uint64_t counted = 0;
    for (auto c : echo->latency_counts) counted += c;
    CHECK(counted == n);
    CHECK(echo->latency_sum > 0);
    CHECK(echo->latency_sum < n * 3.0); // each answered within the 3 s the test waits
    const auto* nobody = find_service(m, "nobody");
    CHECK(nobody->requests == 1);
    CHECK(nobody->rejected == 1);
    CHECK(nobody->replies == 0);
    CHECK(m.totals.requests == n + 1);
    CHECK(m.max_memory == b.config.max_memory);
    CHECK(std::is_sorted(m.services.begin(), m.services.end(),
                         [](const auto& x, const auto& y) { return x.name < y.name; }));
    // The same numbers in the text.
    const auto text = zmesh::nodes::prometheus_text(m);
    CHECK(lines_starting(text, "zmesh_service_replies_total{service=\"echo\"} ") ==
          std::vector<std::string>{"zmesh_service_replies_total{service=\"echo\"} 25"});
    CHECK(lines_starting(text, "zmesh_service_expired_total{service=\"nobody\"} ") ==
          std::vector<std::string>{"zmesh_service_expired_total{service=\"nobody\"} 1"});
}

TEST_CASE("with metrics_interval 0 the broker takes no snapshot, and totals still count") {
    support::tcp_broker b;
    b.config.metrics_interval = 0ms;
    b.start();
    auto client = support::dealer(b.ctx, b.endpoint);
    send_frames(client, zmesh::message{"", mdp::client_v1, "mmi.service", "echo"});
    REQUIRE(support::recv_for(client, 3000ms));
    const auto m = b.broker->metrics();
    CHECK(m.services.empty());
    CHECK(m.taken == std::chrono::steady_clock::time_point{});
    CHECK(m.totals.mmi == 1);
}

} // TEST_SUITE
