// SPDX-License-Identifier: MPL-2.0
// stderr_capture.hpp — test helper: what the process writes to stderr (zmesh::log) while it
// lives, for tests that check what a node logs about hostile input. The broker under test logs
// from its own thread; zmesh::log writes each line with one write(2), so lines arrive whole.
#pragma once

#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

namespace node_test {

class stderr_capture {
  public:
    stderr_capture() {
        file_ = std::tmpfile();
        REQUIRE(file_ != nullptr);
        saved_ = ::dup(STDERR_FILENO);
        REQUIRE(saved_ >= 0);
        REQUIRE(::dup2(::fileno(file_), STDERR_FILENO) >= 0);
    }
    ~stderr_capture() {
        restore();
        if (file_) std::fclose(file_);
    }
    stderr_capture(const stderr_capture&) = delete;
    stderr_capture& operator=(const stderr_capture&) = delete;

    /// Everything written so far.
    std::string text() const {
        std::string out;
        char buf[4096];
        for (off_t at = 0;;) {
            const auto n = ::pread(::fileno(file_), buf, sizeof buf, at);
            if (n <= 0) break;
            out.append(buf, static_cast<std::size_t>(n));
            at += n;
        }
        return out;
    }

    /// The lines written so far that contain @p part.
    std::vector<std::string> lines_with(const std::string& part) const {
        std::vector<std::string> out;
        const auto all = text();
        for (std::size_t at = 0; at < all.size();) {
            auto end = all.find('\n', at);
            if (end == std::string::npos) end = all.size();
            auto line = all.substr(at, end - at);
            if (line.find(part) != std::string::npos) out.push_back(std::move(line));
            at = end + 1;
        }
        return out;
    }

    /// Puts the real stderr back (the destructor does it too).
    void restore() noexcept {
        if (saved_ < 0) return;
        ::dup2(saved_, STDERR_FILENO);
        ::close(saved_);
        saved_ = -1;
    }

  private:
    std::FILE* file_ = nullptr;
    int saved_ = -1;
};

} // namespace node_test
