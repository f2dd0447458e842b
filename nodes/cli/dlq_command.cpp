// SPDX-License-Identifier: MPL-2.0
// dlq_command.cpp — `zmesh dlq`: list, show, replay and purge dead-lettered requests.
//
// A dead-letter queue holds the requests a node gave up on (too many failed attempts, TTL
// passed), each with the reason. The command is written against that general idea: the source
// is chosen by a flag, and today the only source is the durable store of a Titanic node
// (--store PATH, opened directly, safe while the node runs: the store serialises writers). The
// broker's in-memory DLQ is to be reached behind the same actions with a --broker flag.
#include "command.hpp"

#include "../titanic/sqlite_store.hpp"

#include <zmesh/error.hpp>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>

namespace zmesh::cli {

namespace {

namespace ts = zmesh::nodes::titanic;

/// A frame or reason as one printable line: bytes outside printable ASCII become \xNN.
std::string printable(std::string_view bytes) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (char c : bytes) {
        const auto u = static_cast<unsigned char>(c);
        if (u >= 0x20 && u < 0x7f && c != '\\') {
            out += c;
        } else {
            out += "\\x";
            out += hex[u >> 4];
            out += hex[u & 0xf];
        }
    }
    return out;
}

/// UTC, ISO 8601 with milliseconds.
std::string format_time(ts::time_point t) {
    const auto ms = t.time_since_epoch().count();
    const std::time_t secs = static_cast<std::time_t>(ms / 1000 - (ms % 1000 < 0 ? 1 : 0));
    const long frac = static_cast<long>(((ms % 1000) + 1000) % 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[96]; // room for any int year: keeps -Wformat-truncation quiet
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
    return buf;
}

ts::time_point now() {
    return std::chrono::time_point_cast<std::chrono::milliseconds>(
        std::chrono::system_clock::now());
}

/// Opens an existing Titanic store; never creates one (a typo in PATH must not leave a fresh,
/// empty store behind that then reports "nothing dead").
std::unique_ptr<ts::store> open_existing(const std::string& path) {
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

} // namespace

int run_dlq(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    std::string action, id, store_path;
    bool all = false;
    po::options_description options("options");
    // clang-format off
    options.add_options()
        ("store", po::value(&store_path),
         "the dead-letter queue of a titanic node: its store file (zmesh titanic --store); the "
         "file must exist, it is never created. Safe while the node runs. (The only source so "
         "far; the broker's in-memory DLQ will be selected with another flag.)")
        ("all", po::bool_switch(&all), "replay or purge every dead request")
        ("action", po::value(&action), "list | show ID | replay (ID | --all) | purge (ID | --all)")
        ("id", po::value(&id), "request id: 32 lowercase hex digits");
    // clang-format on
    po::positional_options_description positional;
    positional.add("action", 1).add("id", 1);
    po::variables_map vm;
    if (!parse("dlq",
               "(list | show ID | replay (ID | --all) | purge (ID | --all)) --store PATH\n\n"
               "Lists, shows, re-drives (replay: back to pending, attempts reset, TTL dropped) or "
               "deletes (purge) dead-lettered requests.",
               options, args, vm, &positional))
        return ok;

    if (action.empty()) throw usage_error("missing action: list, show, replay or purge");
    const bool takes_id = action == "show" || action == "replay" || action == "purge";
    if (action != "list" && !takes_id) throw usage_error("unknown action '" + action + "'");
    if (action == "list" && (!id.empty() || all)) throw usage_error("list takes no ID or --all");
    if (action == "show" && all) throw usage_error("show takes an ID, not --all");
    if (takes_id) {
        if (id.empty() && !all)
            throw usage_error(action + " needs an ID" + (action == "show" ? "" : " or --all"));
        if (!id.empty() && all) throw usage_error("give an ID or --all, not both");
        if (!id.empty() && !ts::is_valid_id(id))
            throw usage_error("invalid request id '" + printable(id) +
                              "': expected 32 lowercase hex digits");
    }
    if (store_path.empty()) throw usage_error("--store PATH is required (the titanic store file)");

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
