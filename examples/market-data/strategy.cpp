// SPDX-License-Identifier: MPL-2.0
// strategy.cpp — md-strategy: a trading strategy that subscribes to the quotes through the
// broker's forwarder (XPUB side) with zmesh::pubsub::subscriber and sends orders to the gateway
// (MDP service "orders") with zmesh::mdp::client.
//
// The strategy is a toy momentum rule: when an instrument's last price has moved --signal-bp
// basis points away from where the strategy last acted on it, it buys (up) or sells (down), at
// most --max-orders times. Orders go out asynchronously (client::send), so the quote stream is
// never held up waiting for the gateway; the executions are read between quotes.
//
// Every strategy prints, at the end, the end-to-end latency of the quotes it received live: the
// time between the feed's publish (the header's "ts") and their arrival here. Options make it:
//   - late (--snapshot): it starts from the broker's last-value cache (subscriber_options::
//     snapshot_from), so a strategy that joins while the market runs has every instrument at
//     once; --first-values FILE records the first quote it got per instrument, to compare with
//     the feed's latest;
//   - slow (--slow-us N): it spends N microseconds on every quote and falls behind. Two things
//     tell it so: the sequence numbers in the headers, which show exactly how many quotes the
//     forwarder dropped for it on which instrument ("fell behind: N messages lost on ..."), and,
//     with --max-lag-ms, the subscriber's lag limit: once a quote arrives that late it gives up
//     and exits with status 3, for its supervisor to restart it (with --snapshot it then resumes
//     from the current book instead of working through a stale backlog).
// It stops once the feed says "closed" (md.status), or after --idle-ms without a message.
#include "market.hpp"

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>

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
    "usage: md-strategy --xpub EP --broker EP [--name NAME] [--snapshot] [--first-values FILE]\n"
    "                   [--slow-us 0] [--hwm 100000] [--signal-bp 20] [--max-orders 5]\n"
    "                   [--idle-ms 20000] [--max-lag-ms 0]\n"
    "  --xpub EP            the broker's XPUB endpoint (subscribers' side of the forwarder)\n"
    "  --broker EP          the broker's MDP endpoint: the order gateway, and with --snapshot\n"
    "                       last-value cache\n"
    "  --name NAME          shown in every line and sent with the orders\n"
    "  --snapshot           start from the broker's last-value cache (the current book)\n"
    "  --first-values FILE  write the first quote received per instrument to FILE at the end\n"
    "  --slow-us N          spend N microseconds on each quote (a slow consumer)\n"
    "  --hwm N              messages this subscriber's own socket queues\n"
    "  --signal-bp N        act on a move of N basis points from the last action's price\n"
    "  --max-orders N       send at most N orders\n"
    "  --idle-ms N          stop after N ms without any message\n"
    "  --max-lag-ms N       give up once a quote arrives more than N ms late (0 = never)\n";

struct first_value {
    market::quote q;
    std::uint64_t sequence = 0;
    std::int64_t published_ns = 0;
    std::int64_t received_ns = 0;
    bool from_snapshot = false;
};

class strategy {
  public:
    strategy(zmq::context_t& ctx, const market::flags& f)
        : name_(f.text("name")), xpub_(f.text("xpub")), snapshot_(f.is_set("snapshot")),
          slow_(std::chrono::microseconds(f.number("slow-us", 0, 10'000'000))),
          signal_bp_(f.number("signal-bp", 1, 10000)),
          max_orders_(static_cast<std::uint64_t>(f.number("max-orders", 0, 1'000'000))),
          sub_(ctx, options(f)),
          orders_(ctx, f.text("broker"), {.timeout = std::chrono::seconds(5)}) {
        sub_.on_gap([this](const zmesh::pubsub::gap& g) { on_gap(g); });
    }

    /// Waits until the forwarder has our subscription (and, with --snapshot, the book is in).
    /// @returns false if a signal came first.
    bool wait_ready() {
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        bool said = false;
        for (;;) {
            try {
                if (sub_.wait_ready(std::chrono::milliseconds(500))) break;
            } catch (const zmesh::error& e) {
                // The cache did not answer within snapshot_timeout; the next call asks again.
                if (e.code() != zmesh::errc::timeout) throw;
                std::printf("%s: %s; asking again\n", name_.c_str(), e.what());
                std::fflush(stdout);
            }
            if (stopping) return false;
            if (std::chrono::steady_clock::now() > give_up)
                throw std::runtime_error("the forwarder at " + xpub_ +
                                         " did not confirm the subscription within 30 s");
            if (!said) {
                std::printf("%s: waiting for the forwarder at %s to confirm the subscription\n",
                            name_.c_str(), xpub_.c_str());
                std::fflush(stdout);
                said = true;
            }
        }
        std::printf("%s ready: subscribed to md. through %s%s\n", name_.c_str(), xpub_.c_str(),
                    snapshot_ ? ", the book from the last-value cache first" : "");
        std::fflush(stdout);
        return true;
    }

