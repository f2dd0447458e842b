// SPDX-License-Identifier: MPL-2.0
// feed.cpp — md-feed: a simulated market-data feed, publishing quotes through the broker's
// forwarder (XSUB side) with zmesh::pubsub::publisher.
//
// The session has three phases, each announced on the topic "md.status":
//   1. open: one quote for every instrument (the opening book), then --open-updates random
//      updates at --rate per second;
//   2. halted: the feed stops for --halt-ms and writes the last quote it published on every
//      instrument to --latest FILE, then prints "halted ..." (the line `zmesh up` waits for
//      before it starts the late subscriber). Whoever joins now gets exactly that book from the
//      broker's last-value cache;
//   3. open again: --updates more random updates, then "closed" (sent a few times, 300 ms apart,
//      so that a subscriber whose queue was full still gets one), and the feed exits 0.
// Each quote's header carries the publish time, from which the strategies measure the latency.
#include "market.hpp"

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <optional>
#include <random>
#include <thread>

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
    "usage: md-feed --xsub EP [--instruments 300] [--open-updates 30000] [--halt-ms 3000]\n"
    "               [--updates 60000] [--rate 50000] [--latest FILE] [--seed 1] [--xpub EP]\n"
    "  --xsub EP          the broker's XSUB endpoint (zmesh broker --xsub ... --lvc)\n"
    "  --xpub EP          the broker's XPUB endpoint: announce the halt only once the feed's own\n"
    "                     'halted' came back through it (the cache then holds the halted book)\n"
    "  --instruments N    how many instruments (topics md.quote.SYMBOL)\n"
    "  --open-updates N   random updates after the opening book, before the halt\n"
    "  --halt-ms N        how long the halt lasts\n"
    "  --updates N        random updates after the halt\n"
    "  --rate N           quotes per second (0 = as fast as possible)\n"
    "  --latest FILE      where to write the last quote of every instrument at the halt\n"
    "  --seed N           seed of the price simulation\n";

struct instrument {
    market::quote q;
    std::int64_t mid = 0; ///< mid price, 1/10000 units
    std::uint64_t published = 0;
};

class feed {
  public:
    feed(zmq::context_t& ctx, const std::string& xsub, int instruments, std::uint64_t seed,
         std::int64_t rate)
        : pub_(ctx, {.connect = {xsub},
                     // Generous queues towards the broker: the feed must not drop its own quotes
                     // before they reach the forwarder; the forwarder decides who is too slow.
                     .socket = {.send_hwm = 100000, .linger = std::chrono::milliseconds(2000)}}),
          random_(seed), rate_(rate) {
        std::uniform_int_distribution<std::int64_t> price(1000, 50000); // 10.00 .. 500.00
        for (int i = 0; i < instruments; ++i) {
            instrument in;
            in.q.symbol = market::symbol(i);
            in.mid = price(random_) * 100;
            book_.push_back(std::move(in));
        }
    }

    /// Waits until the broker's forwarder has subscribed to everything (its last-value cache
    /// does so as soon as the connection is up): from then on every quote reaches the cache.
    /// @returns false if a signal came first.
    bool wait_for_forwarder(const std::string& xsub) {
        std::printf("waiting for the broker's forwarder at %s to subscribe\n", xsub.c_str());
        std::fflush(stdout);
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (pub_.stats().catch_all_subscribes == 0) {
            if (stopping) return false;
            if (std::chrono::steady_clock::now() > give_up)
                throw std::runtime_error("no subscription from the broker's forwarder at " + xsub +
                                         " within 30 s: is the broker running there, with --lvc?");
            pub_.poll_subscriptions(std::chrono::milliseconds(100));
        }
        return true;
    }

    void status(std::string_view state) { pub_.publish(market::status_topic, state, "md.status"); }

    /// Subscribes to the feed's own status through the broker's XPUB (see confirm()).
    /// @returns false if a signal came first.
    bool follow_status(zmq::context_t& ctx, const std::string& xpub) {
        echo_.emplace(ctx, zmesh::pubsub::subscriber_options{
                               .connect = {xpub}, .topics = {std::string(market::status_topic)}});
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (!echo_->wait_ready(std::chrono::milliseconds(50))) {
            if (stopping) return false;
            if (std::chrono::steady_clock::now() > give_up)
                throw std::runtime_error("no answer through the broker's XPUB at " + xpub +
                                         " within 60 s");
            pub_.poll_subscriptions(std::chrono::milliseconds(50)); // the probe may come here
        }
        return true;
    }

