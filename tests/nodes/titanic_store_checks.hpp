// SPDX-License-Identifier: MPL-2.0
// titanic_store_checks.hpp — the checks of the Titanic store interface (nodes/titanic/store.hpp)
// that hold for every engine, written once against the interface. test_titanic_store.cpp runs
// them on SQLite, tests/postgres/test_titanic_pg.cpp on a real PostgreSQL server.
//
// Each check takes a store_engine, which opens a store by name: the same name gives the same
// store (a second connection to it), and each engine object starts with no store at all.
#pragma once

#include "titanic/store.hpp"

#include <zmesh/error.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace titanic_checks {

using namespace std::chrono_literals;
namespace titanic = zmesh::nodes::titanic;
using titanic::frames;
using titanic::new_request;
using titanic::reply_state;
using titanic::request_state;

/// Opens stores of one engine for the checks.
class store_engine {
  public:
    virtual ~store_engine() = default;
    /// The store called @p name, created empty on first use; the same name, the same store.
    virtual std::unique_ptr<titanic::store> open(const std::string& name) = 0;
};

inline titanic::time_point now() {
    return std::chrono::time_point_cast<std::chrono::milliseconds>(
        std::chrono::system_clock::now());
}

/// A TSP-style id from a number: 32 lowercase hex digits.
inline std::string make_id(unsigned long long n, unsigned prefix = 0) {
    char buf[33];
    std::snprintf(buf, sizeof buf, "%016x%016llx", prefix, n);
    return buf;
}

/// A body with the awkward cases: NUL bytes, an empty frame, every byte value.
inline frames binary_body(unsigned long long n) {
    std::string all_bytes;
    for (int b = 0; b < 256; ++b) all_bytes.push_back(static_cast<char>(b));
    return {std::string("a\0b", 3), std::string(), all_bytes, "n=" + std::to_string(n)};
}

inline new_request make_request(unsigned long long n, titanic::time_point created,
                                unsigned prefix = 0) {
    return {make_id(n, prefix), "echo", binary_body(n), created, std::nullopt};
}

inline std::vector<std::string> ids_of(const std::vector<titanic::request_record>& rs) {
    std::vector<std::string> out;
    for (const auto& r : rs) out.push_back(r.id);
    return out;
}

/// Requests with multi-frame binary bodies come back exactly as stored.
inline void check_round_trip(store_engine& engine) {
    auto st = engine.open("t");
    const auto t = now();
    std::vector<new_request> batch;
    for (unsigned long long n = 0; n < 5; ++n) batch.push_back(make_request(n, t));
    batch[1].body.clear();                                 // no frame at all
    batch[2].body = {std::string(200000, '\xff'), "tail"}; // spills to overflow pages
    batch[3].ttl = 1500ms;
    batch[4].service = ""; // empty but not NULL
    st->add_requests(batch);

    for (const auto& r : batch) {
        auto got = st->find(r.id);
        REQUIRE(got);
        CHECK(got->id == r.id);
        CHECK(got->service == r.service);
        CHECK(got->body == r.body);
        CHECK(got->created == r.created);
        CHECK(got->ttl == r.ttl);
        CHECK(got->attempts == 0);
        CHECK(got->next_attempt == r.created);
        CHECK(got->state == request_state::pending);
        CHECK(st->reply(r.id).state == reply_state::pending);
    }
    CHECK(st->due(t, 100).size() == batch.size());
    CHECK(st->counts().pending == batch.size());
}

