// SPDX-License-Identifier: MPL-2.0
// directory.cpp — the zmesh.directory service: register, unregister, resolve, list, expiry.
#include "directory.hpp"

#include "printable.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/log.hpp>

#include <algorithm>
#include <charconv>
#include <optional>
#include <system_error>

namespace zmesh::nodes::detail {
namespace {

using namespace std::string_view_literals;

constexpr std::string_view ok = "200"sv;
constexpr std::string_view not_found = "404"sv;
constexpr std::string_view bad_request = "400"sv;
constexpr std::string_view full = "503"sv;

void answer(message& reply, std::string_view status, std::string_view reason = {}) {
    reply.push_back(status);
    if (!reason.empty()) reply.push_back(reason);
}

/// Why @p name cannot be a directory name, or an empty string if it can. Control characters are
/// refused so that names print safely in `list` output and logs.
std::string check_name(std::string_view name) {
    if (name.empty()) return "empty name";
    if (name.size() > directory::max_name)
        return "name longer than " + std::to_string(directory::max_name) + " bytes";
    if (std::any_of(name.begin(), name.end(), [](char c) {
            const auto u = static_cast<unsigned char>(c);
            return u < 0x20 || u == 0x7f;
        }))
        return "name '" + printable(name) + "' contains control characters";
    return {};
}

/// Why @p endpoint cannot be registered, or an empty string if it can. It must be an endpoint a
/// peer can connect to: zmesh::parse_endpoint's rules, and no wildcard host or port.
std::string check_endpoint(std::string_view endpoint) {
    if (endpoint.size() > directory::max_endpoint)
        return "endpoint longer than " + std::to_string(directory::max_endpoint) + " bytes";
    std::error_code ec;
    std::string why;
    auto parts = parse_endpoint(endpoint, ec, &why);
    if (!parts) return "invalid endpoint '" + printable(endpoint) + "': " + why;
    if (parts->kind == transport::tcp && (parts->host == "*" || parts->port == "*"))
        return "endpoint '" + printable(endpoint) +
               "' has a wildcard; register where peers connect";
    return {};
}

std::optional<std::chrono::milliseconds> parse_ttl(std::string_view text) {
    std::uint64_t ms = 0;
    const char* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, ms);
    if (text.empty() || ec != std::errc() || ptr != end || ms == 0 ||
        ms > static_cast<std::uint64_t>(directory::max_ttl.count()))
        return std::nullopt;
    return std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(ms));
}

} // namespace

directory::directory(std::size_t max_entries) : max_entries_(max_entries) {}

void directory::set_entries(std::size_t n) noexcept {
    entries_ = n;
    entries_gauge_.store(n, std::memory_order_relaxed);
}

void directory::handle(const message& request, message& reply, clock::time_point now) {
    if (request.empty()) {
        answer(reply, bad_request, "empty request: expected register, unregister, resolve or list");
        return;
    }
    const auto command = view(request[0]);
    if (command == "register") do_register(request, reply, now);
    else if (command == "unregister") do_unregister(request, reply);
    else if (command == "resolve") do_resolve(request, reply, now);
    else if (command == "list") {
        if (request.size() != 1) answer(reply, bad_request, "list takes no arguments");
        else do_list(reply, now);
    } else {
        answer(reply, bad_request,
               "unknown command '" + printable(command) +
                   "': expected register, unregister, resolve or list");
    }
}