    /// Waits until the status @p state the feed published has come back through the broker.
    /// The forwarder passes one publisher's messages in order and updates its last-value cache
    /// as it passes each, so by then the cache holds every quote published before, however far
    /// behind a loaded broker runs (under ThreadSanitizer it ran seconds behind). Without
    /// --xpub, returns at once. @returns false if a signal came first.
    bool confirm(std::string_view state) {
        if (!echo_) return true;
        // Not the state's name: `zmesh up` starts the late strategy on a line holding it.
        std::printf("waiting for the status just published to come back through the broker's "
                    "forwarder\n");
        std::fflush(stdout);
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(120);
        while (!stopping) {
            if (std::chrono::steady_clock::now() > give_up)
                throw std::runtime_error("the feed's own status did not come back through the "
                                         "broker's forwarder within 120 s");
            pub_.poll_subscriptions(std::chrono::milliseconds(0));
            auto d = echo_->recv(std::chrono::milliseconds(100));
            if (d && !d->payload.empty() && zmesh::view(d->payload.front()) == state) return true;
        }
        return false;
    }

    /// Publishes one quote on instrument @p i after moving its price a little.
    void update(std::size_t i) {
        instrument& in = book_[i];
        std::uniform_int_distribution<int> step(-3, 3);
        std::uniform_int_distribution<int> spread(1, 3);
        std::uniform_int_distribution<int> size(1, 50);
        in.mid = std::max<std::int64_t>(100, in.mid + step(random_) * 100);
        const std::int64_t half = spread(random_) * 100;
        in.q.bid = in.mid - half;
        in.q.ask = in.mid + half;
        in.q.last = (random_() & 1U) != 0U ? in.q.bid : in.q.ask;
        in.q.bid_size = size(random_) * 100;
        in.q.ask_size = size(random_) * 100;
        topic_.assign(market::quote_prefix);
        topic_ += in.q.symbol;
        zmesh::message payload;
        payload.push_back(zmesh::pack(in.q));
        pacer();
        pub_.publish(topic_, std::move(payload), "md.quote");
        ++in.published;
        ++published_;
    }

    /// The opening book: one quote per instrument, in order.
    void opening() {
        for (std::size_t i = 0; i < book_.size() && !stopping; ++i) update(i);
    }

    /// @p n updates of instruments picked at random.
    void random_updates(std::int64_t n) {
        std::uniform_int_distribution<std::size_t> pick(0, book_.size() - 1);
        for (std::int64_t k = 0; k < n && !stopping; ++k) update(pick(random_));
    }

    /// Writes the last quote published on every instrument, with its sequence number (the
    /// header's "sq": the count of quotes published on that topic).
    void write_latest(const std::string& path, std::int64_t halted_at_ns) const {
        const std::string temp = path + ".tmp";
        {
            std::ofstream out(temp);
            if (!out) throw std::runtime_error("cannot write " + temp);
            out << "# halted_at_ns " << halted_at_ns << "\n";
            out << "# symbol sequence bid ask last bid_size ask_size\n";
            for (const instrument& in : book_)
                out << in.q.symbol << ' ' << in.published << ' ' << in.q.bid << ' ' << in.q.ask
                    << ' ' << in.q.last << ' ' << in.q.bid_size << ' ' << in.q.ask_size << '\n';
            if (!out.flush()) throw std::runtime_error("cannot write " + temp);
        }
        if (std::rename(temp.c_str(), path.c_str()) != 0)
            throw std::runtime_error("cannot rename " + temp + " to " + path);
    }

    /// Waits @p duration, answering the forwarder's subscriptions meanwhile.
    void idle(std::chrono::milliseconds duration) {
        const auto until = std::chrono::steady_clock::now() + duration;
        while (!stopping && std::chrono::steady_clock::now() < until)
            pub_.poll_subscriptions(std::chrono::milliseconds(50));
        next_ = std::chrono::steady_clock::now();
    }

    [[nodiscard]] std::uint64_t published() const noexcept { return published_; }
    [[nodiscard]] std::size_t instruments() const noexcept { return book_.size(); }

