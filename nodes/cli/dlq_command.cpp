// SPDX-License-Identifier: MPL-2.0
// dlq_command.cpp — `zmesh dlq`: list, show, replay and purge dead-lettered requests.
//
// A dead-letter queue holds the requests a node gave up on (too many failed attempts, TTL
// passed, refused), each with the reason. The source is chosen by a flag, exactly one of:
//  - --store PATH: the durable store of a Titanic node, opened directly (safe while the node
//    runs: the store serialises writers); a PostgreSQL connection string names a PostgreSQL
//    store, as for `zmesh titanic --store`;
//  - --broker EP: a zmesh broker's in-memory DLQ, through its service zmesh.dlq (docs/
//    protocol.md, "The dead-letter queue"): request body "list" | "show" ID | "replay" (ID |
//    "all") | "purge" (ID | "all"), reply body a status, then msgpack or a count.
#include "broker_list.hpp"
#include "command.hpp"
#include "config.hpp"
#include "security_flags.hpp"

#include "../titanic/open_store.hpp"

#include <zmesh/codec.hpp>
#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>
#include <zmesh/header.hpp>
#include <zmesh/mdp/client.hpp>
#include <zmesh/mdp/protocol.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace zmesh::cli {

namespace {

/// --json: list prints one JSON array, show one JSON object, instead of text.
bool dlq_json = false;

/// Prints @p j on one line; bytes that are not UTF-8 (bodies) are replaced, never an error.
void print_json(const nlohmann::ordered_json& j) {
    std::printf("%s\n",
                j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
}

namespace ts = zmesh::nodes::titanic;

/// UTC, ISO 8601 with milliseconds, of @p ms since the Unix epoch.
std::string format_time_ms(std::int64_t ms) {
    const std::time_t secs = static_cast<std::time_t>(ms / 1000 - (ms % 1000 < 0 ? 1 : 0));
    const long frac = static_cast<long>(((ms % 1000) + 1000) % 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[96]; // room for any int year: keeps -Wformat-truncation quiet
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
    return buf;
}

/// UTC, ISO 8601 with milliseconds.
std::string format_time(ts::time_point t) { return format_time_ms(t.time_since_epoch().count()); }

ts::time_point now() {
    return std::chrono::time_point_cast<std::chrono::milliseconds>(
        std::chrono::system_clock::now());
}

/// Opens an existing Titanic store; never creates one (a typo in PATH must not leave a fresh,
/// empty store behind that then reports "nothing dead").
std::unique_ptr<ts::store> open_existing(const std::string& path) {
    if (ts::is_pg_target(path)) return ts::open_pg_store(path, false);
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (!std::filesystem::exists(status)) throw std::runtime_error("no store at " + path);
    if (!std::filesystem::is_regular_file(status))
        throw std::runtime_error(path + " is not a titanic store (not a regular file)");
    if (std::filesystem::file_size(path, ec) == 0 && !ec)
        throw std::runtime_error(path + " is not a titanic store (empty file)");
    return ts::open_sqlite_store(path);
}

int list(ts::store& st) {
    if (dlq_json) {
        auto all = nlohmann::ordered_json::array();
        for (const auto& e : st.dlq_list(std::numeric_limits<std::size_t>::max()))
            all.push_back({{"id", e.request.id},
                           {"service", e.request.service},
                           {"attempts", e.request.attempts},
                           {"reason", e.reason},
                           {"dead_since", format_time(e.moved)}});
        print_json(all);
        return ok;
    }
    for (const auto& e : st.dlq_list(std::numeric_limits<std::size_t>::max())) {
        std::printf("%s %s attempts=%u reason=%s\n", e.request.id.c_str(),
                    printable(e.request.service).c_str(), e.request.attempts,
                    printable(e.reason).c_str());
    }
    return ok;
}

int show(ts::store& st, const std::string& id) {
    auto e = st.dlq_show(id);
    if (!e) {
        std::fprintf(stderr, "zmesh: dlq: no dead request %s\n", id.c_str());
        return failure;
    }
    const auto& r = e->request;
    if (dlq_json) {
        nlohmann::ordered_json j{{"id", r.id},
                                 {"service", r.service},
                                 {"attempts", r.attempts},
                                 {"reason", e->reason},
                                 {"created", format_time(r.created)},
                                 {"dead_since", format_time(e->moved)},
                                 {"ttl_ms", r.ttl ? nlohmann::ordered_json(r.ttl->count())
                                                  : nlohmann::ordered_json(nullptr)},
                                 {"body", r.body}};
        print_json(j);
        return ok;
    }
    std::printf("id: %s\n", r.id.c_str());
    std::printf("service: %s\n", printable(r.service).c_str());
    std::printf("attempts: %u\n", r.attempts);
    std::printf("reason: %s\n", printable(e->reason).c_str());
    std::printf("created: %s\n", format_time(r.created).c_str());
    std::printf("dead since: %s\n", format_time(e->moved).c_str());
    if (r.ttl)
        std::printf("ttl: %lld ms\n", static_cast<long long>(r.ttl->count()));
    else
        std::printf("ttl: none\n");
    std::printf("body frames: %zu\n", r.body.size());
    for (std::size_t i = 0; i < r.body.size(); ++i)
        std::printf("body[%zu]: %s\n", i, printable(r.body[i]).c_str());
    return ok;
}

// ---- the broker's DLQ (zmesh.dlq) ------------------------------------------------------------

/// A dead-letter entry as a broker lists it (docs/protocol.md); what the broker leaves out stays
/// empty. The map comes off the network: every field is checked for its type, unknown keys are
/// skipped.
struct broker_entry {
    std::string id, service, reason, code, type;
    std::optional<std::int64_t> time_ms;
    std::optional<std::uint64_t> attempts, priority;
    std::optional<std::vector<std::string>> body; // show only
    std::optional<std::string> header;            // show only; absent for plain clients
};

std::string text_of(const msgpack::object& o, const char* key) {
    if (o.type == msgpack::type::STR) return std::string(o.via.str.ptr, o.via.str.size);
    if (o.type == msgpack::type::BIN) return std::string(o.via.bin.ptr, o.via.bin.size);
    throw std::runtime_error(std::string("malformed dead-letter entry: '") + key +
                             "' is not a string");
}

std::uint64_t uint_of(const msgpack::object& o, const char* key) {
    if (o.type == msgpack::type::POSITIVE_INTEGER) return o.via.u64;
    throw std::runtime_error(std::string("malformed dead-letter entry: '") + key +
                             "' is not an unsigned integer");
}

broker_entry entry_of(const msgpack::object& o) {
    if (o.type != msgpack::type::MAP)
        throw std::runtime_error("malformed dead-letter entry: not a map");
    broker_entry e;
    for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
        const auto& kv = o.via.map.ptr[i];
        if (kv.key.type != msgpack::type::STR) continue;
        const std::string_view key(kv.key.via.str.ptr, kv.key.via.str.size);
        const auto& v = kv.val;
        if (key == "id") e.id = text_of(v, "id");
        else if (key == "service") e.service = text_of(v, "service");
        else if (key == "reason") e.reason = text_of(v, "reason");
        else if (key == "code") e.code = text_of(v, "code");
        else if (key == "type") e.type = text_of(v, "type");
        else if (key == "attempts") e.attempts = uint_of(v, "attempts");
        else if (key == "priority") e.priority = uint_of(v, "priority");
        else if (key == "header") e.header = text_of(v, "header");
        else if (key == "time_ms") {
            if (v.type == msgpack::type::POSITIVE_INTEGER && v.via.u64 <= INT64_MAX)
                e.time_ms = static_cast<std::int64_t>(v.via.u64);
            else if (v.type == msgpack::type::NEGATIVE_INTEGER)
                e.time_ms = v.via.i64;
            else
                throw std::runtime_error(
                    "malformed dead-letter entry: 'time_ms' is not an integer");
        } else if (key == "body") {
            if (v.type != msgpack::type::ARRAY)
                throw std::runtime_error("malformed dead-letter entry: 'body' is not an array");
            e.body.emplace();
            for (std::uint32_t j = 0; j < v.via.array.size; ++j)
                e.body->push_back(text_of(v.via.array.ptr[j], "body"));
        }
    }
    return e;
}

/// The broker's zmesh.dlq service, one request at a time.
class broker_dlq {
  public:
    broker_dlq(std::vector<std::string> endpoints, std::chrono::milliseconds timeout,
               std::optional<security::curve_client_keys> curve)
        : endpoint_(join(endpoints)), timeout_(timeout), several_(endpoints.size() > 1),
          // One attempt per broker: a dead-letter command is answered by the broker itself at
          // once, and --timeout-ms is the wait the user asked for. With a list (a Binary Star
          // pair) the passive drops the request, so the broker that answers is the active one.
          client_(make(ctx_, std::move(endpoints),
                       {.timeout = timeout, .retries = 1, .curve = std::move(curve)})) {}

    /// Sends @p body and returns the reply body, its first frame a status.
    /// @throws std::runtime_error naming the endpoint if no answer comes in time, the broker
    ///         answers with an error, or the reply has no status.
    message call(std::initializer_list<std::string_view> body) {
        try {
            auto r = client_.request(mdp::zmesh_dlq, message(body), mdp::request_options{});
            if (r.body.empty()) fail("an empty reply");
            return std::move(r.body);
        } catch (const mdp::service_error& e) {
            fail(std::string("error ") + printable(e.status()) + " " + printable(e.reason()));
        } catch (const error& e) {
            if (e.code() != errc::timeout) throw;
            throw std::runtime_error(
                std::string(several_ ? "no answer from any of the brokers at " : "no answer from the broker at ") +
                endpoint_ + " within " + std::to_string(timeout_.count()) +
                (several_ ? " ms each (is a zmesh broker running there?)"
                          : " ms (is a zmesh broker running there?)"));
        }
    }

    /// Fails on any status but 200 (and 404 if @p not_found_ok): @returns whether it was 200.
    bool check(const message& reply, bool not_found_ok) const {
        const auto status = view(reply[0]);
        if (status == "200") return true;
        if (status == "404" && not_found_ok) return false;
        fail("status " + printable(status) +
             (reply.size() > 1 ? " " + printable(view(reply[1])) : std::string()) +
             (status == "501" ? " (this broker has no dead-letter queue)" : ""));
    }

    /// The single msgpack frame after a 200, decoded within modest limits.
    msgpack::object_handle payload(const message& reply) const {
        if (reply.size() != 2) fail("a reply of " + std::to_string(reply.size()) + " frames");
        std::error_code ec;
        std::string why;
        auto h = unpack_object(reply[1].data(), reply[1].size(), unpack_limits{}, ec, &why);
        if (ec) fail("an undecodable reply: " + why);
        return h;
    }

  private:
    static std::string join(const std::vector<std::string>& endpoints) {
        std::string out;
        for (const auto& e : endpoints) out += (out.empty() ? "" : ", ") + e;
        return out;
    }

    static mdp::client make(zmq::context_t& ctx, std::vector<std::string> endpoints,
                            mdp::client_options o) {
        if (endpoints.size() == 1) return mdp::client(ctx, std::move(endpoints.front()), std::move(o));
        o.retries = static_cast<int>(endpoints.size());
        return mdp::client(ctx, std::move(endpoints), std::move(o));
    }

    [[noreturn]] void fail(const std::string& what) const {
        throw std::runtime_error((several_ ? "broker of " : "broker at ") + endpoint_ + " (" +
                                 std::string(mdp::zmesh_dlq) + ") answered " + what);
    }

    std::string endpoint_;
    std::chrono::milliseconds timeout_;
    bool several_ = false;
    zmq::context_t ctx_;
    mdp::client client_;
};

int broker_list(broker_dlq& dlq) {
    const auto reply = dlq.call({"list"});
    (void)dlq.check(reply, false);
    const auto h = dlq.payload(reply);
    const auto& o = h.get();
    if (o.type != msgpack::type::ARRAY)
        throw std::runtime_error("malformed dead-letter list: not an array");
    if (dlq_json) {
        auto all = nlohmann::ordered_json::array();
        for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
            const auto e = entry_of(o.via.array.ptr[i]);
            all.push_back({{"id", e.id},
                           {"service", e.service},
                           {"attempts", e.attempts.value_or(0)},
                           {"code", e.code},
                           {"reason", e.reason}});
        }
        print_json(all);
        return ok;
    }
    for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
        const auto e = entry_of(o.via.array.ptr[i]);
        std::printf("%s %s attempts=%llu reason=%s\n", printable(e.id).c_str(),
                    printable(e.service).c_str(),
                    static_cast<unsigned long long>(e.attempts.value_or(0)),
                    printable(e.reason).c_str());
    }
    return ok;
}

