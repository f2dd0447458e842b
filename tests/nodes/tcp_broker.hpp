// SPDX-License-Identifier: MPL-2.0
// tcp_broker.hpp — a broker on loopback TCP (tcp://127.0.0.1:*) for tests that drive it with
// hand-written peers: over TCP libzmq reports closed connections, which inproc does not.
// Configure `config`, then start(); the destructor stops it.
#pragma once

#include <zmesh/nodes/broker.hpp>

#include <zmq.hpp>

#include <memory>
#include <string>

namespace support {

struct tcp_broker {
    zmq::context_t ctx;
    zmesh::nodes::broker_config config;
    std::unique_ptr<zmesh::nodes::broker> broker;
    std::string endpoint;

    tcp_broker() { config.mdp_endpoint = "tcp://127.0.0.1:*"; }
    void start() {
        broker = std::make_unique<zmesh::nodes::broker>(ctx, config);
        endpoint = broker->endpoints().front();
        broker->start();
    }
    ~tcp_broker() {
        if (broker) broker->stop();
    }
    tcp_broker(const tcp_broker&) = delete;
    tcp_broker& operator=(const tcp_broker&) = delete;
    [[nodiscard]] zmesh::nodes::broker_stats stats() const { return broker->stats(); }
};

} // namespace support
