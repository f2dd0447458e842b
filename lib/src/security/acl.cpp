// SPDX-License-Identifier: MPL-2.0
// acl.cpp — the access list (see acl.hpp).
#include <zmesh/security/acl.hpp>

#include <zmesh/error.hpp>

#include <fstream>
#include <sstream>

namespace zmesh::security {
namespace {

constexpr std::size_t max_file_size = 1 << 20;

bool parse_permission(std::string_view word, permission& out) noexcept {
    static constexpr std::pair<std::string_view, permission> words[] = {
        {"call", permission::call},         {"serve", permission::serve},
        {"publish", permission::publish},   {"subscribe", permission::subscribe},
        {"admin", permission::admin}};
    for (const auto& [w, p] : words) {
        if (w == word) {
            out = p;
            return true;
        }
    }
    return false;
}

/// Whether @p pattern allows the name or topic @p resource.
bool matches(std::string_view pattern, std::string_view resource) noexcept {
    if (pattern == "*") return true;
    if (!pattern.empty() && pattern.back() == '*')
        return resource.substr(0, pattern.size() - 1) == pattern.substr(0, pattern.size() - 1);
    return pattern == resource;
}

std::vector<std::string_view> words_of(std::string_view line) {
    std::vector<std::string_view> words;
    std::size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
        const std::size_t start = i;
        while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
        if (i > start) words.push_back(line.substr(start, i - start));
    }
    return words;
}

} // namespace

std::string_view to_string(permission p) noexcept {
    switch (p) {
    case permission::call: return "call";
    case permission::serve: return "serve";
    case permission::publish: return "publish";
    case permission::subscribe: return "subscribe";
    case permission::admin: return "admin";
    }
    return "?";
}

access_list access_list::parse(std::string_view text, const std::string& source) {
    access_list list;
    std::size_t line_no = 0;
    while (!text.empty()) {
        ++line_no;
        const auto end = text.find('\n');
        std::string_view line = text.substr(0, end);
        text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
        if (const auto hash = line.find('#'); hash != std::string_view::npos)
            line = line.substr(0, hash);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        const auto words = words_of(line);
        if (words.empty()) continue;
        const auto where = source + ":" + std::to_string(line_no) + ": ";
        if (words.size() < 2)
            throw error(errc::invalid_argument,
                        where + "a rule is WHO PERMISSION [PATTERN...], e.g. 'alice call orders.*'");
        rule r;
        r.who = std::string(words[0]);
        if (!parse_permission(words[1], r.what))
            throw error(errc::invalid_argument,
                        where + "unknown permission '" + std::string(words[1]) +
                            "' (call, serve, publish, subscribe or admin)");
        for (std::size_t i = 2; i < words.size(); ++i) {
            const std::string_view p = words[i];
            if (p.find('*') != std::string_view::npos && p.find('*') != p.size() - 1)
                throw error(errc::invalid_argument,
                            where + "pattern '" + std::string(p) +
                                "': '*' may only end a pattern ('orders.*', or '*' alone)");
            r.patterns.emplace_back(p);
        }
        if (r.what == permission::admin && !r.patterns.empty())
            throw error(errc::invalid_argument, where + "admin takes no patterns");
        if (r.what != permission::admin && r.patterns.empty())
            throw error(errc::invalid_argument,
                        where + std::string(to_string(r.what)) +
                            " needs at least one pattern ('*' for everything)");
        list.rules_.push_back(std::move(r));
    }
    return list;
}

access_list access_list::load(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in)
        throw error(errc::invalid_argument, "cannot read access list " + file.string());
    std::ostringstream text;
    text << in.rdbuf();
    if (text.str().size() > max_file_size)
        throw error(errc::invalid_argument, "access list " + file.string() + " is over 1 MiB");
    return parse(text.str(), file.string());
}

bool access_list::allows(std::string_view who, permission what,
                         std::string_view resource) const noexcept {
    for (const auto& r : rules_) {
        if (r.what != what || (r.who != "*" && r.who != who)) continue;
        if (what == permission::admin) return true;
        for (const auto& p : r.patterns) {
            if (what == permission::subscribe && p != "*" && p.back() != '*') {
                // An exact pattern allows a subscription to exactly that prefix only.
                if (p == resource) return true;
                continue;
            }
            if (matches(p, resource)) return true;
        }
    }
    return false;
}

bool access_list::may_call(std::string_view who, std::string_view service) const noexcept {
    if (service.substr(0, 4) == "mmi.") return true; // discovery, open to every admitted peer
    if (service.substr(0, 6) == "zmesh." && allows(who, permission::admin, {})) return true;
    if (service.substr(0, 6) == "zmesh.") {
        // Only a rule that names zmesh services explicitly, not a general '*'.
        for (const auto& r : rules_) {
            if (r.what != permission::call || (r.who != "*" && r.who != who)) continue;
            for (const auto& p : r.patterns)
                if (p != "*" && matches(p, service)) return true;
        }
        return false;
    }
    return allows(who, permission::call, service);
}

} // namespace zmesh::security