void directory::do_register(const message& request, message& reply, clock::time_point now) {
    if (request.size() != 4) {
        answer(reply, bad_request, "register takes three arguments: name endpoint ttl_ms");
        return;
    }
    const auto name = view(request[1]);
    const auto endpoint = view(request[2]);
    if (auto why = check_name(name); !why.empty()) return answer(reply, bad_request, why);
    if (auto why = check_endpoint(endpoint); !why.empty()) return answer(reply, bad_request, why);
    const auto ttl = parse_ttl(view(request[3]));
    if (!ttl) {
        answer(reply, bad_request,
               "invalid ttl_ms '" + printable(view(request[3])) + "': expected 1 to " +
                   std::to_string(max_ttl.count()));
        return;
    }
    auto it = names_.find(name);
    if (it != names_.end()) {
        for (auto& r : it->second) {
            if (r.endpoint == endpoint) {
                r.expiry = now + *ttl; // a renewal never needs room
                return answer(reply, ok);
            }
        }
    }
    if (entries_ >= max_entries_) {
        // Refuse rather than evict: evicting would silently unlist a live peer. Logged, rate
        // limited, because a full directory needs an operator (a larger limit, or a peer that
        // registers more than it should).
        if (full_log_.allow()) {
            if (auto n = full_log_.take_suppressed())
                log(log_level::warn, "directory: %llu more registrations refused, not logged",
                    static_cast<unsigned long long>(n));
            log(log_level::warn, "directory: full (%zu registrations); refused '%s' at '%s'",
                max_entries_, printable(name).c_str(), printable(endpoint).c_str());
        }
        answer(reply, full,
               "directory full: it holds " + std::to_string(max_entries_) + " registrations");
        return;
    }
    if (it == names_.end())
        it = names_.emplace(std::string(name), std::vector<registration>{}).first;
    it->second.push_back({std::string(endpoint), now + *ttl});
    set_entries(entries_ + 1);
    answer(reply, ok);
}

void directory::do_unregister(const message& request, message& reply) {
    if (request.size() != 3) {
        answer(reply, bad_request, "unregister takes two arguments: name endpoint");
        return;
    }
    const auto name = view(request[1]);
    if (auto why = check_name(name); !why.empty()) return answer(reply, bad_request, why);
    const auto endpoint = view(request[2]);
    // Unregistering what is not there is still 200: the caller's wish (not listed) holds, and a
    // retried unregister must not fail.
    if (auto it = names_.find(name); it != names_.end()) {
        auto& regs = it->second;
        auto r = std::find_if(regs.begin(), regs.end(),
                              [&](const registration& x) { return x.endpoint == endpoint; });
        if (r != regs.end()) {
            regs.erase(r);
            set_entries(entries_ - 1);
            if (regs.empty()) names_.erase(it);
        }
    }
    answer(reply, ok);
}

void directory::do_resolve(const message& request, message& reply, clock::time_point now) const {
    if (request.size() != 2) {
        answer(reply, bad_request, "resolve takes one argument: name");
        return;
    }
    const auto name = view(request[1]);
    if (auto why = check_name(name); !why.empty()) return answer(reply, bad_request, why);
    auto it = names_.find(name);
    if (it != names_.end()) {
        // Expired registrations are skipped here, not only at expire(): a peer that stopped
        // renewing is never handed out, whatever the sweep interval.
        bool any = false;
        for (const auto& r : it->second) {
            if (now >= r.expiry) continue;
            if (!any) reply.push_back(ok);
            any = true;
            reply.push_back(r.endpoint);
        }
        if (any) return;
    }
    answer(reply, not_found);
}

void directory::do_list(message& reply, clock::time_point now) const {
    reply.push_back(ok);
    for (const auto& [name, regs] : names_) {
        for (const auto& r : regs) {
            if (now >= r.expiry) continue;
            reply.push_back(name);
            reply.push_back(r.endpoint);
        }
    }
}

void directory::expire(clock::time_point now) {
    std::size_t n = entries_;
    for (auto it = names_.begin(); it != names_.end();) {
        auto& regs = it->second;
        const auto before = regs.size();
        std::erase_if(regs, [now](const registration& r) { return now >= r.expiry; });
        n -= before - regs.size();
        if (regs.empty()) it = names_.erase(it);
        else ++it;
    }
    set_entries(n);
}

} // namespace zmesh::nodes::detail