    /// Receives until the feed closes, a signal, or --idle-ms of silence.
    void run(std::chrono::milliseconds idle_limit) {
        const auto started = std::chrono::steady_clock::now();
        auto last_message = started;
        auto last_report = last_message;
        while (!stopping && !closed_) {
            std::optional<zmesh::pubsub::delivery> d;
            try {
                d = sub_.recv(std::chrono::milliseconds(100));
            } catch (const zmesh::error& e) {
                if (sub_.stats().lagged_out == 0) throw;
                // The lag limit: the subscriber has given up (the zguide's "suicidal snail").
                std::printf("%s fell behind: %s; giving up\n", name_.c_str(), e.what());
                std::fflush(stdout);
                gave_up_ = true;
                break;
            }
            read_executions();
            const auto now = std::chrono::steady_clock::now();
            if (fell_behind_since_report_ > 0 && now - last_report >= std::chrono::seconds(1)) {
                report_behind();
                last_report = now;
            }
            if (!d) {
                if (now - last_message > idle_limit) {
                    std::printf("%s: no market data for %lld ms; stopping\n", name_.c_str(),
                                static_cast<long long>(idle_limit.count()));
                    break;
                }
                continue;
            }
            last_message = now;
            handle(*d);
            if (slow_.count() > 0) std::this_thread::sleep_for(slow_);
        }
        if (fell_behind_since_report_ > 0) report_behind();
        report_joined();
        ran_for_ = std::chrono::steady_clock::now() - started;
        // The executions of orders still on their way.
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (orders_.outstanding() > 0 && !stopping && std::chrono::steady_clock::now() < until)
            read_executions(std::chrono::milliseconds(100));
    }

    [[nodiscard]] bool gave_up() const noexcept { return gave_up_; }

    void summary() {
        const auto s = sub_.stats();
        std::printf(
            "%s: %llu quotes (%llu from the snapshot), %llu gaps, %llu lost; orders: %llu "
            "sent, %llu answered (%llu filled, %llu rejected); ran %.1f s\n",
            name_.c_str(), static_cast<unsigned long long>(quotes_),
            static_cast<unsigned long long>(snapshot_quotes_),
            static_cast<unsigned long long>(s.gaps), static_cast<unsigned long long>(s.missed),
            static_cast<unsigned long long>(orders_sent_),
            static_cast<unsigned long long>(filled_ + rejected_),
            static_cast<unsigned long long>(filled_), static_cast<unsigned long long>(rejected_),
            std::chrono::duration<double>(ran_for_).count());
        if (s.gaps > 0)
            std::printf("%s fell behind: %llu quotes lost in %llu gaps; instruments hit: %zu\n",
                        name_.c_str(), static_cast<unsigned long long>(s.missed),
                        static_cast<unsigned long long>(s.gaps), gapped_topics_.size());
        std::sort(latency_ns_.begin(), latency_ns_.end());
        if (latency_ns_.empty()) {
            std::printf("%s latency: no live quotes\n", name_.c_str());
        } else {
            std::printf("%s latency over %zu live quotes: p50 %.0f us, p99 %.0f us, p99.9 %.0f us, "
                        "max %.0f us\n",
                        name_.c_str(), latency_ns_.size(),
                        static_cast<double>(market::percentile(latency_ns_, 50)) / 1e3,
                        static_cast<double>(market::percentile(latency_ns_, 99)) / 1e3,
                        static_cast<double>(market::percentile(latency_ns_, 99.9)) / 1e3,
                        static_cast<double>(latency_ns_.back()) / 1e3);
        }
        std::fflush(stdout);
    }

    /// The first quote of every instrument, one line each, to compare with the feed's latest.
    void write_first_values(const std::string& path) const {
        const std::string temp = path + ".tmp";
        {
            std::ofstream out(temp);
            if (!out) throw std::runtime_error("cannot write " + temp);
            out << "# symbol sequence bid ask last bid_size ask_size from_snapshot published_ns "
                   "received_ns\n";
            for (const auto& [symbol, v] : first_)
                out << symbol << ' ' << v.sequence << ' ' << v.q.bid << ' ' << v.q.ask << ' '
                    << v.q.last << ' ' << v.q.bid_size << ' ' << v.q.ask_size << ' '
                    << (v.from_snapshot ? 1 : 0) << ' ' << v.published_ns << ' ' << v.received_ns
                    << '\n';
            if (!out.flush()) throw std::runtime_error("cannot write " + temp);
        }
        if (std::rename(temp.c_str(), path.c_str()) != 0)
            throw std::runtime_error("cannot rename " + temp + " to " + path);
        std::printf("%s: first quotes of %zu instruments written to %s\n", name_.c_str(),
                    first_.size(), path.c_str());
        std::fflush(stdout);
    }

