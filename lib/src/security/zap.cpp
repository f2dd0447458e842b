// SPDX-License-Identifier: MPL-2.0
// zap.cpp — the ZAP handler (rfc 27) and the CURVE settings of sockets (see zap.hpp).
#include <zmesh/security/zap.hpp>

#include <zmesh/error.hpp>
#include <zmesh/log.hpp>

#include <arpa/inet.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <system_error>
#include <thread>

namespace zmesh::security {
namespace {

constexpr const char* zap_endpoint = "inproc://zeromq.zap.01";

/// An address rule parsed: an IPv4 network (address and prefix length) or an IPv6 address.
struct address_rule {
    bool v6 = false;
    std::uint32_t v4 = 0;
    int prefix = 32;
    in6_addr addr6{};
};

std::optional<address_rule> parse_rule(std::string_view rule) noexcept {
    address_rule r;
    std::string text(rule);
    if (text.find(':') != std::string::npos) {
        r.v6 = true;
        if (::inet_pton(AF_INET6, text.c_str(), &r.addr6) != 1) return std::nullopt;
        return r;
    }
    if (const auto slash = text.find('/'); slash != std::string::npos) {
        const std::string bits = text.substr(slash + 1);
        int prefix = -1;
        const auto [end, ec] = std::from_chars(bits.data(), bits.data() + bits.size(), prefix);
        if (ec != std::errc() || end != bits.data() + bits.size() || prefix < 0 || prefix > 32)
            return std::nullopt;
        r.prefix = prefix;
        text.resize(slash);
    }
    in_addr a{};
    if (::inet_pton(AF_INET, text.c_str(), &a) != 1) return std::nullopt;
    r.v4 = ntohl(a.s_addr);
    return r;
}

bool matches(const address_rule& r, std::string_view address) noexcept {
    const std::string text(address);
    if (r.v6) {
        in6_addr a{};
        return ::inet_pton(AF_INET6, text.c_str(), &a) == 1 &&
               std::memcmp(&a, &r.addr6, sizeof a) == 0;
    }
    in_addr a{};
    if (::inet_pton(AF_INET, text.c_str(), &a) != 1) return false;
    const std::uint32_t mask = r.prefix == 0 ? 0 : ~std::uint32_t{0} << (32 - r.prefix);
    return (ntohl(a.s_addr) & mask) == (r.v4 & mask);
}

/// A policy with its rules parsed once, so that a handshake does no parsing of the policy.
struct compiled_policy {
    std::map<key_bytes, std::string> keys;
    std::set<std::string, std::less<>> names; // the User-Ids admitted (admits())
    std::vector<address_rule> allow, deny;
};

compiled_policy compile(access_policy p) {
    compiled_policy c;
    for (const auto& rule : p.allow_addresses) {
        check_address_rule(rule);
        c.allow.push_back(*parse_rule(rule));
    }
    for (const auto& rule : p.deny_addresses) {
        check_address_rule(rule);
        c.deny.push_back(*parse_rule(rule));
    }
    for (const auto& [key, name] : p.keys) c.names.insert(name);
    c.keys = std::move(p.keys);
    return c;
}

std::string_view view(const zmq::message_t& m) noexcept {
    return {static_cast<const char*>(m.data()), m.size()};
}

} // namespace

void check_address_rule(std::string_view rule) {
    if (!parse_rule(rule))
        throw error(errc::invalid_argument,
                    "address rule '" + std::string(rule) +
                        "' is not an IPv4 address, an IPv4 network (A.B.C.D/N) or an IPv6 address");
}

bool address_matches(std::string_view rule, std::string_view address) noexcept {
    const auto r = parse_rule(rule);
    return r && matches(*r, address);
}

std::map<key_bytes, std::string> load_allowed_keys(const std::filesystem::path& dir) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec))
        throw error(errc::invalid_argument,
                    "allowed keys directory " + dir.string() + " does not exist or is not a directory");
    std::map<key_bytes, std::string> keys;
    // The name is the User-Id the broker logs and cuts off by: two keys under one name would
    // make removing one of them leave the other's connections standing.
    std::map<std::string, std::filesystem::path, std::less<>> file_of_name;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
        if (!entry.is_regular_file() || entry.path().extension() != ".key") continue;
        certificate c = load_public(entry.path()); // throws naming the file
        const auto [at, fresh] = file_of_name.emplace(c.name, entry.path());
        if (!fresh && keys.count(c.public_key) == 0)
            throw error(errc::invalid_argument,
                        "allowed keys " + at->second.string() + " and " + entry.path().string() +
                            " have the same name '" + c.name + "': names must be unique");
        keys.insert_or_assign(c.public_key, std::move(c.name));
    }
    if (ec)
        throw error(errc::invalid_argument,
                    "cannot read allowed keys directory " + dir.string() + ": " + ec.message());
    return keys;
}

