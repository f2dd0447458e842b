// SPDX-License-Identifier: MPL-2.0
// order.hpp — what orders-api and orders-consumer share: the order as it travels (msgpack), the
// CURVE settings both read from the same two flags, and a small flag reader.
#pragma once

#include <zmesh/codec.hpp>
#include <zmesh/security/keys.hpp>
#include <zmesh/security/zap.hpp>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace orders {

/// An order on its way from the API to the database. Encoded with msgpack as an array, so the
/// two programs must agree on the field order (they share this header).
struct order {
    std::string id;                    ///< the message id the API answered with: 32 hex digits
    std::string customer;              ///< who ordered
    std::string sku;                   ///< what
    std::int64_t quantity = 0;         ///< how many (the database refuses anything below 1)
    std::int64_t unit_price_cents = 0; ///< price of one, in cents (the database refuses < 0)
    std::int64_t accepted_at_ms = 0;   ///< when the API accepted it (Unix ms)
    MSGPACK_DEFINE(id, customer, sku, quantity, unit_price_cents, accepted_at_ms)
};

/// `--name value` flags of a small program. Every flag takes exactly one value.
class flags {
  public:
    /// Reads argv; @p known lists the accepted flag names (without "--"). Throws
    /// std::invalid_argument with a one-line message for an unknown flag or a missing value.
    flags(int argc, char** argv, const std::vector<std::string>& known) {
        for (int i = 1; i < argc; ++i) {
            const std::string_view arg = argv[i];
            if (arg == "-h" || arg == "--help") {
                help_ = true;
                continue;
            }
            if (arg.substr(0, 2) != "--")
                throw std::invalid_argument("unexpected argument '" + std::string(arg) + "'");
            std::string name(arg.substr(2));
            std::string value;
            if (const auto eq = name.find('='); eq != std::string::npos) {
                value = name.substr(eq + 1);
                name.resize(eq);
            } else {
                if (i + 1 >= argc) throw std::invalid_argument("flag --" + name + " needs a value");
                value = argv[++i];
            }
            bool ok = false;
            for (const auto& k : known) ok = ok || k == name;
            if (!ok) throw std::invalid_argument("unknown flag --" + name);
            values_[name] = value;
        }
    }
    [[nodiscard]] bool help() const noexcept { return help_; }
    [[nodiscard]] std::string get(const std::string& name, std::string fallback = {}) const {
        const auto it = values_.find(name);
        return it == values_.end() ? fallback : it->second;
    }
    /// The flag's value, or the environment variable @p env, or "".
    [[nodiscard]] std::string get_or_env(const std::string& name, const char* env) const {
        if (auto it = values_.find(name); it != values_.end()) return it->second;
        const char* v = std::getenv(env);
        return v ? v : "";
    }
    [[nodiscard]] std::string require(const std::string& name) const {
        const auto it = values_.find(name);
        if (it == values_.end() || it->second.empty())
            throw std::invalid_argument("flag --" + name + " is required");
        return it->second;
    }
    /// A whole number in [lo, hi].
    [[nodiscard]] long long number(const std::string& name, long long fallback, long long lo,
                                   long long hi) const {
        const auto it = values_.find(name);
        if (it == values_.end()) return fallback;
        char* end = nullptr;
        errno = 0;
        const long long v = std::strtoll(it->second.c_str(), &end, 10);
        if (it->second.empty() || *end != '\0' || errno != 0 || v < lo || v > hi)
            throw std::invalid_argument("flag --" + name + ": '" + it->second +
                                        "' is not a whole number from " + std::to_string(lo) +
                                        " to " + std::to_string(hi));
        return v;
    }

  private:
    std::map<std::string, std::string> values_;
    bool help_ = false;
};

/// The CURVE settings of a client or worker: the broker's public certificate (--curve-server-key
/// or ZMESH_CURVE_SERVER_KEY) and our own secret one (--curve-key or ZMESH_CURVE_KEY), the same
/// flags and variables as the zmesh CLI's. Neither: no CURVE. Only one of them: an error.
/// @throws zmesh::error naming the file (missing, malformed, readable by others).
inline std::optional<zmesh::security::curve_client_keys> curve_from(const flags& f) {
    const std::string server = f.get_or_env("curve-server-key", "ZMESH_CURVE_SERVER_KEY");
    const std::string own = f.get_or_env("curve-key", "ZMESH_CURVE_KEY");
    if (server.empty() && own.empty()) return std::nullopt;
    if (server.empty() || own.empty())
        throw std::invalid_argument("CURVE needs both --curve-server-key (the broker's NAME.key) "
                                    "and --curve-key (this program's NAME.key_secret)");
    zmesh::security::curve_client_keys keys;
    keys.server_public = zmesh::security::load_public(server).public_key;
    keys.client = zmesh::security::load_secret(own);
    return keys;
}

} // namespace orders
