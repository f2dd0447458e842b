// SPDX-License-Identifier: MPL-2.0
// fuzz_codec.cpp — libFuzzer target: zmesh::unpack_object and zmesh::unpack<T> on arbitrary
// bytes (one frame, the whole input), under the default limits and under tight ones.
//
// Checks what codec.hpp promises: the overloads agree, refusals carry documented codes, a value
// within tight limits is within the default ones, and a value that decodes re-packs into bytes
// that decode again, to the same packing. Converting to common types never throws for standard
// types (the non-throwing unpack<T> must really not throw).
#include "fuzz_input.hpp"

#include <zmesh/codec.hpp>
#include <zmesh/error.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <system_error>
#include <tuple>
#include <vector>

namespace {

const zmesh::unpack_limits tight{.max_size = 4096,
                                 .max_objects = 64,
                                 .max_array = 16,
                                 .max_map = 16,
                                 .max_str = 64,
                                 .max_bin = 64,
                                 .max_ext = 64,
                                 .max_depth = 4};

bool documented(const std::error_code& ec) {
    return ec == zmesh::errc::truncated || ec == zmesh::errc::oversized ||
           ec == zmesh::errc::malformed || ec == std::errc::not_enough_memory;
}

struct record {
    std::string name;
    std::int64_t count = 0;
    std::vector<double> values;
    MSGPACK_DEFINE(name, count, values)
};

template <class T> void convert(const zmq::message_t& frame, const zmesh::unpack_limits& limits) {
    std::error_code ec;
    std::string why;
    const std::optional<T> value = zmesh::unpack<T>(frame, limits, ec, &why);
    ZMESH_FUZZ_CHECK(value.has_value() == !ec);
    ZMESH_FUZZ_CHECK(value || documented(ec));
    try {
        static_cast<void>(zmesh::unpack<T>(frame, limits));
        ZMESH_FUZZ_CHECK(value.has_value());
    } catch (const zmesh::error& e) {
        ZMESH_FUZZ_CHECK(!value && e.code() == ec);
    }
}

std::string repack(const msgpack::object& o) {
    msgpack::sbuffer out;
    msgpack::pack(out, o);
    return {out.data(), out.size()};
}

/// Decodes under @p limits; @returns whether the input was accepted.
bool check(const std::uint8_t* data, std::size_t size, const zmesh::unpack_limits& limits) {
    std::error_code ec;
    std::string why;
    const msgpack::object_handle handle = zmesh::unpack_object(data, size, limits, ec, &why);
    try {
        const msgpack::object_handle thrown = zmesh::unpack_object(data, size, limits);
        ZMESH_FUZZ_CHECK(!ec);
    } catch (const zmesh::error& e) {
        ZMESH_FUZZ_CHECK(ec && e.code() == ec);
    }
    if (ec) {
        ZMESH_FUZZ_CHECK(documented(ec));
        ZMESH_FUZZ_CHECK(!why.empty());
        return false;
    }

    // Re-packed, the value decodes again under the same limits, and packing it again changes
    // nothing. (msgpack-c packs an integral float as an integer, so a float32 may grow from 5 to
    // 9 bytes: only the size limit may be passed, and then the check is moot.)
    const std::string packed = repack(handle.get());
    if (packed.size() > limits.max_size) return true;
    std::error_code again_ec;
    const msgpack::object_handle again =
        zmesh::unpack_object(packed.data(), packed.size(), limits, again_ec);
    ZMESH_FUZZ_CHECK(!again_ec);
    ZMESH_FUZZ_CHECK(repack(again.get()) == packed);

    const zmq::message_t frame(data, size);
    convert<std::string>(frame, limits);
    convert<bool>(frame, limits);
    convert<std::int32_t>(frame, limits);
    convert<std::uint64_t>(frame, limits);
    convert<double>(frame, limits);
    convert<std::vector<std::int64_t>>(frame, limits);
    convert<std::vector<std::string>>(frame, limits);
    convert<std::map<std::string, std::string>>(frame, limits);
    convert<std::tuple<std::int64_t, std::string>>(frame, limits);
    convert<std::optional<std::string>>(frame, limits);
    convert<record>(frame, limits);
    return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const bool tight_ok = check(data, size, tight);
    const bool default_ok = check(data, size, zmesh::unpack_limits{});
    // Looser limits accept everything tighter ones do.
    ZMESH_FUZZ_CHECK(!tight_ok || default_ok);
    return 0;
}
