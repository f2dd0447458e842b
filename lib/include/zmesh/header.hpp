// SPDX-License-Identifier: MPL-2.0
// header.hpp — zmesh message metadata (id, type, priority, time, ttl, correlation, retries,
// sequence, source) and its msgpack wire form.
//
// A header travels as its own frame beside the payload, so brokers and relays can route, expire,
// deduplicate and retry a message without decoding the payload. On the wire it is one msgpack map
// with short string keys:
//
//   "id" bin 16   message id (always present)          "co" bin 16  correlation id
//   "ty" str      type                                 "at" uint    attempt
//   "pr" uint     priority 0–9                         "sq" uint    sequence
//   "ts" int      creation time, ns since the epoch    "tl" uint    ttl in ms
//   "sr" bin 16   source (the publisher's id)
//
// Only "id" is required. Every other field is written only when it differs from its default, and
// a missing key decodes to its default; a typical header (id, type, time) is about 50 bytes. The
// format grows only by adding keys: a decoder ignores string keys it does not know, whatever their
// value (scalar, array or map), and keeps them in header::extensions so that a relay which decodes
// and re-encodes a header (to bump the attempt, say) forwards fields added by newer peers. A key's
// meaning never changes; an incompatible change would need a new protocol version elsewhere.
//
// Input is untrusted: decoding enforces max_header_size and small msgpack limits (256 entries
// per map or array, 4096 values, nesting depth 8), and reports every defect as an error code,
// never a crash.
#pragma once

#include <zmesh/export.hpp>