int broker_show(broker_dlq& dlq, const std::string& id) {
    const auto reply = dlq.call({"show", id});
    if (!dlq.check(reply, true)) {
        std::fprintf(stderr, "zmesh: dlq: no dead request %s\n", id.c_str());
        return failure;
    }
    const auto h = dlq.payload(reply);
    const auto e = entry_of(h.get());
    if (dlq_json) {
        nlohmann::ordered_json j{{"id", e.id}, {"service", e.service}, {"type", e.type},
                                 {"code", e.code}, {"reason", e.reason}};
        if (e.priority) j["priority"] = *e.priority;
        if (e.attempts) j["attempts"] = *e.attempts;
        if (e.time_ms) j["dead_since"] = format_time_ms(*e.time_ms);
        if (e.body) j["body"] = *e.body;
        print_json(j);
        return ok;
    }
    std::printf("id: %s\n", printable(e.id).c_str());
    std::printf("service: %s\n", printable(e.service).c_str());
    std::printf("type: %s\n", printable(e.type).c_str());
    if (e.priority) std::printf("priority: %llu\n", static_cast<unsigned long long>(*e.priority));
    if (e.attempts) std::printf("attempts: %llu\n", static_cast<unsigned long long>(*e.attempts));
    std::printf("code: %s\n", printable(e.code).c_str());
    std::printf("reason: %s\n", printable(e.reason).c_str());
    if (e.time_ms) std::printf("dead since: %s\n", format_time_ms(*e.time_ms).c_str());
    if (e.header)
        std::printf("header: %zu bytes\n", e.header->size());
    else
        std::printf("header: none (a plain MDP client's request)\n");
    if (e.body) {
        std::printf("body frames: %zu\n", e.body->size());
        for (std::size_t i = 0; i < e.body->size(); ++i)
            std::printf("body[%zu]: %s\n", i, printable((*e.body)[i]).c_str());
    }
    return ok;
}

