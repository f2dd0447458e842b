// SPDX-License-Identifier: MPL-2.0
// fuzz_endpoint.cpp — libFuzzer target: zmesh::parse_endpoint on arbitrary bytes (the whole
// input is the endpoint string, as a flag, a config file or a directory request would give it).
//
// Checks endpoint.hpp's promises: both overloads agree; a refusal is errc::invalid_endpoint
// with a reason that is safe to print (it reaches logs and, through the broker's directory, remote
// peers); an accepted endpoint is split as documented; and libzmq is handed exactly the endpoint
// that was checked — an inproc endpoint binds under its own name.
#include "fuzz_input.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>

#include <zmq.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

bool printable(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u >= 0x20 && u < 0x7f;
    });
}

bool digits(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

void check_accepted(std::string_view endpoint, const zmesh::endpoint_parts& parts) {
    const auto sep = endpoint.find("://");
    ZMESH_FUZZ_CHECK(sep != std::string_view::npos);
    const std::string_view scheme = endpoint.substr(0, sep);
    ZMESH_FUZZ_CHECK(parts.address == endpoint.substr(sep + 3));
    ZMESH_FUZZ_CHECK(!parts.address.empty());
    // libzmq takes endpoints as C strings: a NUL would silently cut what it sees.
    ZMESH_FUZZ_CHECK(endpoint.find('\0') == std::string_view::npos);
    switch (parts.kind) {
    case zmesh::transport::tcp:
        ZMESH_FUZZ_CHECK(scheme == "tcp");
        ZMESH_FUZZ_CHECK(!parts.host.empty());
        ZMESH_FUZZ_CHECK(parts.port == "*" ||
                         (digits(parts.port) && parts.port.size() <= 5 &&
                          std::stoul(parts.port) <= 65535));
        break;
    case zmesh::transport::ipc:
        ZMESH_FUZZ_CHECK(scheme == "ipc");
        break;
    case zmesh::transport::inproc: {
        ZMESH_FUZZ_CHECK(scheme == "inproc");
        // Binding an inproc name is cheap and local, and shows what libzmq made of the string.
        // A context per input: libzmq frees an inproc name only once its reaper thread has
        // closed the socket, so the same name could still be taken in a shared context.
        zmq::context_t ctx(0);
        zmq::socket_t s(ctx, zmq::socket_type::pair);
        s.set(zmq::sockopt::linger, 0);
        const std::string bound = zmesh::bind(s, endpoint);
        ZMESH_FUZZ_CHECK(bound == endpoint);
        break;
    }
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view endpoint(reinterpret_cast<const char*>(data), size);
    std::error_code ec;
    std::string why;
    const auto parts = zmesh::parse_endpoint(endpoint, ec, &why);

    try {
        const zmesh::endpoint_parts thrown = zmesh::parse_endpoint(endpoint);
        ZMESH_FUZZ_CHECK(parts.has_value());
    } catch (const zmesh::error& e) {
        ZMESH_FUZZ_CHECK(!parts && e.code() == ec);
        ZMESH_FUZZ_CHECK(printable(e.what()));
    }

    if (!parts) {
        ZMESH_FUZZ_CHECK(ec == zmesh::errc::invalid_endpoint);
        ZMESH_FUZZ_CHECK(!why.empty());
        ZMESH_FUZZ_CHECK(printable(why));
        return 0;
    }
    ZMESH_FUZZ_CHECK(!ec);
    check_accepted(endpoint, *parts);
    return 0;
}
