// SPDX-License-Identifier: MPL-2.0
// broker_query.cpp — one MDP request to a broker-answered service, decoded with zmesh's codec.
#include "broker_query.hpp"

#include "command.hpp"
#include "config.hpp"

#include <zmesh/codec.hpp>
#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>
#include <zmesh/mdp/client.hpp>

namespace zmesh::cli {

void add_broker_query_options(boost::program_options::options_description& options,
                              broker_query_flags& flags) {
    namespace po = boost::program_options;
    options.add_options()
        ("broker", po::value(&flags.broker)->default_value(default_broker_endpoint()),
         "broker endpoint (env ZMESH_BROKER)")
        ("timeout-ms", po::value(&flags.timeout_ms)->default_value(flags.timeout_ms),
         "wait for the answer, in ms");
    flags.security.add_to(options);
}

template <class T> T query_broker(const broker_query_flags& flags, std::string_view service) {
    const std::string& broker = flags.broker;
    if (flags.timeout_ms <= 0) throw usage_error("--timeout-ms must be positive");
    std::error_code ec;
    std::string why;
    if (!parse_endpoint(broker, ec, &why)) throw usage_error("invalid --broker '" + broker + "': " + why);
    auto curve = flags.security.load();
    zmq::context_t ctx;
    mdp::client client(ctx, broker,
                       {.timeout = std::chrono::milliseconds(flags.timeout_ms),
                        .retries = 1,
                        .curve = std::move(curve)});
    message reply = client.request(service, message{""});
    if (reply.size() != 1)
        throw std::runtime_error("unexpected " + std::string(service) + " reply (is this a zmesh broker?)");
    auto decoded = unpack<T>(reply[0], ec, &why);
    if (!decoded)
        throw std::runtime_error("undecodable " + std::string(service) + " reply: " + why);
    return std::move(*decoded);
}

template service_table query_broker<service_table>(const broker_query_flags&, std::string_view);
template counter_table query_broker<counter_table>(const broker_query_flags&, std::string_view);

} // namespace zmesh::cli
