// SPDX-License-Identifier: MPL-2.0
// nodes_main.cpp — a downstream program that embeds a broker from the installed zmesh::nodes
// (or zmesh-nodes.pc): runs it on its own thread, asks it mmi.service over MDP with the installed
// client, and stops it. Exits non-zero on any mismatch.
#include <zmesh/mdp/client.hpp>
#include <zmesh/nodes/broker.hpp>
#include <zmesh/nodes/metrics_text.hpp>

#include <chrono>
#include <cstdio>

int main() {
    zmq::context_t ctx;
    zmesh::nodes::broker_config config;
    config.mdp_endpoint = "tcp://127.0.0.1:*";
    zmesh::nodes::broker broker(ctx, config);
    broker.start();
    zmesh::mdp::client client(ctx, broker.endpoints().front(),
                              {.timeout = std::chrono::milliseconds(3000), .retries = 1});
    // 8/MMI: 404 for a service nobody serves, answered by the broker itself.
    auto reply = client.request("mmi.service", zmesh::message{"echo"});
    broker.stop();
    if (reply.size() != 1 || zmesh::view(reply[0]) != "404") return 1;
    if (broker.stats().mmi != 1) return 1;
    if (zmesh::nodes::prometheus_text(broker.metrics()).find("zmesh_broker_up") ==
        std::string::npos)
        return 1;
    std::printf("consumer: embedded broker answered mmi.service 404\n");
    return 0;
}
