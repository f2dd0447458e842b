// SPDX-License-Identifier: MPL-2.0
// progress.hpp — internal: progress and a summary for commands that move many messages (pub,
// sub). On a terminal, stderr shows a line that is redrawn once a second (count, rate); at the
// end, terminal or not, one summary line says how many in how long, at what rate, and whatever
// the command adds (gaps, drops).
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace zmesh::cli {

class progress_line {
  public:
    /// @p command names the line ("pub"); @p verb says what happened to the messages
    /// ("published").
    progress_line(const char* command, const char* verb)
        : command_(command), verb_(verb), terminal_(::isatty(STDERR_FILENO) == 1) {}

    /// The count so far: redraws the terminal line if a second has passed since the last one.
    void tick(std::uint64_t count) {
        if (!terminal_) return;
        const auto now = clock::now();
        if (now - last_draw_ < std::chrono::seconds(1)) return;
        last_draw_ = now;
        std::fprintf(stderr, "\r\x1b[Kzmesh: %s: %llu messages %s, %.0f msg/s", command_,
                     static_cast<unsigned long long>(count), verb_, rate(count, now));
        drawn_ = true;
    }

    /// Clears the progress line and prints the summary: "zmesh: pub: published N messages in
    /// T s (R msg/s)" and @p tail.
    void finish(std::uint64_t count, const std::string& tail = {}) {
        const auto now = clock::now();
        if (drawn_) std::fputs("\r\x1b[K", stderr);
        std::fprintf(stderr, "zmesh: %s: %s %llu messages in %.2f s (%.0f msg/s)%s\n", command_,
                     verb_, static_cast<unsigned long long>(count),
                     std::chrono::duration<double>(now - start_).count(), rate(count, now),
                     tail.c_str());
    }

    /// Restarts the clock: the time before the first message (connecting, settling) is not
    /// the rate's.
    void restart() { start_ = clock::now(); }

  private:
    using clock = std::chrono::steady_clock;
    double rate(std::uint64_t count, clock::time_point now) const {
        const double s = std::chrono::duration<double>(now - start_).count();
        return s > 0 ? static_cast<double>(count) / s : 0.0;
    }
    const char* command_;
    const char* verb_;
    bool terminal_;
    bool drawn_ = false;
    clock::time_point start_ = clock::now();
    clock::time_point last_draw_ = clock::now();
};

} // namespace zmesh::cli
