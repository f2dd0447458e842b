// SPDX-License-Identifier: MPL-2.0
// support.hpp — test helpers: scratch endpoints, bounded receives, socket pairs that are really
// connected (the roles of nng's nuts.h and cppzmq's testutil.hpp).
#pragma once

#include <zmesh/message.hpp>

#include <zmq.hpp>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace support {

using namespace std::chrono_literals;

/// The only fixed wait tests may use: time for a connect or subscription to propagate where
/// libzmq gives no event to wait on.
inline constexpr auto settle_time = 100ms;

/// A fresh tcp://127.0.0.1:* bind on @p s; returns the endpoint actually bound.
std::string bind_loopback(zmq::socket_t& s);

/// A unique ipc:// endpoint in a private temp directory.
std::string ipc_endpoint(const std::string& stem);

/// A unique inproc:// name.
std::string inproc_endpoint(const std::string& stem);

/// Receives one multipart message within @p timeout, or std::nullopt.
std::optional<zmesh::message> recv_for(zmq::socket_t& s, std::chrono::milliseconds timeout = 2000ms);

/// The frames of @p m as strings, for comparing whole messages in one CHECK.
std::vector<std::string> texts(const zmesh::message& m);

/// A message with one frame per string of @p parts.
zmesh::message frames(const std::vector<std::string>& parts);

/// A DEALER (linger 0, optionally with @p routing_id) connected to @p endpoint: a hand-written
/// MDP peer.
zmq::socket_t dealer(zmq::context_t& ctx, const std::string& endpoint,
                     const std::string& routing_id = {});

/// Polls @p condition every few milliseconds until it holds or @p timeout passes: for state
/// that another thread (a broker, a worker) reaches with no event to wait on.
/// @returns whether the condition held in time.
template <class Condition>
bool eventually(Condition condition, std::chrono::milliseconds timeout = 3000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (condition()) return true;
        std::this_thread::sleep_for(5ms);
    }
    return condition();
}

/// A directory under the system temp dir, removed with everything in it on destruction.
class temp_dir {
  public:
    temp_dir();
    ~temp_dir();
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    const std::filesystem::path& path() const noexcept { return path_; }

  private:
    std::filesystem::path path_;
};

} // namespace support
