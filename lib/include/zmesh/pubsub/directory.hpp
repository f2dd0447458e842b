// SPDX-License-Identifier: MPL-2.0
// pubsub/directory.hpp — client side of the broker's endpoint directory, `zmesh.directory`.
//
// Peers that talk directly (a publisher that binds its own socket, say) find each other through
// the broker without sending data through it: one registers "name -> endpoint" with a time to
// live, others resolve the name to every endpoint currently registered under it. The protocol is
// MDP/0.1 request/reply with text frames, specified in docs/pubsub.md ("Directory"), so peers in
// other languages can take part with any MDP client.
//
// directory_client makes single requests; directory_registration keeps one registration alive
// from a background thread for as long as it exists.
#pragma once

#include <zmesh/export.hpp>
#include <zmesh/security/zap.hpp>

#include <zmq.hpp>

#include <chrono>
#include <optional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace zmesh::pubsub {

/// Requests to the `zmesh.directory` service of a zmesh broker.
///
/// Each call is one MDP request that waits at most the timeout given at construction (there is
/// no resend: register, unregister and resolve are idempotent, so the caller may simply call
/// again).
///
/// Not thread-safe: use one client per thread (a client may move between threads). The client
/// owns its socket; @p ctx must outlive it.
///
/// @par Example
/// @code
/// zmq::context_t ctx;
/// zmesh::pubsub::directory_client dir(ctx, "tcp://broker:5555");
/// dir.register_endpoint("prices", "tcp://10.0.0.7:6000", std::chrono::seconds(30));
/// for (const std::string& ep : dir.resolve("prices"))   // every live registration
///     subscriber_socket.connect(ep);
/// dir.unregister_endpoint("prices", "tcp://10.0.0.7:6000");
/// @endcode
class ZMESH_EXPORT directory_client {
  public:
    /// Connects to the broker's MDP endpoint. Nothing is sent until the first call.
    /// @throws zmesh::error (errc::invalid_argument) if @p timeout is not positive;
    ///         zmq::error_t if libzmq rejects the endpoint.
    /// @p curve: the broker's public key and this client's certificate, for a broker with
    /// CURVE (docs/security.md); unset: plain.
    directory_client(zmq::context_t& ctx, std::string broker_endpoint,
                     std::chrono::milliseconds timeout = std::chrono::milliseconds(2500),
                     std::optional<security::curve_client_keys> curve = std::nullopt);
    /// Failover across brokers (the two of a Binary Star pair, docs/patterns/binary_star.md):
    /// each call asks the broker that last answered and, if it stays silent for @p timeout, the
    /// next ones in turn, each once. A passive broker drops directory requests, so the one that
    /// answers is the active one. A call with no answer from any of them throws errc::timeout
    /// naming every endpoint.
    /// @throws zmesh::error (errc::invalid_argument) if the list is empty or @p timeout is not
    ///         positive; zmq::error_t if libzmq rejects the first endpoint.
    directory_client(zmq::context_t& ctx, std::vector<std::string> broker_endpoints,
                     std::chrono::milliseconds timeout = std::chrono::milliseconds(2500),
                     std::optional<security::curve_client_keys> curve = std::nullopt);
    ~directory_client();
    directory_client(directory_client&&) noexcept;
    directory_client& operator=(directory_client&&) noexcept;
    directory_client(const directory_client&) = delete;
    directory_client& operator=(const directory_client&) = delete;

    /// Registers @p endpoint under @p name for @p ttl (rounded down to whole milliseconds), or
    /// renews the registration if it exists. It expires @p ttl after the last renewal; renew well
    /// within it (directory_registration renews every ttl/3).
    /// @param endpoint where peers connect: a tcp://, ipc:// or inproc:// endpoint without
    ///        wildcard host or port.
    /// @throws zmesh::error: errc::invalid_argument if the broker refuses the name (1–255 bytes,
    ///         no control characters), the endpoint or the ttl (1 ms to 24 h) ("400");
    ///         errc::protocol_violation if the broker refuses otherwise (a full
    ///         directory, "503") or answers something unexpected (a broker without the service,
    ///         "501"); errc::timeout if no reply came in time; errc::not_running if the context
    ///         is terminated or the client was moved from. zmq::error_t on other socket errors.
    void register_endpoint(std::string_view name, std::string_view endpoint,
                           std::chrono::milliseconds ttl);

