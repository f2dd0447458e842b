// SPDX-License-Identifier: MPL-2.0
// pubsub/directory.cpp — directory_client (one MDP request per call) and directory_registration
// (a renewal thread).
#include <zmesh/pubsub/directory.hpp>

#include <zmesh/error.hpp>
#include <zmesh/log.hpp>
#include <zmesh/mdp/client.hpp>
#include <zmesh/message.hpp>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace zmesh::pubsub {
namespace {

constexpr std::string_view service = "zmesh.directory";

} // namespace

// ---- directory_client ------------------------------------------------------------------------

struct directory_client::impl {
    mdp::client client;

    impl(zmq::context_t& ctx, std::vector<std::string> brokers, std::chrono::milliseconds timeout,
         std::optional<security::curve_client_keys> curve)
        // One attempt per broker and call: with one broker the caller's timeout is the whole
        // wait. The requests are idempotent, so a caller (or directory_registration's next
        // period) just calls again. With several, mdp::client moves to the next broker after
        // each silent attempt and stays with the one that answered.
        : client(make(ctx, std::move(brokers), timeout, std::move(curve))) {}

    static mdp::client make(zmq::context_t& ctx, std::vector<std::string> brokers,
                            std::chrono::milliseconds timeout,
                            std::optional<security::curve_client_keys> curve) {
        if (brokers.empty())
            throw error(errc::invalid_argument, "directory_client: no broker endpoint");
        const int attempts = static_cast<int>(std::min<std::size_t>(brokers.size(), 64));
        mdp::client_options o{.timeout = timeout, .retries = attempts, .curve = std::move(curve)};
        if (brokers.size() == 1) return mdp::client(ctx, std::move(brokers.front()), std::move(o));
        return mdp::client(ctx, std::move(brokers), std::move(o));
    }

    /// Sends @p body and returns the reply, whose first frame is "200" (or "404" if
    /// @p allow_not_found); any other status throws.
    message call(std::string_view what, message&& body, bool allow_not_found = false) {
        message reply = client.request(service, std::move(body));
        const auto status = reply.empty() ? std::string_view() : view(reply[0]);
        if (status == "200" || (allow_not_found && status == "404")) return reply;
        const std::string reason = reply.size() > 1 ? to_string(reply[1]) : std::string();
        std::string text = "zmesh.directory: " + std::string(what) + " refused: ";
        text += status.empty() ? std::string_view("empty reply") : status;
        if (!reason.empty()) text += " " + reason;
        // 400 is the broker saying the arguments are wrong: the caller's mistake. Anything else
        // (503 full, 501 a broker without the service, garbage) is the peer's doing.
        throw error(status == "400" ? errc::invalid_argument : errc::protocol_violation, text);
    }
};

directory_client::directory_client(zmq::context_t& ctx, std::string broker_endpoint,
                                   std::chrono::milliseconds timeout,
                                   std::optional<security::curve_client_keys> curve)
    : directory_client(ctx, std::vector<std::string>{std::move(broker_endpoint)}, timeout,
                       std::move(curve)) {}

directory_client::directory_client(zmq::context_t& ctx, std::vector<std::string> broker_endpoints,
                                   std::chrono::milliseconds timeout,
                                   std::optional<security::curve_client_keys> curve) {
    if (timeout.count() <= 0)
        throw error(errc::invalid_argument, "directory_client: timeout must be positive");
    impl_ = std::make_unique<impl>(ctx, std::move(broker_endpoints), timeout, std::move(curve));
}

directory_client::~directory_client() = default;

directory_client::impl& directory_client::self() {
    if (!impl_) throw error(errc::not_running, "directory_client: used after being moved from");
    return *impl_;
}
directory_client::directory_client(directory_client&&) noexcept = default;
directory_client& directory_client::operator=(directory_client&&) noexcept = default;

void directory_client::register_endpoint(std::string_view name, std::string_view endpoint,
                                         std::chrono::milliseconds ttl) {
    // The broker validates everything (one rule set for every client language); a negative or
    // zero ttl goes out as is and comes back as 400.
    message body{"register", name, endpoint};
    body.push_back(std::to_string(ttl.count()));
    (void)self().call("register", std::move(body));
}

void directory_client::unregister_endpoint(std::string_view name, std::string_view endpoint) {
    (void)self().call("unregister", message{"unregister", name, endpoint});
}

std::vector<std::string> directory_client::resolve(std::string_view name) {
    message reply = self().call("resolve", message{"resolve", name}, true);
    std::vector<std::string> endpoints;
    if (view(reply[0]) == "404") return endpoints;
    endpoints.reserve(reply.size() - 1);
    for (std::size_t i = 1; i < reply.size(); ++i) endpoints.push_back(to_string(reply[i]));
    return endpoints;
}

