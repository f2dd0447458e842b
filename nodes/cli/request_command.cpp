// SPDX-License-Identifier: MPL-2.0
// request_command.cpp — `zmesh request`: one synchronous request, reply on stdout.
//
// By default the request speaks ZMCT03 (docs/protocol.md) to a zmesh broker: it carries a message
// id (--id, or a fresh one) kept on every retry, so the broker executes it once; a deadline,
// priority, type and fail-fast flag; streamed parts are printed as they arrive, and an error is
// known exactly from the reply's header. --plain speaks MDP/0.1 for any other broker.
//
// With --durable the request goes through a Titanic server (rfc 9/TSP) instead: it is stored
// first (its id is printed on stderr), the reply is awaited by polling, then the server is told
// to forget it.
#include "broker_list.hpp"
#include "command.hpp"
#include "config.hpp"
#include "freelance_request.hpp"
#include "security_flags.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>
#include <zmesh/header.hpp>
#include <zmesh/mdp/client.hpp>
#include <zmesh/mdp/durable_client.hpp>
#include <zmesh/mdp/protocol.hpp>
#include <zmesh/nodes/broker.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <iterator>
#include <optional>
#include <string_view>
#include <vector>

namespace zmesh::cli {

namespace {

/// --json: each reply (and each streamed part) is one JSON object on its own line instead.
bool json_output = false;

/// Prints every frame of @p body on stdout, one per line, and flushes: a streamed part must be
/// visible as soon as it arrives, also through a pipe. With --json, one line
/// {"reply": [frames...], "type": T} ("part" for a streamed part; "type" only if there is one).
void print_frames(const message& body, const char* kind = "reply", std::string_view type = {}) {
    if (json_output) {
        nlohmann::ordered_json j;
        auto& frames = j[kind] = nlohmann::ordered_json::array();
        for (const auto& frame : body) frames.push_back(std::string(view(frame)));
        if (!type.empty()) j["type"] = std::string(type);
        // Frames are bytes: any that are not UTF-8 are replaced (U+FFFD), never an error.
        std::printf("%s\n",
                    j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace)
                        .c_str());
        std::fflush(stdout);
        return;
    }
    for (const auto& frame : body) {
        auto text = view(frame);
        std::fwrite(text.data(), 1, text.size(), stdout);
        if (text.empty() || text.back() != '\n') std::fputc('\n', stdout);
    }
    std::fflush(stdout);
}

/// One line on stderr for a failed request: the service, the status and the reason.
int print_failure(const std::string& service, std::string_view status, std::string_view reason) {
    std::fprintf(stderr, "zmesh: request: service '%s' failed: %s%s%s\n",
                 mdp::printable_service_name(service).c_str(), printable(status).c_str(),
                 reason.empty() ? "" : " ", printable(reason).c_str());
    return failure;
}

/// A reply of a service the broker answers itself (mmi.*, zmesh.*) whose first frame is a
/// status other than 200 ("404" from mmi.service for a service without workers, "501" for an
/// unknown one, zmesh.dlq's and zmesh.lvc's errors): the frames stay on stdout, as the answer
/// they are, and one line on stderr names the service and the status; exit 1. Replies without a
/// status (zmesh.services, zmesh.stats: a msgpack map) pass.
int check_broker_service_reply(const std::string& service, const message& body,
                               const std::string& request_body) {
    if (!mdp::is_broker_service(service) || body.empty()) return ok;
    const auto status = view(body[0]);
    const bool is_status =
        status.size() == 3 &&
        std::all_of(status.begin(), status.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!is_status || status == "200") return ok;
    std::string reason;
    if (service == mdp::mmi_service && status == "404")
        reason = "(no worker serves '" + mdp::printable_service_name(request_body) + "')";
    else if (status == "501")
        reason = "(the broker answers no such service)";
    else if (body.size() > 1)
        reason = std::string(view(body[1]));
    return print_failure(service, status, reason);
}

/// Prints a plain MDP reply one frame per line. A plain client cannot tell an error from a
/// result by the protocol: a zmesh broker marks it with a first frame "zmesh.error" (docs/
/// protocol.md), which goes to stderr instead.
int print_reply(const std::string& service, const message& reply,
                const std::string& request_body = {}) {
    if (reply.size() >= 2 && view(reply[0]) == mdp::error_type)
        return print_failure(service, view(reply[1]), reply.size() > 2 ? view(reply[2]) : "");
    print_frames(reply);
    return check_broker_service_reply(service, reply, request_body);
}

/// The reply's type on stderr (stdout stays the body), if it has one.
void print_type(const header& h) {
    if (!h.type.empty()) std::fprintf(stderr, "type: %s\n", printable(h.type).c_str());
}

/// A ZMCT03 request: parts printed as they arrive, then the final; errors are exact.
int run_zmesh(zmq::context_t& ctx, const std::vector<std::string>& brokers,
              const std::string& service, message&& request, const mdp::client_options& options,
              const mdp::request_options& request_options) {
    const std::string request_body(request.empty() ? std::string_view() : view(request[0]));
    mdp::client client(ctx, brokers, options);
    try {
        auto r = client.request(service, std::move(request), request_options,
                                [](const header&, message& part) { print_frames(part, "part"); });
        if (json_output) {
            print_frames(r.body, "reply", r.head.type);
        } else {
            print_type(r.head);
            print_frames(r.body);
        }
        return check_broker_service_reply(service, r.body, request_body);
    } catch (const mdp::service_error& e) {
        return print_failure(service, e.status(), e.reason());
    }
}

/// 7/MDP reference wait per attempt: one durable call (submit, poll, close) waits no longer.
constexpr std::chrono::milliseconds durable_call_timeout{2500};
/// Default of --timeout-ms with --durable: the whole wait for the reply.
constexpr int durable_default_timeout_ms = 30000;

int run_durable(zmq::context_t& ctx, const std::vector<std::string>& brokers,
                const std::string& service, message&& request, std::chrono::milliseconds timeout,
                int retries, std::chrono::milliseconds ttl, mdp::client_protocol protocol,
                std::optional<security::curve_client_keys> curve) {
    // With a list (a Binary Star pair) each call fails over to the next broker after a silent
    // attempt: at least one attempt per broker.
    const int attempts = std::max(retries, static_cast<int>(brokers.size()));
    mdp::durable_client client(ctx, brokers,
                               {.mdp = {.timeout = std::min(timeout, durable_call_timeout),
                                        .retries = attempts,
                                        .protocol = protocol,
                                        .curve = std::move(curve)}});
    const std::string id = ttl.count() > 0 ? client.submit(service, std::move(request), ttl)
                                           : client.submit(service, std::move(request));
    std::fprintf(stderr, "durable request %s stored\n", id.c_str());
    message reply = client.wait(id, timeout);
    const int code = print_reply(service, reply);
    std::fflush(stdout);
    try {
        client.close(id);
    } catch (const error& e) {
        // The reply is delivered; a server that keeps it a while longer harms nobody.
        std::fprintf(stderr, "zmesh: request: warning: could not close %s: %s\n", id.c_str(),
                     e.what());
    }
    return code;
}

} // namespace

