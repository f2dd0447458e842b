// SPDX-License-Identifier: MPL-2.0
// codec.hpp — typed payloads through msgpack: pack a value into a frame, unpack a frame into a
// value, with limits that make untrusted frames safe to decode.
//
// Any type msgpack-cxx can convert works: standard types, and user types that declare their
// fields with MSGPACK_DEFINE (encoded as an array, so peers must agree on the field order).
//
// Decoding is in two passes over the frame. The first only parses, allocating nothing, and checks
// the frame is exactly one complete msgpack value within the unpack_limits. The second builds the
// msgpack object tree. Because the first pass has proved every announced element is really there,
// the tree costs at most about 24 bytes per object actually present, and never what a hostile
// length field claims; max_objects then bounds the tree as a whole.
#pragma once

#include <zmesh/error.hpp>
#include <zmesh/export.hpp>

#include <msgpack.hpp>
#include <zmq.hpp>

#include <cstddef>
#include <new>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

namespace zmesh {

/// Bounds on what decoding an untrusted msgpack buffer may accept. Exceeding any of them is
/// errc::oversized. The defaults suit payloads; decode_header() uses much smaller ones.
struct unpack_limits {
    std::size_t max_size = 64 * 1024 * 1024; ///< bytes in the whole buffer
    std::size_t max_objects = 1024 * 1024;   ///< values in total (each scalar, array and map)
    std::size_t max_array = 1024 * 1024;     ///< elements in one array
    std::size_t max_map = 512 * 1024;        ///< key/value pairs in one map
    std::size_t max_str = 64 * 1024 * 1024;  ///< bytes in one str
    std::size_t max_bin = 64 * 1024 * 1024;  ///< bytes in one bin
    std::size_t max_ext = 64 * 1024 * 1024;  ///< bytes in one ext (type byte included)
    std::size_t max_depth = 32;              ///< nesting of arrays and maps (top level is 1)
};

/// Moves packed bytes into a frame. Small buffers (up to 1 KiB) are copied, so the frame holds no
/// slack and the sbuffer's block is freed at once; larger ones are handed to libzmq without a copy
/// (the frame then frees the sbuffer's block, which may be up to twice the data size).
/// @throws std::bad_alloc, or zmq::error_t if libzmq cannot allocate the frame.
[[nodiscard]] ZMESH_EXPORT zmq::message_t to_frame(msgpack::sbuffer&& buffer);

/// Parses one msgpack value from untrusted bytes, within @p limits.
///
/// The object refers into @p data for str, bin and ext contents (no copy): keep those bytes alive
/// and unchanged while the object is in use.
/// @param why if not null, receives a description of the defect on failure (for logs).
/// @returns the object, or an empty handle with @p ec set: errc::truncated if the buffer ends
///          inside the value, errc::oversized if a limit is exceeded, errc::malformed if the bytes
///          are not msgpack or are followed by trailing bytes; std::errc::not_enough_memory if
///          memory runs out.
[[nodiscard]] ZMESH_EXPORT msgpack::object_handle
unpack_object(const void* data, std::size_t size, const unpack_limits& limits, std::error_code& ec,
              std::string* why = nullptr) noexcept;

/// Parses one msgpack value from untrusted bytes, within @p limits.
/// @throws zmesh::error with the codes of the non-throwing overload; what() names the defect.
[[nodiscard]] ZMESH_EXPORT msgpack::object_handle unpack_object(const void* data, std::size_t size,
                                                                const unpack_limits& limits = {});

/// Encodes @p value as one msgpack frame.
/// @throws std::bad_alloc; msgpack's exceptions if @p value cannot be packed (a str over 4 GiB).
///
/// @par Example
/// @code
/// struct order {
///     std::string sku;
///     std::int64_t quantity;
///     MSGPACK_DEFINE(sku, quantity)
/// };
/// zmq::message_t frame = zmesh::pack(order{"A-17", 3});
/// order back = zmesh::unpack<order>(frame);
/// @endcode
template <class T> [[nodiscard]] zmq::message_t pack(const T& value) {
    // Sized for a typical small payload; sbuffer doubles as needed.
    msgpack::sbuffer buffer(256);
    msgpack::pack(buffer, value);
    return to_frame(std::move(buffer));
}

/// Decodes a frame holding one msgpack value as a T, within @p limits. The result owns its data
/// when T does (std::string, std::vector…); a T holding views (msgpack::type::raw_ref,
/// std::string_view) would point into @p frame.
///
/// MSGPACK_DEFINE converts arrays leniently by design (extra elements are ignored, missing ones
/// leave their fields untouched), so a mismatch is caught only where an element's type differs.
/// @throws zmesh::error errc::truncated, errc::oversized or errc::malformed as unpack_object(),
///         and errc::malformed if the value is not convertible to T (wrong type, integer out of
///         range). Exceptions other than msgpack::type_error that T's own adaptor throws pass
///         through.
template <class T>
[[nodiscard]] T unpack(const zmq::message_t& frame, const unpack_limits& limits = {}) {
    msgpack::object_handle handle = unpack_object(frame.data(), frame.size(), limits);
    try {
        return handle.get().as<T>();
    } catch (const msgpack::type_error&) {
        throw error(errc::malformed, "zmesh::unpack: the frame's msgpack value does not convert to "
                                     "the requested type");
    } catch (const std::bad_alloc&) {
        throw error(std::make_error_code(std::errc::not_enough_memory),
                    "zmesh::unpack: out of memory converting the value");
    }
}

/// Decodes a frame holding one msgpack value as a T, within @p limits, reporting defects as codes.
/// @returns the value, or std::nullopt with @p ec set as the throwing overload's code.
/// @throws only what T's own adaptor throws beyond msgpack::type_error (standard types throw
///         nothing else).
template <class T>
[[nodiscard]] std::optional<T> unpack(const zmq::message_t& frame, const unpack_limits& limits,
                                      std::error_code& ec, std::string* why = nullptr) {
    msgpack::object_handle handle = unpack_object(frame.data(), frame.size(), limits, ec, why);
    if (ec)
        return std::nullopt;
    try {
        return handle.get().as<T>();
    } catch (const msgpack::type_error&) {
        ec = make_error_code(errc::malformed);
        if (why)
            *why = "the msgpack value does not convert to the requested type";
    } catch (const std::bad_alloc&) {
        ec = std::make_error_code(std::errc::not_enough_memory);
    }
    return std::nullopt;
}

/// As unpack(frame, limits, ec, why) with the default limits.
template <class T>
[[nodiscard]] std::optional<T> unpack(const zmq::message_t& frame, std::error_code& ec,
                                      std::string* why = nullptr) {
    return unpack<T>(frame, unpack_limits{}, ec, why);
}

} // namespace zmesh
