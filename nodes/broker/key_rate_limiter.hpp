// SPDX-License-Identifier: MPL-2.0
// key_rate_limiter.hpp — internal: a token bucket per client key, for the forwarder's publish
// quota.
//
// Each key may publish `rate` messages per second on average and a burst of up to `rate`
// messages (one second's worth) at once; past that its messages are refused until the bucket
// refills. One bucket per key name, not per connection, so a client cannot raise its share by
// opening more connections. Keys are the names the ZAP handler gives admitted keys, so the table
// holds at most one entry per allowed key.
//
// Not thread-safe: the forwarder's loop thread only.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace zmesh::nodes::detail {

class key_rate_limiter {
  public:
    using clock = std::chrono::steady_clock;

    /// @p rate messages per second per key; 0 admits everything.
    explicit key_rate_limiter(std::uint32_t rate) noexcept : rate_(rate) {}

    [[nodiscard]] bool enabled() const noexcept { return rate_ != 0; }

    /// Takes one token from @p key's bucket if it has one.
    [[nodiscard]] bool admit(std::string_view key, clock::time_point now) {
        if (rate_ == 0) return true;
        auto it = buckets_.find(key);
        if (it == buckets_.end())
            it = buckets_.emplace(std::string(key), bucket{static_cast<double>(rate_), now}).first;
        auto& b = it->second;
        // Refill for the time since the last message, capped at one second's worth (the burst).
        const double elapsed = std::chrono::duration<double>(now - b.last).count();
        if (elapsed > 0) {
            b.tokens = std::min(static_cast<double>(rate_), b.tokens + elapsed * rate_);
            b.last = now;
        }
        if (b.tokens < 1.0) return false;
        b.tokens -= 1.0;
        return true;
    }

    /// Keys with a bucket.
    [[nodiscard]] std::size_t keys() const noexcept { return buckets_.size(); }

  private:
    struct bucket {
        double tokens;
        clock::time_point last;
    };
    struct key_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };

    std::uint32_t rate_;
    std::unordered_map<std::string, bucket, key_hash, std::equal_to<>> buckets_;
};

} // namespace zmesh::nodes::detail