  private:
    static zmesh::pubsub::subscriber_options options(const market::flags& f) {
        if (f.text("xpub").empty()) throw market::usage_error("--xpub EP is required");
        if (f.text("broker").empty()) throw market::usage_error("--broker EP is required");
        zmesh::pubsub::subscriber_options o;
        o.connect = {f.text("xpub")};
        o.topics = {"md."};
        o.socket.recv_hwm = static_cast<int>(f.number("hwm", 1, 10'000'000));
        if (const auto lag = f.number("max-lag-ms", 0, 3'600'000); lag > 0)
            o.max_lag = std::chrono::milliseconds(lag);
        if (f.is_set("snapshot")) o.snapshot_from = f.text("broker");
        return o;
    }

    void handle(zmesh::pubsub::delivery& d) {
        if (d.topic == market::status_topic) {
            const std::string state =
                d.payload.empty() ? std::string() : zmesh::to_string(d.payload.front());
            if (state != market_state_)
                std::printf("%s: market %s%s\n", name_.c_str(), state.c_str(),
                            d.from_snapshot ? " (from the last-value cache)" : "");
            std::fflush(stdout);
            market_state_ = state;
            // From the cache too: a strategy (re)started after the close gets nothing more.
            if (state == "closed") closed_ = true;
            return;
        }
        if (d.topic.rfind(market::quote_prefix, 0) != 0 || d.payload.empty()) return;
        std::error_code ec;
        std::optional<market::quote> q = zmesh::unpack<market::quote>(d.payload.front(), ec);
        if (!q) {
            ++malformed_;
            return;
        }
        ++quotes_;
        if (d.from_snapshot) {
            ++snapshot_quotes_;
        } else {
            if (d.header.timestamp_ns != 0) latency_ns_.push_back(d.lag.count());
            report_joined();
        }
        if (first_.find(q->symbol) == first_.end())
            first_.emplace(q->symbol, first_value{*q, d.header.sequence, d.header.timestamp_ns,
                                                  market::now_ns(), d.from_snapshot});
        decide(*q, d.from_snapshot);
    }

    /// With --snapshot: the snapshot is delivered whole before any live quote, so the first live
    /// quote (or the end) says how big the book was that came at once.
    void report_joined() {
        if (!snapshot_ || joined_reported_ || snapshot_quotes_ == 0) return;
        joined_reported_ = true;
        std::printf("%s joined late: the book of %llu instruments from the last-value cache at "
                    "once\n",
                    name_.c_str(), static_cast<unsigned long long>(snapshot_quotes_));
        std::fflush(stdout);
    }

    /// The momentum rule; orders only on live quotes while the market is open.
    void decide(const market::quote& q, bool from_snapshot) {
        auto [it, inserted] = reference_.try_emplace(q.symbol, q.last);
        if (inserted || from_snapshot || market_state_ != "open" || q.last <= 0) return;
        const std::int64_t moved_bp = (q.last - it->second) * 10000 / it->second;
        if (moved_bp < signal_bp_ && moved_bp > -signal_bp_) return;
        it->second = q.last;
        if (orders_sent_ >= max_orders_) return;
        market::order o{name_, q.symbol, moved_bp > 0 ? "BUY" : "SELL", 100,
                        moved_bp > 0 ? q.ask : q.bid};
        zmesh::message body;
        body.push_back(zmesh::pack(o));
        std::error_code ec;
        if (orders_.send(market::orders_service, std::move(body), zmesh::mdp::request_options{},
                         ec)) {
            ++orders_sent_;
            std::printf("%s: %s %lld %s @ %s (moved %lld bp)\n", name_.c_str(), o.side.c_str(),
                        static_cast<long long>(o.quantity), o.symbol.c_str(),
                        market::price_text(o.limit).c_str(), static_cast<long long>(moved_bp));
        } else {
            std::printf("%s: order for %s not sent: %s\n", name_.c_str(), q.symbol.c_str(),
                        ec.message().c_str());
        }
        std::fflush(stdout);
    }

