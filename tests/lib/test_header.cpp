// SPDX-License-Identifier: MPL-2.0
// test_header.cpp — message ids, and the header's msgpack form: exact round trips, forward
// compatibility (unknown keys), and rejection of truncated, hostile and random input.
#include <zmesh/codec.hpp>
#include <zmesh/error.hpp>
#include <zmesh/header.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

namespace {

using packer = msgpack::packer<msgpack::sbuffer>;

// The non-throwing decoder is part of the contract: nodes call it on every frame in the reactor.
static_assert(noexcept(zmesh::decode_header(nullptr, 0, std::declval<std::error_code&>())));

std::string encoded(const zmesh::header& h) {
    std::string out;
    zmesh::encode(h, out);
    return out;
}

template <class Fill> std::string build_map(std::uint32_t pairs, Fill&& fill) {
    msgpack::sbuffer buffer;
    packer p(buffer);
    p.pack_map(pairs);
    fill(p);
    return std::string(buffer.data(), buffer.size());
}

void pack_key(packer& p, std::string_view key) {
    p.pack_str(static_cast<std::uint32_t>(key.size()));
    p.pack_str_body(key.data(), static_cast<std::uint32_t>(key.size()));
}

void pack_bin(packer& p, const void* data, std::size_t size) {
    p.pack_bin(static_cast<std::uint32_t>(size));
    p.pack_bin_body(static_cast<const char*>(data), static_cast<std::uint32_t>(size));
}

void pack_id(packer& p, const zmesh::message_id& id) {
    pack_key(p, "id");
    pack_bin(p, id.bytes().data(), id.bytes().size());
}

zmesh::header full_header() {
    zmesh::header h = zmesh::make_header("order.created");
    h.priority = 7;
    h.ttl_ms = 30000;
    h.correlation_id = zmesh::message_id::generate();
    h.attempt = 3;
    h.sequence = 123456789;
    h.source = zmesh::message_id::generate();
    return h;
}

bool is_decode_error(const std::error_code& ec) {
    return ec == zmesh::errc::truncated || ec == zmesh::errc::oversized ||
           ec == zmesh::errc::malformed;
}

// The error code the throwing decoder reports, std::nullopt if it returned; any exception other
// than zmesh::error fails the test.
std::optional<std::error_code> throwing_decode_code(const std::string& bytes,
                                                    std::optional<zmesh::header>* out = nullptr) {
    try {
        zmesh::header h = zmesh::decode_header(bytes.data(), bytes.size());
        if (out)
            *out = std::move(h);
        return std::nullopt;
    } catch (const zmesh::error& e) {
        return e.code();
    } catch (const std::exception& e) {
        FAIL("decode_header threw something other than zmesh::error: " << e.what());
    } catch (...) {
        FAIL("decode_header threw a non-std exception");
    }
    return std::nullopt;
}

// Decodes untrusted bytes with both overloads and checks they agree and fail only cleanly.
// Returns the header if it decoded.
std::optional<zmesh::header> decode_both(const std::string& bytes) {
    std::error_code ec = make_error_code(zmesh::errc::timeout); // must be overwritten
    std::optional<zmesh::header> a = zmesh::decode_header(bytes.data(), bytes.size(), ec);
    std::optional<zmesh::header> b;
    const std::optional<std::error_code> thrown = throwing_decode_code(bytes, &b);
    if (a) {
        CHECK_FALSE(ec);
        CHECK_FALSE(thrown);
        CHECK((b && *b == *a));
    } else {
        CHECK(is_decode_error(ec));
        CHECK((thrown && *thrown == ec));
    }
    // The decoder reads the common form (a fixmap of known keys, smallest forms) on a fast path
    // and everything else with its general reader. The same map announced as a map16 always
    // takes the general reader, so the two must agree on every buffer: the same header, or the
    // same error and reason.
    if (!bytes.empty() && (static_cast<unsigned char>(bytes[0]) & 0xf0U) == 0x80U &&
        bytes.size() + 2 <= zmesh::max_header_size) {
        std::string general = bytes;
        general.replace(0, 1, std::string{'\xde', '\0', static_cast<char>(bytes[0] & 0x0f)});
        std::error_code general_ec;
        std::string why, general_why;
        const auto c = zmesh::decode_header(bytes.data(), bytes.size(), ec, &why);
        const auto g = zmesh::decode_header(general.data(), general.size(), general_ec, &general_why);
        CHECK(c.has_value() == g.has_value());
        if (c && g) CHECK((*c == *g));
        if (!c && !g) {
            CHECK(ec == general_ec);
            CHECK(why == general_why);
        }
    }
    return a;
}

// A decoded header re-encodes, and the re-encoding decodes to the same header.
void check_reencodes(const zmesh::header& h) {
    std::string again;
    CHECK_NOTHROW(zmesh::encode(h, again));
    std::error_code ec;
    const auto back = zmesh::decode_header(again.data(), again.size(), ec);
    CHECK_FALSE(ec);
    CHECK((back && *back == h));
}

} // namespace

