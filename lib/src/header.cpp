// SPDX-License-Identifier: MPL-2.0
// header.cpp — message ids, and the msgpack map form of zmesh::header.
//
// Decoding trusts nothing: one pass of a small msgpack reader checks the bytes against the
// header limits and stores each known key after checking its type and range. The form zmesh's
// own encoders write is first tried on a faster path that accepts nothing else (decode_common). Encoding refuses
// what decoding would refuse, so a header this library writes is always one it can read back.
#include <zmesh/error.hpp>
#include <zmesh/header.hpp>

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
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
// deep nesting. The same limits as unpack_object() would apply with unpack_limits{.max_size =
// max_header_size, .max_objects = 4096, .max_array = 256, .max_map = 256, .max_depth = 8}; a str,
// bin or ext cannot exceed max_header_size since its bytes must be in the buffer.
constexpr std::size_t max_values = 4096;   // msgpack values in one header, keys included
constexpr std::uint64_t max_entries = 256; // elements of one array, pairs of one map
constexpr std::size_t max_depth = 8;       // nesting of arrays and maps; the header map is 1

// Every zmesh key is two bytes, so a key is matched by its length and then one 16-bit compare,
// instead of comparing it with each name in turn.
constexpr std::uint16_t key_code(std::string_view name) noexcept {
    return static_cast<std::uint16_t>(static_cast<unsigned char>(name[0]) << 8 |
                                      static_cast<unsigned char>(name[1]));
}
static_assert(std::all_of(key_names.begin(), key_names.end(),
                          [](std::string_view name) { return name.size() == 2; }));

// The index of a known key, or key_count for any other name. Forced inline for the reason given
// at msgpack_reader::next().
[[gnu::always_inline]] inline std::size_t find_key(const char* name, std::size_t size) noexcept {
    if (size != 2)
        return key_count;
    switch (key_code(std::string_view(name, 2))) {
    case key_code(key_names[k_id]):
        return k_id;
    case key_code(key_names[k_type]):
        return k_type;
    case key_code(key_names[k_priority]):
        return k_priority;
    case key_code(key_names[k_timestamp]):
        return k_timestamp;
    case key_code(key_names[k_ttl]):
        return k_ttl;
    case key_code(key_names[k_correlation]):
        return k_correlation;
    case key_code(key_names[k_attempt]):
        return k_attempt;
    case key_code(key_names[k_sequence]):
        return k_sequence;
    case key_code(key_names[k_source]):
        return k_source;
    default:
        return key_count;
    }
}

// ---- encoding ----
//
// Written byte by byte into a buffer sized beforehand for the worst case, in msgpack's smallest
// form for each value, which is what msgpack::packer writes: the test "the encoder writes what
// msgpack's packer writes" compares the two. The packer appended every item to a std::string,
// about 950 instructions per header with the appends and their capacity checks; a header frame
// of a publication or a request now costs a few stores and one copy into the frame.

class byte_writer {
  public:
    explicit byte_writer(char* at) noexcept : at_(at) {}
    [[nodiscard]] char* end() const noexcept { return at_; }

    void byte(unsigned b) noexcept { *at_++ = static_cast<char>(b); }
    template <std::size_t N> void big_endian(std::uint64_t v) noexcept {
        for (std::size_t i = N; i-- > 0;)
            byte(static_cast<unsigned>(v >> (8 * i)) & 0xffU);
    }
    void bytes(const char* data, std::size_t size) noexcept {
        std::memcpy(at_, data, size);
        at_ += size;
    }

