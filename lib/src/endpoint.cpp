// SPDX-License-Identifier: MPL-2.0
// endpoint.cpp — endpoint validation.
//
// Endpoints come from flags, config files and, through the broker's directory, from remote
// peers. So the reasons given for refusing one quote its bytes only in printable form: they end
// up in logs, on terminals and in replies to those peers.
#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>

#include <sys/un.h>

#include <cctype>
#include <cstdio>
#include <string>

namespace zmesh {
namespace {

/// @p bytes for a reason text: printable ASCII as is, any other byte as \xNN, and at most 64
/// bytes of input, so that untrusted text cannot forge log lines or drive a terminal.
std::string quote(std::string_view bytes) {
    constexpr std::size_t max = 64;
    std::string out;
    for (char c : bytes.substr(0, max)) {
        const auto u = static_cast<unsigned char>(c);
        if (u >= 0x20 && u < 0x7f && c != '\\') {
            out += c;
        } else {
            char hex[5];
            std::snprintf(hex, sizeof hex, "\\x%02x", u);
            out += hex;
        }
    }
    if (bytes.size() > max) out += "...";
    return out;
}

bool fail(std::error_code& ec, std::string* why, std::string text) {
    ec = make_error_code(errc::invalid_endpoint);
    if (why) *why = std::move(text);
    return false;
}

bool all_digits(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    return true;
}

bool valid_host_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ||
           c == '*' || c == ':' || c == '%';
}

bool parse_tcp(std::string_view address, endpoint_parts& out, std::error_code& ec,
               std::string* why) {
    // libzmq allows "source;destination" when connecting; validate the destination part.
    if (auto semi = address.find(';'); semi != std::string_view::npos)
        address = address.substr(semi + 1);
    std::string_view host, port;
    if (!address.empty() && address.front() == '[') {
        auto close = address.find(']');
        if (close == std::string_view::npos) return fail(ec, why, "unterminated '[' in IPv6 host");
        host = address.substr(1, close - 1);
        auto rest = address.substr(close + 1);
        if (rest.size() < 2 || rest.front() != ':') return fail(ec, why, "missing :port");
        port = rest.substr(1);
    } else {
        auto colon = address.rfind(':');
        if (colon == std::string_view::npos) return fail(ec, why, "missing :port");
        host = address.substr(0, colon);
        port = address.substr(colon + 1);
    }
    if (host.empty()) return fail(ec, why, "missing host");
    for (char c : host)
        if (!valid_host_char(c))
            return fail(ec, why, "invalid character '" + quote({&c, 1}) + "' in host");
    if (port != "*") {
        if (!all_digits(port) || port.size() > 5)
            return fail(ec, why, "port '" + quote(port) + "' is not a number or *");
        if (std::stoul(std::string(port)) > 65535)
            return fail(ec, why, "port " + std::string(port) + " is out of range");
    }
    out.host = host;
    out.port = port;
    return true;
}

} // namespace

std::optional<endpoint_parts> parse_endpoint(std::string_view endpoint, std::error_code& ec,
                                             std::string* why) {
    ec.clear();
    // libzmq takes the endpoint as a C string: it would bind or connect to what precedes a NUL,
    // not to what was checked here.
    if (endpoint.find('\0') != std::string_view::npos) {
        fail(ec, why, "a NUL byte in the endpoint");
        return std::nullopt;
    }
    auto sep = endpoint.find("://");
    if (sep == std::string_view::npos) {
        fail(ec, why, "expected scheme://address (tcp, ipc or inproc)");
        return std::nullopt;
    }
    auto scheme = endpoint.substr(0, sep);
    endpoint_parts parts;
    parts.address = endpoint.substr(sep + 3);
    if (parts.address.empty()) {
        fail(ec, why, "empty address");
        return std::nullopt;
    }
    if (scheme == "tcp") {
        parts.kind = transport::tcp;
        if (!parse_tcp(parts.address, parts, ec, why)) return std::nullopt;
    } else if (scheme == "ipc") {
        parts.kind = transport::ipc;
        // sockaddr_un::sun_path bounds the path, including its terminating NUL.
        if (parts.address.size() >= sizeof(sockaddr_un::sun_path)) {
            fail(ec, why, "ipc path longer than " + std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
                              " bytes");
            return std::nullopt;
        }
    } else if (scheme == "inproc") {
        parts.kind = transport::inproc;
    } else {
        fail(ec, why, "unsupported transport '" + quote(scheme) + "' (use tcp, ipc or inproc)");
        return std::nullopt;
    }
    return parts;
}

endpoint_parts parse_endpoint(std::string_view endpoint) {
    std::error_code ec;
    std::string why;
    auto parts = parse_endpoint(endpoint, ec, &why);
    if (!parts) throw error(ec, "invalid endpoint '" + quote(endpoint) + "': " + why);
    return *parts;
}

namespace {

/// libzmq's refusal of @p operation on @p endpoint as a zmesh::error that names both: the errno
/// stays in code() (generic category), so callers can still tell EADDRINUSE from EACCES.
[[noreturn]] void refused(const zmq::error_t& e, const char* operation, std::string_view endpoint) {
    // system_error appends the code's message ("Address already in use"); libzmq's own codes
    // (above ZMQ_HAUSNUMERO) have none in the generic category, so their text goes in too.
    std::string what = std::string("cannot ") + operation + " to '" + quote(endpoint) + "'";
    if (e.num() >= ZMQ_HAUSNUMERO) what += std::string(" (") + e.what() + ")";
    throw error(std::error_code(e.num(), std::generic_category()), what);
}

} // namespace

std::string bind(zmq::socket_t& socket, std::string_view endpoint) {
    (void)parse_endpoint(endpoint);
    try {
        socket.bind(std::string(endpoint));
    } catch (const zmq::error_t& e) {
        refused(e, "bind", endpoint);
    }
    return socket.get(zmq::sockopt::last_endpoint);
}

void connect(zmq::socket_t& socket, std::string_view endpoint) {
    auto parts = parse_endpoint(endpoint);
    if (parts.kind == transport::tcp && (parts.port == "*" || parts.host == "*"))
        throw error(errc::invalid_endpoint,
                    "invalid endpoint '" + std::string(endpoint) + "': cannot connect to a wildcard");
    try {
        socket.connect(std::string(endpoint));
    } catch (const zmq::error_t& e) {
        refused(e, "connect", endpoint);
    }
}

} // namespace zmesh