TEST_SUITE("lib.header") {

TEST_CASE("a header with every field at its extremes round-trips exactly") {
    const std::string long_type(60000, 't');
    const std::vector<std::string> types{"", "x", "order.created", long_type};
    const std::vector<std::uint8_t> priorities{0, zmesh::default_priority, 9};
    const std::vector<std::int64_t> timestamps{std::numeric_limits<std::int64_t>::min(), -1, 0,
                                               1, std::numeric_limits<std::int64_t>::max()};
    const std::vector<std::uint32_t> u32s{0, 1, std::numeric_limits<std::uint32_t>::max()};
    const std::vector<std::uint64_t> u64s{0, 1, std::numeric_limits<std::uint64_t>::max()};
    const std::vector<std::optional<zmesh::message_id>> optional_ids{
        std::nullopt, zmesh::message_id{}, zmesh::message_id::generate()};
    const std::vector<zmesh::message_id> ids{
        zmesh::message_id{}, zmesh::message_id::generate(),
        *zmesh::message_id::from_hex(std::string(32, 'f'))};

    std::size_t cases = 0;
    for (const auto& type : types)
        for (const auto priority : priorities)
            for (const auto ts : timestamps)
                for (const auto ttl : u32s)
                    for (const auto attempt : {u32s.front(), u32s.back()})
                        for (const auto seq : {u64s.front(), u64s.back()})
                            for (const auto& co : optional_ids)
                                for (const auto& sr : optional_ids) {
                                    zmesh::header h;
                                    h.id = ids[cases % ids.size()];
                                    h.type = type;
                                    h.priority = priority;
                                    h.timestamp_ns = ts;
                                    h.ttl_ms = ttl;
                                    h.attempt = attempt;
                                    h.sequence = seq;
                                    h.correlation_id = co;
                                    h.source = sr;
                                    const zmq::message_t frame = zmesh::encode(h);
                                    const zmesh::header back = zmesh::decode_header(frame);
                                    CHECK(back == h);
                                    ++cases;
                                }
    CHECK(cases == 4 * 3 * 5 * 3 * 2 * 2 * 3 * 3);
}

TEST_CASE("a header at its defaults encodes to its id alone") {
    zmesh::header h;
    h.id = zmesh::message_id::generate();
    const std::string bytes = encoded(h);
    // fixmap(1), fixstr "id", bin8 of 16 bytes.
    CHECK(bytes.size() == 1 + 3 + 2 + 16);
    CHECK(zmesh::decode_header(bytes.data(), bytes.size()) == h);
}

TEST_CASE("a source is written as the bin 16 key sr only when present") {
    zmesh::header h;
    h.id = zmesh::message_id::generate();
    const std::string without = encoded(h);
    CHECK(without.find("\xa2sr") == std::string::npos);

    h.source = zmesh::message_id::generate();
    const std::string with = encoded(h);
    // fixmap(2); "id" and its bin 8; fixstr "sr", bin 8 header (0xc4 0x10), 16 bytes.
    CHECK(with.size() == without.size() + 3 + 2 + 16);
    const auto at = with.find("\xa2sr");
    REQUIRE(at != std::string::npos);
    CHECK(with.substr(at + 3, 2) == std::string("\xc4\x10", 2));
    CHECK(with.substr(at + 5, 16) ==
          std::string(reinterpret_cast<const char*>(h.source->bytes().data()), 16));
    CHECK(zmesh::decode_header(with.data(), with.size()) == h);

    // nil reads as "no source", as for "co".
    const std::string nil_source = build_map(2, [&](packer& p) {
        pack_id(p, h.id);
        pack_key(p, "sr");
        p.pack_nil();
    });
    CHECK_FALSE(zmesh::decode_header(nil_source.data(), nil_source.size()).source);
}

namespace {

// What the encoder wrote when it packed with msgpack::packer: the reference for its direct
// writer, which must produce the same bytes.
std::string packed_by_msgpack(const zmesh::header& h) {
    msgpack::sbuffer buf;
    packer p(buf);
    auto key = [&](std::string_view k) {
        p.pack_str(static_cast<std::uint32_t>(k.size()));
        p.pack_str_body(k.data(), static_cast<std::uint32_t>(k.size()));
    };
    auto id = [&](const zmesh::message_id& i) {
        p.pack_bin(16);
        p.pack_bin_body(reinterpret_cast<const char*>(i.bytes().data()), 16);
    };
    std::uint32_t pairs = 1 + static_cast<std::uint32_t>(h.extensions.size());
    pairs += h.type.empty() ? 0U : 1U;
    pairs += h.priority == zmesh::default_priority ? 0U : 1U;
    pairs += h.timestamp_ns == 0 ? 0U : 1U;
    pairs += h.ttl_ms == 0 ? 0U : 1U;
    pairs += h.correlation_id ? 1U : 0U;
    pairs += h.attempt == 0 ? 0U : 1U;
    pairs += h.sequence == 0 ? 0U : 1U;
    pairs += h.source ? 1U : 0U;
    p.pack_map(pairs);
    key("id");
    id(h.id);
    if (!h.type.empty()) {
        key("ty");
        key(h.type);
    }
    if (h.priority != zmesh::default_priority) {
        key("pr");
        p.pack_uint8(h.priority);
    }
    if (h.timestamp_ns != 0) {
        key("ts");
        p.pack_int64(h.timestamp_ns);
    }
    if (h.ttl_ms != 0) {
        key("tl");
        p.pack_uint32(h.ttl_ms);
    }
    if (h.correlation_id) {
        key("co");
        id(*h.correlation_id);
    }
    if (h.attempt != 0) {
        key("at");
        p.pack_uint32(h.attempt);
    }
    if (h.sequence != 0) {
        key("sq");
        p.pack_uint64(h.sequence);
    }
    if (h.source) {
        key("sr");
        id(*h.source);
    }
    std::string out(buf.data(), buf.size());
    for (const auto& [name, value] : h.extensions) {
        msgpack::sbuffer k;
        packer kp(k);
        kp.pack_str(static_cast<std::uint32_t>(name.size()));
        kp.pack_str_body(name.data(), static_cast<std::uint32_t>(name.size()));
        out.append(k.data(), k.size());
        out += value;
    }
    return out;
}

} // namespace

TEST_CASE("the encoder writes what msgpack's packer writes") {
    // Every integer form's boundaries, strings of each length form, maps of 15 and 16 pairs.
    const std::vector<std::int64_t> stamps{
        0, 1, 127, 128, 255, 256, 65535, 65536, 4294967295LL, 4294967296LL,
        std::numeric_limits<std::int64_t>::max(), -1, -32, -33, -128, -129, -32768, -32769,
        -2147483648LL, -2147483649LL, std::numeric_limits<std::int64_t>::min(),
        1764900000000000000LL};
    const std::vector<std::uint64_t> unsigned_values{0, 1, 127, 128, 255, 256, 65535, 65536,
                                                     4294967295ULL, 4294967296ULL,
                                                     std::numeric_limits<std::uint64_t>::max()};
    // (str 32 is never written: a type of 64 KiB or more leaves no room for the id.)
    const std::vector<std::size_t> type_sizes{0, 1, 31, 32, 64, 65, 255, 256, 65000};
    std::mt19937_64 rng(7);
    int cases = 0;
    auto check = [&](const zmesh::header& h) {
        std::string direct;
        zmesh::encode(h, direct);
        CHECK(direct == packed_by_msgpack(h));
        const zmq::message_t frame = zmesh::encode(h);
        CHECK(std::string(static_cast<const char*>(frame.data()), frame.size()) == direct);
        CHECK(zmesh::decode_header(direct.data(), direct.size()) == h);
        ++cases;
    };
    for (const auto ts : stamps) {
        zmesh::header h;
        h.id = zmesh::message_id::generate();
        h.timestamp_ns = ts;
        check(h);
    }
    for (const auto v : unsigned_values) {
        zmesh::header h;
        h.id = zmesh::message_id::generate();
        h.sequence = v;
        h.ttl_ms = static_cast<std::uint32_t>(std::min<std::uint64_t>(v, 0xffffffffULL));
        h.attempt = h.ttl_ms;
        h.priority = static_cast<std::uint8_t>(v % 10);
        check(h);
    }
    for (const auto n : type_sizes) {
        zmesh::header h = zmesh::make_header(std::string(n, 't'));
        h.correlation_id = zmesh::message_id::generate();
        h.source = zmesh::message_id::generate();
        check(h);
    }
    for (const std::size_t extensions : {1U, 6U, 7U, 20U}) {
        // With every known key (9 pairs), 6 extensions make 15 pairs (fixmap), 7 make 16 (map 16).
        zmesh::header h = zmesh::make_header("order.created");
        h.priority = 9;
        h.ttl_ms = 1500;
        h.attempt = 2;
        h.sequence = 77;
        h.correlation_id = zmesh::message_id::generate();
        h.source = zmesh::message_id::generate();
        for (std::size_t i = 0; i < extensions; ++i)
            h.extensions.emplace_back("x" + std::to_string(i), std::string("\xcd\x01\x02", 3));
        check(h);
    }
    for (int i = 0; i < 500; ++i) {
        zmesh::header h;
        h.id = zmesh::message_id::generate();
        if (rng() % 2) h.type = std::string(rng() % 80, 'a');
        h.priority = static_cast<std::uint8_t>(rng() % 10);
        if (rng() % 2) h.timestamp_ns = static_cast<std::int64_t>(rng()) >> (rng() % 64);
        if (rng() % 2) h.ttl_ms = static_cast<std::uint32_t>(rng() >> (32 + rng() % 32));
        if (rng() % 2) h.correlation_id = zmesh::message_id::generate();
        if (rng() % 2) h.attempt = static_cast<std::uint32_t>(rng() >> (32 + rng() % 32));
        if (rng() % 2) h.sequence = rng() >> (rng() % 64);
        if (rng() % 2) h.source = zmesh::message_id::generate();
        check(h);
    }
    CHECK(cases == 22 + 11 + 9 + 4 + 500);
}

TEST_CASE("make_header gives a fresh id, the type and the current time") {
    using namespace std::chrono;
    const auto before =
        duration_cast<nanoseconds>(system_clock::now().time_since_epoch()).count();
    const zmesh::header a = zmesh::make_header("ping");
    const zmesh::header b = zmesh::make_header("ping");
    const auto after =
        duration_cast<nanoseconds>(system_clock::now().time_since_epoch()).count();
    CHECK(a.type == "ping");
    CHECK(a.id != b.id);
    CHECK_FALSE(a.id.is_nil());
    CHECK(a.timestamp_ns >= before);
    CHECK(a.timestamp_ns <= after);
    CHECK(a.priority == zmesh::default_priority);
    CHECK_FALSE(a.correlation_id);
    CHECK_FALSE(a.source);
}

TEST_CASE("unknown keys are ignored whatever their value and kept for relays") {
    const auto id = zmesh::message_id::generate();
    const std::string bytes = build_map(7, [&](packer& p) {
        pack_key(p, "zz");
        p.pack(42);
        pack_key(p, "pr");
        p.pack(9);
        pack_key(p, "future_map");
        p.pack_map(2);
        pack_key(p, "a");
        p.pack_array(3);
        p.pack(1);
        p.pack(2);
        p.pack_map(1);
        pack_key(p, "b");
        p.pack_nil();
        pack_key(p, "c");
        p.pack(std::string("deep"));
        p.pack(7); // an integer key: no zmesh version uses one, so it is skipped
        p.pack(std::string("x"));
        pack_key(p, "future_array");
        p.pack_array(3);
        p.pack(1);
        p.pack(std::string("x"));
        p.pack_array(2);
        p.pack(2.5);
        p.pack(true);
        pack_id(p, id);
        pack_key(p, "ty");
        p.pack(std::string("t"));
    });

    const zmesh::header h = zmesh::decode_header(bytes.data(), bytes.size());
    CHECK(h.id == id);
    CHECK(h.priority == 9);
    CHECK(h.type == "t");
    REQUIRE(h.extensions.size() == 3);
    CHECK(h.extensions[0].first == "zz");
    CHECK(h.extensions[0].second == "\x2a"); // positive fixint 42
    CHECK(h.extensions[1].first == "future_map");
    CHECK(h.extensions[2].first == "future_array");

    const msgpack::object_handle nested =
        zmesh::unpack_object(h.extensions[1].second.data(), h.extensions[1].second.size());
    REQUIRE(nested.get().type == msgpack::type::MAP);
    CHECK(nested.get().via.map.size == 2);

    // A relay that decodes and re-encodes forwards the unknown keys.
    zmesh::header relayed = h;
    relayed.attempt = 1;
    const std::string again = encoded(relayed);
    const zmesh::header back = zmesh::decode_header(again.data(), again.size());
    CHECK(back == relayed);
}

TEST_CASE("every proper prefix of a valid encoding is rejected as truncated") {
    zmesh::header with_extensions = full_header();
    with_extensions.extensions.emplace_back("x-trace", std::string("\x92\xa1q\xc3", 4));
    zmesh::header long_type = full_header();
    long_type.type.assign(300, 'y');
    long_type.timestamp_ns = std::numeric_limits<std::int64_t>::min();

    std::size_t prefixes = 0;
    for (const auto& h : {full_header(), with_extensions, long_type}) {
        const std::string bytes = encoded(h);
        for (std::size_t n = 0; n < bytes.size(); ++n) {
            const std::string prefix = bytes.substr(0, n);
            std::error_code ec;
            const auto r = zmesh::decode_header(prefix.data(), prefix.size(), ec);
            CHECK_MESSAGE(!r, "prefix of " << n << " bytes decoded");
            CHECK_MESSAGE(ec == zmesh::errc::truncated,
                          "prefix of " << n << ": " << ec.message());
            const auto thrown = throwing_decode_code(prefix);
            CHECK((thrown && *thrown == zmesh::errc::truncated));
            ++prefixes;
        }
        CHECK(decode_both(bytes) == h);
    }
    CHECK(prefixes >= 400);
}

TEST_CASE("random buffers are rejected or decoded without crashing") {
    std::mt19937 rng(20240611);
    std::size_t decoded = 0;
    for (int i = 0; i < 20000; ++i) {
        std::string bytes(std::uniform_int_distribution<std::size_t>(0, 160)(rng), '\0');
        for (auto& c : bytes)
            c = static_cast<char>(rng());
        // Start half of them like a map, so the decoder gets past the first byte.
        if (!bytes.empty() && (rng() & 1))
            bytes[0] = static_cast<char>((rng() & 1) ? 0x80 | (rng() & 0x0f) : 0xde);
        if (const auto h = decode_both(bytes)) {
            ++decoded;
            check_reencodes(*h);
        }
    }
    MESSAGE("random buffers that decoded: " << decoded);
}

TEST_CASE("random mutations of valid encodings are rejected or decoded without crashing") {
    zmesh::header rich = full_header();
    rich.extensions.emplace_back("x-hops", std::string("\x93\x01\x02\x81\xa1k\xc0", 7));
    const std::vector<std::string> seeds{encoded(full_header()), encoded(rich),
                                         encoded(zmesh::header{})};
    std::mt19937 rng(7);
    auto pick = [&](std::size_t n) {
        return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
    };
    std::size_t decoded = 0;
    for (int i = 0; i < 20000; ++i) {
        std::string bytes = seeds[pick(seeds.size())];
        const int mutations = 1 + static_cast<int>(pick(4));
        for (int m = 0; m < mutations && !bytes.empty(); ++m) {
            const std::size_t at = pick(bytes.size());
            switch (pick(6)) {
            case 0:
                bytes[at] = static_cast<char>(bytes[at] ^ (1 << pick(8)));
                break;
            case 1:
                bytes[at] = static_cast<char>(rng());
                break;
            case 2:
                bytes.insert(at, 1, static_cast<char>(rng()));
                break;
            case 3:
                bytes.erase(at, 1);
                break;
            case 4:
                bytes.resize(at);
                break;
            default:
                bytes.insert(at, bytes.substr(pick(bytes.size()), pick(8)));
                break;
            }
        }
        if (const auto h = decode_both(bytes)) {
            ++decoded;
            check_reencodes(*h);
        }
    }
    MESSAGE("mutated buffers that decoded: " << decoded);
    CHECK(decoded > 0); // some single bit flips (in the type or a sequence) stay valid
}

TEST_CASE("headers in the common form decode on the fast path as the general reader decodes them") {
    // Every field at random widths (each uint form, a type of 0 to 40 bytes: fixstr and str 8),
    // each optional field present or not; decode_both() also decodes each as a map16, which
    // takes the general reader, and compares.
    std::mt19937_64 rng(20261205);
    auto wide = [&]() -> std::uint64_t {
        switch (rng() % 5) {
        case 0: return rng() % 128;
        case 1: return 128 + rng() % 128;
        case 2: return 256 + rng() % 65280;
        case 3: return 65536 + rng() % (0xffffffffULL - 65536);
        default: return rng();
        }
    };
    for (int i = 0; i < 5000; ++i) {
        zmesh::header h;
        h.id = zmesh::message_id::generate();
        if (rng() & 1) h.type.assign(rng() % 41, static_cast<char>('a' + rng() % 26));
        h.priority = static_cast<std::uint8_t>(rng() % 10);
        if (rng() & 1) h.timestamp_ns = static_cast<std::int64_t>(wide() >> 1);
        if (rng() & 1) h.ttl_ms = static_cast<std::uint32_t>(wide());
        if (rng() & 1) h.correlation_id = zmesh::message_id::generate();
        if (rng() & 1) h.attempt = static_cast<std::uint32_t>(wide());
        if (rng() & 1) h.sequence = wide();
        if (rng() & 1) h.source = zmesh::message_id::generate();
        const std::string bytes = encoded(h);
        REQUIRE((static_cast<unsigned char>(bytes[0]) & 0xf0U) == 0x80U);
        const auto back = decode_both(bytes);
        REQUIRE(back);
        CHECK((*back == h));
    }
}

TEST_CASE("a buffer over the size limit is rejected as oversized") {
    const std::string big(zmesh::max_header_size + 1, '\x80');
    std::error_code ec;
    CHECK_FALSE(zmesh::decode_header(big.data(), big.size(), ec));
    CHECK(ec == zmesh::errc::oversized);

    const std::string valid_but_big = build_map(2, [](packer& p) {
        pack_id(p, zmesh::message_id::generate());
        pack_key(p, "ty");
        p.pack(std::string(70000, 'x'));
    });
    const auto thrown = throwing_decode_code(valid_but_big);
    CHECK((thrown && *thrown == zmesh::errc::oversized));

    zmesh::header h;
    h.type.assign(zmesh::max_header_size, 'x');
    std::string out = "stale";
    try {
        zmesh::encode(h, out);
        FAIL("encode accepted a header over the size limit");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::oversized);
    }
    CHECK(out.empty());
}