    void map(std::size_t pairs) noexcept { // at most 256 (max_entries)
        if (pairs < 16) {
            byte(0x80U | static_cast<unsigned>(pairs));
        } else {
            byte(0xde);
            big_endian<2>(pairs);
        }
    }
    void str(const char* data, std::size_t size) noexcept { // at most max_header_size
        if (size < 32) {
            byte(0xa0U | static_cast<unsigned>(size));
        } else if (size < 256) {
            byte(0xd9);
            big_endian<1>(size);
        } else if (size < 65536) {
            byte(0xda);
            big_endian<2>(size);
        } else {
            byte(0xdb);
            big_endian<4>(size);
        }
        bytes(data, size);
    }
    void key(key_index k) noexcept { str(key_names[k].data(), 2); }
    void id(const message_id& id) noexcept {
        byte(0xc4);
        byte(message_id::size);
        bytes(reinterpret_cast<const char*>(id.bytes().data()), message_id::size);
    }
    void uint(std::uint64_t v) noexcept {
        if (v < 128) {
            byte(static_cast<unsigned>(v));
        } else if (v < 256) {
            byte(0xcc);
            big_endian<1>(v);
        } else if (v < 65536) {
            byte(0xcd);
            big_endian<2>(v);
        } else if (v <= 0xffff'ffffULL) {
            byte(0xce);
            big_endian<4>(v);
        } else {
            byte(0xcf);
            big_endian<8>(v);
        }
    }
    void sint(std::int64_t v) noexcept {
        if (v >= -32) {
            if (v < 0) byte(static_cast<unsigned>(v) & 0xffU); // negative fixint
            else uint(static_cast<std::uint64_t>(v));
            return;
        }
        const auto bits = static_cast<std::uint64_t>(v);
        if (v >= -128) {
            byte(0xd0);
            big_endian<1>(bits);
        } else if (v >= -32768) {
            byte(0xd1);
            big_endian<2>(bits);
        } else if (v >= -2147483648LL) {
            byte(0xd2);
            big_endian<4>(bits);
        } else {
            byte(0xd3);
            big_endian<8>(bits);
        }
    }

  private:
    char* at_;
};

// The most bytes encode() can write for @p h: each item at its longest form.
std::size_t encoded_bound(const header& h) noexcept {
    constexpr std::size_t key = 3, id = 2 + message_id::size;
    std::size_t n = 3 /* map16 */ + key + id /* id */ + key + 5 + h.type.size() /* ty */ +
                    key + 1 /* pr */ + key + 9 /* ts */ + key + 5 /* tl */ + key + id /* co */ +
                    key + 5 /* at */ + key + 9 /* sq */ + key + id /* sr */;
    for (const auto& [name, value] : h.extensions) n += 5 + name.size() + value.size();
    return n;
}

// Writes @p h, checked by check_encodable(), from @p at; returns the end.
char* write_header(const header& h, char* at) noexcept {
    std::size_t pairs = 1 + h.extensions.size();
    pairs += h.type.empty() ? 0U : 1U;
    pairs += h.priority == default_priority ? 0U : 1U;
    pairs += h.timestamp_ns == 0 ? 0U : 1U;
    pairs += h.ttl_ms == 0 ? 0U : 1U;
    pairs += h.correlation_id ? 1U : 0U;
    pairs += h.attempt == 0 ? 0U : 1U;
    pairs += h.sequence == 0 ? 0U : 1U;
    pairs += h.source ? 1U : 0U;

    byte_writer w(at);
    w.map(pairs);
    w.key(k_id);
    w.id(h.id);
    if (!h.type.empty()) {
        w.key(k_type);
        w.str(h.type.data(), h.type.size());
    }
    if (h.priority != default_priority) {
        w.key(k_priority);
        w.uint(h.priority);
    }
    if (h.timestamp_ns != 0) {
        w.key(k_timestamp);
        w.sint(h.timestamp_ns);
    }
    if (h.ttl_ms != 0) {
        w.key(k_ttl);
        w.uint(h.ttl_ms);
    }
    if (h.correlation_id) {
        w.key(k_correlation);
        w.id(*h.correlation_id);
    }
    if (h.attempt != 0) {
        w.key(k_attempt);
        w.uint(h.attempt);
    }
    if (h.sequence != 0) {
        w.key(k_sequence);
        w.uint(h.sequence);
    }
    if (h.source) {
        w.key(k_source);
        w.id(*h.source);
    }
    for (const auto& [name, value] : h.extensions) {
        w.str(name.data(), name.size());
        w.bytes(value.data(), value.size());
    }
    return w.end();
}

