// SPDX-License-Identifier: MPL-2.0
// codec.cpp — frames from packed buffers, and bounded msgpack parsing of untrusted bytes.
//
// unpack_object() parses twice. A counting pass checks structure and limits with no allocation;
// only a buffer that passes is handed to msgpack::unpack, whose unpack_limit repeats the checks as
// a second line of defence. Without the first pass, msgpack would allocate an array's slots as
// soon as it reads the array's length, before knowing whether the elements exist.
#include <zmesh/codec.hpp>

#include <cstdint>
#include <cstdlib>
#include <new>

namespace zmesh {
namespace {

// Frames up to this size are copied: the copy is cheaper than libzmq's extra content_t
// allocation for a handed-over buffer, and up to 33 bytes libzmq stores the bytes inline.
constexpr std::size_t copy_threshold = 1024;

void free_sbuffer_block(void* data, void* /*hint*/) noexcept { std::free(data); }

// Referencing str/bin/ext bytes in place saves a copy of every string; unpack_object documents
// that the object points into the caller's buffer.
bool reference_in_place(msgpack::type::object_type, std::size_t, void*) noexcept { return true; }

// A defect found while parsing: its code and a static description. why == nullptr is success.
struct failure {
    std::error_code code;
    const char* why = nullptr;
};

failure fail_with(errc code, const char* why) noexcept { return {make_error_code(code), why}; }

failure out_of_memory() noexcept {
    return {std::make_error_code(std::errc::not_enough_memory), "out of memory"};
}

// The allocation-free first pass. msgpack::parse calls these members directly (the visitor is a
// template parameter), so they hide null_visitor's.
class limit_checker : public msgpack::null_visitor {
  public:
    explicit limit_checker(const unpack_limits& limits) noexcept : limits_(limits) {}

    bool visit_nil() { return count(); }
    bool visit_boolean(bool) { return count(); }
    bool visit_positive_integer(std::uint64_t) { return count(); }
    bool visit_negative_integer(std::int64_t) { return count(); }
    bool visit_float32(float) { return count(); }
    bool visit_float64(double) { return count(); }
    bool visit_str(const char*, std::uint32_t n) {
        return count() && within(n, limits_.max_str, "a str is longer than the limit");
    }
    bool visit_bin(const char*, std::uint32_t n) {
        return count() && within(n, limits_.max_bin, "a bin is longer than the limit");
    }
    bool visit_ext(const char*, std::uint32_t n) {
        return count() && within(n, limits_.max_ext, "an ext is longer than the limit");
    }
    bool start_array(std::uint32_t n) {
        return count() &&
               within(n, limits_.max_array, "an array has more elements than the limit") &&
               descend();
    }
    bool end_array() {
        --depth_;
        return true;
    }
    bool start_map(std::uint32_t n) {
        return count() && within(n, limits_.max_map, "a map has more pairs than the limit") &&
               descend();
    }
    bool end_map() {
        --depth_;
        return true;
    }
    void parse_error(std::size_t, std::size_t) {
        fail(errc::malformed, "not msgpack (a reserved type byte)");
    }
    void insufficient_bytes(std::size_t, std::size_t) {
        fail(errc::truncated, "the buffer ends inside a msgpack value");
    }

    [[nodiscard]] const failure& result() const noexcept { return failure_; }

  private:
    bool fail(errc code, const char* why) {
        if (failure_.why == nullptr)
            failure_ = fail_with(code, why);
        return false;
    }
    bool count() {
        return ++objects_ <= limits_.max_objects ||
               fail(errc::oversized, "more msgpack values than the limit");
    }
    bool within(std::uint32_t n, std::size_t limit, const char* why) {
        return n <= limit || fail(errc::oversized, why);
    }
    bool descend() {
        return ++depth_ <= limits_.max_depth ||
               fail(errc::oversized, "arrays or maps nested deeper than the limit");
    }

    const unpack_limits& limits_;
    std::size_t objects_ = 0;
    std::size_t depth_ = 0;
    failure failure_;
};

failure parse_checked(const char* data, std::size_t size, const unpack_limits& limits,
                      msgpack::object_handle& out) noexcept {
    if (size > limits.max_size)
        return fail_with(errc::oversized, "the buffer is larger than the limit");
    if (size == 0)
        return fail_with(errc::truncated, "the buffer is empty");

    limit_checker checker(limits);
    std::size_t end = 0;
    try {
        const bool complete = msgpack::parse(data, size, end, checker);
        if (!complete) {
            const failure& f = checker.result();
            return f.why ? f : fail_with(errc::malformed, "the msgpack parser stopped");
        }
    } catch (const std::bad_alloc&) {
        // The parser's own stack is bounded by max_depth, so this is real memory exhaustion.
        return out_of_memory();
    }
    if (end != size)
        return fail_with(errc::malformed, "trailing bytes after the msgpack value");

    const msgpack::unpack_limit unpack_limit(limits.max_array, limits.max_map, limits.max_str,
                                             limits.max_bin, limits.max_ext, limits.max_depth);
    try {
        std::size_t offset = 0;
        out = msgpack::unpack(data, size, offset, &reference_in_place, nullptr, unpack_limit);
    } catch (const msgpack::size_overflow&) {
        return fail_with(errc::oversized, "a msgpack limit was exceeded");
    } catch (const msgpack::insufficient_bytes&) {
        return fail_with(errc::truncated, "the buffer ends inside a msgpack value");
    } catch (const msgpack::unpack_error&) {
        return fail_with(errc::malformed, "not msgpack");
    } catch (const std::bad_alloc&) {
        return out_of_memory();
    }
    // msgpack returns an empty handle (no zone) for outcomes it does not throw for.
    if (!out.zone())
        return fail_with(errc::malformed, "not msgpack");
    return {};
}

} // namespace

zmq::message_t to_frame(msgpack::sbuffer&& buffer) {
    if (buffer.size() <= copy_threshold)
        return zmq::message_t(buffer.data(), buffer.size());
    // The frame takes the block only once it exists: if libzmq throws, the sbuffer still owns it.
    zmq::message_t frame(buffer.data(), buffer.size(), &free_sbuffer_block);
    static_cast<void>(buffer.release());
    return frame;
}

msgpack::object_handle unpack_object(const void* data, std::size_t size,
                                     const unpack_limits& limits, std::error_code& ec,
                                     std::string* why) noexcept {
    msgpack::object_handle handle;
    const failure f = parse_checked(static_cast<const char*>(data), size, limits, handle);
    if (f.why == nullptr) {
        ec.clear();
        return handle;
    }
    ec = f.code;
    if (why) {
        try {
            *why = f.why;
        } catch (const std::bad_alloc&) {
            // The code alone still says what happened.
        }
    }
    return msgpack::object_handle();
}

msgpack::object_handle unpack_object(const void* data, std::size_t size,
                                     const unpack_limits& limits) {
    msgpack::object_handle handle;
    const failure f = parse_checked(static_cast<const char*>(data), size, limits, handle);
    if (f.why != nullptr)
        throw error(f.code, std::string("zmesh::unpack_object: ") + f.why);
    return handle;
}

} // namespace zmesh
