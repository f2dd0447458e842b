// SPDX-License-Identifier: MPL-2.0
// fuzz_header.cpp — libFuzzer target: zmesh::decode_header on arbitrary bytes (one frame, the
// whole input).
//
// Beyond "no crash, no leak, no UB", it checks what header.hpp promises: both overloads agree,
// a refusal is one of the documented codes with a reason, and a header the decoder accepts is
// one a relay can re-encode and decode back unchanged (the extensions included). It also checks
// the fast path for the common form against the general reader (below).
#include "fuzz_input.hpp"

#include <zmesh/error.hpp>
#include <zmesh/header.hpp>

#include <cstdint>
#include <new>
#include <string>
#include <system_error>

namespace {

bool documented(const std::error_code& ec) {
    return ec == zmesh::errc::truncated || ec == zmesh::errc::oversized ||
           ec == zmesh::errc::malformed || ec == std::errc::not_enough_memory;
}

// Re-encoding writes "ts", "tl", "at" and "sq" at fixed width, so it may exceed the input by
// these few bytes; an input that close to max_header_size may then be refused as oversized.
constexpr std::size_t max_growth = 32;

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::error_code ec;
    std::string why;
    const auto h = zmesh::decode_header(data, size, ec, &why);

    try {
        const zmesh::header thrown = zmesh::decode_header(data, size);
        ZMESH_FUZZ_CHECK(h && thrown == *h);
    } catch (const zmesh::error& e) {
        ZMESH_FUZZ_CHECK(!h && e.code() == ec);
    }

    // The common form (a fixmap of known keys in their smallest forms) is read on a fast path;
    // the same map announced as a map16 always takes the general reader. Both must agree: the
    // same header, or the same error and reason.
    if (size > 0 && (data[0] & 0xf0U) == 0x80U && size + 2 <= zmesh::max_header_size) {
        std::string general;
        general.reserve(size + 2);
        general += '\xde';
        general += '\0';
        general += static_cast<char>(data[0] & 0x0fU);
        general.append(reinterpret_cast<const char*>(data) + 1, size - 1);
        std::error_code general_ec;
        std::string general_why;
        const auto g = zmesh::decode_header(general.data(), general.size(), general_ec, &general_why);
        ZMESH_FUZZ_CHECK(g.has_value() == h.has_value());
        if (g) ZMESH_FUZZ_CHECK(*g == *h);
        else ZMESH_FUZZ_CHECK(general_ec == ec && general_why == why);
    }

    if (!h) {
        ZMESH_FUZZ_CHECK(documented(ec));
        ZMESH_FUZZ_CHECK(!why.empty());
        return 0;
    }
    ZMESH_FUZZ_CHECK(!ec);

    std::string encoded;
    try {
        zmesh::encode(*h, encoded);
    } catch (const zmesh::error& e) {
        ZMESH_FUZZ_CHECK(e.code() == zmesh::errc::oversized);
        ZMESH_FUZZ_CHECK(size + max_growth > zmesh::max_header_size);
        return 0;
    }
    std::error_code again_ec;
    const auto again = zmesh::decode_header(encoded.data(), encoded.size(), again_ec);
    ZMESH_FUZZ_CHECK(again && *again == *h);

    // The encoding is canonical: encoding what it decodes to gives the same bytes.
    std::string twice;
    zmesh::encode(*again, twice);
    ZMESH_FUZZ_CHECK(twice == encoded);
    return 0;
}
