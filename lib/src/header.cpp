// SPDX-License-Identifier: MPL-2.0
// header.cpp — message ids, and the msgpack map form of zmesh::header.
//
// Decoding trusts nothing: the buffer is parsed by unpack_object() under header_limits, then
// every known key is checked for type and range before it is stored. Encoding refuses what
// decoding would refuse, so a header this library writes is always one it can read back.
#include <zmesh/codec.hpp>
#include <zmesh/error.hpp>
#include <zmesh/header.hpp>

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <new>
#include <random>
#include <thread>

namespace zmesh {
namespace {

// ---- message_id generation ----

// Bumped in a child after fork(): the child's copy of the thread-local generator would otherwise
// repeat the parent's sequence and produce the same ids.
std::atomic<std::uint64_t> fork_generation{0};

void on_fork_child() noexcept { fork_generation.fetch_add(1, std::memory_order_relaxed); }

std::uint64_t splitmix64(std::uint64_t& state) noexcept {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// A SeedSequence over a fixed entropy pool. std::seed_seq would do, but it allocates, and
// generate() is noexcept.
class entropy_sequence {
  public:
    using result_type = std::uint32_t;
    static constexpr std::size_t words = 16;

    std::array<std::uint32_t, words> pool{};

    template <class It> void generate(It first, It last) const noexcept {
        // Fold the pool into a 64-bit state per output word so every word depends on all inputs.
        std::uint64_t state = 0;
        for (const std::uint32_t w : pool) {
            state ^= w;
            static_cast<void>(splitmix64(state));
        }
        std::size_t i = 0;
        for (; first != last; ++first, ++i) {
            state ^= pool[i % words];
            *first = static_cast<std::uint32_t>(splitmix64(state) >> 32);
        }
    }
    [[nodiscard]] static constexpr std::size_t size() noexcept { return words; }
    template <class It> void param(It out) const { std::copy(pool.begin(), pool.end(), out); }
};

void seed(std::mt19937_64& engine) noexcept {
    entropy_sequence seq;
    std::size_t n = 0;
    auto add64 = [&](std::uint64_t v) noexcept {
        seq.pool[n++ % entropy_sequence::words] ^= static_cast<std::uint32_t>(v);
        seq.pool[n++ % entropy_sequence::words] ^= static_cast<std::uint32_t>(v >> 32);
    };
    try {
        std::random_device device;
        for (std::size_t i = 0; i < 8; ++i)
            seq.pool[i] = device();
        n = 8;
    } catch (const std::exception&) {
        // No OS entropy (std::random_device threw): the clocks, thread id, pid and stack address
        // below still differ between threads and processes, which is what uniqueness needs.
    }
    // Mixed in even with OS entropy, so two threads can never share a seed.
    add64(std::hash<std::thread::id>{}(std::this_thread::get_id()));
    add64(static_cast<std::uint64_t>(::getpid()));
    add64(static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
    add64(static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()));
    add64(static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(&seq)));
    engine.seed(seq);
}

// ---- wire format ----

enum key_index : std::size_t {
    k_id,
    k_type,
    k_priority,
    k_timestamp,
    k_ttl,
    k_correlation,
    k_attempt,
    k_sequence,
    k_source,
    key_count
};
constexpr std::array<std::string_view, key_count> key_names{"id", "ty", "pr", "ts", "tl",
                                                            "co", "at", "sq", "sr"};

// A header map holds at most the 9 known keys plus extensions; ids are 16 bytes; nothing needs
// deep nesting. Since the whole buffer is at most 64 KiB and the checking pass runs before any
// allocation, a hostile header costs at most max_objects msgpack objects (about 100 KiB).
const unpack_limits header_limits{
    .max_size = max_header_size,
    .max_objects = 4096,
    .max_array = 256,
    .max_map = 256,
    .max_str = max_header_size,
    .max_bin = max_header_size,
    .max_ext = max_header_size,
    .max_depth = 8,
};

std::optional<std::size_t> find_key(std::string_view name) noexcept {
    for (std::size_t i = 0; i < key_count; ++i)
        if (key_names[i] == name)
            return i;
    return std::nullopt;
}

// A msgpack stream that appends to a std::string (packer needs only write()).
struct string_sink {
    std::string* out;
    void write(const char* data, std::size_t size) { out->append(data, size); }
};

class header_writer {
  public:
    explicit header_writer(std::string& out) : sink_{&out}, packer_(sink_) {}

