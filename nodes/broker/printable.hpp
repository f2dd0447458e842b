// SPDX-License-Identifier: MPL-2.0
// printable.hpp — internal: a safe rendering of peer-supplied bytes for logs and reason texts.
//
// Topics, directory names and endpoints come from the network. Written to a log as they are, a
// newline forges a log line, an escape sequence drives the operator's terminal, and a megabyte
// topic floods the log. Every place in the broker that shows such bytes goes through printable().
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace zmesh::nodes::detail {

/// Input bytes shown by default; the rest is summarised by its length.
inline constexpr std::size_t printable_max = 64;

/// A bounded, printable rendering of untrusted @p bytes: printable ASCII (0x20..0x7E) is kept,
/// any other byte and the backslash become "\xNN" (two lower-case hex digits), so the text is
/// unambiguous and holds no control character. At most @p max input bytes are shown; if there
/// were more, "... (N bytes)" follows, N being the full length. The result is at most
/// 4 * max + 32 characters long. The same form as mdp::printable_service_name(), so the broker's
/// log shows every peer-supplied string one way.
[[nodiscard]] std::string printable(std::string_view bytes, std::size_t max = printable_max);

} // namespace zmesh::nodes::detail
