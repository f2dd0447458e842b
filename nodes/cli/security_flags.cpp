// SPDX-License-Identifier: MPL-2.0
// security_flags.cpp — the shared security flags of the CLI (see security_flags.hpp).
#include "security_flags.hpp"

#include "command.hpp"
#include "config.hpp"

#include <zmesh/error.hpp>
#include <zmesh/log.hpp>

#include <csignal>
#include <cstdlib>
#include <ctime>

namespace zmesh::cli {

void server_security_flags::add_to(boost::program_options::options_description& options) {
    namespace po = boost::program_options;
    options.add_options()
        ("curve-secret", po::value(&curve_secret),
         "turn CURVE encryption on with this server certificate (NAME.key_secret from zmesh "
         "keygen, mode 0600); needs --allow")
        ("allow", po::value(&allow_dir),
         "directory of the client public keys (NAME.key) admitted with CURVE; re-read on SIGHUP")
        ("allow-address", po::value(&allow_addresses)->composing(),
         "admit only peers from this address or network (A.B.C.D, A.B.C.D/N, IPv6); repeatable")
        ("deny-address", po::value(&deny_addresses)->composing(),
         "refuse peers from this address or network; repeatable, checked first")
        ("acl", po::value(&acl_file),
         "access list: which services each key may call and serve, and more (docs/security.md); "
         "needs --curve-secret; re-read on SIGHUP");
}

void server_security_flags::add_peer_to(boost::program_options::options_description& options,
                                         const char* peers) {
    namespace po = boost::program_options;
    options.add_options()
        ("curve-secret", po::value(&curve_secret),
         (std::string("with --bind: be the CURVE server of the ") + peers +
          " that connect, with this certificate (NAME.key_secret, mode 0600); needs --allow")
             .c_str())
        ("allow", po::value(&allow_dir),
         (std::string("with --curve-secret: directory of the ") + peers +
          "' public keys (NAME.key) admitted; re-read on SIGHUP")
             .c_str());
}

std::optional<security::curve_server_settings> server_security_flags::peer_server() const {
    auto cert = certificate();
    if (!cert) return std::nullopt;
    security::curve_server_settings s;
    s.server = std::move(*cert);
    s.access = policy();
    return s;
}

bool server_security_flags::on() const noexcept {
    return !curve_secret.empty() || !allow_dir.empty() || !allow_addresses.empty() ||
           !deny_addresses.empty() || !acl_file.empty();
}

std::shared_ptr<const security::access_list> server_security_flags::acl() const {
    if (acl_file.empty()) return nullptr;
    if (curve_secret.empty())
        throw usage_error("--acl needs --curve-secret: without CURVE no client has a key name");
    return std::make_shared<const security::access_list>(security::access_list::load(acl_file));
}

std::optional<security::certificate> server_security_flags::certificate() const {
    if (curve_secret.empty()) {
        if (!allow_dir.empty())
            throw usage_error("--allow needs --curve-secret: keys are checked only with CURVE");
        return std::nullopt;
    }
    if (allow_dir.empty())
        throw usage_error("--curve-secret needs --allow DIR: the client keys it admits "
                          "(without it no client could connect)");
    return security::load_secret(curve_secret);
}

security::access_policy server_security_flags::policy() const {
    security::access_policy p;
    for (const auto& rule : allow_addresses) {
        try {
            security::check_address_rule(rule);
        } catch (const error& e) {
            throw usage_error(std::string("--allow-address: ") + e.what());
        }
    }
    for (const auto& rule : deny_addresses) {
        try {
            security::check_address_rule(rule);
        } catch (const error& e) {
            throw usage_error(std::string("--deny-address: ") + e.what());
        }
    }
    p.allow_addresses = allow_addresses;
    p.deny_addresses = deny_addresses;
    if (!allow_dir.empty()) p.keys = security::load_allowed_keys(allow_dir);
    return p;
}

void client_security_flags::add_to(boost::program_options::options_description& options) {
    namespace po = boost::program_options;
    options.add_options()
        ("curve-server-key", po::value(&server_key),
         "the server's public certificate (NAME.key): turns CURVE on (env ZMESH_CURVE_SERVER_KEY)")
        ("curve-key", po::value(&key),
         "this client's own certificate (NAME.key_secret, mode 0600) (env ZMESH_CURVE_KEY)");
}

bool client_security_flags::given_as_flags() const {
    return origin_of("curve-server-key").from == origin::kind::flag ||
           origin_of("curve-key").from == origin::kind::flag;
}

std::optional<security::curve_client_keys> client_security_flags::load() const {
    // parse() has filled in ZMESH_CURVE_SERVER_KEY, ZMESH_CURVE_KEY or the file's keys.
    const std::string& server = server_key;
    const std::string& own = key;
    if (server.empty() && own.empty()) return std::nullopt;
    if (server.empty())
        throw usage_error("--curve-key needs --curve-server-key (or ZMESH_CURVE_SERVER_KEY, or "
                          "curve-server-key in the configuration file): the server's public "
                          "certificate");
    if (own.empty())
        throw usage_error("--curve-server-key needs --curve-key (or ZMESH_CURVE_KEY, or curve-key "
                          "in the configuration file): this client's own secret certificate");
    security::curve_client_keys keys;
    keys.server_public = security::load_public(server).public_key;
    keys.client = security::load_secret(own);
    return keys;
}

sighup_reloader::sighup_reloader(server_security_flags flags, apply_function apply)
    : flags_(std::move(flags)), apply_(std::move(apply)) {
    // Blocked here and in every thread created after: only sigtimedwait() below receives it,
    // so a reload never runs inside a signal handler.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void sighup_reloader::start() {
    thread_ = std::thread([this] {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGHUP);
        const timespec tick{0, 200'000'000};
        while (!stop_) {
            if (sigtimedwait(&set, nullptr, &tick) != SIGHUP) continue;
            if (flags_.allow_dir.empty() && flags_.allow_addresses.empty() &&
                flags_.deny_addresses.empty()) {
                log(log_level::info, "SIGHUP: nothing to reload (no --allow or address lists)");
                continue;
            }
            try {
                auto policy = flags_.policy();
                auto acl = flags_.acl(); // both read before either applies: all or nothing
                const std::size_t keys = policy.keys.size();
                const std::size_t rules = acl ? acl->size() : 0;
                apply_(std::move(policy), std::move(acl));
                log(log_level::info, "SIGHUP: reloaded %zu allowed keys from %s%s%zu%s", keys,
                    flags_.allow_dir.empty() ? "(none)" : flags_.allow_dir.c_str(),
                    flags_.acl_file.empty() ? "" : ", ", rules,
                    flags_.acl_file.empty() ? "" : " access list rules");
            } catch (const std::exception& e) {
                log(log_level::error, "SIGHUP: reload failed, the old keys stay in force: %s",
                    e.what());
            }
        }
    });
}

sighup_reloader::~sighup_reloader() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
}

} // namespace zmesh::cli