/// A stored reply is returned frame for frame and the first reply stored wins.
inline void check_first_reply_wins(store_engine& engine) {
    auto st = engine.open("t");
    const auto t = now();
    std::vector<new_request> batch{make_request(1, t), make_request(2, t)};
    st->add_requests(batch);

    std::vector<titanic::reply_record> replies{{make_id(1), {"200", std::string("\0\1", 2), ""}},
                                               {make_id(3), {"for nobody"}}};
    CHECK(st->store_replies(replies, t) == 1); // id 3 was never stored: dropped
    auto r = st->reply(make_id(1));
    CHECK(r.state == reply_state::replied);
    CHECK(r.body == replies[0].body);
    CHECK(st->reply(make_id(1)).body == replies[0].body); // reading does not consume it

    std::vector<titanic::reply_record> again{{make_id(1), {"second execution"}}};
    CHECK(st->store_replies(again, t) == 0);
    CHECK(st->reply(make_id(1)).body == replies[0].body);

    CHECK(st->reply(make_id(3)).state == reply_state::unknown);
    CHECK(st->find(make_id(1))->state == request_state::replied);
    CHECK(st->due(t, 100).size() == 1); // only the unanswered one is still work
    auto c = st->counts();
    CHECK(c.pending == 1);
    CHECK(c.replied == 1);
}

/// Close forgets a request and its reply and is idempotent.
inline void check_close(store_engine& engine) {
    auto st = engine.open("t");
    const auto t = now();
    std::vector<new_request> batch{make_request(1, t), make_request(2, t)};
    st->add_requests(batch);
    std::vector<titanic::reply_record> replies{{make_id(1), {"done"}}};
    st->store_replies(replies, t);

    CHECK(st->close(make_id(1)));
    CHECK_FALSE(st->close(make_id(1)));
    CHECK(st->close(make_id(2))); // a pending one too
    CHECK_FALSE(st->close(make_id(9)));
    CHECK(st->reply(make_id(1)).state == reply_state::unknown);
    CHECK(st->reply(make_id(2)).state == reply_state::unknown);
    CHECK_FALSE(st->find(make_id(1)));
    CHECK(st->due(t, 100).empty());
}

/// Malformed ids are unknown to lookups and refused when adding.
inline void check_malformed_ids(store_engine& engine) {
    auto st = engine.open("t");
    for (std::string_view bad : {"", "0123", "0123456789ABCDEF0123456789abcdef",
                                 "0123456789abcdef0123456789abcdeg",
                                 "0123456789abcdef0123456789abcdef0"}) {
        CHECK(st->reply(bad).state == reply_state::unknown);
        CHECK_FALSE(st->find(bad));
        CHECK_FALSE(st->close(bad));
        CHECK_FALSE(st->record_failure(bad, now()));
        CHECK_FALSE(st->move_to_dlq(bad, "x", now()));
    }
    std::vector<new_request> batch{make_request(1, now()), make_request(2, now())};
    batch[1].id = "not-an-id";
    try {
        st->add_requests(batch);
        FAIL("accepted a malformed id");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::invalid_argument);
    }
    CHECK_FALSE(st->find(make_id(1)));
}

/// A batch with an id already stored is refused as a whole.
inline void check_duplicate_batch(store_engine& engine) {
    auto st = engine.open("t");
    std::vector<new_request> first{make_request(1, now())};
    st->add_requests(first);
    std::vector<new_request> batch{make_request(2, now()), make_request(1, now())};
    try {
        st->add_requests(batch);
        FAIL("accepted a duplicate id");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::invalid_argument);
    }
    CHECK_FALSE(st->find(make_id(2)));
    CHECK(st->counts().pending == 1);
    std::vector<new_request> next{make_request(3, now())}; // the store carries on
    st->add_requests(next);
    CHECK(st->find(make_id(3)));
}

/// Due returns pending requests whose next attempt has come, earliest first.
inline void check_due_order(store_engine& engine) {
    auto st = engine.open("t");
    const auto t = now();
    // Added out of time order; ties keep the order of arrival.
    std::vector<new_request> batch{make_request(1, t + 20ms), make_request(2, t),
                                   make_request(3, t + 10ms), make_request(4, t + 10ms),
                                   make_request(5, t + 1h)};
    st->add_requests(batch);

    CHECK(st->due(t - 1ms, 100).empty());
    auto ids = [](const std::vector<titanic::request_record>& rs) {
        std::vector<std::string> out;
        for (const auto& r : rs) out.push_back(r.id);
        return out;
    };
    CHECK(ids(st->due(t + 20ms, 100)) ==
          std::vector<std::string>{make_id(2), make_id(3), make_id(4), make_id(1)});
    CHECK(ids(st->due(t + 20ms, 2)) == std::vector<std::string>{make_id(2), make_id(3)});
    CHECK(st->due(t + 2h, 100).size() == 5);
    CHECK(st->due(t + 2h, 0).empty());
}