    /// Removes the registration of @p endpoint under @p name. Removing one that does not exist
    /// (or expired) succeeds.
    /// @throws as register_endpoint().
    void unregister_endpoint(std::string_view name, std::string_view endpoint);

    /// The endpoints registered under @p name whose ttl has not run out, oldest registration
    /// first.
    /// @returns the endpoints; empty if there are none.
    /// @throws as register_endpoint().
    std::vector<std::string> resolve(std::string_view name);

    /// Every live registration, as (name, endpoint) pairs sorted by name.
    /// @throws as register_endpoint().
    std::vector<std::pair<std::string, std::string>> list();

  private:
    struct impl;
    impl& self();
    std::unique_ptr<impl> impl_;
};

/// Keeps one name -> endpoint registration alive while the object exists.
///
/// The constructor registers once and throws if that fails, so a wrong name, endpoint or broker
/// shows up at once. A background thread then renews the registration every ttl/3, so two renewals
/// in a row may be lost before it expires. A renewal that fails is logged at warn level and
/// retried at the next period; the registration comes back by itself once the broker answers again
/// (after a broker restart, say). stop() or the destructor ends the thread and unregisters.
///
/// Thread safety: stop() is thread-safe and idempotent. The object owns its thread and its socket;
/// @p ctx must outlive it.
///
/// @par Example
/// @code
/// zmesh::pubsub::directory_registration listed(ctx, "tcp://broker:5555", "prices",
///                                              "tcp://10.0.0.7:6000", std::chrono::seconds(10));
/// run_publisher();            // resolvable as "prices" meanwhile
/// // ~directory_registration: unregistered
/// @endcode
class ZMESH_EXPORT directory_registration {
  public:
    /// Registers @p endpoint under @p name for @p ttl and starts renewing it.
    /// @param timeout how long each request waits for the broker.
    /// @param curve the broker's public key and this client's certificate, for a broker with
    ///        CURVE; unset: plain.
    /// @throws as directory_client::register_endpoint(); std::system_error if the thread cannot be
    ///         started.
    directory_registration(zmq::context_t& ctx, std::string broker_endpoint, std::string name,
                           std::string endpoint, std::chrono::milliseconds ttl,
                           std::chrono::milliseconds timeout = std::chrono::milliseconds(2500),
                           std::optional<security::curve_client_keys> curve = std::nullopt);
    /// The same over a list of brokers (a Binary Star pair): every renewal goes to the broker
    /// that answers, as directory_client's list constructor does. After a failover the next
    /// renewal registers the endpoint with the new active broker (within ttl/3 plus one
    /// timeout per silent broker): the pair does not copy registrations between its brokers.
    directory_registration(zmq::context_t& ctx, std::vector<std::string> broker_endpoints,
                           std::string name, std::string endpoint, std::chrono::milliseconds ttl,
                           std::chrono::milliseconds timeout = std::chrono::milliseconds(2500),
                           std::optional<security::curve_client_keys> curve = std::nullopt);
    /// stop().
    ~directory_registration();
    directory_registration(directory_registration&&) noexcept;
    directory_registration& operator=(directory_registration&&) noexcept;
    directory_registration(const directory_registration&) = delete;
    directory_registration& operator=(const directory_registration&) = delete;

    /// Stops renewing and unregisters (best effort: if the broker does not answer within the
    /// timeout the registration simply expires). Waits for the background thread, so it may take
    /// up to twice the timeout when the broker is unreachable. Thread-safe, idempotent.
    void stop() noexcept;

    /// The registered name and endpoint. Precondition: not moved from.
    [[nodiscard]] const std::string& name() const noexcept;
    [[nodiscard]] const std::string& endpoint() const noexcept;

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace zmesh::pubsub