TEST_CASE("a wrong type or range for a known key is rejected as malformed") {
    const auto id = zmesh::message_id::generate();
    struct bad_case {
        const char* key;
        void (*value)(packer&);
    };
    const std::vector<bad_case> cases{
        {"id", [](packer& p) { p.pack(std::string(16, 'a')); }},
        {"id", [](packer& p) { pack_bin(p, "0123456789abcde", 15); }},
        {"id", [](packer& p) { pack_bin(p, "0123456789abcdefg", 17); }},
        {"ty", [](packer& p) { p.pack(5); }},
        {"ty", [](packer& p) { pack_bin(p, "abc", 3); }},
        {"pr", [](packer& p) { p.pack(10); }},
        {"pr", [](packer& p) { p.pack(255); }},
        {"pr", [](packer& p) { p.pack(-1); }},
        {"pr", [](packer& p) { p.pack(std::string("high")); }},
        {"ts", [](packer& p) { p.pack(1.5); }},
        {"ts", [](packer& p) { p.pack(std::numeric_limits<std::uint64_t>::max()); }},
        {"tl", [](packer& p) { p.pack(std::uint64_t{1} << 32); }},
        {"tl", [](packer& p) { p.pack(-5); }},
        {"co", [](packer& p) { pack_bin(p, "12345678", 8); }},
        {"co", [](packer& p) { p.pack(std::string("not an id")); }},
        {"at", [](packer& p) { p.pack(-1); }},
        {"at", [](packer& p) { p.pack_nil(); }},
        {"sq", [](packer& p) { p.pack(-1); }},
        {"sq", [](packer& p) { p.pack(true); }},
        {"sr", [](packer& p) { pack_bin(p, "12345678", 8); }},
        {"sr", [](packer& p) { p.pack(std::string(16, 's')); }},
        {"sr", [](packer& p) { p.pack(7); }},
    };
    for (const auto& c : cases) {
        const bool replaces_id = std::string_view(c.key) == "id";
        const std::string bytes = build_map(replaces_id ? 1 : 2, [&](packer& p) {
            if (!replaces_id)
                pack_id(p, id);
            pack_key(p, c.key);
            c.value(p);
        });
        std::error_code ec;
        CHECK_MESSAGE(!zmesh::decode_header(bytes.data(), bytes.size(), ec), "key " << c.key);
        CHECK_MESSAGE(ec == zmesh::errc::malformed, "key " << c.key);
        try {
            static_cast<void>(zmesh::decode_header(bytes.data(), bytes.size()));
            FAIL("decoded a bad value for " << c.key);
        } catch (const zmesh::error& e) {
            CHECK(e.code() == zmesh::errc::malformed);
            CHECK_MESSAGE(std::string(e.what()).find(c.key) != std::string::npos, e.what());
        }
    }
}

