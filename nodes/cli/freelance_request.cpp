// SPDX-License-Identifier: MPL-2.0
// freelance_request.cpp — `zmesh request --freelance EP,EP,... [BODY]`: one request to a pool
// of Freelance servers (`zmesh serve`, patterns/freelance), no broker. The request goes to a
// live server and, when an attempt times out, to the next one; every server offers the one
// service, so there is no --service. A request no server answers fails naming every endpoint.
#include "freelance_request.hpp"

#include "command.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/patterns/freelance.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

namespace zmesh::cli {

namespace fl = patterns::freelance;

namespace {

/// Bodies are capped at the servers' default message limit (fl::server_options).
const auto body_limit = static_cast<std::size_t>(fl::server_options{}.max_message_size);

std::string read_stdin() {
    std::string body;
    std::vector<char> block(1 << 16);
    while (body.size() <= body_limit) {
        const auto got = std::fread(block.data(), 1, block.size(), stdin);
        if (got == 0) break;
        body.append(block.data(), got);
    }
    if (std::ferror(stdin))
        throw std::runtime_error("cannot read the body from stdin: " +
                                 std::string(std::strerror(errno)));
    return body;
}

} // namespace

int run_freelance_request(const boost::program_options::variables_map& vm,
                          const std::string& endpoint_list, std::string body, int timeout_ms,
                          int retries, std::optional<security::curve_client_keys> curve) {
    for (const char* flag : {"service", "durable", "plain", "id", "priority", "type", "fail-fast",
                             "ttl-ms"}) {
        if (vm.count(flag) && !vm[flag].defaulted())
            throw usage_error(std::string("--") + flag + " does not apply to --freelance");
    }
    std::vector<std::string> endpoints;
    for (std::size_t start = 0; start <= endpoint_list.size();) {
        auto comma = endpoint_list.find(',', start);
        if (comma == std::string::npos) comma = endpoint_list.size();
        const auto ep = endpoint_list.substr(start, comma - start);
        start = comma + 1;
        if (ep.empty()) continue;
        std::error_code ec;
        std::string why;
        if (!parse_endpoint(ep, ec, &why))
            throw usage_error("invalid --freelance endpoint '" + ep + "': " + why);
        for (const auto& seen : endpoints)
            if (seen == ep) throw usage_error("--freelance names " + ep + " twice");
        endpoints.push_back(ep);
    }
    if (endpoints.empty()) throw usage_error("--freelance needs at least one endpoint");
    if (timeout_ms <= 0) throw usage_error("--timeout-ms must be positive");
    if (retries < 1) throw usage_error("--retries must be at least 1");
    if (body == "-") body = read_stdin();
    if (body.size() > body_limit)
        throw std::runtime_error("body of " + std::to_string(body.size()) +
                                 " bytes is over the servers' message limit of " +
                                 std::to_string(body_limit) + " bytes: not sent");

    zmq::context_t ctx;
    fl::client client(ctx, endpoints,
                      {.timeout = std::chrono::milliseconds(timeout_ms),
                       .retries = retries,
                       .curve = std::move(curve)});
    message reply;
    try {
        reply = client.request(message{body});
    } catch (const fl::request_failed& e) {
        std::fprintf(stderr, "zmesh: request: server %s failed: %s %s\n", e.endpoint().c_str(),
                     printable(e.status()).c_str(), printable(e.reason()).c_str());
        return failure;
    }
    for (const auto& frame : reply) {
        auto text = view(frame);
        std::fwrite(text.data(), 1, text.size(), stdout);
        if (text.empty() || text.back() != '\n') std::fputc('\n', stdout);
    }
    std::fflush(stdout);
    return ok;
}

} // namespace zmesh::cli