    void read_executions(std::chrono::milliseconds wait = std::chrono::milliseconds(0)) {
        while (orders_.outstanding() > 0) {
            std::optional<zmesh::mdp::reply> r = orders_.recv(wait);
            if (!r) return;
            wait = std::chrono::milliseconds(0);
            if (r->head.type == zmesh::mdp::error_type || r->body.empty()) {
                ++rejected_;
                std::string why;
                for (const auto& frame : r->body) why += " " + zmesh::to_string(frame);
                std::printf("%s: order failed:%s\n", name_.c_str(), why.c_str());
                continue;
            }
            std::error_code ec;
            std::optional<market::execution> x =
                zmesh::unpack<market::execution>(r->body.front(), ec);
            if (!x) {
                ++rejected_;
                std::printf("%s: the gateway's answer does not decode: %s\n", name_.c_str(),
                            ec.message().c_str());
                continue;
            }
            if (x->status == "filled") {
                ++filled_;
                std::printf("%s: %s filled %lld @ %s\n", name_.c_str(), x->order_id.c_str(),
                            static_cast<long long>(x->quantity),
                            market::price_text(x->price).c_str());
            } else {
                ++rejected_;
                std::printf("%s: %s %s: %s\n", name_.c_str(), x->order_id.c_str(),
                            x->status.c_str(), x->reason.c_str());
            }
            std::fflush(stdout);
        }
    }

    void on_gap(const zmesh::pubsub::gap& g) {
        if (g.topic.rfind(market::quote_prefix, 0) == 0) gapped_topics_.insert(g.topic);
        fell_behind_since_report_ += g.missed();
        if (gap_lines_ < 3) { // the first few in full, then one line a second
            ++gap_lines_;
            std::printf("%s fell behind: %llu messages lost on %s (expected #%llu, got #%llu)\n",
                        name_.c_str(), static_cast<unsigned long long>(g.missed()), g.topic.c_str(),
                        static_cast<unsigned long long>(g.expected),
                        static_cast<unsigned long long>(g.got));
            std::fflush(stdout);
        }
    }

    void report_behind() {
        const auto s = sub_.stats();
        std::printf("%s fell behind: %llu more messages lost (%llu so far; instruments hit: %zu)\n",
                    name_.c_str(), static_cast<unsigned long long>(fell_behind_since_report_),
                    static_cast<unsigned long long>(s.missed), gapped_topics_.size());
        std::fflush(stdout);
        fell_behind_since_report_ = 0;
    }

    std::string name_;
    std::string xpub_;
    bool snapshot_;
    std::chrono::microseconds slow_;
    std::int64_t signal_bp_;
    std::uint64_t max_orders_;
    zmesh::pubsub::subscriber sub_;
    zmesh::mdp::client orders_;

    std::string market_state_;
    bool closed_ = false;
    bool gave_up_ = false;
    std::chrono::steady_clock::duration ran_for_{};
    bool joined_reported_ = false;
    std::uint64_t snapshot_quotes_ = 0;
    std::uint64_t quotes_ = 0;
    std::uint64_t malformed_ = 0;
    std::vector<std::int64_t> latency_ns_;
    std::map<std::string, first_value> first_;
    std::unordered_map<std::string, std::int64_t> reference_;
    std::uint64_t orders_sent_ = 0;
    std::uint64_t filled_ = 0;
    std::uint64_t rejected_ = 0;
    std::set<std::string> gapped_topics_;
    std::uint64_t fell_behind_since_report_ = 0;
    int gap_lines_ = 0;
};

} // namespace

int main(int argc, char** argv) try {
    market::flags f(argc, argv,
                    {{"xpub", ""},
                     {"broker", ""},
                     {"name", "strategy"},
                     {"first-values", ""},
                     {"slow-us", "0"},
                     {"hwm", "100000"},
                     {"signal-bp", "20"},
                     {"max-orders", "5"},
                     {"idle-ms", "20000"},
                     {"max-lag-ms", "0"}},
                    {"snapshot"});
    if (f.help()) {
        std::fputs(usage, stdout);
        return 0;
    }
    const auto idle = std::chrono::milliseconds(f.number("idle-ms", 100, 3'600'000));
    install_signal_handlers();

    zmq::context_t ctx;
    strategy s(ctx, f);
    if (!s.wait_ready()) return 0; // stopped before it was ready
    s.run(idle);
    s.summary();
    if (!f.text("first-values").empty()) s.write_first_values(f.text("first-values"));
    return s.gave_up() ? 3 : 0;
} catch (const market::usage_error& e) {
    std::fprintf(stderr, "md-strategy: %s\n", e.what());
    return 2;
} catch (const std::exception& e) {
    std::fprintf(stderr, "md-strategy: %s\n", e.what());
    return 1;
}