TEST_CASE("structural defects are rejected as malformed") {
    const auto id = zmesh::message_id::generate();
    std::string not_a_map;
    {
        msgpack::sbuffer b;
        msgpack::pack(b, std::vector<int>{1, 2});
        not_a_map.assign(b.data(), b.size());
    }
    const std::string no_id = build_map(1, [](packer& p) {
        pack_key(p, "ty");
        p.pack(std::string("t"));
    });
    const std::string duplicate = build_map(3, [&](packer& p) {
        pack_id(p, id);
        pack_key(p, "pr");
        p.pack(1);
        pack_key(p, "pr");
        p.pack(2);
    });
    const std::string trailing = build_map(1, [&](packer& p) { pack_id(p, id); }) + '\x00';
    const std::string reserved_byte("\x81\xa2id\xc1", 5);
    const std::string scalar("\x05", 1);

    for (const auto& bytes : {not_a_map, no_id, duplicate, trailing, reserved_byte, scalar}) {
        std::string why;
        std::error_code ec;
        CHECK_FALSE(zmesh::decode_header(bytes.data(), bytes.size(), ec, &why));
        CHECK(ec == zmesh::errc::malformed);
        CHECK_FALSE(why.empty());
        const auto thrown = throwing_decode_code(bytes);
        CHECK((thrown && *thrown == zmesh::errc::malformed));
    }
}

