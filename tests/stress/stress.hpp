// SPDX-License-Identifier: MPL-2.0
// stress.hpp — helpers shared by the broker stress tests: the seed, a `zmesh broker` child
// process on an ephemeral loopback port, and the queries the broker answers itself (8/MMI
// mmi.service, zmesh.services, zmesh.stats).
#pragma once

#include "support/process.hpp"
#include "support/support.hpp"

#include <zmesh/mdp/client.hpp>
#include <zmesh/mdp/protocol.hpp>
#include <zmesh/message.hpp>

#include <doctest/doctest.h>
#include <msgpack.hpp>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace stress {

using namespace std::chrono_literals;

/// The seed of a run: ZMESH_STRESS_SEED if set (to replay a failure), else a fresh one.
inline std::uint32_t seed() {
    if (const char* s = std::getenv("ZMESH_STRESS_SEED"))
        return static_cast<std::uint32_t>(std::strtoul(s, nullptr, 10));
    return std::random_device{}();
}

/// `zmesh broker` on tcp://127.0.0.1:*, its stderr in a file; killed and reaped with the object.
struct broker_process {
    support::child_process process;
    std::string endpoint;
    std::filesystem::path stderr_path;

    broker_process(const std::filesystem::path& err, const std::vector<std::string>& extra)
        : process([&] {
              std::vector<std::string> a{support::zmesh_cli(), "broker", "--mdp",
                                         "tcp://127.0.0.1:*"};
              a.insert(a.end(), extra.begin(), extra.end());
              return a;
          }(), err.string()),
          stderr_path(err) {
        // The broker prints each bound endpoint on its own line once it is bound.
        auto line = process.read_line(10s);
        REQUIRE_MESSAGE(line, "the broker printed no endpoint");
        endpoint = *line;
        REQUIRE(endpoint.rfind("tcp://127.0.0.1:", 0) == 0);
    }
};

/// Everything written to @p path so far.
inline std::string read_file(const std::filesystem::path& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

/// Times @p needle occurs in @p text.
inline std::size_t count_of(const std::string& text, std::string_view needle) {
    std::size_t n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
    return n;
}

/// A client for one-off queries: short attempts, so a lost one is retried quickly.
inline zmesh::mdp::client query_client(zmq::context_t& ctx, const std::string& endpoint) {
    return zmesh::mdp::client(ctx, endpoint, {.timeout = 1000ms, .retries = 3});
}

/// 8/MMI: "200" if @p service has a worker, "404" if not; std::nullopt if the broker is silent.
inline std::optional<std::string> mmi_service(zmesh::mdp::client& c, const std::string& service) {
    std::error_code ec;
    auto r = c.request(zmesh::mdp::mmi_service, zmesh::message{service}, ec);
    if (!r || r->size() != 1) return std::nullopt;
    return zmesh::to_string((*r)[0]);
}

/// zmesh.services decoded to service -> worker count; std::nullopt if the broker is silent or
/// the reply is not the documented msgpack map.
inline std::optional<std::vector<std::pair<std::string, std::uint64_t>>>
services(zmesh::mdp::client& c) {
    std::error_code ec;
    auto r = c.request(zmesh::mdp::zmesh_services, zmesh::message{""}, ec);
    if (!r || r->size() != 1) return std::nullopt;
    try {
        auto handle = msgpack::unpack(static_cast<const char*>((*r)[0].data()), (*r)[0].size());
        const msgpack::object& map = handle.get();
        if (map.type != msgpack::type::MAP) return std::nullopt;
        std::vector<std::pair<std::string, std::uint64_t>> out;
        for (std::uint32_t i = 0; i < map.via.map.size; ++i) {
            const auto& kv = map.via.map.ptr[i];
            std::uint64_t workers = 0;
            const auto& fields = kv.val.via.map;
            for (std::uint32_t j = 0; kv.val.type == msgpack::type::MAP && j < fields.size; ++j)
                if (fields.ptr[j].key.as<std::string>() == "workers")
                    workers = fields.ptr[j].val.as<std::uint64_t>();
            out.emplace_back(kv.key.as<std::string>(), workers);
        }
        return out;
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

/// zmesh.stats decoded to counter -> value; std::nullopt if the broker is silent or the reply
/// is not the documented msgpack map.
inline std::optional<std::map<std::string, std::uint64_t>> stats(zmesh::mdp::client& c) {
    std::error_code ec;
    auto r = c.request(zmesh::mdp::zmesh_stats, zmesh::message{""}, ec);
    if (!r || r->size() != 1) return std::nullopt;
    try {
        auto handle = msgpack::unpack(static_cast<const char*>((*r)[0].data()), (*r)[0].size());
        return handle.get().as<std::map<std::string, std::uint64_t>>();
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

/// Workers the broker reports for @p service (0 if unknown or the broker is silent).
inline std::uint64_t workers_of(zmesh::mdp::client& c, const std::string& service) {
    if (auto all = services(c))
        for (const auto& [name, workers] : *all)
            if (name == service) return workers;
    return 0;
}

} // namespace stress