struct zap_handler::impl {
    zmq::socket_t socket;
    mutable std::shared_mutex mutex;
    compiled_policy policy; // guarded by mutex
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> admitted{0}, refused{0};
    log_limiter refusal_log{20};
    std::thread thread;

    impl(zmq::context_t& ctx, access_policy p)
        : socket(ctx, zmq::socket_type::rep), policy(compile(std::move(p))) {
        socket.set(zmq::sockopt::linger, 0);
        socket.bind(zap_endpoint); // EADDRINUSE: the context has a handler already
        thread = std::thread([this] { run(); });
    }

    ~impl() {
        stop = true;
        thread.join();
        // Closing alone frees the endpoint later, on libzmq's reaper thread; unbinding frees it
        // now, so that a server recreated at once in the same context can bind it again.
        try {
            socket.unbind(zap_endpoint);
        } catch (const zmq::error_t&) {
            // ETERM: the context is closing, and the endpoint goes with it.
        }
    }

    void run() {
        zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
        while (!stop.load(std::memory_order_relaxed)) {
            try {
                if (zmq::poll(&item, 1, std::chrono::milliseconds(100)) <= 0) continue;
                std::vector<zmq::message_t> request;
                for (;;) {
                    zmq::message_t frame;
                    if (!socket.recv(frame, zmq::recv_flags::dontwait)) break;
                    const bool more = frame.more();
                    request.push_back(std::move(frame));
                    if (!more) break;
                }
                answer(request);
            } catch (const zmq::error_t& e) {
                if (e.num() == ETERM) return; // the context is closing
                log(log_level::error, "ZAP handler: %s", e.what());
            }
        }
    }

    /// Request (rfc 27): version, request id, domain, address, identity, mechanism, credentials…
    void answer(const std::vector<zmq::message_t>& request) {
        std::string_view request_id;
        std::string status = "400", text = "malformed ZAP request", user;
        if (request.size() >= 6 && view(request[0]) == "1.0") {
            request_id = view(request[1]);
            decide(request, status, text, user);
        }
        std::array<zmq::message_t, 6> reply{zmq::message_t("1.0", 3),
                                            zmq::message_t(request_id.data(), request_id.size()),
                                            zmq::message_t(status.data(), status.size()),
                                            zmq::message_t(text.data(), text.size()),
                                            zmq::message_t(user.data(), user.size()),
                                            zmq::message_t()};
        for (std::size_t i = 0; i < reply.size(); ++i)
            (void)socket.send(reply[i], i + 1 < reply.size() ? zmq::send_flags::sndmore
                                                              : zmq::send_flags::none);
    }