TEST_CASE("hostile lengths and nesting are refused before anything large is allocated") {
    // map32 claiming 4 billion pairs, array32 claiming 4 billion elements as a value, and a
    // str32 claiming 4 GiB: a naive decoder would allocate for the claim.
    const std::string huge_map("\xdf\xff\xff\xff\xff\xa2id", 8);
    const std::string huge_array = build_map(2, [](packer& p) {
        pack_id(p, zmesh::message_id::generate());
        pack_key(p, "x");
        p.pack_array(0xffffffffU);
    });
    const std::string huge_str("\x81\xa2ty\xdb\xff\xff\xff\xff", 9);
    std::string deep = build_map(2, [](packer& p) {
        pack_id(p, zmesh::message_id::generate());
        pack_key(p, "x");
        for (int i = 0; i < 200; ++i)
            p.pack_array(1);
        p.pack_nil();
    });

    std::error_code ec;
    CHECK_FALSE(zmesh::decode_header(huge_map.data(), huge_map.size(), ec));
    CHECK(ec == zmesh::errc::oversized);
    CHECK_FALSE(zmesh::decode_header(huge_array.data(), huge_array.size(), ec));
    CHECK(ec == zmesh::errc::oversized);
    CHECK_FALSE(zmesh::decode_header(huge_str.data(), huge_str.size(), ec));
    CHECK(ec == zmesh::errc::truncated); // the bytes are not there, so nothing was read
    CHECK_FALSE(zmesh::decode_header(deep.data(), deep.size(), ec));
    CHECK(ec == zmesh::errc::oversized);
}