std::vector<std::pair<std::string, std::string>> directory_client::list() {
    message reply = self().call("list", message{"list"});
    if (reply.size() % 2 != 1)
        throw error(errc::protocol_violation,
                    "zmesh.directory: list reply has a name without an endpoint");
    std::vector<std::pair<std::string, std::string>> entries;
    entries.reserve(reply.size() / 2);
    for (std::size_t i = 1; i + 1 < reply.size(); i += 2)
        entries.emplace_back(to_string(reply[i]), to_string(reply[i + 1]));
    return entries;
}

// ---- directory_registration ------------------------------------------------------------------

struct directory_registration::impl {
    std::string name;
    std::string endpoint;
    std::chrono::milliseconds ttl;
    directory_client client;      // used by the constructor's thread, then only by thread_
    std::mutex mutex;             // guards stopping
    std::condition_variable wake; // signalled by stop()
    bool stopping = false;
    std::mutex join_mutex;        // one stop() joins, concurrent ones wait for it
    std::thread thread;

    impl(zmq::context_t& ctx, std::vector<std::string> brokers, std::string name_,
         std::string endpoint_, std::chrono::milliseconds ttl_, std::chrono::milliseconds timeout,
         std::optional<security::curve_client_keys> curve)
        : name(std::move(name_)), endpoint(std::move(endpoint_)), ttl(ttl_),
          client(ctx, std::move(brokers), timeout, std::move(curve)) {
        client.register_endpoint(name, endpoint, ttl); // throws: a bad setup is reported at once
        thread = std::thread([this] { renew(); });
    }

    ~impl() { stop(); }
    impl(const impl&) = delete;
    impl& operator=(const impl&) = delete;

    void renew() noexcept {
        // ttl/3: a registration survives two lost renewals in a row before it expires.
        const auto period = std::max(ttl / 3, std::chrono::milliseconds(1));
        bool failing = false;
        std::unique_lock lock(mutex);
        while (!wake.wait_for(lock, period, [this] { return stopping; })) {
            lock.unlock();
            try {
                client.register_endpoint(name, endpoint, ttl);
                if (failing)
                    log(log_level::info, "directory: '%s' -> %s registered again", name.c_str(),
                        endpoint.c_str());
                failing = false;
            } catch (const std::exception& e) {
                // Logged once per outage, not once per period.
                if (!failing)
                    log(log_level::warn, "directory: renewing '%s' -> %s failed: %s", name.c_str(),
                        endpoint.c_str(), e.what());
                failing = true;
            }
            lock.lock();
        }
        lock.unlock();
        try {
            client.unregister_endpoint(name, endpoint);
        } catch (const std::exception& e) {
            // Not fatal: the registration expires by itself within ttl.
            log(log_level::debug, "directory: unregistering '%s' -> %s failed: %s", name.c_str(),
                endpoint.c_str(), e.what());
        }
    }

    void stop() noexcept {
        {
            std::lock_guard lock(mutex);
            stopping = true;
        }
        wake.notify_all();
        std::lock_guard join_lock(join_mutex);
        if (thread.joinable() && thread.get_id() != std::this_thread::get_id()) thread.join();
    }
};

directory_registration::directory_registration(zmq::context_t& ctx, std::string broker_endpoint,
                                               std::string name, std::string endpoint,
                                               std::chrono::milliseconds ttl,
                                               std::chrono::milliseconds timeout,
                                               std::optional<security::curve_client_keys> curve)
    : directory_registration(ctx, std::vector<std::string>{std::move(broker_endpoint)},
                             std::move(name), std::move(endpoint), ttl, timeout,
                             std::move(curve)) {}

directory_registration::directory_registration(zmq::context_t& ctx,
                                               std::vector<std::string> broker_endpoints,
                                               std::string name, std::string endpoint,
                                               std::chrono::milliseconds ttl,
                                               std::chrono::milliseconds timeout,
                                               std::optional<security::curve_client_keys> curve)
    : impl_(std::make_unique<impl>(ctx, std::move(broker_endpoints), std::move(name),
                                   std::move(endpoint), ttl, timeout, std::move(curve))) {}

directory_registration::~directory_registration() = default; // impl's destructor stops

directory_registration::directory_registration(directory_registration&&) noexcept = default;
directory_registration&
directory_registration::operator=(directory_registration&&) noexcept = default;

void directory_registration::stop() noexcept {
    if (impl_) impl_->stop();
}

const std::string& directory_registration::name() const noexcept { return impl_->name; }

const std::string& directory_registration::endpoint() const noexcept { return impl_->endpoint; }

} // namespace zmesh::pubsub