    void decide(const std::vector<zmq::message_t>& request, std::string& status,
                std::string& text, std::string& user) {
        const std::string address(view(request[3]));
        const std::string_view mechanism = view(request[5]);
        std::shared_lock lock(mutex);
        auto refuse = [&](std::string why) {
            status = "400";
            text = why;
            ++refused;
            if (refusal_log.allow())
                log(log_level::warn, "refused a %.*s connection from %s: %s",
                    static_cast<int>(mechanism.size()), mechanism.data(), address.c_str(),
                    why.c_str());
        };
        for (const auto& r : policy.deny)
            if (matches(r, address)) return refuse("address denied");
        if (!policy.allow.empty()) {
            bool any = false;
            for (const auto& r : policy.allow) any = any || matches(r, address);
            if (!any) return refuse("address not allowed");
        }
        if (mechanism == "CURVE") {
            if (request.size() < 7 || request[6].size() != sizeof(key_bytes))
                return refuse("CURVE request without a 32-byte key");
            key_bytes key{};
            std::memcpy(key.data(), request[6].data(), key.size());
            const auto it = policy.keys.find(key);
            if (it == policy.keys.end()) return refuse("unknown key " + to_z85(key));
            user = it->second;
        } else if (mechanism != "NULL") {
            return refuse("mechanism not supported");
        }
        status = "200";
        text = "OK";
        ++admitted;
        log(log_level::debug, "admitted a %.*s connection from %s%s%s",
            static_cast<int>(mechanism.size()), mechanism.data(), address.c_str(),
            user.empty() ? "" : " as ", user.c_str());
    }
};

zap_handler::zap_handler(zmq::context_t& ctx, access_policy policy)
    : impl_(std::make_unique<impl>(ctx, std::move(policy))) {}

zap_handler::~zap_handler() = default;

void zap_handler::set_policy(access_policy policy) {
    compiled_policy compiled = compile(std::move(policy)); // throws before anything changes
    std::unique_lock lock(impl_->mutex);
    impl_->policy = std::move(compiled);
}

bool zap_handler::admits(std::string_view user_id) const {
    if (user_id.empty()) return true;
    std::shared_lock lock(impl_->mutex);
    return impl_->policy.names.find(user_id) != impl_->policy.names.end();
}

zap_stats zap_handler::stats() const noexcept {
    return {impl_->admitted.load(), impl_->refused.load()};
}

void make_curve_server(zmq::socket_t& socket, const certificate& server) {
    if (!server.secret_key)
        throw error(errc::invalid_argument,
                    "a CURVE server needs its secret key (a NAME.key_secret file)");
    socket.set(zmq::sockopt::curve_server, 1);
    socket.set(zmq::sockopt::curve_secretkey,
               zmq::const_buffer(server.secret_key->data(), server.secret_key->size()));
    use_zap(socket);
}

std::unique_ptr<zap_handler> start_curve_server(zmq::context_t& ctx, std::string_view who,
                                                const curve_server_settings& settings) {
    const std::string name(who);
    if (!settings.server.secret_key)
        throw error(errc::invalid_argument,
                    name + ": a CURVE server needs its own secret key (a NAME.key_secret file)");
    try {
        return std::make_unique<zap_handler>(ctx, settings.access);
    } catch (const zmq::error_t& e) {
        if (e.num() != EADDRINUSE) throw;
        throw error(errc::invalid_argument,
                    name + ": a CURVE server runs the ZAP handler of its zmq::context_t, and this "
                           "context has one already (another CURVE server, a broker or a "
                           "security::zap_handler): give each CURVE server its own context");
    }
}

void use_zap(zmq::socket_t& socket) {
    socket.set(zmq::sockopt::zap_domain, std::string(zap_domain));
}

void make_curve_client(zmq::socket_t& socket, const key_bytes& server_public,
                       const certificate& client) {
    if (!client.secret_key)
        throw error(errc::invalid_argument,
                    "a CURVE client needs its own secret key (a NAME.key_secret file)");
    socket.set(zmq::sockopt::curve_serverkey,
               zmq::const_buffer(server_public.data(), server_public.size()));
    socket.set(zmq::sockopt::curve_publickey,
               zmq::const_buffer(client.public_key.data(), client.public_key.size()));
    socket.set(zmq::sockopt::curve_secretkey,
               zmq::const_buffer(client.secret_key->data(), client.secret_key->size()));
}

std::string_view user_id(const zmq::message_t& frame) noexcept {
    // zmq_msg_gets is not const in libzmq's signature, though it only reads.
    const char* v = zmq_msg_gets(const_cast<zmq::message_t&>(frame).handle(), "User-Id");
    return v ? std::string_view(v) : std::string_view();
}

} // namespace zmesh::security