TEST_CASE("the msgpack limits hold at exactly their boundaries") {
    const auto id = zmesh::message_id::generate();
    auto code_of = [](const std::string& bytes) {
        std::error_code ec;
        static_cast<void>(zmesh::decode_header(bytes.data(), bytes.size(), ec));
        return ec;
    };

    // Values, keys included: the map, "id" and its bin (3), "x" and its array (2), 256 arrays
    // of 14 nils (3840), "y" and its array (2), then m nils: 3847 + m.
    auto with_values = [&](std::uint32_t m) {
        return build_map(3, [&](packer& p) {
            pack_id(p, id);
            pack_key(p, "x");
            p.pack_array(256);
            for (int i = 0; i < 256; ++i) {
                p.pack_array(14);
                for (int j = 0; j < 14; ++j)
                    p.pack_nil();
            }
            pack_key(p, "y");
            p.pack_array(m);
            for (std::uint32_t i = 0; i < m; ++i)
                p.pack_nil();
        });
    };
    CHECK_FALSE(code_of(with_values(249)));
    CHECK(code_of(with_values(250)) == zmesh::errc::oversized);

    // Nesting: the header map is level 1, so "z" can hold arrays down to level 8.
    auto nested = [&](int levels, bool innermost_empty) {
        return build_map(2, [&](packer& p) {
            pack_id(p, id);
            pack_key(p, "z");
            for (int i = 0; i < levels; ++i)
                p.pack_array(innermost_empty && i + 1 == levels ? 0 : 1);
            if (!innermost_empty)
                p.pack_nil();
        });
    };
    CHECK_FALSE(code_of(nested(7, false)));
    CHECK_FALSE(code_of(nested(7, true)));
    CHECK(code_of(nested(8, false)) == zmesh::errc::oversized);
    CHECK(code_of(nested(8, true)) == zmesh::errc::oversized); // even an empty one

    // 256 elements per array and pairs per map.
    auto array_of = [&](std::uint32_t n) {
        return build_map(2, [&](packer& p) {
            pack_id(p, id);
            pack_key(p, "a");
            p.pack_array(n);
            for (std::uint32_t i = 0; i < n; ++i)
                p.pack(i);
        });
    };
    auto map_of = [&](std::uint32_t n) {
        return build_map(n, [&](packer& p) {
            pack_id(p, id);
            for (std::uint32_t i = 1; i < n; ++i) {
                pack_key(p, "k" + std::to_string(i));
                p.pack(i);
            }
        });
    };
    CHECK_FALSE(code_of(array_of(256)));
    CHECK(code_of(array_of(257)) == zmesh::errc::oversized);
    const std::string widest = map_of(256);
    CHECK_FALSE(code_of(widest));
    CHECK(zmesh::decode_header(widest.data(), widest.size()).extensions.size() == 255);
    CHECK(code_of(map_of(257)) == zmesh::errc::oversized);
}

