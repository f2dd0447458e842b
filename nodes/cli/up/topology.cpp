// SPDX-License-Identifier: MPL-2.0
// topology.cpp — reads a `zmesh up` topology file (see topology.hpp and docs/up.md).
//
// Three passes, each over the whole file, so that the first error a user sees is the first one
// that matters: (1) the TOML is read into node definitions whose strings are parsed templates
// (syntax and key errors), (2) every reference is checked and turned into a dependency edge,
// and the nodes are ordered (unknown nodes and keys, unset variables, cycles), (3) ports are
// allocated and every template is substituted, replica by replica, in start order.
#include "topology.hpp"

#include <toml++/toml.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

namespace zmesh::cli::up {

namespace fs = std::filesystem;

namespace {

// ---------------------------------------------------------------------------------------------
// Templates: a string with ${...} references, parsed once so that validation and substitution
// agree on what a reference is.

struct templ;

/// One piece of a template: literal text or one ${...} reference.
struct part {
    enum kind_t { literal, var, up_dir, up_run_dir, up_name, self_name, self_index, self_field,
                  node_field };
    kind_t kind = literal;
    std::string text;        ///< literal: the text; var: the variable's name
    bool has_default = false;
    /// var: what follows ":-", itself a template (${X:-${up.run_dir}/x.db} is allowed)
    std::shared_ptr<const templ> fallback;
    std::string node;        ///< node_field: the node referred to
    int replica = 0;         ///< node_field: 1-based replica, 0 for all of them
    std::string field;       ///< self_field/node_field: endpoint, address or port
    std::string key;         ///< self_field/node_field: the endpoint's key
};

struct templ {
    std::vector<part> parts;
    long line = 0;
};

bool is_var_name(const std::string& s) {
    if (s.empty() || (std::isdigit(static_cast<unsigned char>(s[0])) != 0)) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_';
    });
}

/// Node names and endpoint keys: letters, digits, '_' and '-' (no '.', which separates the
/// parts of a reference).
bool is_name(const std::string& s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-';
    });
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::size_t start = 0;
    for (;;) {
        const auto at = s.find(sep, start);
        out.push_back(s.substr(start, at == std::string::npos ? std::string::npos : at - start));
        if (at == std::string::npos) return out;
        start = at + 1;
    }
}

bool is_field(const std::string& s) { return s == "endpoint" || s == "address" || s == "port"; }

class reader {
  public:
    reader(std::string file, load_options options)
        : file_(std::move(file)), options_(std::move(options)) {
        if (!options_.getenv)
            options_.getenv = [](const std::string& name) -> std::optional<std::string> {
                const char* v = std::getenv(name.c_str());
                if (!v) return std::nullopt;
                return std::string(v);
            };
    }

    topology read(const std::string& text);

  private:
    struct endpoint_def {
        std::string key;
        templ pattern;
    };
    struct dep_edge {
        std::size_t node;
        long line;
    };
    struct node_def {
        std::string name;
        long line = 0;
        std::vector<templ> run;
        std::vector<std::pair<std::string, templ>> env;
        bool has_cwd = false;
        templ cwd;
        std::vector<endpoint_def> endpoints;
        int count = 1;
        std::vector<std::pair<std::string, long>> after;
        restart_policy restart = restart_policy::on_failure;
        ready_kind ready = ready_kind::endpoints;
        std::string ready_line;
        long ready_timeout_ms = 30000;
        std::vector<dep_edge> deps;
        // Allocated in pass 3: [replica][endpoint], in the order of `endpoints`.
        std::vector<std::vector<endpoint>> allocated;
        std::size_t first_instance = 0;
    };

    [[noreturn]] void fail(long line, const std::string& message) const {
        throw topology_error(file_ + (line > 0 ? ":" + std::to_string(line) : std::string()) +
                             ": " + message);
    }
    static long line_of(const toml::node& n) { return static_cast<long>(n.source().begin.line); }
    static long line_of(const toml::key& k) { return static_cast<long>(k.source().begin.line); }