/// A failed dispatch counts an attempt and postpones the request.
inline void check_failure(store_engine& engine) {
    auto st = engine.open("t");
    const auto t = now();
    std::vector<new_request> batch{make_request(1, t), make_request(2, t)};
    st->add_requests(batch);

    CHECK(st->record_failure(make_id(1), t + 1s) == 1u);
    CHECK(st->record_failure(make_id(1), t + 3s) == 2u);
    auto r = st->find(make_id(1));
    REQUIRE(r);
    CHECK(r->attempts == 2);
    CHECK(r->next_attempt == t + 3s);
    REQUIRE(st->due(t + 1s, 100).size() == 1);
    CHECK(st->due(t + 1s, 100)[0].id == make_id(2));
    REQUIRE(st->due(t + 3s, 100).size() == 2);
    CHECK(st->due(t + 3s, 100)[1].attempts == 2);

    CHECK_FALSE(st->record_failure(make_id(9), t)); // unknown
    std::vector<titanic::reply_record> replies{{make_id(2), {"ok"}}};
    st->store_replies(replies, t);
    CHECK_FALSE(st->record_failure(make_id(2), t)); // no longer pending
}

/// The dead-letter queue lists, shows, replays and purges.
inline void check_dlq(store_engine& engine) {
    auto st = engine.open("t");
    const auto t = now();
    std::vector<new_request> batch;
    for (unsigned long long n = 1; n <= 4; ++n) batch.push_back(make_request(n, t));
    batch[2].ttl = 10ms;
    st->add_requests(batch);
    st->record_failure(make_id(1), t);
    st->record_failure(make_id(1), t);

    CHECK(st->move_to_dlq(make_id(1), "3 attempts failed", t + 2ms));
    CHECK(st->move_to_dlq(make_id(3), "ttl expired", t + 1ms));
    CHECK(st->move_to_dlq(make_id(4), "3 attempts failed", t + 3ms));
    CHECK_FALSE(st->move_to_dlq(make_id(1), "again", t)); // already dead
    CHECK_FALSE(st->move_to_dlq(make_id(9), "unknown", t));

    auto list = st->dlq_list(100);
    REQUIRE(list.size() == 3);
    CHECK(list[0].request.id == make_id(3)); // oldest move first
    CHECK(list[1].request.id == make_id(1));
    CHECK(list[2].request.id == make_id(4));
    CHECK(st->dlq_list(1).size() == 1);
    CHECK(list[1].reason == "3 attempts failed");
    CHECK(list[1].moved == t + 2ms);
    CHECK(list[1].request.attempts == 2);
    CHECK(list[1].request.state == request_state::dead);
    CHECK(list[1].request.body == batch[0].body);

    auto shown = st->dlq_show(make_id(3));
    REQUIRE(shown);
    CHECK(shown->reason == "ttl expired");
    CHECK_FALSE(st->dlq_show(make_id(2))); // pending, not dead
    CHECK(st->reply(make_id(3)).state == reply_state::dead);
    CHECK(st->due(t + 1h, 100).size() == 1); // dead requests are not work
    CHECK(st->counts().dead == 3);

    // Replay: back to pending, due now, attempts reset, the TTL that killed it dropped.
    CHECK(st->dlq_replay(make_id(3), t + 5s));
    CHECK_FALSE(st->dlq_replay(make_id(3), t + 5s));
    auto r = st->find(make_id(3));
    REQUIRE(r);
    CHECK(r->state == request_state::pending);
    CHECK(r->attempts == 0);
    CHECK(r->next_attempt == t + 5s);
    CHECK_FALSE(r->ttl);
    CHECK_FALSE(st->dlq_show(make_id(3)));

    CHECK(st->dlq_purge(make_id(4)));
    CHECK_FALSE(st->dlq_purge(make_id(4)));
    CHECK_FALSE(st->dlq_purge(make_id(2))); // pending: not the DLQ's to purge
    CHECK(st->find(make_id(2)));
    CHECK_FALSE(st->find(make_id(4)));

    CHECK(st->dlq_replay_all(t + 6s) == 1); // id 1
    CHECK(st->find(make_id(1))->attempts == 0);
    CHECK(st->dlq_list(100).empty());

    st->move_to_dlq(make_id(1), "x", t);
    st->move_to_dlq(make_id(2), "x", t);
    CHECK(st->dlq_purge_all() == 2);
    CHECK(st->dlq_list(100).empty());
    CHECK(st->counts().pending == 1); // id 3, replayed

    // A late reply to a dead request answers it and takes it out of the DLQ.
    st->move_to_dlq(make_id(3), "x", t);
    std::vector<titanic::reply_record> replies{{make_id(3), {"late"}}};
    CHECK(st->store_replies(replies, t) == 1);
    CHECK(st->dlq_list(100).empty());
    CHECK(st->reply(make_id(3)).state == reply_state::replied);
}

