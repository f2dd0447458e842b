// SPDX-License-Identifier: MPL-2.0
// ha_pair.hpp — for the Binary Star tests with real `zmesh broker --ha` processes
// (test_ha_*.cpp): one broker of a pair, and its state as `zmesh stats` reports it.
#pragma once

#include "support/process.hpp"
#include "support/support.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace ha_test {

using namespace std::chrono_literals;

// The pair's settings: heartbeat (HA link and workers) and liveness.
inline constexpr auto heartbeat = 100ms;
inline constexpr int liveness = 3;

/// A `zmesh broker` of a Binary Star pair. @p extra flags are added (e.g. the pub/sub sides).
/// The lines it prints after the MDP endpoint (the other bound endpoints) are in `lines`.
struct pair_broker {
    std::string mdp;
    std::string ha_bind;
    std::string ha_peer;
    std::string role;
    std::string log;
    std::vector<std::string> extra;
    int more_lines = 0;
    std::vector<std::string> lines;
    support::child_process proc;

    pair_broker(std::string role_, std::string mdp_, std::string bind, std::string peer,
                std::string log_, std::vector<std::string> extra_ = {}, int more_lines_ = 0)
        : mdp(std::move(mdp_)), ha_bind(std::move(bind)), ha_peer(std::move(peer)),
          role(std::move(role_)), log(std::move(log_)), extra(std::move(extra_)),
          more_lines(more_lines_), proc(start()) {}

    support::child_process start() {
        std::vector<std::string> argv{support::zmesh_cli(), "broker", "--mdp", mdp, "--ha", role,
                                      "--ha-bind", ha_bind, "--ha-peer", ha_peer, "--heartbeat-ms",
                                      std::to_string(heartbeat.count()), "--liveness",
                                      std::to_string(liveness), "--log-level", "info"};
        argv.insert(argv.end(), extra.begin(), extra.end());
        support::child_process p(argv, log);
        REQUIRE(p.read_line(5000ms).has_value()); // the MDP endpoint: bound
        lines.clear();
        for (int i = 0; i < more_lines; ++i) {
            auto line = p.read_line(5000ms);
            REQUIRE(line.has_value());
            lines.push_back(*line);
        }
        return p;
    }
    void restart() {
        proc.kill();
        proc = start();
    }
};

/// A counter of `zmesh stats` at @p mdp (one broker), or -1.
inline long long stat(const std::string& mdp, const std::string& counter) {
    auto r = support::run_cli({"stats", "--broker", mdp, "--timeout-ms", "1000"}, 3000ms);
    if (r.code != 0) return -1;
    std::istringstream in(r.out);
    std::string name;
    long long value = 0;
    while (in >> name >> value)
        if (name == counter) return value;
    return -1;
}

/// The broker's ha_state (1 primary, 2 backup, 3 active, 4 passive) from `zmesh stats`, or -1.
inline int ha_state(const std::string& mdp) { return static_cast<int>(stat(mdp, "ha_state")); }

} // namespace ha_test