TEST_CASE("integers are read by value whichever msgpack format carries them") {
    const auto id = zmesh::message_id::generate();
    const std::string bytes = build_map(5, [&](packer& p) {
        pack_id(p, id);
        pack_key(p, "pr");
        p.pack_int8(5); // a signed format holding a non-negative value
        pack_key(p, "at");
        p.pack_int32(70000);
        pack_key(p, "ts");
        p.pack_uint64(12345); // an unsigned format for a signed field
        pack_key(p, "sq");
        p.pack_uint8(3);
    });
    const auto h = decode_both(bytes);
    REQUIRE(h);
    CHECK(h->priority == 5);
    CHECK(h->attempt == 70000);
    CHECK(h->timestamp_ns == 12345);
    CHECK(h->sequence == 3);

    const std::string negative = build_map(2, [&](packer& p) {
        pack_id(p, id);
        pack_key(p, "sq");
        p.pack_int64(-1);
    });
    const auto thrown = throwing_decode_code(negative);
    CHECK((thrown && *thrown == zmesh::errc::malformed));
}

TEST_CASE("a defect in the msgpack outranks an earlier defect of meaning") {
    const auto id = zmesh::message_id::generate();
    // A duplicate key, then the buffer ends early: truncated, not malformed.
    const std::string duplicate_then_short = build_map(3, [&](packer& p) {
        pack_id(p, id);
        pack_id(p, id);
        pack_key(p, "ty");
    });
    // A wrong type, then an array over the limit: oversized.
    const std::string wrong_type_then_wide = build_map(3, [&](packer& p) {
        pack_id(p, id);
        pack_key(p, "pr");
        p.pack(std::string("high"));
        pack_key(p, "x");
        p.pack_array(300);
    });
    // Not a map, and cut short: truncated.
    const std::string short_array("\x93\x01\x02", 3);
    std::error_code ec;
    CHECK_FALSE(zmesh::decode_header(duplicate_then_short.data(), duplicate_then_short.size(), ec));
    CHECK(ec == zmesh::errc::truncated);
    CHECK_FALSE(zmesh::decode_header(wrong_type_then_wide.data(), wrong_type_then_wide.size(), ec));
    CHECK(ec == zmesh::errc::oversized);
    CHECK_FALSE(zmesh::decode_header(short_array.data(), short_array.size(), ec));
    CHECK(ec == zmesh::errc::truncated);

    // With the msgpack sound, the first defect of meaning is the one reported.
    const std::string two_defects = build_map(3, [&](packer& p) {
        pack_id(p, id);
        pack_key(p, "tl");
        p.pack(-5);
        pack_key(p, "pr");
        p.pack(10);
    });
    std::string why;
    CHECK_FALSE(zmesh::decode_header(two_defects.data(), two_defects.size(), ec, &why));
    CHECK(ec == zmesh::errc::malformed);
    CHECK(why.find("\"tl\"") != std::string::npos);
}

