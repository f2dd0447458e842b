// SPDX-License-Identifier: MPL-2.0
// test_scale_bench.cpp — `zmesh bench scale` at tiny sizes: every table is there, well formed,
// and its counts add up (clients the broker saw, requests answered, requests queued and drained,
// the broker's memory count back where it was). The speed is never checked.
#include "support/process.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

using row = std::vector<std::string>;

/// The rows of each table of the output, by the name of its first column; comment lines (#) are
/// skipped. @p headers gets each table's header row.
std::map<std::string, std::vector<row>> tables(const std::string& out, std::map<std::string, row>& headers) {
    std::map<std::string, std::vector<row>> result;
    std::istringstream in(out);
    std::string line, current;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream words(line);
        row r;
        for (std::string w; words >> w;) r.push_back(w);
        if (r.empty()) continue;
        if (r[0] == "clients" || r[0] == "idle" || r[0] == "queued") {
            current = r[0];
            headers[current] = r;
            continue;
        }
        REQUIRE_MESSAGE(!current.empty(), "a row before any header: " << line);
        REQUIRE_MESSAGE(r.size() == headers[current].size(), "a row of " << current
                        << " with " << r.size() << " columns: " << line);
        result[current].push_back(r);
    }
    return result;
}

/// The value of column @p name in row @p r of the table with header @p h.
std::string col(const row& h, const row& r, const std::string& name) {
    for (std::size_t i = 0; i < h.size(); ++i)
        if (h[i] == name) return r.at(i);
    FAIL("no column '" << name << "'");
    return {};
}
double num(const row& h, const row& r, const std::string& name) {
    const auto s = col(h, r, name);
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    REQUIRE_MESSAGE(end != s.c_str(), "column " << name << " is not a number: " << s);
    return v;
}

} // namespace

TEST_SUITE("bench") {

TEST_CASE("bench scale at tiny sizes prints every table and its counts add up") {
    auto r = support::run_cli({"bench", "scale", "--clients", "1,3", "--idle", "20", "--queued",
                               "200", "--in-flight", "10", "--duration", "0.3"},
                              90s);
    INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
    REQUIRE(r.code == 0);
    std::map<std::string, row> h;
    auto t = tables(r.out, h);

    REQUIRE(t["clients"].size() == 2);
    for (std::size_t i = 0; i < 2; ++i) {
        const auto& x = t["clients"][i];
        const double n = i == 0 ? 1 : 3;
        CHECK(num(h["clients"], x, "clients") == n);
        CHECK(num(h["clients"], x, "seen") == n);       // the broker tracked every client
        CHECK(num(h["clients"], x, "inflight") == 10);  // the total shared out, not per client
        CHECK(num(h["clients"], x, "lost") == 0);
        CHECK(num(h["clients"], x, "errors") == 0);
        CHECK(num(h["clients"], x, "req/s") > 0);
        CHECK(num(h["clients"], x, "base_KiB") > 0);    // the broker process's VmRSS was read
        CHECK(num(h["clients"], x, "acct_B/cl") > 0);   // each tracked client is counted
    }

    REQUIRE(t["idle"].size() == 2);
    const auto& without = t["idle"][0];
    const auto& with = t["idle"][1];
    CHECK(col(h["idle"], without, "phase") == "without");
    CHECK(col(h["idle"], with, "phase") == "with");
    CHECK(num(h["idle"], without, "seen") == 1);   // the load client alone
    CHECK(num(h["idle"], with, "seen") == 21);     // and the 20 idle ones
    CHECK(num(h["idle"], with, "acct_B/idle") > 0);
    for (const auto* x : {&without, &with}) {
        CHECK(num(h["idle"], *x, "lost") == 0);
        CHECK(num(h["idle"], *x, "errors") == 0);
    }

    REQUIRE(t["queued"].size() == 1);
    const auto& q = t["queued"][0];
    CHECK(num(h["queued"], q, "queued") == 200);
    CHECK(num(h["queued"], q, "seen") == 200);
    CHECK(num(h["queued"], q, "drained") == 200);
    CHECK(num(h["queued"], q, "errors") == 0);
    CHECK(num(h["queued"], q, "left_B") == 0);           // every byte given back after the drain
    CHECK(num(h["queued"], q, "body_B/rq") == 64);       // the broker's queued_bytes, per request
    CHECK(num(h["queued"], q, "acct_B/rq") > 64);        // a request costs more than its body
}

TEST_CASE("bench scale refuses bad counts with a usage error") {
    CHECK(support::run_cli({"bench", "scale"}).code == 2);
    for (const char* bad : {"0", "-1", "x", "1,,2", "1,"}) {
        CAPTURE(bad);
        auto r = support::run_cli({"bench", "scale", "--clients", bad});
        CHECK(r.code == 2);
        CHECK(r.err.find("--clients") != std::string::npos);
    }
    CHECK(support::run_cli({"bench", "scale", "--queued", "10", "--size", "4"}).code == 2);
}

} // TEST_SUITE
