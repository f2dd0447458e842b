// SPDX-License-Identifier: MPL-2.0
// gateway.cpp — md-gateway: the order gateway, an MDP worker for the service "orders"
// (zmesh::mdp::worker), answering every order with an execution.
//
// A stand-in for an exchange connection: it checks each order (a known side, a positive
// quantity at most --max-quantity, a positive limit price) and fills it at its limit, or rejects
// it with the reason. Every order and its answer is one line of output. It runs until SIGINT or
// SIGTERM, then prints how many orders it answered.
#include "market.hpp"

#include <atomic>
#include <csignal>
#include <cstdio>
#include <map>

namespace {

std::atomic<bool> stopping{false};

extern "C" void on_signal(int) {
    stopping = true;
}

void install_signal_handlers() {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
}

constexpr const char* usage =
    "usage: md-gateway --broker EP [--max-quantity 10000]\n"
    "  --broker EP          the broker's MDP endpoint; the gateway serves \"orders\" there\n"
    "  --max-quantity N     orders for more are rejected\n";

market::execution execute(const market::order& o, std::uint64_t number, std::int64_t max_quantity) {
    char id[32];
    std::snprintf(id, sizeof id, "GW-%06llu", static_cast<unsigned long long>(number));
    market::execution x{id, "rejected", o.quantity, o.limit, {}};
    if (o.side != "BUY" && o.side != "SELL")
        x.reason = "unknown side '" + o.side + "'";
    else if (o.quantity <= 0 || o.quantity > max_quantity)
        x.reason = "quantity " + std::to_string(o.quantity) + " outside 1.." +
                   std::to_string(max_quantity);
    else if (o.limit <= 0)
        x.reason = "no limit price";
    else
        x.status = "filled";
    return x;
}

} // namespace

int main(int argc, char** argv) try {
    market::flags f(argc, argv, {{"broker", ""}, {"max-quantity", "10000"}});
    if (f.help()) {
        std::fputs(usage, stdout);
        return 0;
    }
    if (f.text("broker").empty()) throw market::usage_error("--broker EP is required");
    const std::int64_t max_quantity = f.number("max-quantity", 1, INT64_MAX);
    install_signal_handlers();

    zmq::context_t ctx;
    zmesh::mdp::worker worker(ctx, f.text("broker"), std::string(market::orders_service));
    std::printf("gateway: serving \"%s\" through the broker at %s\n",
                std::string(market::orders_service).c_str(), f.text("broker").c_str());
    std::fflush(stdout);

    std::uint64_t number = 0;
    std::uint64_t filled = 0;
    std::uint64_t rejected = 0;
    std::map<std::string, std::uint64_t> per_strategy;
    while (!stopping) {
        std::optional<zmesh::message> request = worker.recv(std::chrono::milliseconds(200));
        if (!request) continue;
        std::error_code ec;
        std::optional<market::order> o;
        if (!request->empty()) o = zmesh::unpack<market::order>(request->front(), ec);
        if (!o) { // a malformed order gets an error reply, never a crash
            worker.fail("400", "the order does not decode as [strategy, symbol, side, "
                               "quantity, limit]");
            std::printf("gateway: a malformed order refused\n");
            std::fflush(stdout);
            continue;
        }
        const market::execution x = execute(*o, ++number, max_quantity);
        (x.status == "filled" ? filled : rejected) += 1;
        ++per_strategy[o->strategy];
        std::printf("gateway: %s %s %s %lld %s @ %s -> %s%s%s\n", x.order_id.c_str(),
                    o->strategy.c_str(), o->side.c_str(), static_cast<long long>(o->quantity),
                    o->symbol.c_str(), market::price_text(o->limit).c_str(), x.status.c_str(),
                    x.reason.empty() ? "" : ": ", x.reason.c_str());
        std::fflush(stdout);
        zmesh::message reply;
        reply.push_back(zmesh::pack(x));
        worker.reply(std::move(reply), "order.execution");
    }
    std::string who;
    for (const auto& [name, count] : per_strategy)
        who += (who.empty() ? "" : ", ") + name + " " + std::to_string(count);
    std::printf("gateway: %llu orders answered (%llu filled, %llu rejected)%s%s\n",
                static_cast<unsigned long long>(filled + rejected),
                static_cast<unsigned long long>(filled), static_cast<unsigned long long>(rejected),
                who.empty() ? "" : ": ", who.c_str());
    return 0;
} catch (const market::usage_error& e) {
    std::fprintf(stderr, "md-gateway: %s\n", e.what());
    return 2;
} catch (const std::exception& e) {
    std::fprintf(stderr, "md-gateway: %s\n", e.what());
    return 1;
}
