// SPDX-License-Identifier: MPL-2.0
// market.hpp — what the market-data example's programs share: the quote and order messages
// (msgpack), the instrument names, prices as integer ticks, a small flag parser and percentiles.
//
// Prices travel as integers in units of 1/10000 (a price of 101.25 is 1012500), so the values a
// subscriber receives can be compared with what the feed published exactly, without rounding.
#pragma once

#include <zmesh/zmesh.hpp>

#include <msgpack.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace market {

/// One quote of one instrument: what the feed publishes on "md.quote.SYMBOL".
struct quote {
    std::string symbol;
    std::int64_t bid = 0;  ///< price, 1/10000 units
    std::int64_t ask = 0;  ///< price, 1/10000 units
    std::int64_t last = 0; ///< price of the last trade, 1/10000 units
    std::int64_t bid_size = 0;
    std::int64_t ask_size = 0;
    MSGPACK_DEFINE(symbol, bid, ask, last, bid_size, ask_size)
};

/// An order a strategy sends to the gateway (MDP service "orders").
struct order {
    std::string strategy;
    std::string symbol;
    std::string side; ///< "BUY" or "SELL"
    std::int64_t quantity = 0;
    std::int64_t limit = 0; ///< price, 1/10000 units
    MSGPACK_DEFINE(strategy, symbol, side, quantity, limit)
};

/// The gateway's answer to an order.
struct execution {
    std::string order_id; ///< the gateway's number for it, e.g. "GW-000017"
    std::string status;   ///< "filled" or "rejected"
    std::int64_t quantity = 0;
    std::int64_t price = 0; ///< 1/10000 units
    std::string reason;     ///< why it was rejected; empty when filled
    MSGPACK_DEFINE(order_id, status, quantity, price, reason)
};

inline constexpr std::string_view quote_prefix = "md.quote.";
inline constexpr std::string_view status_topic = "md.status";
inline constexpr std::string_view orders_service = "orders";

/// The symbol of instrument @p index: four letters, the same for the same index in every
/// program (AAPX-like names without meaning).
inline std::string symbol(int index) {
    std::string s(4, 'A');
    // A multiplicative walk over 26^4 spreads neighbouring indexes across the alphabet.
    auto n =
        static_cast<std::uint32_t>((static_cast<std::uint64_t>(index) * 7919U + 1103U) % 456976U);
    for (int i = 3; i >= 0; --i) {
        s[static_cast<std::size_t>(i)] = static_cast<char>('A' + n % 26U);
        n /= 26U;
    }
    return s;
}

/// A price in 1/10000 units as text with two decimals ("101.25"); ticks are 0.01.
inline std::string price_text(std::int64_t units) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%lld.%02lld", static_cast<long long>(units / 10000),
                  static_cast<long long>((units % 10000) / 100));
    return buffer;
}

inline std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

/// The p-th percentile (0..100) of sorted samples, nearest rank.
inline std::int64_t percentile(const std::vector<std::int64_t>& sorted, double p) {
    if (sorted.empty()) return 0;
    auto rank = static_cast<std::size_t>(p / 100.0 * static_cast<double>(sorted.size()) + 0.999999);
    rank = std::clamp<std::size_t>(rank, 1, sorted.size());
    return sorted[rank - 1];
}

/// Bad command line: main() prints "PROGRAM: what" and exits 2.
struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// A tiny "--flag value" / "--switch" parser: every flag must be declared, values are checked.
class flags {
  public:
    flags(int argc, char** argv, std::map<std::string, std::string> defaults,
          std::vector<std::string> switches = {})
        : values_(std::move(defaults)), switches_(std::move(switches)) {
        for (int i = 1; i < argc; ++i) {
            std::string arg = argv[i];
            if (arg == "--help" || arg == "-h") {
                help_ = true;
                continue;
            }
            if (arg.rfind("--", 0) != 0) throw usage_error("unexpected argument '" + arg + "'");
            std::string name = arg.substr(2);
            if (std::find(switches_.begin(), switches_.end(), name) != switches_.end()) {
                set_.push_back(name);
                continue;
            }
            if (values_.find(name) == values_.end())
                throw usage_error("unknown flag '" + arg + "' (see --help)");
            if (i + 1 >= argc) throw usage_error("flag '" + arg + "' needs a value");
            values_[name] = argv[++i];
        }
    }

    [[nodiscard]] bool help() const noexcept { return help_; }

    [[nodiscard]] bool is_set(std::string_view name) const {
        return std::find(set_.begin(), set_.end(), name) != set_.end();
    }

    [[nodiscard]] const std::string& text(const std::string& name) const {
        return values_.at(name);
    }

    /// The flag's value as an integer in [low, high].
    [[nodiscard]] std::int64_t number(const std::string& name, std::int64_t low,
                                      std::int64_t high) const {
        const std::string& v = values_.at(name);
        std::int64_t n = 0;
        auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (ec != std::errc{} || end != v.data() + v.size() || n < low || n > high)
            throw usage_error("--" + name + " must be an integer from " + std::to_string(low) +
                              " to " + std::to_string(high) + ", not '" + v + "'");
        return n;
    }

  private:
    std::map<std::string, std::string> values_;
    std::vector<std::string> switches_;
    std::vector<std::string> set_;
    bool help_ = false;
};

} // namespace market