/// replay or purge, of one id or (@p id empty) of all.
int broker_act(broker_dlq& dlq, const std::string& action, const std::string& id) {
    const bool all = id.empty();
    const auto reply = dlq.call({action, all ? std::string_view("all") : std::string_view(id)});
    if (!dlq.check(reply, !all)) {
        std::fprintf(stderr, "zmesh: dlq: no dead request %s\n", id.c_str());
        return failure;
    }
    const char* done = action == "replay" ? "replayed" : "purged";
    if (!all) {
        std::printf("%s %s\n", done, id.c_str());
        return ok;
    }
    const auto count = reply.size() > 1 ? std::string(view(reply[1])) : std::string();
    if (count.empty() || count.size() > 20 ||
        count.find_first_not_of("0123456789") != std::string::npos)
        throw std::runtime_error("malformed count in the " + action + " reply: '" +
                                 printable(count) + "'");
    std::printf("%s %s dead requests\n", done, count.c_str());
    return ok;
}

} // namespace

int run_dlq(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    std::string action, id, store_path, broker;
    bool all = false;
    int timeout_ms = 2500;
    po::options_description options("options");
    // clang-format off
    options.add_options()
        ("store", po::value(&store_path),
         "the dead-letter queue of a titanic node: its store file or PostgreSQL connection "
         "string (zmesh titanic --store); the store must exist, it is never created. Safe while "
         "the node runs.")
        ("broker", po::value(&broker),
         "the in-memory dead-letter queue of the zmesh broker at this endpoint (its service "
         "zmesh.dlq): requests that expired, ran out of attempts or were refused; a "
         "comma-separated list asks the one that answers (the active one of a Binary Star pair)")
        ("timeout-ms", po::value(&timeout_ms)->default_value(timeout_ms),
         "with --broker: how long to wait for the broker's answer (for each broker of a list)")
        ("all", po::bool_switch(&all), "replay or purge every dead request")
        ("json", po::bool_switch(&dlq_json),
         "list: one JSON array of entries; show: one JSON object (for scripts and jq)")
        ("action", po::value(&action), "list | show ID | replay (ID | --all) | purge (ID | --all)")
        ("id", po::value(&id), "request id: 32 hex digits (--store: lowercase)");
    // clang-format on
    client_security_flags security_flags; // with --broker
    security_flags.add_to(options);
    po::positional_options_description positional;
    positional.add("action", 1).add("id", 1);
    po::variables_map vm;
    if (!parse("dlq",
               "(list | show ID | replay (ID | --all) | purge (ID | --all)) "
               "(--store PATH | --broker EP)\n\n"
               "Lists, shows, re-drives or deletes (purge) dead-lettered requests. replay: with "
               "--store, back to pending, attempts reset, TTL dropped; with --broker, queued "
               "again under its message id with a fresh deadline.",
               options, args, vm, &positional))
        return ok;

    if (action.empty()) throw usage_error("missing action: list, show, replay or purge");
    const bool takes_id = action == "show" || action == "replay" || action == "purge";
    if (action != "list" && !takes_id) throw usage_error("unknown action '" + action + "'");
    if (action == "list" && (!id.empty() || all)) throw usage_error("list takes no ID or --all");
    if (action == "show" && all) throw usage_error("show takes an ID, not --all");
    if (dlq_json && action != "list" && action != "show")
        throw usage_error("--json goes with list and show");
    if (takes_id) {
        if (id.empty() && !all)
            throw usage_error(action + " needs an ID" + (action == "show" ? "" : " or --all"));
        if (!id.empty() && all) throw usage_error("give an ID or --all, not both");
    }
    // A broker from ZMESH_BROKER or the configuration file names the usual broker, not a choice
    // made for this command: --store wins over it. There is no default source.
    if (!store_path.empty() && origin_of("broker").from != origin::kind::flag) broker.clear();
    if (!store_path.empty() && !broker.empty())
        throw usage_error("--store and --broker are exclusive: give one source");
    if (store_path.empty() && broker.empty())
        throw usage_error("give a source: --store PATH (a titanic store) or --broker EP");

    if (!broker.empty()) {
        if (timeout_ms <= 0) throw usage_error("--timeout-ms must be positive");
        auto brokers = cli::broker_list(std::vector<std::string>{broker});
        if (brokers.size() > 64) throw usage_error("--broker: at most 64 endpoints");
        if (!id.empty()) {
            // The broker's ids are message ids (header.hpp): any case is accepted, lowercase sent.
            const auto parsed = message_id::from_hex(id);
            if (!parsed)
                throw usage_error("invalid request id '" + printable(id) +
                                  "': expected 32 hex digits");
            id = parsed->to_hex();
        }
        broker_dlq dlq(std::move(brokers), std::chrono::milliseconds(timeout_ms),
                       security_flags.load());
        if (action == "list") return broker_list(dlq);
        if (action == "show") return broker_show(dlq, id);
        return broker_act(dlq, action, id);
    }

    if (origin_of("timeout-ms").from == origin::kind::flag)
        throw usage_error("--timeout-ms applies to --broker only");
    if (!id.empty() && !ts::is_valid_id(id))
        throw usage_error("invalid request id '" + printable(id) +
                          "': expected 32 lowercase hex digits");
    auto st = open_existing(store_path);
    if (action == "list") return list(*st);
    if (action == "show") return show(*st, id);
    if (action == "replay") {
        if (all) {
            std::printf("replayed %zu dead requests\n", st->dlq_replay_all(now()));
            return ok;
        }
        if (!st->dlq_replay(id, now())) {
            std::fprintf(stderr, "zmesh: dlq: no dead request %s\n", id.c_str());
            return failure;
        }
        std::printf("replayed %s\n", id.c_str());
        return ok;
    }
    if (all) {
        std::printf("purged %zu dead requests\n", st->dlq_purge_all());
        return ok;
    }
    if (!st->dlq_purge(id)) {
        std::fprintf(stderr, "zmesh: dlq: no dead request %s\n", id.c_str());
        return failure;
    }
    std::printf("purged %s\n", id.c_str());
    return ok;
}

} // namespace zmesh::cli