    templ parse_template(const std::string& raw, long line) const;
    part parse_reference(const std::string& inner, long line) const;
    templ string_template(const toml::node& n, const std::string& what) const;
    void read_up(const toml::table& t);
    void read_env(const toml::table& t);
    void read_node(const std::string& name, const toml::node& n, long key_line);
    void check_references(node_def& d, const templ& t, const char* where);
    void order();
    void allocate(node_def& d);
    std::string substitute(const templ& t, const node_def* self, int index) const;
    std::string field_of(const endpoint& e, const std::string& field, bool from_other,
                         long line, const std::string& owner) const;
    std::string resolve_exe(const std::string& run0, const std::string& path_env, long line,
                            const std::string& node, bool check) const;
    int port_for(const std::string& host, long line);

    std::string file_;
    load_options options_;
    topology topo_;
    std::vector<std::pair<std::string, templ>> global_env_;
    std::vector<node_def> nodes_;
    std::map<std::string, std::size_t> by_name_;
    std::vector<std::size_t> order_;
    std::set<int> ports_taken_;
};

part reader::parse_reference(const std::string& inner, long line) const {
    part p;
    const auto dash = inner.find(":-");
    if (dash != std::string::npos) {
        p.kind = part::var;
        p.text = inner.substr(0, dash);
        p.has_default = true;
        p.fallback = std::make_shared<const templ>(parse_template(inner.substr(dash + 2), line));
        if (!is_var_name(p.text)) fail(line, "'${" + inner + "}': '" + p.text +
                                                 "' is not a variable name");
        return p;
    }
    const auto pieces = split(inner, '.');
    auto bad = [&]() -> part {
        fail(line, "unknown reference '${" + inner +
                       "}' (see docs/up.md: ${NODE.endpoint.KEY}, ${self.port.KEY}, ${up.dir}, "
                       "${VAR:-default}...)");
    };
    if (pieces.size() == 1) {
        if (!is_var_name(inner)) bad();
        p.kind = part::var;
        p.text = inner;
        return p;
    }
    if (pieces[0] == "up") {
        if (pieces.size() != 2) bad();
        if (pieces[1] == "dir") p.kind = part::up_dir;
        else if (pieces[1] == "run_dir") p.kind = part::up_run_dir;
        else if (pieces[1] == "name") p.kind = part::up_name;
        else bad();
        return p;
    }
    if (pieces[0] == "self") {
        if (pieces.size() == 2 && pieces[1] == "name") {
            p.kind = part::self_name;
        } else if (pieces.size() == 2 && pieces[1] == "index") {
            p.kind = part::self_index;
        } else if (pieces.size() == 3 && is_field(pieces[1]) && is_name(pieces[2])) {
            p.kind = part::self_field;
            p.field = pieces[1];
            p.key = pieces[2];
        } else {
            bad();
        }
        return p;
    }
    if (!is_name(pieces[0])) bad();
    p.kind = part::node_field;
    p.node = pieces[0];
    if (pieces.size() == 3 && is_field(pieces[1]) && is_name(pieces[2])) {
        p.field = pieces[1];
        p.key = pieces[2];
        return p;
    }
    if (pieces.size() == 4 && is_field(pieces[2]) && is_name(pieces[3]) && !pieces[1].empty() &&
        pieces[1].size() < 6 &&
        std::all_of(pieces[1].begin(), pieces[1].end(),
                    [](char c) { return c >= '0' && c <= '9'; })) {
        p.replica = std::stoi(pieces[1]);
        p.field = pieces[2];
        p.key = pieces[3];
        if (p.replica < 1) fail(line, "'${" + inner + "}': replicas are numbered from 1");
        return p;
    }
    return bad();
}

templ reader::parse_template(const std::string& raw, long line) const {
    templ t;
    t.line = line;
    std::string lit;
    for (std::size_t i = 0; i < raw.size(); ++i) {
        if (raw[i] != '$' || i + 1 == raw.size()) {
            lit += raw[i];
            continue;
        }
        if (raw[i + 1] == '$') { // $$ is a literal $
            lit += '$';
            ++i;
            continue;
        }
        if (raw[i + 1] != '{') { // a lone $ (a shell's $HOME in a script) stays as written
            lit += '$';
            continue;
        }
        // The matching '}': a default may hold references of its own (${X:-${up.dir}/y}).
        std::size_t close = std::string::npos;
        for (std::size_t j = i + 2, depth = 1; j < raw.size(); ++j) {
            if (raw[j] == '$' && j + 1 < raw.size() && raw[j + 1] == '{') {
                ++depth;
                ++j;
            } else if (raw[j] == '}' && --depth == 0) {
                close = j;
                break;
            }
        }
        if (close == std::string::npos)
            fail(line, "unterminated '${' in \"" + raw + "\" (a literal $ is written $$)");
        if (!lit.empty()) {
            part l;
            l.text = std::move(lit);
            t.parts.push_back(std::move(l));
            lit.clear();
        }
        t.parts.push_back(parse_reference(raw.substr(i + 2, close - i - 2), line));
        i = close;
    }
    if (!lit.empty()) {
        part l;
        l.text = std::move(lit);
        t.parts.push_back(std::move(l));
    }
    return t;
}

