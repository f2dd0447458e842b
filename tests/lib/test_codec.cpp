// SPDX-License-Identifier: MPL-2.0
// test_codec.cpp — typed msgpack payloads: one-call round trips, clean errors for wrong types and
// damaged frames, and limits that stop hostile frames before they allocate.
#include <zmesh/codec.hpp>
#include <zmesh/error.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace {

struct record {
    std::string name;
    std::vector<std::int64_t> values;
    std::map<std::string, std::int64_t> attributes;
    std::int64_t big = 0;
    std::vector<std::string> tags;
    MSGPACK_DEFINE(name, values, attributes, big, tags)

    friend bool operator==(const record&, const record&) = default;
};

record sample() {
    return record{"sensor-7",
                  {0, -1, 1, std::numeric_limits<std::int64_t>::min(),
                   std::numeric_limits<std::int64_t>::max()},
                  {{"a", 1}, {"b", -2}, {"", 0}},
                  std::numeric_limits<std::int64_t>::min(),
                  {"x", "", std::string(300, 'y')}};
}

zmq::message_t frame_of(const std::string& bytes) {
    return zmq::message_t(bytes.data(), bytes.size());
}

std::string bytes_of(const zmq::message_t& frame) {
    return std::string(static_cast<const char*>(frame.data()), frame.size());
}

// The code unpack<T> throws, std::nullopt if it returned; anything but zmesh::error fails.
template <class T>
std::optional<std::error_code> throwing_unpack_code(const zmq::message_t& frame,
                                                    const zmesh::unpack_limits& limits = {}) {
    try {
        static_cast<void>(zmesh::unpack<T>(frame, limits));
    } catch (const zmesh::error& e) {
        return e.code();
    } catch (const std::exception& e) {
        FAIL("unpack threw something other than zmesh::error: " << e.what());
    }
    return std::nullopt;
}

} // namespace

TEST_SUITE("lib.codec") {

TEST_CASE("a struct declared with MSGPACK_DEFINE round-trips in one call each way") {
    const record original = sample();
    const zmq::message_t frame = zmesh::pack(original);
    CHECK(zmesh::unpack<record>(frame) == original);

    std::error_code ec = make_error_code(zmesh::errc::timeout);
    const std::optional<record> again = zmesh::unpack<record>(frame, ec);
    CHECK_FALSE(ec);
    CHECK((again && *again == original));

    CHECK(zmesh::unpack<record>(zmesh::pack(record{})) == record{});
}

TEST_CASE("standard types round-trip, small and large") {
    CHECK(zmesh::unpack<std::string>(zmesh::pack(std::string("hi"))) == "hi");
    CHECK(
        zmesh::unpack<std::uint64_t>(zmesh::pack(std::numeric_limits<std::uint64_t>::max())) ==
        std::numeric_limits<std::uint64_t>::max());
    const std::map<std::string, std::vector<int>> nested{{"k", {1, 2, 3}}, {"e", {}}};
    CHECK(zmesh::unpack<std::map<std::string, std::vector<int>>>(zmesh::pack(nested)) ==
          nested);

    // Large enough to take the hand-over path in to_frame rather than the copy.
    std::string large(3 * 1024 * 1024, '\0');
    for (std::size_t i = 0; i < large.size(); ++i)
        large[i] = static_cast<char>(i * 31);
    const zmq::message_t frame = zmesh::pack(large);
    CHECK(frame.size() == large.size() + 5); // str32 header
    CHECK(zmesh::unpack<std::string>(frame) == large);
}

TEST_CASE("unpacking a value of another type is a clean malformed error") {
    const zmq::message_t text = zmesh::pack(std::string("not a record"));
    CHECK(throwing_unpack_code<record>(text) == std::error_code(zmesh::errc::malformed));
    std::error_code ec;
    std::string why;
    CHECK_FALSE(zmesh::unpack<record>(text, {}, ec, &why));
    CHECK(ec == zmesh::errc::malformed);
    CHECK_FALSE(why.empty());

    CHECK(throwing_unpack_code<std::vector<int>>(zmesh::pack(sample())) ==
          std::error_code(zmesh::errc::malformed));
    CHECK(throwing_unpack_code<std::uint32_t>(zmesh::pack(-1)) ==
          std::error_code(zmesh::errc::malformed));
    CHECK(throwing_unpack_code<std::uint8_t>(zmesh::pack(300)) ==
          std::error_code(zmesh::errc::malformed));
    CHECK(throwing_unpack_code<std::string>(zmesh::pack(1.5)) ==
          std::error_code(zmesh::errc::malformed));
}

TEST_CASE("every truncated frame is rejected as truncated") {
    const std::string bytes = bytes_of(zmesh::pack(sample()));
    REQUIRE(bytes.size() > 300);
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        const zmq::message_t frame = frame_of(bytes.substr(0, n));
        std::error_code ec;
        CHECK_FALSE(zmesh::unpack<record>(frame, ec));
        CHECK_MESSAGE(ec == zmesh::errc::truncated,
                      "prefix of " << n << " bytes: " << ec.message());
        CHECK(throwing_unpack_code<record>(frame) == std::error_code(zmesh::errc::truncated));
    }
}