#include <zmq.hpp>

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace zmesh {

/// A 128-bit message identifier, unique without coordination between processes or hosts.
///
/// Generated ids follow the UUIDv7 layout of RFC 9562: the first 48 bits are the Unix time in
/// milliseconds (big-endian), then the version nibble 7, 12 random bits, the variant bits 10 and
/// 62 random bits. Ids therefore sort roughly by creation time, and two ids made in the same
/// millisecond collide with probability 2^-74. The random bits come from a per-thread
/// std::mt19937_64 seeded from std::random_device, the thread id and the clock, and reseeded in
/// a child after fork(); they are unpredictable enough for uniqueness but are not secret, so an
/// id must never serve as a capability or token.
///
/// A value type: copyable, comparable (byte-wise, so generated ids order by time), hashable with
/// std::hash. A default-constructed id is the nil id (all zero).
///
/// @par Example
/// @code
/// auto id = zmesh::message_id::generate();
/// std::string text = id.to_hex();                     // 32 lowercase hex digits
/// assert(zmesh::message_id::from_hex(text) == id);
/// @endcode
class ZMESH_EXPORT message_id {
  public:
    /// Size of an id in bytes.
    static constexpr std::size_t size = 16;
    using bytes_type = std::array<std::uint8_t, size>;

    /// The nil id (all zero bytes).
    constexpr message_id() noexcept = default;
    /// An id with these exact bytes.
    constexpr explicit message_id(const bytes_type& bytes) noexcept : bytes_(bytes) {}

    /// A new UUIDv7-style id. Thread-safe; needs no lock (the generator state is thread-local).
    [[nodiscard]] static message_id generate() noexcept;

    /// Parses 32 hex digits (either case, no separators).
    /// @returns the id, or std::nullopt if @p text is not exactly 32 hex digits.
    [[nodiscard]] static std::optional<message_id> from_hex(std::string_view text) noexcept;

    /// The id as 32 lowercase hex digits.
    [[nodiscard]] std::string to_hex() const;

    /// The raw bytes, in wire order.
    [[nodiscard]] constexpr const bytes_type& bytes() const noexcept { return bytes_; }

    /// The millisecond timestamp in the first 48 bits; meaningful only for generated ids.
    [[nodiscard]] std::int64_t timestamp_ms() const noexcept;

    /// True for the all-zero id.
    [[nodiscard]] bool is_nil() const noexcept { return *this == message_id{}; }

    friend bool operator==(const message_id&, const message_id&) = default;
    friend auto operator<=>(const message_id&, const message_id&) = default;

  private:
    bytes_type bytes_{};
};

/// Lowest and highest priority; higher means more urgent (as in AMQP and JMS).
inline constexpr std::uint8_t min_priority = 0;
inline constexpr std::uint8_t max_priority = 9;
/// The priority of a header that does not say (JMS's default, the middle of the range).
inline constexpr std::uint8_t default_priority = 4;

/// Largest encoded header accepted by decode_header() and produced by encode().
inline constexpr std::size_t max_header_size = 64 * 1024;

/// Metadata carried beside a payload. A plain aggregate; every field has a usable default.
struct header {
    message_id id;                            ///< unique per message; make_header() generates it
    std::string type;                         ///< application-defined kind, e.g. "order.created"
    std::uint8_t priority = default_priority; ///< 0 (lowest) … 9 (highest)
    std::int64_t timestamp_ns = 0; ///< creation time, ns since the Unix epoch; 0 = unknown
    /// Lifetime counted from timestamp_ns; 0 = forever. In a request of zmesh's request/reply
    /// protocols (ZMCT02/03, ZMWC02) it is relative instead: the time left when the message was
    /// sent, as gRPC's grpc-timeout, so that hosts need no synchronised clocks (docs/protocol.md).
    std::uint32_t ttl_ms = 0;
    std::optional<message_id> correlation_id; ///< in a reply: the id of the request it answers
    std::uint32_t attempt = 0;                ///< delivery attempt: 0 first, +1 on each retry
    std::uint64_t sequence = 0;               ///< per-publisher, per-topic counter (gap detection)
    std::optional<message_id> source;         ///< pub/sub: the publishing instance (with sequence)
    /// Keys this version does not know, in wire order: the key and the msgpack bytes of its value
    /// exactly as received (one msgpack object). Filled by decoding and written back by encoding, so that relays forward
    /// fields added by newer peers. Leave empty unless you are such a relay or a newer peer.
    std::vector<std::pair<std::string, std::string>> extensions;

    friend bool operator==(const header&, const header&) = default;
};

/// A header for a new message: a fresh id, @p type, and the current time.
[[nodiscard]] ZMESH_EXPORT header make_header(std::string type);

/// Encodes @p h into @p out, replacing its contents (its capacity is reused, so a caller that
/// keeps one string per thread allocates nothing on the hot path).
/// @throws zmesh::error errc::invalid_argument if the priority is above 9, an extension uses a
///         key zmesh knows, or an extension value is not exactly one msgpack object within the
///         decoding limits; errc::oversized if the encoding would exceed max_header_size.
///         std::bad_alloc if memory runs out. @p out is then empty.
ZMESH_EXPORT void encode(const header& h, std::string& out);

/// Encodes @p h as a frame ready to send. Thread-safe (it packs into a per-thread buffer).
/// @throws as encode(const header&, std::string&).
[[nodiscard]] ZMESH_EXPORT zmq::message_t encode(const header& h);

/// Decodes a header from untrusted bytes. Unknown string keys go to header::extensions; unknown
/// keys of other types are skipped.
/// @throws zmesh::error, and nothing else: errc::truncated if the buffer ends early,
///         errc::oversized if it exceeds max_header_size or a msgpack limit, errc::malformed if
///         it is not a single msgpack map with "id" and well-typed known keys (priority 0–9,
///         ids 16-byte bin, no duplicate known key, no trailing bytes). On memory exhaustion the
///         code is std::errc::not_enough_memory. what() says which rule was broken.
[[nodiscard]] ZMESH_EXPORT header decode_header(const void* data, std::size_t size);

/// Decodes a header from untrusted bytes without throwing.
/// @param why if not null, receives a description of the defect on failure (for logs).
/// @returns the header, or std::nullopt with @p ec set as the throwing overload's code.
[[nodiscard]] ZMESH_EXPORT std::optional<header> decode_header(const void* data, std::size_t size,
                                                               std::error_code& ec,
                                                               std::string* why = nullptr) noexcept;

/// Decodes a header frame.
/// @throws as decode_header(const void*, std::size_t).
[[nodiscard]] inline header decode_header(const zmq::message_t& frame) {
    return decode_header(frame.data(), frame.size());
}

/// Decodes a header frame without throwing.
/// @returns the header, or std::nullopt with @p ec set.
[[nodiscard]] inline std::optional<header> decode_header(const zmq::message_t& frame,
                                                         std::error_code& ec,
                                                         std::string* why = nullptr) noexcept {
    return decode_header(frame.data(), frame.size(), ec, why);
}

} // namespace zmesh

/// Hashes a message_id. Both halves are folded in, since generated ids share their leading
/// timestamp bits within a millisecond and carry their randomness in the tail.
template <> struct std::hash<zmesh::message_id> {
    std::size_t operator()(const zmesh::message_id& id) const noexcept {
        std::uint64_t hi = 0;
        std::uint64_t lo = 0;
        std::memcpy(&hi, id.bytes().data(), sizeof hi);
        std::memcpy(&lo, id.bytes().data() + sizeof hi, sizeof lo);
        // splitmix64's finaliser over lo, then hi folded in: a cheap, well-mixed 64-bit hash.
        std::uint64_t x = lo ^ (hi * 0x9e3779b97f4a7c15ULL);
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        return static_cast<std::size_t>(x ^ (x >> 31));
    }
};
