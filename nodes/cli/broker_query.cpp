// SPDX-License-Identifier: MPL-2.0
// broker_query.cpp — one MDP request to a broker-answered service, decoded with zmesh's codec.
#include "broker_query.hpp"

#include "broker_list.hpp"
#include "command.hpp"
#include "config.hpp"

#include <zmesh/codec.hpp>
#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>
#include <zmesh/mdp/client.hpp>

#include <cstdio>
#include <optional>

namespace zmesh::cli {

void add_broker_query_options(boost::program_options::options_description& options,
                              broker_query_flags& flags) {
    namespace po = boost::program_options;
    options.add_options()
        ("broker", po::value(&flags.broker)->default_value(default_broker_endpoint()),
         "broker endpoint, or a comma-separated list (a Binary Star pair: the active one "
         "answers) (env ZMESH_BROKER)")
        ("timeout-ms", po::value(&flags.timeout_ms)->default_value(flags.timeout_ms),
         "wait for the answer, in ms (for each broker of a list)");
    flags.security.add_to(options);
}

namespace {

/// One single-frame msgpack answer of @p service, decoded.
template <class T> T decode_reply(message& reply, std::string_view service) {
    if (reply.size() != 1)
        throw std::runtime_error("unexpected " + std::string(service) + " reply (is this a zmesh broker?)");
    std::error_code ec;
    std::string why;
    auto decoded = unpack<T>(reply[0], ec, &why);
    if (!decoded)
        throw std::runtime_error("undecodable " + std::string(service) + " reply: " + why);
    return std::move(*decoded);
}

mdp::client make_client(zmq::context_t& ctx, std::vector<std::string> brokers,
                        const broker_query_flags& flags) {
    // One attempt per broker: a passive broker of a Binary Star pair drops the request, so the
    // one that answers is the active one; the error of a silent list names every endpoint.
    mdp::client_options o{.timeout = std::chrono::milliseconds(flags.timeout_ms),
                          .retries = static_cast<int>(brokers.size()),
                          .curve = flags.security.load()};
    if (brokers.size() == 1) return mdp::client(ctx, std::move(brokers.front()), std::move(o));
    return mdp::client(ctx, std::move(brokers), std::move(o));
}

} // namespace

std::vector<std::string> query_brokers(const broker_query_flags& flags) {
    if (flags.timeout_ms <= 0) throw usage_error("--timeout-ms must be positive");
    auto brokers = broker_list({flags.broker});
    if (brokers.size() > 64) throw usage_error("--broker: at most 64 endpoints");
    return brokers;
}

template <class T> T query_broker(const broker_query_flags& flags, std::string_view service) {
    auto brokers = query_brokers(flags);
    zmq::context_t ctx;
    auto client = make_client(ctx, std::move(brokers), flags);
    message reply = client.request(service, message{""});
    return decode_reply<T>(reply, service);
}

/// zmesh.stats is answered by a passive broker too (asking it must not wake it), so with a list
/// each broker is asked in turn and the first active one (ha_state 3), or one without Binary Star
/// (0), is the answer; if none is, the first answer, with a note that names its state.
template <> counter_table query_broker<counter_table>(const broker_query_flags& flags,
                                                      std::string_view service) {
    auto brokers = query_brokers(flags);
    zmq::context_t ctx;
    if (brokers.size() == 1) {
        auto client = make_client(ctx, std::move(brokers), flags);
        message reply = client.request(service, message{""});
        return decode_reply<counter_table>(reply, service);
    }
    counter_table first;
    std::string first_from;
    std::string silent;
    for (const auto& b : brokers) {
        std::optional<message> reply;
        {
            auto client = make_client(ctx, {b}, flags);
            std::error_code ec;
            reply = client.request(service, message{""}, ec);
            if (!reply && ec != errc::timeout) throw error(ec, "zmesh.stats at " + b);
        }
        if (!reply) {
            silent += (silent.empty() ? "" : ", ") + b;
            continue;
        }
        auto counters = decode_reply<counter_table>(*reply, service);
        const auto state = counters.count("ha_state") ? counters["ha_state"] : 0;
        if (state == 0 || state == 3) return counters;
        if (first_from.empty()) {
            first = std::move(counters);
            first_from = b;
        }
    }
    if (first_from.empty())
        throw std::runtime_error("no reply from service '" + std::string(service) +
                                 "' at any broker (tried " + silent + ", " +
                                 std::to_string(flags.timeout_ms) + " ms each)");
    static const char* const names[] = {"none", "primary", "backup", "active", "passive"};
    const auto st = first["ha_state"];
    std::fprintf(stderr, "zmesh: no broker of the list is active; these are the counters of %s (%s)\n",
                 first_from.c_str(), st < 5 ? names[st] : "unknown state");
    return first;
}

template service_table query_broker<service_table>(const broker_query_flags&, std::string_view);

} // namespace zmesh::cli