int run_request(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    std::string broker = default_broker_endpoint(), service, body, id_text, type, freelance;
    std::vector<std::string> broker_flags{broker}; // --broker EP[,EP...], repeatable
    int timeout_ms = 2500, retries = 3, priority = default_priority;
    bool durable = false, plain = false, fail_fast = false;
    long ttl_ms = 0;
    std::vector<std::string> frames; // --frame, repeated: a body of several frames
    std::string body_file;
    po::options_description options("options");
    options.add_options()
        ("broker", po::value(&broker_flags)->composing()->default_value(broker_flags, broker),
         "broker endpoint (env ZMESH_BROKER); EP,EP,... or repeated: fail over to the next one "
         "when an attempt times out (a Binary Star pair, docs/patterns/binary_star.md)")
        ("service", po::value(&service), "service to call (required, except with --freelance)")
        ("freelance", po::value(&freelance),
         "EP,EP,...: no broker; send the request to these Freelance servers (zmesh serve), to a "
         "live one, and on to the next when an attempt times out (docs/patterns/freelance.md)")
        ("timeout-ms", po::value(&timeout_ms)->default_value(timeout_ms),
         "wait per attempt, in ms; with --durable, the whole wait for the reply (default 30000)")
        ("retries", po::value(&retries)->default_value(retries),
         "attempts in all, the first included; each retry resends the same message id on the "
         "same connection (--plain: a fresh connection)")
        ("body", po::value(&body), "request body, or - to read it from stdin")
        ("frame", po::value(&frames)->composing(),
         "one body frame; repeat it for a body of several frames, in order (instead of BODY)")
        ("body-file", po::value(&body_file), "read the body (one frame) from this file")
        ("json", po::bool_switch(&json_output),
         "print the reply as one JSON object, {\"reply\": [frames], \"type\": T}, and each "
         "streamed part as {\"part\": [frames]}, one per line; errors stay on stderr")
        ("durable", po::bool_switch(&durable),
         "store the request with a Titanic server (titanic.request) first, print its id on "
         "stderr, wait for the reply, then close it")
        ("ttl-ms", po::value(&ttl_ms),
         "the request's deadline in ms, from the first send (default: timeout x retries); the "
         "broker answers 504 if no worker took it by then. With --durable: the server gives up "
         "(dead-letters the request) if the service has not answered within this many ms")
        ("id", po::value(&id_text),
         "message id, 32 hex digits (default: a fresh one). Resending with the id of an earlier "
         "request gets its reply, kept by the broker, without running it again")
        ("priority", po::value(&priority)->default_value(priority),
         "0 (lowest) to 9 (highest); the broker serves higher priorities first")
        ("type", po::value(&type), "the request's type, passed to the worker")
        ("fail-fast", po::bool_switch(&fail_fast),
         "fail at once (404) if no worker has ever served the service, instead of waiting")
        ("plain", po::bool_switch(&plain),
         "speak plain MDP/0.1 (MDPC01), for brokers other than zmesh's: no id, deadline, "
         "priority, type or streaming");
    client_security_flags security_flags;
    security_flags.add_to(options);
    po::positional_options_description positional;
    positional.add("body", 1);
    po::variables_map vm;
    if (!parse("request",
               "[--broker EP] --service NAME [options] [BODY | -]\n"
               "       zmesh request --freelance EP,EP,... [--timeout-ms N] [--retries N] "
               "[BODY | -]",
               options, args, vm, &positional))
        return ok;
    if (vm.count("freelance") && json_output)
        throw usage_error("--json does not apply to --freelance");
    if (vm.count("freelance"))
        return run_freelance_request(vm, freelance, body, timeout_ms, retries,
                                     security_flags.load());
    if (!vm.count("service")) throw usage_error("the option '--service' is required but missing");
    if ((vm.count("body") ? 1 : 0) + (frames.empty() ? 0 : 1) + (body_file.empty() ? 0 : 1) > 1)
        throw usage_error("give the body one way: BODY (or - for stdin), --body-file or --frame");
    // ZMESH_TIMEOUT_MS and the file's timeout-ms are the wait per attempt; the whole wait of a
    // durable request is set by the flag only.
    if (durable && origin_of("timeout-ms").from != origin::kind::flag)
        timeout_ms = durable_default_timeout_ms;
    // Reserved names are fine here (mmi.service, zmesh.services... are real services); a name
    // no broker can route is refused before anything is sent.
    if (auto problem = mdp::service_name_problem(service); !problem.empty())
        throw usage_error("invalid --service '" + mdp::printable_service_name(service) +
                          "': the name " + std::string(problem));
    if (timeout_ms <= 0) throw usage_error("--timeout-ms must be positive");
    if (retries < 1) throw usage_error("--retries must be at least 1");
    if (vm.count("ttl-ms") && (ttl_ms <= 0 || ttl_ms > 4294967295L))
        throw usage_error("--ttl-ms must be in [1, 4294967295]");
    if (priority < min_priority || priority > max_priority)
        throw usage_error("--priority must be in 0..9");
    std::optional<message_id> id;
    if (vm.count("id")) {
        id = message_id::from_hex(id_text);
        if (!id)
            throw usage_error("invalid --id '" + printable(id_text) +
                              "': expected 32 hex digits");
    }
    if (vm.count("type") && type.empty()) throw usage_error("--type must not be empty");
    // Settings the header carries: a plain MDP/0.1 request has no header, and --durable goes
    // through a Titanic server, which makes the request itself.
    std::string header_flag; // the first flag given that only a ZMCT03 header can carry
    if (vm.count("id")) header_flag = "--id";
    else if (!vm["priority"].defaulted()) header_flag = "--priority";
    else if (vm.count("type")) header_flag = "--type";
    else if (fail_fast) header_flag = "--fail-fast";
    if (!header_flag.empty() && plain)
        throw usage_error(header_flag + " needs the zmesh protocol, not --plain");
    if (!header_flag.empty() && durable)
        throw usage_error(header_flag + " does not apply to --durable");
    if (vm.count("ttl-ms") && plain && !durable)
        throw usage_error("--ttl-ms needs the zmesh protocol, not --plain (or --durable)");
    std::error_code ec;
    std::string why;
    const auto brokers = broker_list(broker_flags);
    broker = brokers.front();
    // A frame over the broker's limit (ZMQ_MAXMSGSIZE) makes the broker drop the connection
    // without a word, and the request would only time out: refuse it here, naming both sizes.
    // The limit is the default max_frame_size of zmesh's broker, which `zmesh broker` uses.
    const auto limit = static_cast<std::size_t>(nodes::broker_config{}.max_frame_size);
    const auto over_limit = [limit](const std::string &size) {
        return std::runtime_error("body of " + size + " bytes is over the broker's frame limit of " +
                                  std::to_string(limit) + " bytes (" +
                                  std::to_string(limit >> 20) +
                                  " MiB, zmesh broker's max_frame_size): not sent");
    };
    if (body == "-") {
        // Read stdin in large blocks and stop one byte past the limit: an endless or huge
        // stream is refused at once, without holding more than the limit in memory.
        body.clear();
        std::vector<char> block(1 << 16);
        while (body.size() <= limit) {
            const auto got = std::fread(block.data(), 1, block.size(), stdin);
            if (got == 0) break;
            body.append(block.data(), got);
        }
        if (std::ferror(stdin))
            throw std::runtime_error("cannot read the body from stdin: " +
                                     std::string(std::strerror(errno)));
        if (body.size() > limit) throw over_limit("more than " + std::to_string(limit));
    }
    if (!body_file.empty()) {
        // Like stdin: in blocks, and no further than one byte past the limit.
        std::FILE* f = std::fopen(body_file.c_str(), "rb");
        if (!f)
            throw std::runtime_error("cannot read --body-file '" + body_file +
                                     "': " + std::strerror(errno));
        std::vector<char> block(1 << 16);
        while (body.size() <= limit) {
            const auto got = std::fread(block.data(), 1, block.size(), f);
            if (got == 0) break;
            body.append(block.data(), got);
        }
        const bool failed = std::ferror(f);
        std::fclose(f);
        if (failed)
            throw std::runtime_error("cannot read --body-file '" + body_file + "'");
        if (body.size() > limit)
            throw over_limit("more than " + std::to_string(limit) + " (--body-file '" +
                             body_file + "')");
    }
    if (body.size() > limit) throw over_limit(std::to_string(body.size()));
    for (std::size_t i = 0; i < frames.size(); ++i)
        if (frames[i].size() > limit)
            throw over_limit(std::to_string(frames[i].size()) + " (--frame " +
                             std::to_string(i + 1) + ")");

    auto curve = security_flags.load(); // before anything connects: a bad key file stops here

    zmq::context_t ctx;
    const auto protocol = plain ? mdp::client_protocol::mdp : mdp::client_protocol::zmesh;
    message request;
    if (frames.empty())
        request.push_back(body);
    else
        for (auto& f : frames) request.push_back(std::move(f));
    if (durable)
        return run_durable(ctx, brokers, service, std::move(request),
                           std::chrono::milliseconds(timeout_ms), retries,
                           std::chrono::milliseconds(ttl_ms), protocol, std::move(curve));
    const mdp::client_options client_options{.timeout = std::chrono::milliseconds(timeout_ms),
                                             .retries = retries,
                                             .protocol = protocol,
                                             .curve = std::move(curve)};
    if (plain) {
        mdp::client client(ctx, brokers, client_options);
        const std::string request_body = body;
        return print_reply(service, client.request(service, std::move(request)), request_body);
    }
    return run_zmesh(ctx, brokers, service, std::move(request), client_options,
                     {.id = id,
                      .type = type,
                      .priority = static_cast<std::uint8_t>(priority),
                      .ttl = std::chrono::milliseconds(ttl_ms),
                      .fail_fast = fail_fast});
}

} // namespace zmesh::cli
