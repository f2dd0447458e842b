// SPDX-License-Identifier: MPL-2.0
// acl.hpp — what each authenticated peer may do: an access list read from a text file.
//
// The file has one rule per line; `#` starts a comment. A rule is
//
//     WHO  PERMISSION  [PATTERN ...]
//
//   WHO         a key's name (the User-Id the ZAP handler gives it), or `*` for every admitted key
//   PERMISSION  call       send requests to the services that match
//               serve      register as a worker of the services that match
//               publish    publish on the topics that match
//               subscribe  subscribe to the topic prefixes that match
//               admin      use the broker's own `zmesh.*` services (no patterns)
//   PATTERN     `*` (anything), `prefix*` (anything that starts with prefix), or an exact name
//
// A rule adds permissions, nothing takes them away: a peer may do what any rule for its name or
// for `*` allows. Everything else is refused. `mmi.*` services (rfc 8) are open to every peer;
// `zmesh.*` services need `admin` or a `call` rule that names them.
//
// A subscription is to a prefix: it is allowed if every topic it could receive is allowed, that
// is, if an exact pattern equals it or a `prefix*` pattern's prefix starts it.
#pragma once

#include <zmesh/export.hpp>

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace zmesh::security {

enum class permission { call, serve, publish, subscribe, admin };

/// The word of @p p in an access list ("call", ...).
[[nodiscard]] ZMESH_EXPORT std::string_view to_string(permission p) noexcept;

class ZMESH_EXPORT access_list {
  public:
    /// An empty list: it allows nothing.
    access_list() = default;

    /// Parses @p text; @p source names it in errors ("acl.conf").
    /// @throws zmesh::error errc::invalid_argument naming @p source and the line.
    [[nodiscard]] static access_list parse(std::string_view text, const std::string& source);

    /// Reads and parses @p file. @throws zmesh::error naming the file (and the line).
    [[nodiscard]] static access_list load(const std::filesystem::path& file);

    /// Whether @p who may do @p what to @p resource (a service or topic; ignored for admin).
    [[nodiscard]] bool allows(std::string_view who, permission what,
                              std::string_view resource) const noexcept;

    /// Whether @p who may call @p service, with the rules for mmi.* and zmesh.* applied.
    [[nodiscard]] bool may_call(std::string_view who, std::string_view service) const noexcept;

    /// Rules read.
    [[nodiscard]] std::size_t size() const noexcept { return rules_.size(); }

  private:
    struct rule {
        std::string who;
        permission what;
        std::vector<std::string> patterns; // "*", "prefix*" or exact
    };
    std::vector<rule> rules_;
};

} // namespace zmesh::security