// ---- decoding ----
//
// Decoding is one pass of a small msgpack reader straight into the header. The earlier decoder
// made a counting pass, then built msgpack's object tree in a zone and searched it: two parses
// and a malloc/free per header, the largest cost of a subscriber's receiving thread. One
// msgpack::parse() with a custom visitor would also be a single pass, but it hands over keys
// and values in separate callbacks (so pairing them needs a state machine), its stack is a
// std::vector, and it cannot give the raw bytes of an unknown value. A header is a flat map of a
// few scalar types, so a reader of the whole format in ~150 lines is simpler, and allocates
// nothing.
//
// The reader applies unpack_object()'s rules in unpack_object()'s order (msgpack's parser checks
// that a value's bytes are present before counting it, and a container's limits as soon as its
// length is read), so every buffer gets the same error code and text as before. Defects of
// meaning (a wrong type, a duplicate key) are held back until the whole buffer has proved to be
// sound msgpack, as when the tree was built first.

// A defect: its code and a static description. why == nullptr means none.
struct defect {
    errc code = errc::malformed;
    const char* why = nullptr;
    explicit operator bool() const noexcept { return why != nullptr; }
};

constexpr defect trailing_bytes{errc::malformed, "trailing bytes after the msgpack value"};

enum class kind : std::uint8_t {
    nil,
    boolean,
    uint,
    nint,
    float32,
    float64,
    str,
    bin,
    ext,
    array,
    map
};

// The head of one msgpack value: a scalar whole, a str/bin/ext with its bytes, an array or map
// with its length only (its contents follow in the buffer).
struct token {
    kind type = kind::nil;
    std::uint64_t u = 0;        // uint: the value; nint: the int64's bits; array/map: entries
    const char* data = nullptr; // str/bin/ext: the bytes (for ext, the type byte first)
    std::size_t size = 0;       // str/bin/ext: their count
};

class msgpack_reader {
  public:
    msgpack_reader(const char* data, std::size_t size) noexcept : at_(data), end_(data + size) {}

    [[nodiscard]] const char* position() const noexcept { return at_; }
    [[nodiscard]] bool at_end() const noexcept { return at_ == end_; }
    [[nodiscard]] const defect& failure() const noexcept { return failure_; }

