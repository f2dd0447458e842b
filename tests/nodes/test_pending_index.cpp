// SPDX-License-Identifier: MPL-2.0
// test_pending_index.cpp — the broker's index of pending requests by message id
// (pending_index.hpp): found, replaced, erased only by the request it holds, and right through
// growth and backward-shift deletions, including ids whose hashes share a home slot.
#include "broker/pending_index.hpp"

#include <doctest/doctest.h>

#include <deque>
#include <random>

using zmesh::message_id;
using zmesh::nodes::detail::pending_index;

namespace {

struct fake_request {
    struct {
        message_id id;
    } hdr;
};

message_id id_of(std::uint32_t n) {
    message_id::bytes_type b{};
    for (int i = 0; i < 4; ++i) b[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(n >> (8 * i));
    b[15] = 0xa5;
    return message_id(b);
}

} // namespace

TEST_SUITE("nodes.broker.pending_index") {

TEST_CASE("a request is found by its id until it is erased") {
    pending_index<fake_request> index;
    fake_request a{{id_of(1)}}, b{{id_of(2)}};
    CHECK(index.find(a.hdr.id) == nullptr); // empty: no table yet
    index.insert(&a);
    index.insert(&b);
    CHECK(index.find(id_of(1)) == &a);
    CHECK(index.find(id_of(2)) == &b);
    CHECK(index.find(id_of(3)) == nullptr);
    CHECK(index.size() == 2);
    index.erase(&a);
    CHECK(index.find(id_of(1)) == nullptr);
    CHECK(index.find(id_of(2)) == &b);
    CHECK(index.size() == 1);
}

TEST_CASE("a second request with the same id replaces the first, which can no longer erase it") {
    pending_index<fake_request> index;
    fake_request first{{id_of(7)}}, replay{{id_of(7)}};
    index.insert(&first);
    index.insert(&replay);
    CHECK(index.size() == 1);
    CHECK(index.find(id_of(7)) == &replay);
    index.erase(&first); // the request finished late: it must not take the replay's entry
    CHECK(index.find(id_of(7)) == &replay);
    index.erase(&replay);
    CHECK(index.find(id_of(7)) == nullptr);
    CHECK(index.size() == 0);
}

TEST_CASE("the index stays right through growth and random deletions") {
    pending_index<fake_request> index;
    std::deque<fake_request> requests; // stable addresses
    constexpr std::uint32_t n = 40000;
    for (std::uint32_t i = 0; i < n; ++i) {
        requests.push_back({{id_of(i)}});
        index.insert(&requests.back());
    }
    std::mt19937 rng(42);
    std::vector<bool> erased(n, false);
    for (std::uint32_t k = 0; k < n / 2; ++k) {
        const auto i = static_cast<std::uint32_t>(rng() % n);
        index.erase(&requests[i]);
        erased[i] = true;
    }
    std::size_t present = 0;
    for (std::uint32_t i = 0; i < n; ++i) {
        fake_request* found = index.find(id_of(i));
        if (found != (erased[i] ? nullptr : &requests[i])) {
            CAPTURE(i);
            CHECK(found == (erased[i] ? nullptr : &requests[i]));
        }
        present += found ? 1 : 0;
    }
    CHECK(present == index.size());
    // Everything erased afterwards: the table is empty again, and still usable.
    for (std::uint32_t i = 0; i < n; ++i) index.erase(&requests[i]);
    CHECK(index.size() == 0);
    index.insert(&requests[5]);
    CHECK(index.find(id_of(5)) == &requests[5]);
}

} // TEST_SUITE
