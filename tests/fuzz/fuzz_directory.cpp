// SPDX-License-Identifier: MPL-2.0
// fuzz_directory.cpp — libFuzzer target: the broker's zmesh.directory service
// (nodes/broker/directory.cpp) fed a sequence of arbitrary request bodies.
//
// Input (README.md's frame scheme): several messages, each one request body. Time moves on by
// a quarter second per request and expired registrations are swept every fourth request, so
// small ttls expire within one input. The table holds at most max_entries registrations, so a
// full directory is reached too.
//
// Checked: handle() never throws and always answers; the status is one docs/pubsub.md lists;
// refusals carry a printable reason; and the state the answers reveal (resolve, list, entries())
// matches a model fed only with the requests the directory said 200 to.
#include "fuzz_input.hpp"

#include "broker/directory.hpp"

#include <zmesh/endpoint.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace {

using zmesh::nodes::detail::directory;
using clock_type = directory::clock;
using namespace std::chrono_literals;

constexpr std::size_t max_entries = 8;

bool printable(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u >= 0x20 && u < 0x7f;
    });
}

struct registration {
    std::string endpoint;
    clock_type::time_point expiry;
};

/// What the directory should hold, fed only with requests it accepted.
class model {
  public:
    void registered(const std::string& name, const std::string& endpoint,
                    clock_type::time_point expiry) {
        auto& regs = names_[name];
        for (auto& r : regs) {
            if (r.endpoint == endpoint) {
                r.expiry = expiry;
                return;
            }
        }
        regs.push_back({endpoint, expiry});
    }
    void unregistered(const std::string& name, const std::string& endpoint) {
        auto it = names_.find(name);
        if (it == names_.end()) return;
        std::erase_if(it->second, [&](const registration& r) { return r.endpoint == endpoint; });
        if (it->second.empty()) names_.erase(it);
    }
    void expire(clock_type::time_point now) {
        for (auto it = names_.begin(); it != names_.end();) {
            std::erase_if(it->second, [now](const registration& r) { return now >= r.expiry; });
            it = it->second.empty() ? names_.erase(it) : std::next(it);
        }
    }
    [[nodiscard]] bool holds(const std::string& name, const std::string& endpoint) const {
        auto it = names_.find(name);
        return it != names_.end() &&
               std::any_of(it->second.begin(), it->second.end(),
                           [&](const registration& r) { return r.endpoint == endpoint; });
    }
    [[nodiscard]] std::size_t entries() const {
        std::size_t n = 0;
        for (const auto& [name, regs] : names_) n += regs.size();
        return n;
    }
    /// resolve's expected answer: "200" and the live endpoints in registration order, or "404".
    [[nodiscard]] std::vector<std::string> resolve(const std::string& name,
                                                   clock_type::time_point now) const {
        std::vector<std::string> out{"200"};
        if (auto it = names_.find(name); it != names_.end())
            for (const auto& r : it->second)
                if (now < r.expiry) out.push_back(r.endpoint);
        if (out.size() == 1) out[0] = "404";
        return out;
    }
    /// list's expected answer: "200", then name and endpoint of each live registration.
    [[nodiscard]] std::vector<std::string> list(clock_type::time_point now) const {
        std::vector<std::string> out{"200"};
        for (const auto& [name, regs] : names_)
            for (const auto& r : regs)
                if (now < r.expiry) {
                    out.push_back(name);
                    out.push_back(r.endpoint);
                }
        return out;
    }

  private:
    std::map<std::string, std::vector<registration>> names_;
};

std::vector<std::string> texts(const zmesh::message& m) {
    std::vector<std::string> out;
    for (const auto& f : m) out.push_back(zmesh::to_string(f));
    return out;
}

/// Checks what a register the directory accepted must have had: docs/pubsub.md's field rules.
void check_accepted_register(const std::vector<std::string>& req) {
    const std::string& name = req[1];
    ZMESH_FUZZ_CHECK(!name.empty() && name.size() <= directory::max_name);
    // Names print safely: no control characters (bytes from 0x80 up are UTF-8, allowed).
    ZMESH_FUZZ_CHECK(std::none_of(name.begin(), name.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u < 0x20 || u == 0x7f;
    }));
    std::error_code ec;
    const auto parts = zmesh::parse_endpoint(req[2], ec);
    ZMESH_FUZZ_CHECK(parts.has_value());
    ZMESH_FUZZ_CHECK(req[2].size() <= directory::max_endpoint);
    ZMESH_FUZZ_CHECK(parts->kind != zmesh::transport::tcp ||
                     (parts->host != "*" && parts->port != "*"));
}

std::chrono::milliseconds ttl_of(const std::string& text) {
    return std::chrono::milliseconds(std::stoll(text));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    directory dir(max_entries);
    model expected;
    auto now = clock_type::time_point{} + 1000h; // far from the epoch, as a real steady clock
    std::size_t n = 0;
    for (const auto& frames : zmesh::fuzz::split_messages(data, size)) {
        now += 250ms;
        if (++n % 4 == 0) {
            dir.expire(now);
            expected.expire(now);
            ZMESH_FUZZ_CHECK(dir.entries() == expected.entries());
        }
        const zmesh::message request = zmesh::fuzz::to_message(frames);
        const std::vector<std::string> req = texts(request);
        zmesh::message reply;
        try {
            dir.handle(request, reply, now);
        } catch (...) {
            zmesh::fuzz::property_failed(__FILE__, __LINE__, "directory::handle threw");
        }
        const std::vector<std::string> rep = texts(reply);
        ZMESH_FUZZ_CHECK(!rep.empty());
        const std::string& status = rep[0];
        ZMESH_FUZZ_CHECK(status == "200" || status == "400" || status == "404" || status == "503");
        if (status == "400" || status == "503") {
            ZMESH_FUZZ_CHECK(rep.size() == 2 && !rep[1].empty() && printable(rep[1]));
            ZMESH_FUZZ_CHECK(dir.entries() == expected.entries());
            if (status == "503") ZMESH_FUZZ_CHECK(expected.entries() >= max_entries);
            continue;
        }
        const std::string command = req.empty() ? std::string() : req[0];
        if (command == "register") {
            ZMESH_FUZZ_CHECK(rep.size() == 1 && status == "200");
            ZMESH_FUZZ_CHECK(req.size() == 4);
            check_accepted_register(req);
            const auto ttl = ttl_of(req[3]);
            ZMESH_FUZZ_CHECK(ttl > 0ms && ttl <= directory::max_ttl);
            // A new registration needs room; a renewal never does.
            ZMESH_FUZZ_CHECK(expected.holds(req[1], req[2]) || expected.entries() < max_entries);
            expected.registered(req[1], req[2], now + ttl);
        } else if (command == "unregister") {
            ZMESH_FUZZ_CHECK(rep.size() == 1 && status == "200" && req.size() == 3);
            expected.unregistered(req[1], req[2]);
        } else if (command == "resolve") {
            ZMESH_FUZZ_CHECK(req.size() == 2);
            ZMESH_FUZZ_CHECK(rep == expected.resolve(req[1], now));
        } else if (command == "list") {
            ZMESH_FUZZ_CHECK(req.size() == 1);
            ZMESH_FUZZ_CHECK(rep == expected.list(now));
        } else {
            zmesh::fuzz::property_failed(__FILE__, __LINE__,
                                         "an unknown command was answered without 400");
        }
        ZMESH_FUZZ_CHECK(dir.entries() == expected.entries());
    }
    return 0;
}
