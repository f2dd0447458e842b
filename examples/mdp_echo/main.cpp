// SPDX-License-Identifier: MPL-2.0
// main.cpp — a Majordomo broker, an echo worker and a client in one program.
//
// The broker runs on its own thread on a free loopback port, the worker on another, and main()
// is the client. Everything stops cleanly at the end (or on Ctrl-C, via the worker's loop flag).
#include <zmesh/nodes/broker.hpp>
#include <zmesh/zmesh.hpp>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <thread>

int main() try {
    zmq::context_t ctx;

    zmesh::nodes::broker_config config;
    config.mdp_endpoint = "tcp://127.0.0.1:*";
    zmesh::nodes::broker broker(ctx, config);
    const std::string endpoint = broker.endpoints().front();
    broker.start();
    std::printf("broker on %s\n", endpoint.c_str());

    std::atomic<bool> done{false};
    std::thread worker_thread([&] {
        zmesh::mdp::worker worker(ctx, endpoint, "echo");
        while (!done) {
            if (auto request = worker.recv(std::chrono::milliseconds(100)))
                worker.reply(std::move(*request)); // echo: the body goes back as it came
        }
    }); // the worker's destructor sends DISCONNECT

    zmesh::mdp::client client(ctx, endpoint, {.timeout = std::chrono::seconds(2)});
    for (const char* text : {"hello", "from", "zmesh"}) {
        zmesh::message reply = client.request("echo", zmesh::message{text});
        std::printf("echo replied: %s\n", zmesh::to_string(reply.front()).c_str());
    }

    done = true;
    worker_thread.join();
    broker.stop(); // joins the broker thread, so the counters below are final
    const auto stats = broker.stats();
    std::printf("broker routed %llu requests and %llu replies\n",
                static_cast<unsigned long long>(stats.requests),
                static_cast<unsigned long long>(stats.replies));
    return stats.replies == 3 ? 0 : 1;
} catch (const std::exception& e) {
    std::fprintf(stderr, "mdp_echo: %s\n", e.what());
    return 1;
}