  private:
    /// Keeps to the rate: sleeps whenever the feed is ahead of its schedule by a millisecond.
    void pacer() {
        if (rate_ <= 0) return;
        next_ += std::chrono::nanoseconds(1'000'000'000 / rate_);
        const auto now = std::chrono::steady_clock::now();
        if (next_ > now + std::chrono::milliseconds(1))
            std::this_thread::sleep_until(next_);
        else if (next_ < now - std::chrono::milliseconds(100))
            next_ = now; // fell behind (a slow machine): do not burst to catch up
    }

    zmesh::pubsub::publisher pub_;
    std::optional<zmesh::pubsub::subscriber> echo_; ///< --xpub: the feed's status, looped back
    std::mt19937_64 random_;
    std::int64_t rate_;
    std::vector<instrument> book_;
    std::string topic_;
    std::chrono::steady_clock::time_point next_ = std::chrono::steady_clock::now();
    std::uint64_t published_ = 0;
};

} // namespace

int main(int argc, char** argv) try {
    market::flags f(argc, argv,
                    {{"xsub", ""},
                     {"instruments", "300"},
                     {"open-updates", "30000"},
                     {"halt-ms", "3000"},
                     {"updates", "60000"},
                     {"rate", "50000"},
                     {"latest", ""},
                     {"seed", "1"},
                     {"xpub", ""}});
    if (f.help()) {
        std::fputs(usage, stdout);
        return 0;
    }
    if (f.text("xsub").empty()) throw market::usage_error("--xsub EP is required");
    const auto instruments = static_cast<int>(f.number("instruments", 1, 100000));
    const std::int64_t open_updates = f.number("open-updates", 0, 1'000'000'000);
    const std::int64_t halt_ms = f.number("halt-ms", 0, 3'600'000);
    const std::int64_t updates = f.number("updates", 0, 1'000'000'000);
    const std::int64_t rate = f.number("rate", 0, 100'000'000);
    const auto seed = static_cast<std::uint64_t>(f.number("seed", 0, INT64_MAX));
    install_signal_handlers();

    zmq::context_t ctx;
    feed md(ctx, f.text("xsub"), instruments, seed, rate);
    if (!md.wait_for_forwarder(f.text("xsub"))) return 0; // stopped before it began
    if (!f.text("xpub").empty() && !md.follow_status(ctx, f.text("xpub"))) return 0;

    const auto started = std::chrono::steady_clock::now();
    md.status("open");
    std::printf("open: publishing %d instruments on md.quote.* at %s\n", instruments,
                rate > 0 ? (std::to_string(rate) + " quotes/s").c_str() : "full speed");
    std::fflush(stdout);
    md.opening();
    md.random_updates(open_updates);

    // The halt: the book stands still, so "the publisher's latest" is one well-defined value per
    // instrument, which a subscriber joining now must get from the last-value cache.
    md.status("halted");
    if (!md.confirm("halted")) return 0;
    const std::int64_t halted_at = market::now_ns();
    if (!f.text("latest").empty()) md.write_latest(f.text("latest"), halted_at);
    std::printf("halted after %llu quotes for %lld ms%s%s\n",
                static_cast<unsigned long long>(md.published()), static_cast<long long>(halt_ms),
                f.text("latest").empty() ? "" : "; latest quotes in ", f.text("latest").c_str());
    std::fflush(stdout);
    md.idle(std::chrono::milliseconds(halt_ms));

    md.status("open");
    std::printf("resumed at %lld\n", static_cast<long long>(market::now_ns()));
    std::fflush(stdout);
    md.random_updates(updates);

    for (int i = 0; i < 5 && !stopping; ++i) { // a slow subscriber may miss the first ones
        md.status("closed");
        md.idle(std::chrono::milliseconds(300));
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::printf("closed: %llu quotes on %zu instruments in %.1f s%s\n",
                static_cast<unsigned long long>(md.published()), md.instruments(), seconds,
                stopping ? " (interrupted)" : "");
    return 0;
} catch (const market::usage_error& e) {
    std::fprintf(stderr, "md-feed: %s\n", e.what());
    return 2;
} catch (const std::exception& e) {
    std::fprintf(stderr, "md-feed: %s\n", e.what());
    return 1;
}