/// A string value, or a number or boolean written as its text (env values such as 3 or true).
templ reader::string_template(const toml::node& n, const std::string& what) const {
    const long line = line_of(n);
    if (n.is_string()) return parse_template(n.as_string()->get(), line);
    if (n.is_integer()) return parse_template(std::to_string(n.as_integer()->get()), line);
    if (n.is_boolean()) return parse_template(n.as_boolean()->get() ? "true" : "false", line);
    fail(line, what + " must be a string");
}

void reader::read_up(const toml::table& t) {
    for (const auto& [k, v] : t) {
        const std::string key(k.str());
        const long line = line_of(v);
        if (key == "name") {
            if (!v.is_string() || v.as_string()->get().empty())
                fail(line, "up.name must be a non-empty string");
            topo_.name = v.as_string()->get();
        } else if (key == "restart_backoff_ms") {
            const auto* a = v.as_array();
            if (!a || a->size() != 2 || !(*a)[0].is_integer() || !(*a)[1].is_integer())
                fail(line, "up.restart_backoff_ms must be [FIRST, CAP] in milliseconds");
            topo_.backoff_first_ms = static_cast<long>((*a)[0].as_integer()->get());
            topo_.backoff_cap_ms = static_cast<long>((*a)[1].as_integer()->get());
            if (topo_.backoff_first_ms < 1 || topo_.backoff_cap_ms < topo_.backoff_first_ms ||
                topo_.backoff_cap_ms > 3600000)
                fail(line, "up.restart_backoff_ms: need 1 <= FIRST <= CAP <= 3600000");
        } else if (key == "stop_timeout_ms") {
            if (!v.is_integer() || v.as_integer()->get() < 1 || v.as_integer()->get() > 3600000)
                fail(line, "up.stop_timeout_ms must be an integer from 1 to 3600000");
            topo_.stop_timeout_ms = static_cast<long>(v.as_integer()->get());
        } else {
            fail(line_of(k), "unknown key 'up." + key +
                                 "' (known: name, restart_backoff_ms, stop_timeout_ms)");
        }
    }
}

void reader::read_env(const toml::table& t) {
    for (const auto& [k, v] : t) {
        const std::string key(k.str());
        if (!is_var_name(key)) fail(line_of(k), "'" + key + "' is not a variable name");
        global_env_.emplace_back(key, string_template(v, "env." + key));
    }
}