/// Everything survives closing and reopening the store.
inline void check_reopen(store_engine& engine) {
    const auto t = now();
    std::vector<new_request> batch;
    for (unsigned long long n = 1; n <= 3; ++n) batch.push_back(make_request(n, t));
    {
        auto st = engine.open("t");
        st->add_requests(batch);
        std::vector<titanic::reply_record> replies{{make_id(1), {"r", "s"}}};
        st->store_replies(replies, t);
        st->record_failure(make_id(2), t + 1s);
        st->move_to_dlq(make_id(3), "why", t);
    }
    auto st = engine.open("t");
    CHECK(st->reply(make_id(1)).body == frames{"r", "s"});
    auto pending = st->due(t + 1s, 100);
    REQUIRE(pending.size() == 1);
    CHECK(pending[0].id == make_id(2));
    CHECK(pending[0].attempts == 1);
    CHECK(pending[0].body == batch[1].body);
    auto dead = st->dlq_show(make_id(3));
    REQUIRE(dead);
    CHECK(dead->reason == "why");
}

/// Claims: a request is held by one owner while its lease runs, comes back to that owner, goes
/// to another once the lease ended or was released, and renew() extends only the owner's claims.
inline void check_claims(store_engine& engine) {
    auto st = engine.open("t");
    const auto t = now();
    std::vector<new_request> batch;
    for (unsigned long long n = 1; n <= 4; ++n) batch.push_back(make_request(n, t));
    batch[3].created = t + 1h; // not due yet
    st->add_requests(batch);
    CHECK_THROWS_AS(st->claim("", t, 1s, 10), zmesh::error);

    auto a = st->claim("node-a", t, 10s, 2);
    CHECK(ids_of(a) == std::vector<std::string>{make_id(1), make_id(2)});
    REQUIRE(a.size() == 2);
    CHECK(a[0].claimed_by == "node-a");
    CHECK(a[0].claimed_until == t + 10s);
    CHECK(a[0].body == batch[0].body);
    CHECK(st->find(make_id(1))->claimed_by == "node-a");
    // Another owner gets only what nobody holds; the holder gets its own back, lease extended.
    CHECK(ids_of(st->claim("node-b", t + 1s, 10s, 10)) == std::vector<std::string>{make_id(3)});
    CHECK(st->claim("node-c", t + 2s, 10s, 10).empty());
    CHECK(ids_of(st->claim("node-a", t + 2s, 10s, 10)) ==
          std::vector<std::string>{make_id(1), make_id(2)});
    CHECK(st->find(make_id(1))->claimed_until == t + 12s);

    // renew() extends the owner's claims only; another owner's ids are left alone.
    std::vector<std::string> ids{make_id(1), make_id(2), make_id(3), make_id(9), "not-an-id"};
    CHECK(st->renew("node-a", ids, t + 30s) == 2);
    CHECK(st->find(make_id(1))->claimed_until == t + 30s);
    CHECK(st->find(make_id(3))->claimed_by == "node-b");
    CHECK(st->find(make_id(3))->claimed_until == t + 11s);

    // node-b's lease ends: its request goes to node-c. node-a's, renewed, stays.
    CHECK(ids_of(st->claim("node-c", t + 11s, 10s, 10)) == std::vector<std::string>{make_id(3)});
    CHECK(st->renew("node-b", std::vector<std::string>{make_id(3)}, t + 60s) == 0);

    // A failure keeps the claim (the holder retries after the backoff); a reply ends it.
    CHECK(st->record_failure(make_id(2), t + 20s) == 1u);
    CHECK(st->find(make_id(2))->claimed_by == "node-a");
    // 1 and 2 are held by node-a until t + 30 s; node-c gets only its own 3 back.
    CHECK(ids_of(st->claim("node-c", t + 21s, 10s, 10)) == std::vector<std::string>{make_id(3)});
    std::vector<titanic::reply_record> replies{{make_id(1), {"done"}}};
    CHECK(st->store_replies(replies, t + 21s) == 1);
    CHECK(st->find(make_id(1))->claimed_by.empty());

    // release() frees everything of one owner at once.
    CHECK(st->release("node-a") == 1); // id 2 (id 1 is replied)
    CHECK(st->release("node-a") == 0);
    CHECK(ids_of(st->claim("node-c", t + 22s, 10s, 10)) ==
          std::vector<std::string>{make_id(3), make_id(2)}); // earliest next attempt first

    // Dead requests are no work; a replayed one comes back unclaimed.
    CHECK(st->move_to_dlq(make_id(2), "x", t + 22s));
    CHECK(st->find(make_id(2))->claimed_by == "node-c");
    CHECK(st->dlq_replay(make_id(2), t + 23s));
    CHECK(st->find(make_id(2))->claimed_by.empty());
    CHECK(ids_of(st->claim("node-d", t + 23s, 1s, 10)) == std::vector<std::string>{make_id(2)});
    CHECK(st->claim("node-d", t + 2h, 1s, 0).empty());
    CHECK(ids_of(st->claim("node-e", t + 2h, 1s, 10)) ==
          std::vector<std::string>{make_id(3), make_id(2), make_id(4)});
}

