// SPDX-License-Identifier: MPL-2.0
// log.cpp — leveled logging to stderr.
#include <zmesh/log.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace zmesh {
namespace {
std::atomic<int> threshold{static_cast<int>(log_level::info)};
std::atomic<int> format_in_use{static_cast<int>(log_format::text)};
constexpr const char* names[] = {"error", "warn", "info", "debug"};
} // namespace

void set_log_format(log_format format) noexcept {
    format_in_use.store(static_cast<int>(format));
}

std::optional<log_format> parse_log_format(std::string_view text) noexcept {
    if (text == "text") return log_format::text;
    if (text == "json") return log_format::json;
    return std::nullopt;
}

void set_log_level(log_level level) noexcept { threshold.store(static_cast<int>(level)); }

log_level get_log_level() noexcept { return static_cast<log_level>(threshold.load()); }

bool log_enabled(log_level level) noexcept { return static_cast<int>(level) <= threshold.load(); }

std::optional<log_level> parse_log_level(std::string_view text) noexcept {
    for (int i = 0; i < 4; ++i)
        if (text == names[i]) return static_cast<log_level>(i);
    if (text == "warning") return log_level::warn;
    return std::nullopt;
}

namespace {

/// Appends @p text to @p out as the inside of a JSON string: quote, backslash and control
/// characters escaped, and any byte over 0x7f as \u00XX, so that the line is valid JSON
/// whatever bytes a peer put into a message.
std::size_t json_escape(char* out, std::size_t room, const char* text, std::size_t len) noexcept {
    static constexpr char hex[] = "0123456789abcdef";
    std::size_t n = 0;
    for (std::size_t i = 0; i < len; ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        char esc[6];
        std::size_t k = 0;
        if (c == '"' || c == '\\') {
            esc[k++] = '\\';
            esc[k++] = static_cast<char>(c);
        } else if (c == '\n') {
            esc[k++] = '\\';
            esc[k++] = 'n';
        } else if (c < 0x20 || c >= 0x7f) {
            esc[k++] = '\\';
            esc[k++] = 'u';
            esc[k++] = '0';
            esc[k++] = '0';
            esc[k++] = hex[c >> 4];
            esc[k++] = hex[c & 0xf];
        } else {
            esc[k++] = static_cast<char>(c);
        }
        if (n + k > room) break; // truncated, but never mid-escape
        for (std::size_t j = 0; j < k; ++j) out[n++] = esc[j];
    }
    return n;
}

} // namespace

void log(log_level level, const char* format, ...) noexcept {
    if (!log_enabled(level)) return;
    char text[1024];
    va_list args;
    va_start(args, format);
    const int m = std::vsnprintf(text, sizeof text, format, args);
    va_end(args);
    std::size_t text_len = m < 0 ? 0 : std::min(static_cast<std::size_t>(m), sizeof text - 1);
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    tm utc{};
    ::gmtime_r(&ts.tv_sec, &utc);
    const char* level_name = names[static_cast<int>(level)];
    char line[sizeof text * 6 + 128];
    int n;
    std::size_t len;
    if (static_cast<log_format>(format_in_use.load()) == log_format::json) {
        n = std::snprintf(line, sizeof line,
                          "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\","
                          "\"msg\":\"",
                          utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min,
                          utc.tm_sec, ts.tv_nsec / 1000000, level_name);
        if (n < 0) return;
        len = static_cast<std::size_t>(n);
        len += json_escape(line + len, sizeof line - len - 3, text, text_len);
        line[len++] = '"';
        line[len++] = '}';
    } else {
        n = std::snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld zmesh %s: ", utc.tm_hour,
                          utc.tm_min, utc.tm_sec, ts.tv_nsec / 1000000, level_name);
        if (n < 0) return;
        len = static_cast<std::size_t>(n);
        std::memcpy(line + len, text, text_len);
        len += text_len;
    }
    line[len++] = '\n';
    // One write per line so lines from several threads do not interleave.
    ssize_t ignored = ::write(STDERR_FILENO, line, len);
    (void)ignored;
}

bool log_limiter::allow() noexcept {
    auto now = std::chrono::steady_clock::now();
    if (now - window_start_ >= window_) {
        window_start_ = now;
        reported_suppressed_ += suppressed_;
        suppressed_ = 0;
        count_ = 0;
    }
    if (count_ < burst_) {
        ++count_;
        return true;
    }
    ++suppressed_;
    return false;
}

} // namespace zmesh