    // Reads the head of the next value. @p depth is the nesting level an array or map read here
    // would have (the outermost value is 1). False with failure() set on a defect.
    // Forced inline (with find_key): g++ 12 judges them too big, but inlined into the decoding
    // loop the token stays in registers; that took a typical header from about 80 to 68 ns.
    [[gnu::always_inline]] bool next(token& t, std::size_t depth) noexcept {
        if (at_ == end_)
            return truncated();
        const auto lead = static_cast<unsigned char>(*at_++);
        if (lead <= 0x7f)
            return scalar(t, kind::uint, lead);
        if (lead >= 0xe0)
            return integer(t, static_cast<std::int8_t>(lead));
        if (lead <= 0x8f)
            return container(t, kind::map, lead & 0x0fU, depth);
        if (lead <= 0x9f)
            return container(t, kind::array, lead & 0x0fU, depth);
        if (lead <= 0xbf)
            return bytes(t, kind::str, lead & 0x1fU);
        std::uint64_t n = 0;
        switch (lead) {
        case 0xc0:
            return scalar(t, kind::nil, 0);
        case 0xc2:
            return scalar(t, kind::boolean, 0);
        case 0xc3:
            return scalar(t, kind::boolean, 1);
        case 0xc4:
            return big_endian<1>(n) && bytes(t, kind::bin, n);
        case 0xc5:
            return big_endian<2>(n) && bytes(t, kind::bin, n);
        case 0xc6:
            return big_endian<4>(n) && bytes(t, kind::bin, n);
        case 0xc7: // ext: a length, then a type byte and that many bytes
            return big_endian<1>(n) && bytes(t, kind::ext, n + 1);
        case 0xc8:
            return big_endian<2>(n) && bytes(t, kind::ext, n + 1);
        case 0xc9:
            return big_endian<4>(n) && bytes(t, kind::ext, n + 1);
        case 0xca:
            return big_endian<4>(n) && scalar(t, kind::float32, n);
        case 0xcb:
            return big_endian<8>(n) && scalar(t, kind::float64, n);
        case 0xcc:
            return big_endian<1>(n) && scalar(t, kind::uint, n);
        case 0xcd:
            return big_endian<2>(n) && scalar(t, kind::uint, n);
        case 0xce:
            return big_endian<4>(n) && scalar(t, kind::uint, n);
        case 0xcf:
            return big_endian<8>(n) && scalar(t, kind::uint, n);
        case 0xd0:
            return big_endian<1>(n) && integer(t, sign_extend<1>(n));
        case 0xd1:
            return big_endian<2>(n) && integer(t, sign_extend<2>(n));
        case 0xd2:
            return big_endian<4>(n) && integer(t, sign_extend<4>(n));
        case 0xd3:
            return big_endian<8>(n) && integer(t, sign_extend<8>(n));
        case 0xd4: // fixext 1, 2, 4, 8, 16: a type byte and that many bytes
        case 0xd5:
        case 0xd6:
        case 0xd7:
        case 0xd8:
            return bytes(t, kind::ext, 1 + (std::uint64_t{1} << (lead - 0xd4U)));
        case 0xd9:
            return big_endian<1>(n) && bytes(t, kind::str, n);
        case 0xda:
            return big_endian<2>(n) && bytes(t, kind::str, n);
        case 0xdb:
            return big_endian<4>(n) && bytes(t, kind::str, n);
        case 0xdc:
            return big_endian<2>(n) && container(t, kind::array, n, depth);
        case 0xdd:
            return big_endian<4>(n) && container(t, kind::array, n, depth);
        case 0xde:
            return big_endian<2>(n) && container(t, kind::map, n, depth);
        case 0xdf:
            return big_endian<4>(n) && container(t, kind::map, n, depth);
        default: // 0xc1, the one byte msgpack reserves
            return fail(errc::malformed, "not msgpack (a reserved type byte)");
        }
    }

    // Reads past the contents of @p t, read by next(t, depth): nothing for a scalar, every
    // element for an array or map. Iterative, with one counter per open level: next() refuses
    // a level beyond max_depth, so the fixed stack cannot overflow, and lengths are only ever
    // counted down, never allocated for.
    bool skip_contents(const token& t, std::size_t depth) noexcept {
        if (!opens_level(t))
            return true;
        std::array<std::uint64_t, max_depth> pending{}; // values left to read at each open level
        std::size_t top = 0;
        pending[0] = entries(t);
        for (;;) {
            if (pending[top] == 0) {
                if (top == 0)
                    return true;
                --top;
                continue;
            }
            --pending[top];
            token inner;
            if (!next(inner, depth + top + 1))
                return false;
            if (opens_level(inner))
                pending[++top] = entries(inner);
        }
    }

  private:
    static bool opens_level(const token& t) noexcept {
        return (t.type == kind::array || t.type == kind::map) && t.u != 0;
    }
    // Values inside an array or map: a map's pairs are two each.
    static std::uint64_t entries(const token& t) noexcept {
        return t.type == kind::map ? 2 * t.u : t.u;
    }

    bool fail(errc code, const char* why) noexcept {
        failure_ = {code, why};
        return false;
    }
    bool truncated() noexcept {
        return fail(errc::truncated, "the buffer ends inside a msgpack value");
    }
    bool counted() noexcept {
        return ++values_ <= max_values ||
               fail(errc::oversized, "more msgpack values than the limit");
    }

