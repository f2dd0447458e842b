// SPDX-License-Identifier: MPL-2.0
// log.cpp — leveled logging to stderr.
#include <zmesh/log.hpp>

#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <ctime>

namespace zmesh {
namespace {
std::atomic<int> threshold{static_cast<int>(log_level::info)};
constexpr const char* names[] = {"error", "warn", "info", "debug"};
} // namespace

void set_log_level(log_level level) noexcept { threshold.store(static_cast<int>(level)); }

log_level get_log_level() noexcept { return static_cast<log_level>(threshold.load()); }

bool log_enabled(log_level level) noexcept { return static_cast<int>(level) <= threshold.load(); }

std::optional<log_level> parse_log_level(std::string_view text) noexcept {
    for (int i = 0; i < 4; ++i)
        if (text == names[i]) return static_cast<log_level>(i);
    if (text == "warning") return log_level::warn;
    return std::nullopt;
}

void log(log_level level, const char* format, ...) noexcept {
    if (!log_enabled(level)) return;
    char line[1024];
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    tm utc{};
    ::gmtime_r(&ts.tv_sec, &utc);
    int n = std::snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld zmesh %s: ", utc.tm_hour,
                          utc.tm_min, utc.tm_sec, ts.tv_nsec / 1000000,
                          names[static_cast<int>(level)]);
    if (n < 0) return;
    va_list args;
    va_start(args, format);
    int m = std::vsnprintf(line + n, sizeof line - static_cast<std::size_t>(n) - 1, format, args);
    va_end(args);
    std::size_t len = static_cast<std::size_t>(n) + (m < 0 ? 0 : static_cast<std::size_t>(m));
    if (len > sizeof line - 2) len = sizeof line - 2;
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
