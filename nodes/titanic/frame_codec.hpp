// SPDX-License-Identifier: MPL-2.0
// frame_codec.hpp — internal: how the Titanic store engines keep a message body in one value.
//
// A body is its frames as (u32 little-endian length, bytes)... Little-endian is fixed, not
// native, so a store can move between machines; the SQLite BLOB and the PostgreSQL bytea hold
// the same bytes.
#pragma once

#include "store.hpp"

#include <zmesh/error.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>

namespace zmesh::nodes::titanic::detail {

/// Writes @p body to @p out (replacing its content) as (u32 little-endian length, bytes) per frame.
/// @throws zmesh::error errc::invalid_argument for a frame of 4 GiB or more.
inline void encode_frames(const frames& body, std::string& out) {
    out.clear();
    std::size_t total = 0;
    for (const auto& f : body) total += 4 + f.size();
    out.reserve(total);
    for (const auto& f : body) {
        if (f.size() > std::numeric_limits<std::uint32_t>::max()) {
            throw zmesh::error(errc::invalid_argument, "titanic store: frame larger than 4 GiB");
        }
        auto n = static_cast<std::uint32_t>(f.size());
        for (int shift = 0; shift < 32; shift += 8) {
            out.push_back(static_cast<char>((n >> shift) & 0xffU));
        }
        out.append(f);
    }
}

/// Decodes encode_frames() output; nullopt if it is malformed (a corrupt row).
inline std::optional<frames> decode_frames(const void* data, std::size_t size) {
    frames body;
    const auto* p = static_cast<const unsigned char*>(data);
    std::size_t at = 0;
    while (at < size) {
        if (size - at < 4) return std::nullopt;
        std::uint32_t n = 0;
        for (int i = 0; i < 4; ++i)
            n |= std::uint32_t{p[at + static_cast<std::size_t>(i)]} << (8 * i);
        at += 4;
        if (size - at < n) return std::nullopt;
        body.emplace_back(reinterpret_cast<const char*>(p + at), n);
        at += n;
    }
    return body;
}

} // namespace zmesh::nodes::titanic::detail
