// SPDX-License-Identifier: MPL-2.0
// broker_list.hpp — the --broker flag of the commands that fail over across brokers (zmesh
// request, zmesh worker): a comma-separated list, and the flag may be repeated. The order is the
// order of failover (docs/patterns/binary_star.md).
#pragma once

#include "command.hpp"

#include <zmesh/endpoint.hpp>

#include <string>
#include <system_error>
#include <vector>

namespace zmesh::cli {

/// Calls @p each(item, flag) for every comma-separated item of every value of a repeatable flag,
/// in order; empty items included, for the caller to judge.
template <typename Each>
void for_each_listed(const std::vector<std::string>& flags, Each each) {
    for (const auto& flag : flags) {
        std::size_t start = 0;
        for (;;) {
            const auto comma = flag.find(',', start);
            each(flag.substr(start, comma == std::string::npos ? comma : comma - start), flag);
            if (comma == std::string::npos) break;
            start = comma + 1;
        }
    }
}

/// Every comma-separated item of every value of a repeatable flag (--connect A,B --connect C),
/// in order, unchecked.
inline std::vector<std::string> comma_list(const std::vector<std::string>& flags) {
    std::vector<std::string> out;
    for_each_listed(flags, [&](std::string item, const std::string&) { out.push_back(std::move(item)); });
    return out;
}

/// Every endpoint of every --broker value, in order.
/// @throws usage_error naming the bad item if one is empty or not a valid endpoint.
inline std::vector<std::string> broker_list(const std::vector<std::string>& flags) {
    std::vector<std::string> out;
    for_each_listed(flags, [&](std::string item, const std::string& flag) {
        std::error_code ec;
        std::string why;
        if (item.empty()) throw usage_error("invalid --broker '" + flag + "': an empty endpoint in the list");
        if (!parse_endpoint(item, ec, &why))
            throw usage_error("invalid --broker '" + item + "': " + why);
        out.push_back(std::move(item));
    });
    if (out.empty()) throw usage_error("--broker needs an endpoint");
    return out;
}

} // namespace zmesh::cli