TEST_CASE("trailing bytes and bytes that are not msgpack are malformed") {
    const zmq::message_t trailing = frame_of(bytes_of(zmesh::pack(sample())) + '\x00');
    CHECK(throwing_unpack_code<record>(trailing) == std::error_code(zmesh::errc::malformed));
    const zmq::message_t reserved = frame_of(std::string("\xc1", 1));
    CHECK(throwing_unpack_code<int>(reserved) == std::error_code(zmesh::errc::malformed));
    try {
        static_cast<void>(zmesh::unpack<record>(trailing));
    } catch (const zmesh::error& e) {
        CHECK(std::string(e.what()).find("trailing") != std::string::npos);
    }
}

TEST_CASE("limits turn large or deep values into oversized errors") {
    const zmq::message_t ints = zmesh::pack(std::vector<int>(100, 1));
    const auto oversized = std::error_code(zmesh::errc::oversized);
    CHECK(throwing_unpack_code<std::vector<int>>(ints, {.max_array = 99}) == oversized);
    CHECK_FALSE(throwing_unpack_code<std::vector<int>>(ints, {.max_array = 100}));
    CHECK(throwing_unpack_code<std::vector<int>>(ints, {.max_objects = 100}) == oversized);
    CHECK(throwing_unpack_code<std::vector<int>>(ints, {.max_size = ints.size() - 1}) ==
          oversized);

    const zmq::message_t text = zmesh::pack(std::string(1000, 'a'));
    CHECK(throwing_unpack_code<std::string>(text, {.max_str = 999}) == oversized);

    const zmq::message_t map = zmesh::pack(std::map<int, int>{{1, 1}, {2, 2}});
    CHECK(throwing_unpack_code<std::map<int, int>>(map, {.max_map = 1}) == oversized);

    using deep_t = std::vector<std::vector<std::vector<int>>>;
    const zmq::message_t deep = zmesh::pack(deep_t{{{1}}});
    CHECK(throwing_unpack_code<deep_t>(deep, {.max_depth = 2}) == oversized);
    CHECK_FALSE(throwing_unpack_code<deep_t>(deep, {.max_depth = 3}));
}

TEST_CASE("a hostile array length is refused before msgpack allocates for it") {
    // Five bytes claiming 4 billion elements: building the object tree first would ask for
    // about 100 GB (and abort under ASan). The checking pass finds the elements missing first.
    const zmq::message_t frame = frame_of(std::string("\xdd\xff\xff\xff\xff\x01", 6));
    zmesh::unpack_limits unlimited;
    unlimited.max_array = std::numeric_limits<std::size_t>::max();
    unlimited.max_objects = std::numeric_limits<std::size_t>::max();
    CHECK(throwing_unpack_code<std::vector<int>>(frame, unlimited) ==
          std::error_code(zmesh::errc::truncated));
    CHECK(throwing_unpack_code<std::vector<int>>(frame) ==
          std::error_code(zmesh::errc::oversized));
}

TEST_CASE("random frames are rejected or unpacked without crashing") {
    const std::string valid = bytes_of(zmesh::pack(sample()));
    std::mt19937 rng(99);
    std::size_t decoded = 0;
    for (int i = 0; i < 5000; ++i) {
        std::string bytes;
        if (i % 2 == 0) {
            bytes.resize(std::uniform_int_distribution<std::size_t>(0, 64)(rng));
            for (auto& c : bytes)
                c = static_cast<char>(rng());
        } else {
            bytes = valid;
            for (int m = 0; m < 3; ++m)
                bytes[rng() % bytes.size()] = static_cast<char>(rng());
        }
        const zmq::message_t frame = frame_of(bytes);
        std::error_code ec;
        std::optional<record> r;
        CHECK_NOTHROW(r = zmesh::unpack<record>(frame, ec));
        const auto thrown = throwing_unpack_code<record>(frame);
        if (r) {
            ++decoded;
            CHECK_FALSE(ec);
            CHECK_FALSE(thrown);
        } else {
            CHECK((ec == zmesh::errc::truncated || ec == zmesh::errc::oversized ||
                   ec == zmesh::errc::malformed));
            CHECK((thrown && *thrown == ec));
        }
    }
    MESSAGE("random frames that unpacked: " << decoded);
}

} // TEST_SUITE