    // Moves past @p n bytes, which must be in the buffer.
    bool take(std::uint64_t n, const char*& first) noexcept {
        if (static_cast<std::uint64_t>(end_ - at_) < n)
            return truncated();
        first = at_;
        at_ += n;
        return true;
    }
    template <std::size_t N> bool big_endian(std::uint64_t& out) noexcept {
        const char* b = nullptr;
        if (!take(N, b))
            return false;
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < N; ++i)
            v = v << 8 | static_cast<unsigned char>(b[i]);
        out = v;
        return true;
    }
    template <std::size_t N> static std::int64_t sign_extend(std::uint64_t v) noexcept {
        constexpr unsigned shift = 64 - 8 * N;
        return static_cast<std::int64_t>(v << shift) >> shift;
    }

    bool scalar(token& t, kind type, std::uint64_t u) noexcept {
        t.type = type;
        t.u = u;
        return counted();
    }
    // msgpack's int formats are read by value, as msgpack does: a non-negative one is a uint.
    bool integer(token& t, std::int64_t v) noexcept {
        return scalar(t, v < 0 ? kind::nint : kind::uint, static_cast<std::uint64_t>(v));
    }
    bool bytes(token& t, kind type, std::uint64_t n) noexcept {
        const char* first = nullptr;
        if (!take(n, first))
            return false;
        t.type = type;
        t.data = first;
        t.size = static_cast<std::size_t>(n);
        return counted();
    }
    bool container(token& t, kind type, std::uint64_t n, std::size_t depth) noexcept {
        t.type = type;
        t.u = n;
        if (!counted())
            return false;
        if (n > max_entries)
            return fail(errc::oversized, type == kind::map
                                             ? "a map has more pairs than the limit"
                                             : "an array has more elements than the limit");
        return depth <= max_depth ||
               fail(errc::oversized, "arrays or maps nested deeper than the limit");
    }

    const char* at_;
    const char* end_;
    std::size_t values_ = 0;
    defect failure_;
};

// Checks that @p data holds exactly one msgpack value within the header limits.
defect check_one_value(const char* data, std::size_t size) noexcept {
    if (size > max_header_size)
        return {errc::oversized, "the buffer is larger than the limit"};
    if (size == 0)
        return {errc::truncated, "the buffer is empty"};
    msgpack_reader in(data, size);
    token t;
    if (!in.next(t, 1) || !in.skip_contents(t, 1))
        return in.failure();
    return in.at_end() ? defect{} : trailing_bytes;
}

bool read_id(const token& t, message_id& out) noexcept {
    if (t.type != kind::bin || t.size != message_id::size)
        return false;
    message_id::bytes_type bytes;
    std::memcpy(bytes.data(), t.data, message_id::size);
    out = message_id(bytes);
    return true;
}

template <class U> bool read_unsigned(const token& t, U max, U& out) noexcept {
    if (t.type != kind::uint || t.u > max)
        return false;
    out = static_cast<U>(t.u);
    return true;
}