void reader::read_node(const std::string& name, const toml::node& n, long key_line) {
    if (!is_name(name))
        fail(key_line, "node name '" + name + "': use letters, digits, '_' and '-' only");
    if (name == "up" || name == "self")
        fail(key_line, "'" + name + "' is reserved (${" + name + ".*}); rename the node");
    const auto* t = n.as_table();
    if (!t) fail(line_of(n), "node." + name + " must be a table ([node." + name + "])");
    node_def d;
    d.name = name;
    d.line = line_of(n);
    bool has_run = false;
    const std::string where = "node." + name;
    for (const auto& [k, v] : *t) {
        const std::string key(k.str());
        const long line = line_of(v);
        if (key == "run") {
            const auto* a = v.as_array();
            if (!a || a->empty())
                fail(line, where + ".run must be a non-empty array of strings");
            for (const auto& e : *a) {
                if (!e.is_string()) fail(line_of(e), where + ".run must hold strings only");
                d.run.push_back(parse_template(e.as_string()->get(), line_of(e)));
            }
            has_run = true;
        } else if (key == "endpoints") {
            const auto* et = v.as_table();
            if (!et) fail(line, where + ".endpoints must be a table { KEY = \"tcp://...\" }");
            for (const auto& [ek, ev] : *et) {
                const std::string ename(ek.str());
                if (!is_name(ename))
                    fail(line_of(ek), "endpoint key '" + ename +
                                          "': use letters, digits, '_' and '-' only");
                if (!ev.is_string())
                    fail(line_of(ev), where + ".endpoints." + ename + " must be a string");
                endpoint_def e;
                e.key = ename;
                e.pattern = parse_template(ev.as_string()->get(), line_of(ev));
                d.endpoints.push_back(std::move(e));
            }
        } else if (key == "env") {
            const auto* et = v.as_table();
            if (!et) fail(line, where + ".env must be a table { VAR = \"value\" }");
            for (const auto& [ek, ev] : *et) {
                const std::string var(ek.str());
                if (!is_var_name(var)) fail(line_of(ek), "'" + var + "' is not a variable name");
                d.env.emplace_back(var, string_template(ev, where + ".env." + var));
            }
        } else if (key == "cwd") {
            if (!v.is_string()) fail(line, where + ".cwd must be a string");
            d.has_cwd = true;
            d.cwd = parse_template(v.as_string()->get(), line);
        } else if (key == "count") {
            if (!v.is_integer() || v.as_integer()->get() < 1 || v.as_integer()->get() > 1000)
                fail(line, where + ".count must be an integer from 1 to 1000");
            d.count = static_cast<int>(v.as_integer()->get());
        } else if (key == "after") {
            const auto* a = v.as_array();
            if (!a) fail(line, where + ".after must be an array of node names");
            for (const auto& e : *a) {
                if (!e.is_string()) fail(line_of(e), where + ".after must hold node names");
                d.after.emplace_back(e.as_string()->get(), line_of(e));
            }
        } else if (key == "restart") {
            const std::string r = v.is_string() ? v.as_string()->get() : std::string();
            if (r == "always") d.restart = restart_policy::always;
            else if (r == "on-failure") d.restart = restart_policy::on_failure;
            else if (r == "never") d.restart = restart_policy::never;
            else fail(line, where + ".restart must be \"always\", \"on-failure\" or \"never\"");
        } else if (key == "ready") {
            if (v.is_string()) {
                const std::string r = v.as_string()->get();
                if (r == "endpoints") d.ready = ready_kind::endpoints;
                else if (r == "exit") d.ready = ready_kind::exit;
                else if (r == "none") d.ready = ready_kind::none;
                else fail(line, where + ".ready must be \"endpoints\", \"exit\", \"none\" or "
                                        "{ line = \"TEXT\" }");
            } else if (const auto* rt = v.as_table()) {
                const auto* l = rt->get("line");
                if (rt->size() != 1 || !l || !l->is_string() || l->as_string()->get().empty())
                    fail(line, where + ".ready as a table is { line = \"TEXT\" }, TEXT not empty");
                d.ready = ready_kind::line;
                d.ready_line = l->as_string()->get();
            } else {
                fail(line, where + ".ready must be \"endpoints\", \"exit\", \"none\" or "
                                   "{ line = \"TEXT\" }");
            }
        } else if (key == "ready_timeout_ms") {
            if (!v.is_integer() || v.as_integer()->get() < 1 || v.as_integer()->get() > 86400000)
                fail(line, where + ".ready_timeout_ms must be an integer from 1 to 86400000");
            d.ready_timeout_ms = static_cast<long>(v.as_integer()->get());
        } else {
            fail(line_of(k), "unknown key '" + where + "." + key +
                                 "' (known: run, endpoints, env, cwd, count, after, restart, "
                                 "ready, ready_timeout_ms)");
        }
    }
    if (!has_run) fail(d.line, where + " has no run = [\"program\", \"arg\", ...]");
    nodes_.push_back(std::move(d));
}

