// SPDX-License-Identifier: MPL-2.0
// log.hpp — minimal leveled logging to stderr, and a rate limiter for logs driven by network input.
//
// Nodes log a malformed frame at warn level; a hostile peer could send millions of them, so such
// logs go through log_limiter, which lets a burst through and then only counts what it suppressed.
#pragma once

#include <zmesh/export.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

namespace zmesh {

enum class log_level { error = 0, warn = 1, info = 2, debug = 3 };

/// Sets the process-wide threshold (default: info). Thread-safe.
ZMESH_EXPORT void set_log_level(log_level level) noexcept;
/// The current threshold.
[[nodiscard]] ZMESH_EXPORT log_level get_log_level() noexcept;
/// Parses "error", "warn", "info" or "debug".
[[nodiscard]] ZMESH_EXPORT std::optional<log_level> parse_log_level(std::string_view text) noexcept;
/// True if a message at @p level would be written.
[[nodiscard]] ZMESH_EXPORT bool log_enabled(log_level level) noexcept;

/// How log() writes a line.
enum class log_format {
    text, ///< "HH:MM:SS.mmm zmesh LEVEL: text" (UTC), for people
    json, ///< {"time":"YYYY-MM-DDTHH:MM:SS.mmmZ","level":"LEVEL","msg":"text"}, one per line
};
/// Sets the process-wide format (default: text). Thread-safe.
ZMESH_EXPORT void set_log_format(log_format format) noexcept;
/// Parses "text" or "json".
[[nodiscard]] ZMESH_EXPORT std::optional<log_format> parse_log_format(std::string_view text) noexcept;

/// Writes one line to stderr if @p level passes the threshold: "<time> zmesh <level>: <text>",
/// or one JSON object (set_log_format). printf-style; thread-safe (one write per line).
ZMESH_EXPORT void log(log_level level, const char* format, ...) noexcept
    __attribute__((format(printf, 2, 3)));

/// Lets up to @p burst events per @p window through; counts the rest.
/// Not thread-safe: one per loop.
class ZMESH_EXPORT log_limiter {
  public:
    explicit log_limiter(int burst = 10, std::chrono::milliseconds window = std::chrono::seconds(1))
        : burst_(burst), window_(window) {}
    /// True if this event may be logged.
    bool allow() noexcept;
    /// Events suppressed in windows that have ended and not been reported yet; reading resets
    /// it, so each suppressed event is reported once. Call right after allow() returned true.
    [[nodiscard]] std::uint64_t take_suppressed() noexcept {
        const auto n = reported_suppressed_;
        reported_suppressed_ = 0;
        return n;
    }

  private:
    int burst_;
    std::chrono::milliseconds window_;
    std::chrono::steady_clock::time_point window_start_{};
    int count_ = 0;
    std::uint64_t suppressed_ = 0;
    std::uint64_t reported_suppressed_ = 0;
};

} // namespace zmesh