TEST_CASE("encode refuses what decode would refuse") {
    auto code_of = [](const zmesh::header& h) -> std::optional<std::error_code> {
        try {
            static_cast<void>(zmesh::encode(h));
        } catch (const zmesh::error& e) {
            return e.code();
        }
        return std::nullopt;
    };
    zmesh::header h = full_header();
    h.priority = 10;
    CHECK(code_of(h) == std::error_code(zmesh::errc::invalid_argument));

    h = full_header();
    h.extensions.emplace_back("pr", "\x01");
    CHECK(code_of(h) == std::error_code(zmesh::errc::invalid_argument));

    h = full_header();
    h.extensions.emplace_back("x", "\xc1");
    CHECK(code_of(h) == std::error_code(zmesh::errc::invalid_argument));

    h = full_header();
    h.extensions.emplace_back("x", std::string("\x01\x02", 2)); // two values, not one
    CHECK(code_of(h) == std::error_code(zmesh::errc::invalid_argument));

    h = full_header();
    h.extensions.emplace_back("x", "");
    CHECK(code_of(h) == std::error_code(zmesh::errc::invalid_argument));

    h = full_header();
    h.extensions.emplace_back("x", std::string("\xc0", 1));
    CHECK_FALSE(code_of(h));
}

TEST_CASE("message ids generated on two threads are all distinct") {
    constexpr std::size_t per_thread = 50000;
    std::vector<zmesh::message_id> a(per_thread), b(per_thread);
    using namespace std::chrono;
    const auto before =
        duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
    std::thread ta([&] {
        for (auto& id : a)
            id = zmesh::message_id::generate();
    });
    std::thread tb([&] {
        for (auto& id : b)
            id = zmesh::message_id::generate();
    });
    ta.join();
    tb.join();
    const auto after =
        duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();

    std::unordered_set<zmesh::message_id> all;
    all.reserve(2 * per_thread);
    std::size_t bad_layout = 0;
    for (const auto* ids : {&a, &b})
        for (const auto& id : *ids) {
            all.insert(id);
            const auto& bytes = id.bytes();
            if ((bytes[6] >> 4) != 7 || (bytes[8] >> 6) != 2 || id.timestamp_ms() < before ||
                id.timestamp_ms() > after)
                ++bad_layout;
        }
    CHECK(all.size() == 2 * per_thread);
    CHECK(bad_layout == 0);
}

TEST_CASE("a message id round-trips through hex and malformed hex is refused") {
    const auto id = zmesh::message_id::generate();
    const std::string hex = id.to_hex();
    CHECK(hex.size() == 32);
    CHECK(hex.find_first_not_of("0123456789abcdef") == std::string::npos);
    CHECK(zmesh::message_id::from_hex(hex) == id);

    std::string upper = hex;
    for (auto& c : upper)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    CHECK(zmesh::message_id::from_hex(upper) == id);

    CHECK(zmesh::message_id{}.to_hex() == std::string(32, '0'));
    CHECK(zmesh::message_id::from_hex(std::string(32, '0'))->is_nil());
    CHECK_FALSE(zmesh::message_id::from_hex(""));
    CHECK_FALSE(zmesh::message_id::from_hex(hex.substr(1)));
    CHECK_FALSE(zmesh::message_id::from_hex(hex + "0"));
    CHECK_FALSE(zmesh::message_id::from_hex("g" + hex.substr(1)));
    CHECK_FALSE(zmesh::message_id::from_hex(hex.substr(0, 8) + "-" + hex.substr(9)));
}

TEST_CASE("message ids order by their timestamp and hash equal ids equally") {
    zmesh::message_id::bytes_type early{};
    zmesh::message_id::bytes_type late{};
    early[5] = 1; // 1 ms
    late[4] = 1;  // 256 ms
    early[15] = 0xff;
    const zmesh::message_id e(early), l(late);
    CHECK(e < l);
    CHECK(e.timestamp_ms() == 1);
    CHECK(l.timestamp_ms() == 256);

    const auto id = zmesh::message_id::generate();
    const zmesh::message_id copy(id.bytes());
    CHECK(copy == id);
    CHECK(std::hash<zmesh::message_id>{}(copy) == std::hash<zmesh::message_id>{}(id));
    CHECK(std::hash<zmesh::message_id>{}(e) != std::hash<zmesh::message_id>{}(l));
}

} // TEST_SUITE
