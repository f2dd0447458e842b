// SPDX-License-Identifier: MPL-2.0
// http_status.cpp — the HTTP endpoint of the nodes (http_status.hpp), on cpp-httplib.
#include "http_status.hpp"

#include <httplib.h>

#include <sys/socket.h>

#include <charconv>
#include <chrono>
#include <stdexcept>
#include <thread>

namespace zmesh::cli {

struct http_status_server::impl {
    httplib::Server server;
    std::thread thread;
    std::string url;
};

namespace {

/// Splits "HOST:PORT" at its last colon ("[::1]:80" keeps its brackets out of the host).
void split_address(const std::string& address, std::string& host, int& port) {
    const auto colon = address.rfind(':');
    if (colon == std::string::npos || colon + 1 == address.size())
        throw std::runtime_error("invalid --http '" + address + "': expected HOST:PORT");
    host = address.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    if (host.empty()) host = "0.0.0.0";
    const auto digits = std::string_view(address).substr(colon + 1);
    const auto r = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (r.ec != std::errc() || r.ptr != digits.data() + digits.size() || port < 0 || port > 65535)
        throw std::runtime_error("invalid --http '" + address + "': the port must be 0..65535");
}

} // namespace

http_status_server::http_status_server(const std::string& address, http_status_sources sources)
    : impl_(std::make_unique<impl>()) {
    std::string host;
    int port = 0;
    split_address(address, host, port);
    auto& srv = impl_->server;
    // cpp-httplib's default also sets SO_REUSEPORT, which lets a second node bind the same port
    // and take half of its connections; SO_REUSEADDR alone still allows a quick restart.
    srv.set_socket_options([](socket_t sock) {
        int yes = 1;
        ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    // A scrape or a page poll is small; a few threads are plenty and bound what a flood costs.
    srv.new_task_queue = [] { return new httplib::ThreadPool(2); };
    srv.Get("/metrics", [metrics = sources.metrics](const httplib::Request&, httplib::Response& res) {
        res.set_content(metrics(), "text/plain; version=0.0.4; charset=utf-8");
    });
    srv.Get("/api/status", [status = sources.status_json](const httplib::Request&,
                                                         httplib::Response& res) {
        res.set_header("Cache-Control", "no-store");
        res.set_content(status(), "application/json");
    });
    srv.Get("/healthz", [unhealthy = sources.unhealthy](const httplib::Request&,
                                                       httplib::Response& res) {
        const auto why = unhealthy();
        res.status = why.empty() ? 200 : 503;
        res.set_content(why.empty() ? std::string("ok\n") : why + "\n", "text/plain");
    });
    srv.Get("/", [page = sources.page](const httplib::Request&, httplib::Response& res) {
        res.set_content(std::string(page), "text/html; charset=utf-8");
    });
    srv.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
        if (res.status == 404)
            res.set_content("not found: " + req.path +
                                " (try /metrics, /healthz, /api/status or /)\n",
                            "text/plain");
    });
    if (port == 0) {
        port = srv.bind_to_any_port(host);
        if (port < 0) throw std::runtime_error("cannot listen on --http '" + address + "'");
    } else if (!srv.bind_to_port(host, port)) {
        throw std::runtime_error("cannot listen on --http '" + address +
                                 "': the address is in use or not local");
    }
    impl_->url = "http://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) +
                 ":" + std::to_string(port) + "/";
    impl_->thread = std::thread([this] { impl_->server.listen_after_bind(); });
    // stop() only stops a server that is running: wait until it is, so that a destructor right
    // after the constructor cannot leave the thread listening forever. Bounded: the socket is
    // bound already, so this takes microseconds.
    for (int i = 0; i < 2000 && !srv.is_running(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

http_status_server::~http_status_server() {
    impl_->server.stop();
    if (impl_->thread.joinable()) impl_->thread.join();
}

const std::string& http_status_server::url() const noexcept { return impl_->url; }

} // namespace zmesh::cli
