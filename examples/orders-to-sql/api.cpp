// SPDX-License-Identifier: MPL-2.0
// orders-api — accepts orders over HTTP and hands each one to Titanic as a durable request.
//
//   POST /orders   {"customer": "...", "sku": "...", "quantity": 3, "unit_price_cents": 1250}
//       202 {"id": "<message id>", "titanic_id": "<TSP id>"}  once Titanic has stored it
//       400 {"error": "<reason>"}                             malformed JSON or fields
//       503 {"error": "<what was unreachable>"}               Titanic did not acknowledge it
//   GET /healthz  200 {"status": "ok"}
//
// The order's message id is generated here (or taken from an Idempotency-Key header of 32 hex
// digits, so that a client that retries a POST after a 503 or a lost answer gets the same id)
// and travels inside the order; the consumer stores each id at most once. 202 is sent only
// after Titanic answered "200": the order is then committed to Titanic's store, and Titanic
// delivers it to the consumer until the consumer answers, or puts it in its dead-letter queue.
#include "order.hpp"

#include <zmesh/error.hpp>
#include <zmesh/header.hpp>
#include <zmesh/mdp/durable_client.hpp>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr const char* usage =
    "usage: orders-api --listen HOST:PORT --broker EP [--service NAME] [--check strict|schema]\n"
    "                  [--timeout-ms N] [--curve-server-key FILE --curve-key FILE]\n"
    "\n"
    "  --listen HOST:PORT       where to serve HTTP (POST /orders, GET /healthz); port 0 picks\n"
    "                           a free one (printed)\n"
    "  --broker EP              the zmesh broker Titanic serves through, e.g. "
    "tcp://127.0.0.1:5555\n"
    "  --service NAME           the service that stores orders (default orders.store)\n"
    "  --check strict|schema    strict (default): refuse a quantity below 1 or a negative price\n"
    "                           with 400; schema: check only the fields and their types, and\n"
    "                           leave the rest to the database (to see the dead-letter queue)\n"
    "  --timeout-ms N           wait for Titanic's acknowledgement, per attempt (3 attempts;\n"
    "                           default 2000)\n"
    "  --curve-server-key FILE  the broker's public certificate (env ZMESH_CURVE_SERVER_KEY)\n"
    "  --curve-key FILE         this program's secret certificate (env ZMESH_CURVE_KEY)\n";

using json = nlohmann::json;

/// Durable clients, one per request in progress: a durable_client is not thread-safe, and the
/// HTTP server answers on several threads. A client whose call failed is dropped, not reused.
class client_pool {
  public:
    client_pool(zmq::context_t& ctx, std::string broker, zmesh::mdp::durable_client_options opts)
        : ctx_(ctx), broker_(std::move(broker)), opts_(std::move(opts)) {}

    std::unique_ptr<zmesh::mdp::durable_client> acquire() {
        {
            std::lock_guard lock(mutex_);
            if (!idle_.empty()) {
                auto c = std::move(idle_.back());
                idle_.pop_back();
                return c;
            }
        }
        return std::make_unique<zmesh::mdp::durable_client>(ctx_, broker_, opts_);
    }
    void release(std::unique_ptr<zmesh::mdp::durable_client> c) {
        std::lock_guard lock(mutex_);
        idle_.push_back(std::move(c));
    }
    void clear() {
        std::lock_guard lock(mutex_);
        idle_.clear();
    }

  private:
    zmq::context_t& ctx_;
    std::string broker_;
    zmesh::mdp::durable_client_options opts_;
    std::mutex mutex_;
    std::vector<std::unique_ptr<zmesh::mdp::durable_client>> idle_;
};

bool sku_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
}

/// Checks the body and fills @p out; returns the reason it is refused, or "" if it is fine.
std::string parse_order(const std::string& body, bool strict, orders::order& out) {
    json j;
    try {
        j = json::parse(body);
    } catch (const json::parse_error& e) {
        // e.what() reads "[json.exception.parse_error.101] parse error at line 1, column 2: ..."
        std::string what = e.what();
        if (const auto p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
        return "body is not valid JSON: " + what;
    }
    if (!j.is_object())
        return "body must be a JSON object with customer, sku, quantity and "
               "unit_price_cents";
    for (const auto& [key, value] : j.items()) {
        (void)value;
        if (key != "customer" && key != "sku" && key != "quantity" && key != "unit_price_cents")
            return "unknown field '" + key +
                   "' (an order has customer, sku, quantity and unit_price_cents)";
    }
    const auto text = [&](const char* name, std::size_t max, std::string& to) -> std::string {
        const auto it = j.find(name);
        if (it == j.end()) return std::string("missing field '") + name + "'";
        if (!it->is_string()) return std::string("field '") + name + "' must be a string";
        to = it->get<std::string>();
        if (to.empty() || to.size() > max)
            return std::string("field '") + name + "' must have 1 to " + std::to_string(max) +
                   " characters";
        return {};
    };
    const auto whole = [&](const char* name, std::int64_t& to) -> std::string {
        const auto it = j.find(name);
        if (it == j.end()) return std::string("missing field '") + name + "'";
        if (!it->is_number_integer())
            return std::string("field '") + name + "' must be a whole number";
        if (it->is_number_unsigned() && it->get<std::uint64_t>() > 9007199254740991ULL)
            return std::string("field '") + name + "' is too large";
        to = it->get<std::int64_t>();
        return {};
    };
    std::string why;
    if (!(why = text("customer", 100, out.customer)).empty()) return why;
    if (!(why = text("sku", 40, out.sku)).empty()) return why;
    for (char c : out.sku)
        if (!sku_char(c)) return "field 'sku' may hold only letters, digits, '-', '_' and '.'";
    if (!(why = whole("quantity", out.quantity)).empty()) return why;
    if (!(why = whole("unit_price_cents", out.unit_price_cents)).empty()) return why;
    if (strict) {
        if (out.quantity < 1 || out.quantity > 1000000)
            return "field 'quantity' must be from 1 to 1000000";
        if (out.unit_price_cents < 0 || out.unit_price_cents > 1000000000)
            return "field 'unit_price_cents' must be from 0 to 1000000000";
    }
    return {};
}

void send_json(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(body.dump() + "\n", "application/json");
}

} // namespace