/// Checks each reference of @p t against the nodes and the environment, and records the
/// dependencies it implies. @p where says which values may refer to other nodes.
void reader::check_references(node_def& d, const templ& t, const char* where) {
    const bool endpoints_value = std::strcmp(where, "endpoints") == 0;
    const bool global_env = std::strcmp(where, "[env]") == 0;
    for (const auto& p : t.parts) {
        switch (p.kind) {
        case part::literal: case part::up_dir: case part::up_run_dir: case part::up_name:
        case part::self_name: case part::self_index:
            break;
        case part::var:
            if (!p.has_default && !options_.getenv(p.text))
                fail(t.line, "${" + p.text + "} is not set (give it a value, or a default: ${" +
                                 p.text + ":-VALUE})");
            // The default's own references are checked, and imply dependencies, either way.
            if (p.has_default) check_references(d, *p.fallback, where);
            break;
        case part::self_field: {
            if (endpoints_value)
                fail(t.line, "an endpoint cannot refer to an endpoint (${self." + p.field + "." +
                                 p.key + "})");
            if (global_env) break; // checked per node in check_global_env
            const bool known = std::any_of(d.endpoints.begin(), d.endpoints.end(),
                                           [&](const endpoint_def& e) { return e.key == p.key; });
            if (!known)
                fail(t.line, "node " + d.name + " has no endpoint '" + p.key + "' (${self." +
                                 p.field + "." + p.key + "})");
            break;
        }
        case part::node_field: {
            const std::string ref = "${" + p.node + "." +
                                    (p.replica ? std::to_string(p.replica) + "." : "") + p.field +
                                    "." + p.key + "}";
            if (endpoints_value || global_env)
                fail(t.line, std::string(endpoints_value ? "an endpoint" : "[env]") +
                                 " cannot refer to another node (" + ref + ")");
            const auto it = by_name_.find(p.node);
            if (it == by_name_.end()) fail(t.line, "unknown node '" + p.node + "' in " + ref);
            const auto& other = nodes_[it->second];
            const bool known = std::any_of(other.endpoints.begin(), other.endpoints.end(),
                                           [&](const endpoint_def& e) { return e.key == p.key; });
            if (!known)
                fail(t.line, "node " + other.name + " has no endpoint '" + p.key + "' (" + ref +
                                 ")");
            if (p.replica > other.count)
                fail(t.line, "node " + other.name + " has " + std::to_string(other.count) +
                                 " replica(s), not " + std::to_string(p.replica) + " (" + ref +
                                 ")");
            if (other.name != d.name) d.deps.push_back({it->second, t.line});
            break;
        }
        }
    }
}

/// Orders the nodes so that every dependency comes first (file order otherwise), or fails on a
/// cycle, naming it and the line of its first edge.
void reader::order() {
    enum { white, grey, black };
    std::vector<int> colour(nodes_.size(), white);
    std::vector<std::size_t> stack; // the path being explored, for the cycle's message
    std::vector<long> stack_lines;
    std::function<void(std::size_t)> visit = [&](std::size_t i) {
        colour[i] = grey;
        stack.push_back(i);
        for (const auto& e : nodes_[i].deps) {
            if (colour[e.node] == grey) {
                std::string path;
                long line = e.line;
                const auto from = std::find(stack.begin(), stack.end(), e.node);
                for (auto s = from; s != stack.end(); ++s) path += nodes_[*s].name + " -> ";
                path += nodes_[e.node].name;
                fail(line, "dependency cycle: " + path +
                               " (references and `after` must not form a loop)");
            }
            if (colour[e.node] == white) {
                stack_lines.push_back(e.line);
                visit(e.node);
                stack_lines.pop_back();
            }
        }
        colour[i] = black;
        stack.pop_back();
        order_.push_back(i);
    };
    for (std::size_t i = 0; i < nodes_.size(); ++i)
        if (colour[i] == white) visit(i);
}

int reader::port_for(const std::string& host, long line) {
    // The kernel may hand out a port it gave before once that socket is closed; one run never
    // gives the same port to two endpoints.
    for (int attempt = 0; attempt < 20; ++attempt) {
        int port = 0;
        try {
            port = free_port(host);
        } catch (const std::exception& e) {
            fail(line, e.what());
        }
        if (ports_taken_.insert(port).second) return port;
    }
    fail(line, "no free port on " + host);
}