/// Owners claiming at once, each through its own connection, never get the same request.
inline void check_concurrent_claims(store_engine& engine) {
    constexpr unsigned long long total = 600;
    constexpr int owners = 4;
    {
        auto st = engine.open("t");
        std::vector<new_request> batch;
        const auto t = now() - 1s;
        for (unsigned long long n = 0; n < total; ++n) batch.push_back(make_request(n, t));
        st->add_requests(batch);
    }
    std::vector<std::unique_ptr<titanic::store>> stores;
    for (int i = 0; i < owners; ++i) stores.push_back(engine.open("t"));
    std::mutex m;
    std::vector<std::string> got;
    std::atomic<int> errors{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < owners; ++i) {
        threads.emplace_back([&, i] {
            const std::string owner = "owner-" + std::to_string(i);
            try {
                for (int round = 0; round < 1000; ++round) { // bounded
                    auto claimed = stores[static_cast<std::size_t>(i)]->claim(owner, now(), 1h, 7);
                    std::lock_guard lock(m);
                    for (auto& r : claimed) got.push_back(r.id);
                    if (claimed.empty() && got.size() >= total) break;
                    // What an owner claimed it answers, as a node would: then its own claims
                    // stop coming back to it.
                    std::vector<titanic::reply_record> replies;
                    for (auto& r : claimed) replies.push_back({r.id, {owner}});
                    if (!replies.empty())
                        stores[static_cast<std::size_t>(i)]->store_replies(replies, now());
                }
            } catch (const std::exception& ex) {
                ++errors;
                std::lock_guard lock(m);
                MESSAGE(owner << ": " << ex.what());
            }
        });
    }
    for (auto& th : threads) th.join();
    CHECK(errors == 0);
    std::set<std::string> distinct(got.begin(), got.end());
    CHECK(distinct.size() == total);
    CHECK(got.size() == total); // no request handed out twice
    CHECK(engine.open("t")->counts().replied == total);
}

} // namespace titanic_checks