bool read_int64(const token& t, std::int64_t& out) noexcept {
    if (t.type == kind::nint ||
        (t.type == kind::uint &&
         t.u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))) {
        out = static_cast<std::int64_t>(t.u);
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

bool read_field(std::size_t index, const token& v, header& h) {
    switch (index) {
    case k_id:
        return read_id(v, h.id);
    case k_type:
        if (v.type != kind::str)
            return false;
        h.type.assign(v.data, v.size);
        return true;
    case k_priority:
        return read_unsigned(v, max_priority, h.priority);
    case k_timestamp:
        return read_int64(v, h.timestamp_ns);
    case k_ttl:
        return read_unsigned(v, std::numeric_limits<std::uint32_t>::max(), h.ttl_ms);
    case k_correlation:
        // nil is accepted as "none" for peers that write absent values explicitly.
        if (v.type == kind::nil) {
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
        if (v.type == kind::nil) {
            h.source.reset();
            return true;
        }
        return read_id(v, h.source.emplace());
    default:
        return false;
    }
}

// ---- the common form ----
//
// Nearly every header on a hot path is one that a zmesh encoder wrote: a fixmap whose keys are
// all known, each once, every value in its smallest form. decode_common() reads exactly that
// form in one pass, with no tokens and no per-value limit bookkeeping (none can be exceeded: a
// fixmap has at most 15 pairs of scalars), in about a third of the general reader's
// instructions; a request through a de-duplicating broker is decoded four times (README
// "Performance"). Whatever else it meets (an extension key, a nil, a number in a signed format,
// a str 16 type, a map16, a duplicate, a defect) it declines, and decode_into() starts again with the
// general reader, which then gives the same header or the same error as it always did: the fast
// path only ever accepts buffers that the general reader accepts, with the same result (the
// tests and fuzz_header compare the two on every input).

// An unsigned integer in any of msgpack's unsigned forms (positive fixint, uint 8/16/32/64).
[[gnu::always_inline]] inline bool read_common_uint(const unsigned char*& p, const unsigned char* end,
                                                    std::uint64_t& v) noexcept {
    const unsigned lead = *p;
    if (lead <= 0x7f) {
        v = lead;
        ++p;
        return true;
    }
    std::size_t n = 0;
    switch (lead) {
    case 0xcc: n = 1; break;
    case 0xcd: n = 2; break;
    case 0xce: n = 4; break;
    case 0xcf: n = 8; break;
    default: return false;
    }
    if (static_cast<std::size_t>(end - p) <= n) return false;
    std::uint64_t x = 0;
    for (std::size_t i = 1; i <= n; ++i) x = x << 8 | p[i];
    v = x;
    p += 1 + n;
    return true;
}

// A 16-byte bin (bin 8 of length 16) into @p out.
[[gnu::always_inline]] inline bool read_common_id(const unsigned char*& p, const unsigned char* end,
                                                  message_id& out) noexcept {
    if (static_cast<std::size_t>(end - p) < 2 + message_id::size || p[0] != 0xc4 ||
        p[1] != message_id::size)
        return false;
    message_id::bytes_type bytes;
    std::memcpy(bytes.data(), p + 2, message_id::size);
    out = message_id(bytes);
    p += 2 + message_id::size;
    return true;
}

// Decodes @p data if it is in the common form. False: not in that form (or not a header at all);
// @p h may then hold some fields and must be reset before the general reader runs.
// May throw std::bad_alloc (the type string).
bool decode_common(const char* data, std::size_t size, header& h) {
    const auto* p = reinterpret_cast<const unsigned char*>(data);
    const auto* const end = p + size;
    if (size == 0 || (*p & 0xf0U) != 0x80U) return false;
    std::size_t pairs = *p++ & 0x0fU;
    std::uint32_t seen = 0;
    for (; pairs > 0; --pairs) {
        // A key is a fixstr of two bytes; a value at least one byte.
        if (end - p < 4 || p[0] != 0xa2) return false;
        const std::size_t index = find_key(reinterpret_cast<const char*>(p + 1), 2);
        p += 3;
        if (index == key_count) return false;
        const std::uint32_t bit = std::uint32_t{1} << index;
        if (seen & bit) return false;
        seen |= bit;
        std::uint64_t v = 0;
        switch (index) {
        case k_id:
            if (!read_common_id(p, end, h.id)) return false;
            break;
        case k_correlation:
            if (!read_common_id(p, end, h.correlation_id.emplace())) return false;
            break;
        case k_source:
            if (!read_common_id(p, end, h.source.emplace())) return false;
            break;
        case k_type: {
            std::size_t n = 0;
            if ((*p & 0xe0U) == 0xa0U) {
                n = *p++ & 0x1fU;
            } else if (*p == 0xd9 && end - p >= 2) {
                n = p[1];
                p += 2;
            } else {
                return false;
            }
            if (static_cast<std::size_t>(end - p) < n) return false;
            h.type.assign(reinterpret_cast<const char*>(p), n);
            p += n;
            break;
        }
        case k_priority:
            if (!read_common_uint(p, end, v) || v > max_priority) return false;
            h.priority = static_cast<std::uint8_t>(v);
            break;
        case k_timestamp:
            if (!read_common_uint(p, end, v) ||
                v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
                return false;
            h.timestamp_ns = static_cast<std::int64_t>(v);
            break;
        case k_ttl:
            if (!read_common_uint(p, end, v) || v > std::numeric_limits<std::uint32_t>::max())
                return false;
            h.ttl_ms = static_cast<std::uint32_t>(v);
            break;
        case k_attempt:
            if (!read_common_uint(p, end, v) || v > std::numeric_limits<std::uint32_t>::max())
                return false;
            h.attempt = static_cast<std::uint32_t>(v);
            break;
        case k_sequence:
            if (!read_common_uint(p, end, v)) return false;
            h.sequence = v;
            break;
        default:
            return false;
        }
    }
    return p == end && (seen & (std::uint32_t{1} << k_id)) != 0;
}

// The decoding proper. May throw std::bad_alloc only (from the type and extension strings);
// both public overloads map it.
defect decode_into(const char* data, std::size_t size, header& h) {
    if (size > max_header_size)
        return {errc::oversized, "the buffer is larger than the limit"};
    if (size == 0)
        return {errc::truncated, "the buffer is empty"};
    if (decode_common(data, size, h))
        return {};
    h = header{};

    msgpack_reader in(data, size);
    token root;
    if (!in.next(root, 1))
        return in.failure();
    if (root.type != kind::map) {
        // Still read to the end: a defect in the msgpack itself is reported first, as before.
        if (!in.skip_contents(root, 1))
            return in.failure();
        if (!in.at_end())
            return trailing_bytes;
        return {errc::malformed, "a header is a msgpack map"};
    }

    defect held; // the first defect of meaning, reported once the msgpack has proved sound
    std::uint32_t seen = 0; // bit i: known key i was read
    for (std::uint64_t i = 0; i < root.u; ++i) {
        token key;
        token value;
        if (!in.next(key, 2))
            return in.failure();
        if (key.type != kind::str) {
            // Keys of other types belong to no zmesh version; they are skipped, not kept.
            if (!in.skip_contents(key, 2) || !in.next(value, 2) || !in.skip_contents(value, 2))
                return in.failure();
            continue;
        }
        const std::size_t index = find_key(key.data, key.size);
        const char* const value_begin = in.position();
        // Arrays and maps are never a known key's value, but their contents must still be read
        // (and counted) before the value's type is judged.
        if (!in.next(value, 2) || !in.skip_contents(value, 2))
            return in.failure();
        if (held)
            continue; // the header is lost; only the msgpack's soundness still matters
        if (index == key_count) {
            // The value's bytes as received: one msgpack value, checked above, that a relay
            // writes back unchanged.
            h.extensions.emplace_back(
                std::string(key.data, key.size),
                std::string(value_begin, static_cast<std::size_t>(in.position() - value_begin)));
            continue;
        }
        const std::uint32_t bit = std::uint32_t{1} << index;
        // Two values for one key would let different decoders see different messages.
        if (seen & bit) {
            held = {errc::malformed, "a known key appears twice"};
            continue;
        }
        seen |= bit;
        if (!read_field(index, value, h))
            held = {errc::malformed, bad_value[index]};
    }
    if (!in.at_end())
        return trailing_bytes;
    if (held)
        return held;
    if ((seen & (std::uint32_t{1} << k_id)) == 0)
        return {errc::malformed, "the \"id\" key is missing"};
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

namespace {

// Refuses, before a byte is written, what decoding would refuse of a single header.
void check_encodable(const header& h) {
    if (h.priority > max_priority)
        throw_encode(errc::invalid_argument, "priority is above 9");
    // Checked before writing so a huge string is never copied, and so sizes fit uint32.
    if (h.type.size() > max_header_size)
        throw_encode(errc::oversized, "type is longer than 64 KiB");
    if (h.extensions.size() > max_entries - key_count)
        throw_encode(errc::oversized, "too many extensions");
    for (const auto& [name, value] : h.extensions) {
        if (find_key(name.data(), name.size()) != key_count)
            throw_encode(errc::invalid_argument, "an extension uses a zmesh key");
        if (name.size() > max_header_size || value.size() > max_header_size)
            throw_encode(errc::oversized, "an extension is larger than 64 KiB");
        // The decoder's own reader: the same rules, and no msgpack zone to allocate.
        if (check_one_value(value.data(), value.size()))
            throw_encode(errc::invalid_argument,
                         "an extension value is not one msgpack value within the header limits");
    }
}

// A header without extensions and with a type of at most this many bytes is written on the
// stack by encode(const header&): every publication's and request's header.
constexpr std::size_t stack_type_size = 64;
constexpr std::size_t stack_buffer_size = 192;

} // namespace

void encode(const header& h, std::string& out) {
    out.clear();
    check_encodable(h);
    out.resize(encoded_bound(h));
    out.resize(static_cast<std::size_t>(write_header(h, out.data()) - out.data()));

    if (out.size() > max_header_size) {
        out.clear();
        throw_encode(errc::oversized, "the encoding exceeds 64 KiB");
    }
    if (!h.extensions.empty()) {
        // Each value was checked alone; together they could still break the whole-map limits.
        if (check_one_value(out.data(), out.size())) {
            out.clear();
            throw_encode(errc::oversized, "the extensions together exceed the header limits");
        }
    }
}

zmq::message_t encode(const header& h) {
    if (h.extensions.empty() && h.type.size() <= stack_type_size) {
        // The common header: written on the stack and copied once, into the frame (libzmq
        // keeps up to 33 bytes inside the message, and allocates above that).
        static_assert(stack_buffer_size >= 3 + 9 * 3 + 3 * 18 + 5 + stack_type_size + 1 + 9 + 5 +
                                               5 + 9);
        check_encodable(h);
        std::array<char, stack_buffer_size> buffer;
        const char* end = write_header(h, buffer.data());
        return zmq::message_t(buffer.data(), static_cast<std::size_t>(end - buffer.data()));
    }
    // A long type or extensions: through a reused per-thread string, with the whole-map checks.
    thread_local std::string scratch;
    encode(h, scratch);
    return zmq::message_t(scratch.data(), scratch.size());
}

header decode_header(const void* data, std::size_t size) {
    header h;
    defect d;
    try {
        d = decode_into(static_cast<const char*>(data), size, h);
    } catch (const std::bad_alloc&) {
        throw error(std::make_error_code(std::errc::not_enough_memory),
                    "zmesh::decode_header: out of memory");
    }
    if (d)
        throw error(d.code, std::string("zmesh::decode_header: ") + d.why);
    return h;
}

std::optional<header> decode_header(const void* data, std::size_t size, std::error_code& ec,
                                    std::string* why) noexcept {
    // Decoded into a default-initialised header and then moved: std::optional's in-place
    // constructor value-initialises, which zeroes the whole struct first and costs more than
    // the move.
    header h;
    defect d;
    try {
        d = decode_into(static_cast<const char*>(data), size, h);
        if (!d) {
            ec.clear();
            return h;
        }
        ec = make_error_code(d.code);
    } catch (const std::bad_alloc&) {
        ec = std::make_error_code(std::errc::not_enough_memory);
        d.why = "out of memory";
    }
    if (why) {
        try {
            *why = d.why;
        } catch (const std::bad_alloc&) {
            // The code alone still says what happened.
        }
    }
    return std::nullopt;
}

} // namespace zmesh