int main(int argc, char** argv) try {
    const orders::flags f(
        argc, argv,
        {"listen", "broker", "service", "check", "timeout-ms", "curve-server-key", "curve-key"});
    if (f.help()) {
        std::fputs(usage, stdout);
        return 0;
    }
    const std::string listen = f.require("listen");
    const std::string broker = f.require("broker");
    const std::string service = f.get("service", "orders.store");
    const std::string check = f.get("check", "strict");
    if (check != "strict" && check != "schema")
        throw std::invalid_argument("flag --check: '" + check + "' is neither strict nor schema");
    const bool strict = check == "strict";
    const auto timeout = std::chrono::milliseconds(f.number("timeout-ms", 2000, 1, 600000));
    const auto colon = listen.rfind(':');
    if (colon == std::string::npos || colon == 0)
        throw std::invalid_argument("flag --listen: '" + listen + "' is not HOST:PORT");
    const std::string host = listen.substr(0, colon);
    char* end = nullptr;
    const long port = std::strtol(listen.c_str() + colon + 1, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535 || colon + 1 == listen.size())
        throw std::invalid_argument("flag --listen: '" + listen + "' has no valid port");

    zmesh::mdp::durable_client_options opts;
    opts.mdp.timeout = timeout;
    opts.mdp.retries = 3;
    opts.mdp.curve = orders::curve_from(f);
    const bool curve = opts.mdp.curve.has_value();

    // SIGINT and SIGTERM are taken by one thread with sigwait, which stops the server; every
    // other thread (the server's pool included) inherits the blocked mask.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    zmq::context_t ctx;
    client_pool pool(ctx, broker, opts);
    pool.release(pool.acquire()); // a malformed --broker fails here, not in the first request
    httplib::Server server;
    server.set_payload_max_length(64 * 1024);

    server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
        send_json(res, 200, {{"status", "ok"}});
    });
    server.Post("/orders", [&](const httplib::Request& req, httplib::Response& res) {
        orders::order o;
        if (std::string why = parse_order(req.body, strict, o); !why.empty()) {
            send_json(res, 400, {{"error", why}});
            return;
        }
        if (req.has_header("Idempotency-Key")) {
            const auto key = zmesh::message_id::from_hex(req.get_header_value("Idempotency-Key"));
            if (!key) {
                send_json(res, 400, {{"error", "header Idempotency-Key must be 32 hex digits"}});
                return;
            }
            o.id = key->to_hex();
        } else {
            o.id = zmesh::message_id::generate().to_hex();
        }
        o.accepted_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
        std::unique_ptr<zmesh::mdp::durable_client> client;
        try {
            client = pool.acquire();
            zmesh::message body;
            body.push_back(zmesh::pack(o));
            const std::string tsp_id = client->submit(service, std::move(body));
            pool.release(std::move(client));
            send_json(res, 202, {{"id", o.id}, {"titanic_id", tsp_id}});
        } catch (const zmesh::error& e) {
            std::string why;
            if (e.code() == zmesh::errc::timeout)
                why = "titanic.request did not acknowledge the order through the broker at " +
                      broker + " (" + std::to_string(opts.mdp.retries) + " attempts of " +
                      std::to_string(timeout.count()) +
                      " ms): is the broker up, a titanic node running" +
                      (curve ? ", and are the CURVE keys admitted?" : "?");
            else
                why = "titanic.request through the broker at " + broker +
                      " did not store the order: " + e.what();
            std::fprintf(stderr, "orders-api: order %s refused with 503: %s\n", o.id.c_str(),
                         why.c_str());
            send_json(res, 503, {{"error", why}, {"id", o.id}});
        } catch (const std::exception& e) { // a socket error (zmq::error_t), out of memory
            const std::string why =
                "titanic.request through the broker at " + broker + " failed: " + e.what();
            std::fprintf(stderr, "orders-api: order %s refused with 503: %s\n", o.id.c_str(),
                         why.c_str());
            send_json(res, 503, {{"error", why}, {"id", o.id}});
        }
    });

    // Port 0: any free port, printed below.
    const int bound = port == 0 ? server.bind_to_any_port(host.c_str())
                                : (server.bind_to_port(host.c_str(), static_cast<int>(port))
                                       ? static_cast<int>(port)
                                       : -1);
    if (bound < 0) {
        std::fprintf(stderr, "orders-api: cannot listen on %s\n", listen.c_str());
        return 1;
    }
    std::thread stopper([&] {
        int sig = 0;
        sigwait(&stop_signals, &sig);
        server.stop();
    });
    std::printf("orders-api: listening on http://%s:%d, orders go to service %s through Titanic at "
                "%s (CURVE %s, checks %s)\n",
                host.c_str(), bound, service.c_str(), broker.c_str(), curve ? "on" : "off",
                check.c_str());
    std::fflush(stdout);
    const bool ok = server.listen_after_bind();
    kill(getpid(), SIGTERM); // ends the stopper's sigwait if the server stopped on its own
    stopper.join();
    pool.clear();
    std::printf("orders-api: stopped\n");
    return ok ? 0 : 1;
} catch (const std::exception& e) {
    std::fprintf(stderr, "orders-api: %s\n", e.what());
    return 2;
}
