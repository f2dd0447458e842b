// SPDX-License-Identifier: MPL-2.0
// security_flags.hpp — internal: the security flags every server and client command shares
// (docs/security.md), so that each command spells and checks them the same way.
//
// Servers: --curve-secret FILE (the server's NAME.key_secret) turns CURVE on and needs
// --allow DIR (the client public keys admitted); --allow-address and --deny-address add address
// lists, with or without CURVE. Clients: --curve-server-key FILE (the server's NAME.key) and
// --curve-key FILE (the client's own NAME.key_secret), or the environment variables
// ZMESH_CURVE_SERVER_KEY and ZMESH_CURVE_KEY, or the keys curve-server-key and curve-key of the
// configuration file (config.hpp), so that scripts need not repeat them.
//
// A publisher or subscriber that binds is the server of its direct links: it takes
// --curve-secret and --allow (add_peer_to()); the one that connects to it takes the client flags.
#pragma once

#include <zmesh/security/acl.hpp>
#include <zmesh/security/zap.hpp>

#include <boost/program_options.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace zmesh::cli {

struct server_security_flags {
    std::string curve_secret;
    std::string allow_dir;
    std::vector<std::string> allow_addresses;
    std::vector<std::string> deny_addresses;
    std::string acl_file;

    void add_to(boost::program_options::options_description& options);
    /// Only --curve-secret and --allow, worded for a publisher or subscriber that binds. The
    /// address lists and --acl are the broker's: a peer's access list would have nothing to
    /// enforce, and its address lists are not wired (CURVE keys say who a peer is).
    void add_peer_to(boost::program_options::options_description& options, const char* peers);
    /// Whether any security flag was given.
    [[nodiscard]] bool on() const noexcept;
    /// The server's certificate, if --curve-secret was given.
    /// @throws usage_error (--curve-secret without --allow), zmesh::error (the file).
    [[nodiscard]] std::optional<security::certificate> certificate() const;
    /// The policy the flags describe, read from --allow's directory now (also on SIGHUP).
    /// @throws usage_error (a bad address rule), zmesh::error (the directory or a key file).
    [[nodiscard]] security::access_policy policy() const;
    /// The access list of --acl, read now (also on SIGHUP); null without --acl.
    /// @throws usage_error (--acl without --curve-secret), zmesh::error (the file, its line).
    [[nodiscard]] std::shared_ptr<const security::access_list> acl() const;
    /// For a binding peer: its certificate and policy, if --curve-secret was given.
    /// @throws as certificate() and policy().
    [[nodiscard]] std::optional<security::curve_server_settings> peer_server() const;
};

struct client_security_flags {
    std::string server_key;
    std::string key;

    void add_to(boost::program_options::options_description& options);
    /// The CURVE keys, from the flags, the environment or the configuration file (parse() fills
    /// them in, config.hpp); std::nullopt if none names them.
    /// @throws usage_error (only one of the two), zmesh::error (a file).
    [[nodiscard]] std::optional<security::curve_client_keys> load() const;
    /// Whether --curve-server-key or --curve-key was on the command line, rather than taken
    /// from the environment or the configuration file.
    [[nodiscard]] bool given_as_flags() const;
};

/// Re-reads @p flags' policy on every SIGHUP and hands it to @p apply, on a thread of its own,
/// until destroyed. SIGHUP is blocked in the calling thread, so create it before any other
/// thread (threads inherit the mask) — in practice, first thing in the command. A reload that
/// fails is logged and leaves the old policy in force.
class sighup_reloader {
  public:
    using apply_function = std::function<void(security::access_policy,
                                              std::shared_ptr<const security::access_list>)>;
    sighup_reloader(server_security_flags flags, apply_function apply);
    ~sighup_reloader();
    sighup_reloader(const sighup_reloader&) = delete;
    sighup_reloader& operator=(const sighup_reloader&) = delete;
    /// Starts answering SIGHUP (after the node exists).
    void start();

  private:
    server_security_flags flags_;
    apply_function apply_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

/// SIGHUP for a server that is not the broker (a publisher or subscriber that binds, zmesh serve,
/// zmesh clone-server): re-reads --allow into the server's set_access() on every SIGHUP.
///
/// Two moments, because of two orders: SIGHUP must be blocked before any thread exists (make
/// this before the zmq context), and reloads must stop before the server goes (keep the guard
/// that apply_to() returns after the server). Without a server certificate it does nothing,
/// and SIGHUP keeps its default meaning.
class peer_reloader {
  public:
    /// @param on whether the command serves with CURVE (peer_server() gave settings).
    peer_reloader(const server_security_flags& flags, bool on) {
        if (on)
            reloader_.emplace(flags, [this](security::access_policy p,
                                            std::shared_ptr<const security::access_list>) {
                apply_(std::move(p));
            });
    }
    peer_reloader(const peer_reloader&) = delete; // its reloader calls back into this object
    peer_reloader& operator=(const peer_reloader&) = delete;

    /// Ends the reloads when destroyed.
    class guard {
      public:
        explicit guard(peer_reloader* r) : r_(r) {}
        ~guard() {
            if (r_) r_->reloader_.reset();
        }
        guard(const guard&) = delete;
        guard& operator=(const guard&) = delete;

      private:
        peer_reloader* r_;
    };

    /// Starts applying reloads to @p server (whose set_access() is thread-safe) until the
    /// returned guard goes.
    template <typename Server>
    [[nodiscard]] guard apply_to(Server& server) {
        if (!reloader_) return guard(nullptr);
        apply_ = [&server](security::access_policy p) { server.set_access(std::move(p)); };
        reloader_->start(); // the thread starts after apply_ is set
        return guard(this);
    }

    [[nodiscard]] bool on() const noexcept { return reloader_.has_value(); }

  private:
    std::function<void(security::access_policy)> apply_;
    std::optional<sighup_reloader> reloader_;
};

} // namespace zmesh::cli