    void key(std::string_view name) {
        const auto n = static_cast<std::uint32_t>(name.size()); // names are checked short
        packer_.pack_str(n);
        packer_.pack_str_body(name.data(), n);
    }
    void id(const message_id& id) {
        packer_.pack_bin(static_cast<std::uint32_t>(message_id::size));
        packer_.pack_bin_body(reinterpret_cast<const char*>(id.bytes().data()),
                              static_cast<std::uint32_t>(message_id::size));
    }
    msgpack::packer<string_sink>& packer() noexcept { return packer_; }
    void raw(const std::string& bytes) { sink_.write(bytes.data(), bytes.size()); }

  private:
    string_sink sink_;
    msgpack::packer<string_sink> packer_;
};

bool read_id(const msgpack::object& o, message_id& out) noexcept {
    if (o.type != msgpack::type::BIN || o.via.bin.size != message_id::size)
        return false;
    message_id::bytes_type bytes;
    std::memcpy(bytes.data(), o.via.bin.ptr, message_id::size);
    out = message_id(bytes);
    return true;
}

template <class U> bool read_unsigned(const msgpack::object& o, U max, U& out) noexcept {
    if (o.type != msgpack::type::POSITIVE_INTEGER || o.via.u64 > max)
        return false;
    out = static_cast<U>(o.via.u64);
    return true;
}

bool read_int64(const msgpack::object& o, std::int64_t& out) noexcept {
    if (o.type == msgpack::type::NEGATIVE_INTEGER) {
        out = o.via.i64;
        return true;
    }
    if (o.type == msgpack::type::POSITIVE_INTEGER &&
        o.via.u64 <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        out = static_cast<std::int64_t>(o.via.u64);
        return true;
    }
    return false;
}

// Why a known key's value is rejected, by key index.
constexpr std::array<const char*, key_count> bad_value{
    "\"id\" is not a 16-byte bin",
    "\"ty\" is not a str",
    "\"pr\" is not an integer from 0 to 9",
    "\"ts\" is not a signed 64-bit integer",
    "\"tl\" is not an unsigned 32-bit integer",
    "\"co\" is not a 16-byte bin or nil",
    "\"at\" is not an unsigned 32-bit integer",
    "\"sq\" is not an unsigned 64-bit integer",
    "\"sr\" is not a 16-byte bin or nil",
};

bool read_field(std::size_t index, const msgpack::object& v, header& h) {
    switch (index) {
    case k_id:
        return read_id(v, h.id);
    case k_type:
        if (v.type != msgpack::type::STR)
            return false;
        h.type.assign(v.via.str.ptr, v.via.str.size);
        return true;
    case k_priority:
        return read_unsigned(v, max_priority, h.priority);
    case k_timestamp:
        return read_int64(v, h.timestamp_ns);
    case k_ttl:
        return read_unsigned(v, std::numeric_limits<std::uint32_t>::max(), h.ttl_ms);
    case k_correlation:
        // nil is accepted as "none" for peers that write absent values explicitly.
        if (v.type == msgpack::type::NIL) {
            h.correlation_id.reset();
            return true;
        }
        return read_id(v, h.correlation_id.emplace());
    case k_attempt:
        return read_unsigned(v, std::numeric_limits<std::uint32_t>::max(), h.attempt);
    case k_sequence:
        return read_unsigned(v, std::numeric_limits<std::uint64_t>::max(), h.sequence);
    case k_source:
        // nil means "none", as for "co".
        if (v.type == msgpack::type::NIL) {
            h.source.reset();
            return true;
        }
        return read_id(v, h.source.emplace());
    default:
        return false;
    }
}

void set_why(std::string* why, const char* text) {
    if (why)
        *why = text;
}

// The decoding proper. May throw std::bad_alloc only; both public overloads map it.
std::error_code decode_into(const void* data, std::size_t size, header& h, std::string* why) {
    std::error_code ec;
    const msgpack::object_handle handle = unpack_object(data, size, header_limits, ec, why);
    if (ec)
        return ec;

    const msgpack::object& root = handle.get();
    if (root.type != msgpack::type::MAP) {
        set_why(why, "a header is a msgpack map");
        return errc::malformed;
    }
    std::array<bool, key_count> seen{};
    for (std::uint32_t i = 0; i < root.via.map.size; ++i) {
        const msgpack::object& k = root.via.map.ptr[i].key;
        const msgpack::object& v = root.via.map.ptr[i].val;
        // Keys of other types belong to no zmesh version; they are skipped, not kept.
        if (k.type != msgpack::type::STR)
            continue;
        const std::string_view name(k.via.str.ptr, k.via.str.size);
        const auto index = find_key(name);
        if (!index) {
            std::string value;
            string_sink sink{&value};
            msgpack::packer<string_sink>(sink).pack(v);
            h.extensions.emplace_back(std::string(name), std::move(value));
            continue;
        }
        // Two values for one key would let different decoders see different messages.
        if (seen[*index]) {
            set_why(why, "a known key appears twice");
            return errc::malformed;
        }
        seen[*index] = true;
        if (!read_field(*index, v, h)) {
            set_why(why, bad_value[*index]);
            return errc::malformed;
        }
    }
    if (!seen[k_id]) {
        set_why(why, "the \"id\" key is missing");
        return errc::malformed;
    }
    return {};
}

[[noreturn]] void throw_encode(errc code, const char* what) {
    throw error(code, std::string("zmesh::encode(header): ") + what);
}

} // namespace

// ---- message_id ----

message_id message_id::generate() noexcept {
    static const bool fork_handler = ::pthread_atfork(nullptr, nullptr, &on_fork_child) == 0;
    static_cast<void>(fork_handler); // if registration failed, ids after fork() may repeat
    thread_local std::mt19937_64 engine;
    thread_local std::uint64_t seeded_generation = std::numeric_limits<std::uint64_t>::max();
    const std::uint64_t generation = fork_generation.load(std::memory_order_relaxed);
    if (seeded_generation != generation) {
        seed(engine);
        seeded_generation = generation;
    }

    using namespace std::chrono;
    const auto ms = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
    const auto stamp = static_cast<std::uint64_t>(ms < 0 ? 0 : ms) & 0xffff'ffff'ffffULL;
    const std::uint64_t r1 = engine();
    const std::uint64_t r2 = engine();

    bytes_type b{};
    for (std::size_t i = 0; i < 6; ++i)
        b[i] = static_cast<std::uint8_t>(stamp >> (40 - 8 * i));
    b[6] = static_cast<std::uint8_t>(0x70 | (r1 & 0x0f));         // version 7 + rand_a
    b[7] = static_cast<std::uint8_t>(r1 >> 4);                    // rand_a
    b[8] = static_cast<std::uint8_t>(0x80 | ((r1 >> 12) & 0x3f)); // variant 10 + rand_b
    for (std::size_t i = 9; i < size; ++i)
        b[i] = static_cast<std::uint8_t>(r2 >> (8 * (i - 9)));
    return message_id(b);
}

std::optional<message_id> message_id::from_hex(std::string_view text) noexcept {
    if (text.size() != 2 * size)
        return std::nullopt;
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9')
            return c - '0';
        if (c >= 'a' && c <= 'f')
            return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
            return c - 'A' + 10;
        return -1;
    };
    bytes_type b{};
    for (std::size_t i = 0; i < size; ++i) {
        const int hi = nibble(text[2 * i]);
        const int lo = nibble(text[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return std::nullopt;
        b[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    }
    return message_id(b);
}

std::string message_id::to_hex() const {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out(2 * size, '0');
    for (std::size_t i = 0; i < size; ++i) {
        out[2 * i] = digits[bytes_[i] >> 4];
        out[2 * i + 1] = digits[bytes_[i] & 0x0f];
    }
    return out;
}

std::int64_t message_id::timestamp_ms() const noexcept {
    std::uint64_t ms = 0;
    for (std::size_t i = 0; i < 6; ++i)
        ms = ms << 8 | bytes_[i];
    return static_cast<std::int64_t>(ms);
}

// ---- header ----

header make_header(std::string type) {
    header h;
    h.id = message_id::generate();
    h.type = std::move(type);
    h.timestamp_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    return h;
}

void encode(const header& h, std::string& out) {
    out.clear();
    if (h.priority > max_priority)
        throw_encode(errc::invalid_argument, "priority is above 9");
    // Checked before packing so a huge string is never copied, and so sizes fit uint32.
    if (h.type.size() > max_header_size)
        throw_encode(errc::oversized, "type is longer than 64 KiB");
    if (h.extensions.size() > header_limits.max_map - key_count)
        throw_encode(errc::oversized, "too many extensions");
    for (const auto& [name, value] : h.extensions) {
        if (find_key(name))
            throw_encode(errc::invalid_argument, "an extension uses a zmesh key");
        if (name.size() > max_header_size || value.size() > max_header_size)
            throw_encode(errc::oversized, "an extension is larger than 64 KiB");
        std::error_code ec;
        static_cast<void>(unpack_object(value.data(), value.size(), header_limits, ec));
        if (ec)
            throw_encode(errc::invalid_argument,
                         "an extension value is not one msgpack value within the header limits");
    }

    std::size_t pairs = 1 + h.extensions.size();
    pairs += h.type.empty() ? 0U : 1U;
    pairs += h.priority == default_priority ? 0U : 1U;
    pairs += h.timestamp_ns == 0 ? 0U : 1U;
    pairs += h.ttl_ms == 0 ? 0U : 1U;
    pairs += h.correlation_id ? 1U : 0U;
    pairs += h.attempt == 0 ? 0U : 1U;
    pairs += h.sequence == 0 ? 0U : 1U;
    pairs += h.source ? 1U : 0U;

    header_writer w(out);
    auto& p = w.packer();
    p.pack_map(static_cast<std::uint32_t>(pairs));
    w.key(key_names[k_id]);
    w.id(h.id);
    if (!h.type.empty()) {
        w.key(key_names[k_type]);
        p.pack_str(static_cast<std::uint32_t>(h.type.size()));
        p.pack_str_body(h.type.data(), static_cast<std::uint32_t>(h.type.size()));
    }
    if (h.priority != default_priority) {
        w.key(key_names[k_priority]);
        p.pack_uint8(h.priority);
    }
    if (h.timestamp_ns != 0) {
        w.key(key_names[k_timestamp]);
        p.pack_int64(h.timestamp_ns);
    }
    if (h.ttl_ms != 0) {
        w.key(key_names[k_ttl]);
        p.pack_uint32(h.ttl_ms);
    }
    if (h.correlation_id) {
        w.key(key_names[k_correlation]);
        w.id(*h.correlation_id);
    }
    if (h.attempt != 0) {
        w.key(key_names[k_attempt]);
        p.pack_uint32(h.attempt);
    }
    if (h.sequence != 0) {
        w.key(key_names[k_sequence]);
        p.pack_uint64(h.sequence);
    }
    if (h.source) {
        w.key(key_names[k_source]);
        w.id(*h.source);
    }
    for (const auto& [name, value] : h.extensions) {
        w.key(name);
        w.raw(value);
    }

    if (out.size() > max_header_size) {
        out.clear();
        throw_encode(errc::oversized, "the encoding exceeds 64 KiB");
    }
    if (!h.extensions.empty()) {
        // Each value was checked alone; together they could still break the whole-map limits.
        std::error_code ec;
        static_cast<void>(unpack_object(out.data(), out.size(), header_limits, ec));
        if (ec) {
            out.clear();
            throw_encode(errc::oversized, "the extensions together exceed the header limits");
        }
    }
}

zmq::message_t encode(const header& h) {
    // A header is tens of bytes: packing into a reused per-thread string and copying it into the
    // frame costs one allocation (libzmq's). Handing over a msgpack::sbuffer instead would cost
    // two, the sbuffer's block and libzmq's content_t, plus the block's slack while queued.
    thread_local std::string scratch;
    encode(h, scratch);
    return zmq::message_t(scratch.data(), scratch.size());
}

header decode_header(const void* data, std::size_t size) {
    header h;
    std::string why;
    std::error_code ec;
    try {
        ec = decode_into(data, size, h, &why);
    } catch (const std::bad_alloc&) {
        ec = std::make_error_code(std::errc::not_enough_memory);
        why = "out of memory";
    }
    if (ec)
        throw error(ec, "zmesh::decode_header: " + why);
    return h;
}

std::optional<header> decode_header(const void* data, std::size_t size, std::error_code& ec,
                                    std::string* why) noexcept {
    try {
        header h;
        ec = decode_into(data, size, h, why);
        if (!ec)
            return h;
    } catch (const std::bad_alloc&) {
        ec = std::make_error_code(std::errc::not_enough_memory);
    }
    return std::nullopt;
}

} // namespace zmesh
