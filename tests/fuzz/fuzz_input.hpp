// SPDX-License-Identifier: MPL-2.0
// fuzz_input.hpp — internal to tests/fuzz: how a libFuzzer input becomes frames and messages,
// and the check that turns a broken property into a crash libFuzzer keeps.
//
// The scheme (tests/fuzz/README.md): an input is a run of records, each a 2-byte big-endian
// length L and then L bytes, one frame per record. A length that runs past the end takes the
// bytes that are left, and a single trailing byte is ignored, so every input means something
// and the fuzzer wastes no time on refused inputs. The length 0xFFFF is not a frame: it ends the
// current message, for the targets that take several messages.
#pragma once

#include <zmesh/message.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace zmesh::fuzz {

/// The record length that ends a message instead of giving a frame.
inline constexpr std::uint16_t end_of_message = 0xFFFF;

/// Frames (views into the input) of one message.
using frame_list = std::vector<std::string_view>;

/// Splits an input into messages of frames. A message ends at each end_of_message record and at
/// the end of the input; an empty message (two markers in a row) is kept, since an empty request
/// is input a decoder must handle too.
inline std::vector<frame_list> split_messages(const std::uint8_t* data, std::size_t size) {
    std::vector<frame_list> out(1);
    std::size_t at = 0;
    while (size - at >= 2) {
        const std::size_t n = std::size_t{data[at]} << 8 | data[at + 1];
        at += 2;
        if (n == end_of_message) {
            out.emplace_back();
            continue;
        }
        const std::size_t take = n < size - at ? n : size - at;
        out.back().emplace_back(reinterpret_cast<const char*>(data + at), take);
        at += take;
    }
    return out;
}

/// Splits an input into the frames of one message; end_of_message records are skipped.
inline frame_list split_frames(const std::uint8_t* data, std::size_t size) {
    frame_list all;
    for (auto& m : split_messages(data, size)) all.insert(all.end(), m.begin(), m.end());
    return all;
}

/// A zmesh::message holding a copy of each frame.
inline message to_message(const frame_list& frames) {
    message m;
    for (auto f : frames) m.push_back(f);
    return m;
}

/// Appends @p frame to @p out as one record (the inverse of split_messages, for seed inputs).
inline void append_frame(std::string& out, std::string_view frame) {
    const std::size_t n = frame.size() < end_of_message ? frame.size() : end_of_message - 1;
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xFF));
    out.append(frame.substr(0, n));
}

/// Appends an end_of_message record to @p out.
inline void append_end_of_message(std::string& out) { out.append("\xFF\xFF", 2); }

/// Reports a broken property and aborts: libFuzzer saves the input that did it.
[[noreturn]] inline void property_failed(const char* file, int line, const char* what) {
    std::fprintf(stderr, "%s:%d: fuzz property failed: %s\n", file, line, what);
    std::abort();
}

} // namespace zmesh::fuzz

/// Checks a property of the code under test on this input; aborts (a finding) if it is false.
#define ZMESH_FUZZ_CHECK(cond)                                                                   \
    ((cond) ? static_cast<void>(0) : ::zmesh::fuzz::property_failed(__FILE__, __LINE__, #cond))