void reader::allocate(node_def& d) {
    d.allocated.resize(static_cast<std::size_t>(d.count));
    for (int r = 1; r <= d.count; ++r) {
        for (const auto& def : d.endpoints) {
            const std::string url = substitute(def.pattern, &d, r);
            endpoint e;
            e.key = def.key;
            const long line = def.pattern.line;
            if (url.rfind("tcp://", 0) == 0) {
                const std::string rest = url.substr(6);
                const auto colon = rest.rfind(':');
                if (colon == std::string::npos || colon == 0 || colon + 1 == rest.size())
                    fail(line, "endpoint '" + url + "' needs tcp://HOST:PORT (PORT may be *)");
                std::string host = rest.substr(0, colon);
                const std::string port = rest.substr(colon + 1);
                std::string bind_host = host;
                if (host.size() > 2 && host.front() == '[' && host.back() == ']')
                    bind_host = host.substr(1, host.size() - 2);
                const bool wildcard = host == "*" || host == "0.0.0.0";
                if (wildcard) bind_host = "0.0.0.0";
                e.tcp = true;
                e.host = wildcard ? "127.0.0.1" : bind_host;
                if (port == "*") {
                    e.port = port_for(bind_host, line);
                } else {
                    const bool digits =
                        port.size() <= 5 && std::all_of(port.begin(), port.end(), [](char c) {
                            return c >= '0' && c <= '9';
                        });
                    if (!digits || std::stoi(port) < 1 || std::stoi(port) > 65535)
                        fail(line, "endpoint '" + url + "': the port must be * or 1..65535");
                    e.port = std::stoi(port);
                }
                e.url = "tcp://" + host + ":" + std::to_string(e.port);
            } else if (url.rfind("ipc://", 0) == 0 && url.size() > 6) {
                e.url = url;
                e.ipc_path = url.substr(6);
                if (e.ipc_path[0] != '/') e.ipc_path = (fs::path(topo_.dir) / e.ipc_path).string();
            } else {
                fail(line, "endpoint '" + url + "' must be tcp://HOST:PORT or ipc://PATH");
            }
            d.allocated[static_cast<std::size_t>(r - 1)].push_back(std::move(e));
        }
    }
}

std::string reader::field_of(const endpoint& e, const std::string& field, bool from_other,
                             long line, const std::string& owner) const {
    if (field == "endpoint") {
        // A dependent connects: a wildcard bind address becomes loopback for it.
        if (from_other && e.tcp) return "tcp://" + e.host + ":" + std::to_string(e.port);
        return e.url;
    }
    if (!e.tcp)
        fail(line, "endpoint '" + e.key + "' of " + owner + " is " + e.url + ": it has no " +
                       field + " (only tcp endpoints do)");
    if (field == "port") return std::to_string(e.port);
    // address: HOST:PORT as written (0.0.0.0 for a wildcard) for the node itself, connectable
    // (loopback for a wildcard) for others; IPv6 hosts keep their brackets.
    std::string host = e.host;
    if (!from_other) {
        const auto rest = e.url.substr(6);
        host = rest.substr(0, rest.rfind(':'));
        if (host == "*") host = "0.0.0.0";
        return host + ":" + std::to_string(e.port);
    }
    if (host.find(':') != std::string::npos) host = "[" + host + "]";
    return host + ":" + std::to_string(e.port);
}

std::string reader::substitute(const templ& t, const node_def* self, int index) const {
    std::string out;
    for (const auto& p : t.parts) {
        switch (p.kind) {
        case part::literal: out += p.text; break;
        case part::var: {
            auto v = options_.getenv(p.text);
            if (v) out += *v;
            else if (p.has_default) out += substitute(*p.fallback, self, index);
            else fail(t.line, "${" + p.text + "} is not set");
            break;
        }
        case part::up_dir: out += topo_.dir; break;
        case part::up_run_dir: out += topo_.run_dir; break;
        case part::up_name: out += topo_.name; break;
        case part::self_name:
            out += self->count > 1 ? self->name + "." + std::to_string(index) : self->name;
            break;
        case part::self_index: out += std::to_string(index); break;
        case part::self_field: {
            const auto& eps = self->allocated.at(static_cast<std::size_t>(index - 1));
            const auto it = std::find_if(eps.begin(), eps.end(),
                                         [&](const endpoint& e) { return e.key == p.key; });
            if (it == eps.end())
                fail(t.line, "node " + self->name + " has no endpoint '" + p.key + "'");
            out += field_of(*it, p.field, false, t.line, self->name);
            break;
        }
        case part::node_field: {
            const auto& other = nodes_[by_name_.at(p.node)];
            std::string joined;
            for (int r = 1; r <= other.count; ++r) {
                if (p.replica && r != p.replica) continue;
                const auto& eps = other.allocated.at(static_cast<std::size_t>(r - 1));
                const auto it = std::find_if(eps.begin(), eps.end(),
                                             [&](const endpoint& e) { return e.key == p.key; });
                if (!joined.empty()) joined += ',';
                joined += field_of(*it, p.field, true, t.line, other.name);
            }
            out += joined;
            break;
        }
        }
    }
    return out;
}

