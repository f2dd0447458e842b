// SPDX-License-Identifier: MPL-2.0
// printable.cpp — escaping and truncation of peer-supplied bytes for logs.
#include "printable.hpp"

namespace zmesh::nodes::detail {

std::string printable(std::string_view bytes, std::size_t max) {
    static constexpr char hex[] = "0123456789abcdef";
    const auto shown = bytes.substr(0, max);
    std::string s;
    s.reserve(shown.size() + 16);
    for (const char c : shown) {
        const auto u = static_cast<unsigned char>(c);
        if (u >= 0x20 && u < 0x7f && c != '\\') {
            s += c;
        } else {
            s += "\\x";
            s += hex[u >> 4];
            s += hex[u & 15];
        }
    }
    if (bytes.size() > max) s += "... (" + std::to_string(bytes.size()) + " bytes)";
    return s;
}

} // namespace zmesh::nodes::detail
