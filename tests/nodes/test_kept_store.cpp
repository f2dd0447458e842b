// SPDX-License-Identifier: MPL-2.0
// test_kept_store.cpp — the broker's store of replies kept for retries (kept_store.hpp): found
// by id, forgotten in the order kept, replaced, erased, chunks released, and the open-addressing
// index right through growth and deletions.
#include "broker/kept_store.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

using zmesh::message_id;
using zmesh::nodes::detail::kept_store;
using namespace std::chrono_literals;

namespace {

message_id id_of(std::uint32_t n) {
    message_id::bytes_type b{};
    for (int i = 0; i < 4; ++i) b[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(n >> (8 * i));
    b[15] = 0x5a;
    return message_id(b);
}

} // namespace

TEST_SUITE("nodes.broker.kept_store") {

TEST_CASE("replies are found by id, with their service and parts") {
    kept_store k;
    const auto t0 = kept_store::clock::now();
    k.keep(id_of(1), t0 + 1s, "echo", "part-", "final");
    k.keep(id_of(2), t0 + 1s, "other", "", "");
    auto r = k.find(id_of(1));
    REQUIRE(r);
    CHECK(r->service == "echo");
    CHECK(r->parts == "part-final");
    REQUIRE(k.find(id_of(2)));
    CHECK(k.find(id_of(2))->parts.empty());
    CHECK_FALSE(k.find(id_of(3)));
    CHECK(k.size() == 2);
}

TEST_CASE("a final part written in place by the caller is kept as keep() keeps it") {
    kept_store k;
    const auto t0 = kept_store::clock::now();
    char* at = k.keep_space(id_of(7), t0 + 1s, "echo", "part-", 5);
    std::memcpy(at, "final", 5);
    at = k.keep_space(id_of(8), t0 + 1s, "echo", "", 0); // nothing to write
    (void)at;
    auto r = k.find(id_of(7));
    REQUIRE(r);
    CHECK(r->service == "echo");
    CHECK(r->parts == "part-final");
    REQUIRE(k.find(id_of(8)));
    CHECK(k.find(id_of(8))->parts.empty());
    CHECK(k.size() == 2);
}

TEST_CASE("expiry forgets the oldest first, and only those whose window ended") {
    kept_store k;
    const auto t0 = kept_store::clock::now();
    for (std::uint32_t i = 0; i < 10; ++i) k.keep(id_of(i), t0 + std::chrono::milliseconds(i), "s", "", "x");
    k.expire(t0 + 4ms, 2); // at most two
    CHECK(k.size() == 8);
    CHECK_FALSE(k.find(id_of(0)));
    CHECK_FALSE(k.find(id_of(1)));
    CHECK(k.find(id_of(2)));
    k.expire(t0 + 4ms);
    CHECK(k.size() == 5);
    CHECK(k.find(id_of(5)));
    CHECK(k.forget_oldest());
    CHECK_FALSE(k.find(id_of(5)));
    CHECK(k.size() == 4);
}

TEST_CASE("a replaced or erased reply is skipped when the log's head reaches it") {
    kept_store k;
    const auto t0 = kept_store::clock::now();
    k.keep(id_of(1), t0, "s", "", "old");
    k.keep(id_of(2), t0, "s", "", "two");
    k.keep(id_of(1), t0 + 1h, "s", "", "new"); // replaces: the newer window counts
    CHECK(k.size() == 2);
    CHECK(k.find(id_of(1))->parts == "new");
    k.erase(id_of(2));
    CHECK(k.size() == 1);
    k.expire(t0 + 1s); // the old record of 1 and the erased 2 go; the new 1 stays
    CHECK(k.size() == 1);
    CHECK(k.find(id_of(1))->parts == "new");
    CHECK(k.forget_oldest());
    CHECK_FALSE(k.forget_oldest());
    CHECK(k.size() == 0);
}

TEST_CASE("chunks are released as the log empties, and big replies get chunks of their own") {
    kept_store k;
    const auto t0 = kept_store::clock::now();
    const std::string body(1000, 'b');
    for (std::uint32_t i = 0; i < 5000; ++i) k.keep(id_of(i), t0, "s", "", body);
    const std::string big(3 * kept_store::chunk_size, 'B');
    k.keep(id_of(99999), t0 + 1h, "s", "", big);
    CHECK(k.bytes() > big.size() + 5000 * body.size());
    CHECK(k.find(id_of(99999))->parts.size() == big.size());
    k.expire(t0 + 1s);
    CHECK(k.size() == 1);
    // What stays: the big reply's chunk (rounded up to whole chunks), a spare, and the table.
    CHECK(k.bytes() < big.size() + 3 * kept_store::chunk_size + (std::size_t{1} << 20));
    for (std::uint32_t i = 0; i < 5000; ++i) CHECK_FALSE(k.find(id_of(i)));
}

TEST_CASE("the index stays right through growth and many deletions") {
    kept_store k;
    const auto t0 = kept_store::clock::now();
    constexpr std::uint32_t n = 50000;
    for (std::uint32_t i = 0; i < n; ++i) k.keep(id_of(i), t0 + std::chrono::microseconds(i), "s", "", std::to_string(i));
    for (std::uint32_t i = 0; i < n; i += 3) k.erase(id_of(i));
    k.expire(t0 + std::chrono::microseconds(n / 2));
    std::uint32_t found = 0;
    for (std::uint32_t i = 0; i < n; ++i) {
        auto r = k.find(id_of(i));
        const bool want = i % 3 != 0 && i > n / 2;
        if (r) {
            ++found;
            CHECK(r->parts == std::to_string(i));
        }
        if (static_cast<bool>(r) != want) {
            CAPTURE(i);
            CHECK(static_cast<bool>(r) == want);
        }
    }
    CHECK(found == k.size());
}

} // TEST_SUITE