std::string reader::resolve_exe(const std::string& run0, const std::string& path_env, long line,
                                const std::string& node, bool check) const {
    auto executable = [](const fs::path& p) {
        struct stat st {};
        return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
    };
    if (run0.empty()) fail(line, "node " + node + ": run[0] is empty");
    if (run0 == "zmesh" && !options_.zmesh_path.empty()) return options_.zmesh_path;
    if (run0.find('/') != std::string::npos) {
        fs::path p(run0);
        if (p.is_relative()) p = fs::path(topo_.dir) / p;
        p = p.lexically_normal();
        if (check && options_.check_executables && !executable(p))
            fail(line, "node " + node + ": '" + p.string() + "' is not an executable file");
        return p.string();
    }
    for (const auto& dir : split(path_env, ':')) {
        const fs::path p = fs::path(dir.empty() ? "." : dir) / run0;
        if (executable(p)) return p.string();
    }
    if (check && options_.check_executables)
        fail(line, "node " + node + ": '" + run0 + "' is not found in PATH");
    return run0;
}

topology reader::read(const std::string& text) {
    topo_.file = file_;
    {
        std::error_code ec;
        auto abs = fs::absolute(fs::path(file_), ec);
        if (ec) abs = fs::path(file_);
        topo_.dir = abs.lexically_normal().parent_path().string();
        topo_.name = fs::path(file_).stem().string();
    }
    toml::table root;
    try {
        root = toml::parse(text, file_);
    } catch (const toml::parse_error& e) {
        fail(static_cast<long>(e.source().begin.line), std::string(e.description()));
    }
    // Pass 1: the file's structure.
    const toml::table* node_table = nullptr;
    long node_line = 0;
    for (const auto& [k, v] : root) {
        const std::string key(k.str());
        if (key == "up" && v.is_table()) read_up(*v.as_table());
        else if (key == "env" && v.is_table()) read_env(*v.as_table());
        else if (key == "node" && v.is_table()) {
            node_table = v.as_table();
            node_line = line_of(k);
        } else if (key == "up" || key == "env" || key == "node")
            fail(line_of(k), "'" + key + "' must be a table ([" + key + "])");
        else
            fail(line_of(k), "unknown key '" + key + "' (known: [up], [env], [node.NAME])");
    }
    if (!node_table || node_table->empty())
        fail(node_line, "no nodes: add a [node.NAME] table with run = [...]");
    for (const auto& [k, v] : *node_table) read_node(std::string(k.str()), v, line_of(k));
    // Nodes in the order of the file (toml++ keeps a table's keys sorted).
    std::stable_sort(nodes_.begin(), nodes_.end(),
                     [](const node_def& a, const node_def& b) { return a.line < b.line; });
    for (std::size_t i = 0; i < nodes_.size(); ++i) by_name_[nodes_[i].name] = i;
    topo_.node_count = nodes_.size();
    topo_.run_dir = options_.run_dir.empty() ? "<run_dir>" : options_.run_dir;

    // Pass 2: references, dependencies, order.
    for (auto& d : nodes_) {
        for (const auto& t : d.run) check_references(d, t, "run");
        for (const auto& kv : d.env) check_references(d, kv.second, "env");
        if (d.has_cwd) check_references(d, d.cwd, "cwd");
        for (const auto& e : d.endpoints) check_references(d, e.pattern, "endpoints");
        for (const auto& kv : global_env_) {
            check_references(d, kv.second, "[env]");
            // ${self.*.KEY} in [env] applies to every node, so every node needs KEY.
            for (const auto& p : kv.second.parts) {
                if (p.kind != part::self_field) continue;
                const bool known = std::any_of(d.endpoints.begin(), d.endpoints.end(),
                                               [&](const endpoint_def& e) { return e.key == p.key; });
                if (!known)
                    fail(kv.second.line, "[env] " + kv.first + " uses ${self." + p.field + "." +
                                             p.key + "} but node " + d.name +
                                             " has no endpoint '" + p.key + "'");
            }
        }
        for (const auto& a : d.after) {
            const auto it = by_name_.find(a.first);
            if (it == by_name_.end()) fail(a.second, "node." + d.name + ".after: unknown node '" +
                                                         a.first + "'");
            if (it->second == by_name_.at(d.name))
                fail(a.second, "node." + d.name + ".after names the node itself");
            d.deps.push_back({it->second, a.second});
        }
    }
    order();

    // Pass 3: ports, then every value, in start order.
    for (auto i : order_) allocate(nodes_[i]);
    const std::string zmesh_path = options_.zmesh_path;
    for (auto i : order_) {
        auto& d = nodes_[i];
        d.first_instance = topo_.instances.size();
        for (int r = 1; r <= d.count; ++r) {
            instance in;
            in.node = d.name;
            in.index = r;
            in.name = d.count > 1 ? d.name + "." + std::to_string(r) : d.name;
            in.line = d.line;
            for (const auto& t : d.run) in.argv.push_back(substitute(t, &d, r));
            for (const auto& kv : global_env_) in.env.emplace_back(kv.first, substitute(kv.second, &d, r));
            for (const auto& kv : d.env) in.env.emplace_back(kv.first, substitute(kv.second, &d, r));
            fs::path cwd = d.has_cwd ? fs::path(substitute(d.cwd, &d, r)) : fs::path(topo_.dir);
            if (cwd.is_relative()) cwd = fs::path(topo_.dir) / cwd;
            in.cwd = cwd.lexically_normal().string();
            if (in.cwd.size() > 1 && in.cwd.back() == '/') in.cwd.pop_back();
            std::string path_env;
            if (auto p = options_.getenv("PATH")) path_env = *p;
            for (const auto& kv : in.env)
                if (kv.first == "PATH") path_env = kv.second;
            // A program under ${up.run_dir} is made during the run (by a setup step): it
            // cannot be checked beforehand.
            const bool made_in_run = !d.run[0].parts.empty() &&
                                     d.run[0].parts[0].kind == part::up_run_dir;
            in.exe = resolve_exe(in.argv[0], path_env, d.run[0].line, in.name, !made_in_run);
            in.argv[0] = in.exe;
            in.endpoints = d.allocated[static_cast<std::size_t>(r - 1)];
            for (const auto& e : d.deps) {
                const auto& dep = nodes_[e.node];
                for (int k = 0; k < dep.count; ++k) {
                    const auto idx = dep.first_instance + static_cast<std::size_t>(k);
                    if (std::find(in.deps.begin(), in.deps.end(), idx) == in.deps.end())
                        in.deps.push_back(idx);
                }
            }
            in.restart = d.restart;
            in.ready = d.ready;
            in.ready_line = d.ready_line;
            in.ready_timeout_ms = d.ready_timeout_ms;
            topo_.instances.push_back(std::move(in));
        }
    }
    return std::move(topo_);
}

} // namespace

int free_port(const std::string& host) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    addrinfo* found = nullptr;
    if (::getaddrinfo(host.c_str(), "0", &hints, &found) != 0 || !found)
        throw std::runtime_error("cannot resolve host '" + host + "' to allocate a port");
    int port = -1;
    std::string why = "no address";
    for (auto* a = found; a && port < 0; a = a->ai_next) {
        const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        sockaddr_storage bound{};
        socklen_t len = sizeof bound;
        if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 &&
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) == 0) {
            port = bound.ss_family == AF_INET6
                       ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                       : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
        } else {
            why = std::strerror(errno);
        }
        ::close(fd);
    }
    ::freeaddrinfo(found);
    if (port <= 0) throw std::runtime_error("cannot bind a free port on " + host + ": " + why);
    return port;
}

topology load_text(const std::string& text, const std::string& file, const load_options& options) {
    reader r(file, options);
    return r.read(text);
}

topology load_file(const std::string& file, const load_options& options) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw topology_error(file + ": cannot read the file: " + std::strerror(errno));
    std::ostringstream text;
    text << in.rdbuf();
    return load_text(text.str(), file, options);
}

} // namespace zmesh::cli::up
