// SPDX-License-Identifier: MPL-2.0
// aggregator.cpp — telemetry-aggregator: receives the sensors' readings directly and rolls them
// up into SQLite.
//
// It binds a SUB socket on a free port and lists that endpoint in the broker's directory (default
// name "telemetry.aggregator"); sensors resolve the name and connect to it. The broker is asked
// for the directory only: no reading passes through it.
//
// Each reading is added to a roll-up per sensor, metric and time bucket (--bucket-ms, by the
// reading's publish time): count, sum, min and max. Every --flush-ms the roll-ups are written to
// the database in one transaction, adding to the rows already there (an upsert):
//
//   rollup(sensor, metric, bucket_ms, unit, count, sum, min, max)   bucket_ms: start, Unix ms
//   sensors(sensor, received, sent, gaps, missed, finished, complete)
//
// Losses are counted, not hidden: a sequence gap in a sensor's stream (seen by the subscriber),
// a stream whose first reading is not its first (n != 1: the start was missed), and, when the
// sensor's end report arrives, any difference between what it says it sent and what arrived.
// Malformed messages are counted and dropped. SIGINT or SIGTERM: flush, print a summary, exit 0.
#include "telemetry.hpp"

#include <zmesh/zmesh.hpp>

#include <sqlite3.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

namespace {

using clock_type = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* program = "telemetry-aggregator";

volatile std::sig_atomic_t stop_signal = 0;
extern "C" void on_stop(int sig) {
    stop_signal = sig;
}

void install_stop_handlers() {
    struct sigaction sa {};
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; // no SA_RESTART: recv() returns early and the loop sees the flag
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
}

struct options {
    std::string broker;
    std::string db;
    std::string name = "telemetry.aggregator";
    std::string bind = "tcp://127.0.0.1:*";
    long long bucket_ms = 1000;
    long long flush_ms = 500;
};

[[noreturn]] void usage(int status) {
    std::fprintf(status == 0 ? stdout : stderr,
                 "usage: %s --broker EP --db FILE [options]\n"
                 "  --broker EP      the broker whose directory lists this aggregator\n"
                 "  --db FILE        SQLite database for the roll-ups (created if missing)\n"
                 "  --name NAME      directory name to list under (telemetry.aggregator)\n"
                 "  --bind EP        where sensors connect (tcp://127.0.0.1:*, a free port)\n"
                 "  --bucket-ms N    width of a roll-up time bucket (1000)\n"
                 "  --flush-ms N     how often roll-ups are written to the database (500)\n",
                 program);
    std::exit(status);
}

options parse(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "-h" || flag == "--help") usage(0);
        if (i + 1 >= argc) {
            std::fprintf(stderr, "%s: %s needs a value (see --help)\n", program, flag.c_str());
            std::exit(2);
        }
        const std::string value = argv[++i];
        if (flag == "--broker")
            o.broker = value;
        else if (flag == "--db")
            o.db = value;
        else if (flag == "--name")
            o.name = value;
        else if (flag == "--bind")
            o.bind = value;
        else if (flag == "--bucket-ms")
            o.bucket_ms = telemetry::parse_number(program, flag, value, 1, 86400000);
        else if (flag == "--flush-ms")
            o.flush_ms = telemetry::parse_number(program, flag, value, 1, 3600000);
        else {
            std::fprintf(stderr, "%s: unknown flag '%s' (see --help)\n", program, flag.c_str());
            std::exit(2);
        }
    }
    if (o.broker.empty() || o.db.empty()) {
        std::fprintf(stderr, "%s: --broker and --db are required (see --help)\n", program);
        std::exit(2);
    }
    return o;
}

/// Text from a peer, made safe to print: printable ASCII kept, anything else as \xNN, at most 64.
std::string printable(std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < s.size() && i < 64; ++i) {
        const auto b = static_cast<unsigned char>(s[i]);
        if (b >= 0x20 && b < 0x7f && b != '\\') {
            out += static_cast<char>(b);
        } else {
            out += "\\x";
            out += hex[b >> 4];
            out += hex[b & 0x0f];
        }
    }
    if (s.size() > 64) out += "...";
    return out;
}

/// The metric and sensor of a topic "telemetry.METRIC.SENSOR"; empty strings if it is not one.
std::pair<std::string, std::string> split_topic(std::string_view topic) {
    if (topic.substr(0, telemetry::topic_prefix.size()) != telemetry::topic_prefix) return {};
    topic.remove_prefix(telemetry::topic_prefix.size());
    const auto dot = topic.find('.');
    if (dot == std::string_view::npos || dot == 0 || dot + 1 == topic.size()) return {};
    return {std::string(topic.substr(0, dot)), std::string(topic.substr(dot + 1))};
}

/// A SQLite database with the two tables, and the statements that add to them.
class store {
  public:
    explicit store(const std::string& path) : path_(path) {
        if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                            nullptr) != SQLITE_OK) {
            const std::string why = db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
            sqlite3_close(db_);
            throw std::runtime_error("cannot open database " + path + ": " + why);
        }
        sqlite3_busy_timeout(db_, 5000);
        // WAL: readers (the test, sqlite3 on the command line) never block the writer.
        exec("PRAGMA journal_mode=WAL");
        exec("CREATE TABLE IF NOT EXISTS rollup ("
             " sensor TEXT NOT NULL, metric TEXT NOT NULL, bucket_ms INTEGER NOT NULL,"
             " unit TEXT NOT NULL, count INTEGER NOT NULL, sum REAL NOT NULL,"
             " min REAL NOT NULL, max REAL NOT NULL,"
             " PRIMARY KEY (sensor, metric, bucket_ms)) WITHOUT ROWID");
        exec("CREATE TABLE IF NOT EXISTS sensors ("
             " sensor TEXT PRIMARY KEY, received INTEGER NOT NULL, sent INTEGER,"
             " gaps INTEGER NOT NULL, missed INTEGER NOT NULL, finished INTEGER NOT NULL,"
             " complete INTEGER)");
        upsert_rollup_ =
            prepare("INSERT INTO rollup (sensor, metric, bucket_ms, unit, count, sum, min, max)"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                    " ON CONFLICT (sensor, metric, bucket_ms) DO UPDATE SET"
                    " count = count + excluded.count, sum = sum + excluded.sum,"
                    " min = min(min, excluded.min), max = max(max, excluded.max)");
        upsert_sensor_ =
            prepare("INSERT INTO sensors (sensor, received, sent, gaps, missed, finished, complete)"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                    " ON CONFLICT (sensor) DO UPDATE SET received = excluded.received,"
                    " sent = excluded.sent, gaps = excluded.gaps, missed = excluded.missed,"
                    " finished = excluded.finished, complete = excluded.complete");
    }
    ~store() {
        sqlite3_finalize(upsert_rollup_);
        sqlite3_finalize(upsert_sensor_);
        sqlite3_close(db_);
    }
    store(const store&) = delete;
    store& operator=(const store&) = delete;

    void begin() { exec("BEGIN IMMEDIATE"); }
    void commit() { exec("COMMIT"); }
    void rollback() noexcept { sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr); }

    void add_rollup(const std::string& sensor, const std::string& metric, std::int64_t bucket_ms,
                    const std::string& unit, std::uint64_t count, double sum, double min,
                    double max) {
        sqlite3_stmt* s = upsert_rollup_;
        bind_text(s, 1, sensor);
        bind_text(s, 2, metric);
        sqlite3_bind_int64(s, 3, bucket_ms);
        bind_text(s, 4, unit);
        sqlite3_bind_int64(s, 5, static_cast<sqlite3_int64>(count));
        sqlite3_bind_double(s, 6, sum);
        sqlite3_bind_double(s, 7, min);
        sqlite3_bind_double(s, 8, max);
        step(s);
    }

    /// @p sent < 0: not known yet (no end report).
    void put_sensor(const std::string& sensor, std::uint64_t received, std::int64_t sent,
                    std::uint64_t gaps, std::uint64_t missed, bool finished, bool complete) {
        sqlite3_stmt* s = upsert_sensor_;
        bind_text(s, 1, sensor);
        sqlite3_bind_int64(s, 2, static_cast<sqlite3_int64>(received));
        if (sent < 0)
            sqlite3_bind_null(s, 3);
        else
            sqlite3_bind_int64(s, 3, sent);
        sqlite3_bind_int64(s, 4, static_cast<sqlite3_int64>(gaps));
        sqlite3_bind_int64(s, 5, static_cast<sqlite3_int64>(missed));
        sqlite3_bind_int(s, 6, finished ? 1 : 0);
        if (finished)
            sqlite3_bind_int(s, 7, complete ? 1 : 0);
        else
            sqlite3_bind_null(s, 7);
        step(s);
    }

  private:
    void exec(const char* sql) {
        char* err = nullptr;
        if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
            const std::string why = err != nullptr ? err : sqlite3_errmsg(db_);
            sqlite3_free(err);
            throw std::runtime_error("database " + path_ + ": " + why);
        }
    }
    sqlite3_stmt* prepare(const char* sql) {
        sqlite3_stmt* s = nullptr;
        if (sqlite3_prepare_v2(db_, sql, -1, &s, nullptr) != SQLITE_OK)
            throw std::runtime_error("database " + path_ + ": " + sqlite3_errmsg(db_));
        return s;
    }
    static void bind_text(sqlite3_stmt* s, int i, const std::string& v) {
        sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    }
    void step(sqlite3_stmt* s) {
        const int rc = sqlite3_step(s);
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
        if (rc != SQLITE_DONE)
            throw std::runtime_error("database " + path_ + ": " + sqlite3_errstr(rc));
    }

    std::string path_;
    sqlite3* db_ = nullptr;
    sqlite3_stmt* upsert_rollup_ = nullptr;
    sqlite3_stmt* upsert_sensor_ = nullptr;
};

/// One bucket's roll-up, not yet written.
struct rollup {
    std::string unit;
    std::uint64_t count = 0;
    double sum = 0;
    double min = 0;
    double max = 0;
};

/// What the aggregator knows of one sensor.
struct sensor_state {
    std::map<std::string, std::uint64_t> received; ///< per metric
    std::uint64_t gaps = 0;   ///< gap events: sequence jumps, and streams that did not start at 1
    std::uint64_t missed = 0; ///< readings known to be lost
    std::int64_t sent = -1;   ///< from the end report; -1 until it came
    bool finished = false;
    bool complete = false;
    bool dirty = true; ///< changed since it was last written
    [[nodiscard]] std::uint64_t received_total() const {
        std::uint64_t n = 0;
        for (const auto& [metric, count] : received) n += count;
        return n;
    }
};

class aggregator {
  public:
    aggregator(const options& o, store& db) : o_(o), db_(db) {}

    void on_sample(const zmesh::pubsub::delivery& d) {
        std::error_code ec;
        auto s = d.payload.size() == 1 ? zmesh::unpack<telemetry::sample>(d.payload[0], {}, ec)
                                       : std::nullopt;
        const auto [metric, sensor] = split_topic(d.topic);
        if (!s || s->sensor != sensor || s->metric != metric || s->metric == "end" ||
            s->sensor.empty() || s->n == 0) {
            malformed(d.topic, "not a reading whose sensor and metric match its topic");
            return;
        }
        auto& st = sensors_[s->sensor];
        if (st.finished) {
            // A reading after the end report: a restarted sensor of the same name, or a bug.
            std::printf("aggregator: %s sent a reading after its end report (stored too)\n",
                        printable(s->sensor).c_str());
            st.finished = false;
        }
        // The subscriber takes a stream's first message as given (a subscriber may join late);
        // here every stream must start at reading 1, or its start was lost.
        auto& got = st.received[s->metric];
        if (got == 0 && s->n != 1) {
            st.gaps += 1;
            st.missed += s->n - 1;
            std::printf("aggregator: %s %s started at reading %llu: %llu missed\n",
                        printable(s->sensor).c_str(), printable(s->metric).c_str(),
                        static_cast<unsigned long long>(s->n),
                        static_cast<unsigned long long>(s->n - 1));
        }
        got += 1;
        st.dirty = true;
        ++readings_;

        const std::int64_t ms = d.header.timestamp_ns > 0
                                    ? d.header.timestamp_ns / 1000000
                                    : std::chrono::duration_cast<milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count();
        const std::int64_t bucket = ms - ms % o_.bucket_ms;
        auto& r = pending_[{s->sensor, s->metric, bucket}];
        if (r.count == 0) {
            r.unit = s->unit;
            r.min = r.max = s->value;
        }
        r.count += 1;
        r.sum += s->value;
        r.min = std::min(r.min, s->value);
        r.max = std::max(r.max, s->value);
    }

    void on_end(const zmesh::pubsub::delivery& d) {
        std::error_code ec;
        auto report = d.payload.size() == 1
                          ? zmesh::unpack<telemetry::end_report>(d.payload[0], {}, ec)
                          : std::nullopt;
        if (!report || d.topic != std::string(telemetry::end_topic_prefix) + report->sensor) {
            malformed(d.topic, "not an end report of the sensor its topic names");
            return;
        }
        auto& st = sensors_[report->sensor];
        std::uint64_t sent = 0;
        std::uint64_t lost = 0;
        for (const auto& t : report->totals) {
            sent += t.count;
            const auto got = st.received[t.metric];
            if (got < t.count) lost += t.count - got;
        }
        // Readings lost at the very end leave no gap for the subscriber to see: count them now.
        if (lost > st.missed) {
            st.gaps += 1;
            st.missed = lost;
        }
        st.sent = static_cast<std::int64_t>(sent);
        st.finished = true;
        st.complete = report->complete;
        st.dirty = true;
        flush(); // the sensor's readings are stored before it is marked finished
        std::printf(
            "aggregator: %s finished: %llu of %llu readings received and stored, "
            "%llu missed%s\n",
            printable(report->sensor).c_str(), static_cast<unsigned long long>(st.received_total()),
            static_cast<unsigned long long>(sent), static_cast<unsigned long long>(st.missed),
            report->complete ? "" : " (the sensor was stopped early)");
        std::fflush(stdout);
    }

    void on_gap(const zmesh::pubsub::gap& g) {
        const auto [metric, sensor] = split_topic(g.topic);
        auto& st = sensors_[sensor.empty() ? std::string("?") : sensor];
        st.gaps += 1;
        st.missed += g.missed();
        st.dirty = true;
        std::printf("aggregator: gap on %s: readings %llu to %llu missed\n",
                    printable(g.topic).c_str(), static_cast<unsigned long long>(g.expected),
                    static_cast<unsigned long long>(g.got - 1));
        std::fflush(stdout);
    }

    /// Writes the pending roll-ups and the changed sensors in one transaction.
    void flush() {
        if (pending_.empty() && !any_dirty()) return;
        db_.begin();
        try {
            for (const auto& [key, r] : pending_) {
                const auto& [sensor, metric, bucket] = key;
                db_.add_rollup(sensor, metric, bucket, r.unit, r.count, r.sum, r.min, r.max);
            }
            for (auto& [name, st] : sensors_) {
                if (!st.dirty) continue;
                db_.put_sensor(name, st.received_total(), st.sent, st.gaps, st.missed, st.finished,
                               st.complete);
            }
            db_.commit();
        } catch (...) {
            db_.rollback();
            throw;
        }
        pending_.clear();
        for (auto& [name, st] : sensors_) st.dirty = false;
    }

    /// A progress line, when something changed since the last one.
    void report_progress() {
        if (readings_ == reported_) return;
        reported_ = readings_;
        std::size_t finished = 0;
        for (const auto& [name, st] : sensors_) finished += st.finished ? 1 : 0;
        std::printf("aggregator: %llu readings from %zu sensors so far (%zu finished)\n",
                    static_cast<unsigned long long>(readings_), sensors_.size(), finished);
        std::fflush(stdout);
    }

    void summary(const zmesh::pubsub::subscriber_stats& ss) const {
        std::uint64_t gaps = 0, missed = 0;
        std::size_t finished = 0;
        for (const auto& [name, st] : sensors_) {
            gaps += st.gaps;
            missed += st.missed;
            finished += st.finished ? 1 : 0;
        }
        std::printf("aggregator: stopped: %llu readings from %zu sensors (%zu finished) stored "
                    "in %s; %llu gaps, %llu missed, %llu duplicates, %llu malformed\n",
                    static_cast<unsigned long long>(readings_), sensors_.size(), finished,
                    o_.db.c_str(), static_cast<unsigned long long>(gaps),
                    static_cast<unsigned long long>(missed),
                    static_cast<unsigned long long>(ss.duplicates),
                    static_cast<unsigned long long>(malformed_ + ss.malformed));
        std::fflush(stdout);
    }

  private:
    [[nodiscard]] bool any_dirty() const {
        for (const auto& [name, st] : sensors_)
            if (st.dirty) return true;
        return false;
    }
    void malformed(std::string_view topic, const char* why) {
        // Counted always, said for the first few only: a broken peer must not flood the log.
        if (++malformed_ <= 5)
            std::printf("aggregator: dropped a message on %s: %s\n", printable(topic).c_str(), why);
    }

    const options& o_;
    store& db_;
    std::map<std::tuple<std::string, std::string, std::int64_t>, rollup> pending_;
    std::map<std::string, sensor_state> sensors_;
    std::uint64_t readings_ = 0;
    std::uint64_t reported_ = 0;
    std::uint64_t malformed_ = 0;
};

int run(const options& o) {
    install_stop_handlers();
    store db(o.db);
    zmq::context_t ctx;

    zmesh::pubsub::subscriber_options so;
    so.bind = {o.bind};
    so.topics = {std::string(telemetry::topic_prefix)}; // one subscription: sensors count on it
    so.socket.recv_hwm = 10000;
    zmesh::pubsub::subscriber sub(ctx, so);
    const std::string endpoint = sub.endpoints().front();

    aggregator agg(o, db);
    sub.on_gap([&agg](const zmesh::pubsub::gap& g) { agg.on_gap(g); });

    zmesh::pubsub::directory_registration listing(ctx, o.broker, o.name, endpoint,
                                                  milliseconds(10000));
    std::printf("aggregator: bound %s, listed as '%s' in the directory of %s; storing in %s\n",
                endpoint.c_str(), o.name.c_str(), o.broker.c_str(), o.db.c_str());
    std::fflush(stdout);

    auto next_flush = clock_type::now() + milliseconds(o.flush_ms);
    auto next_report = clock_type::now() + milliseconds(2000);
    while (stop_signal == 0) {
        const auto now = clock_type::now();
        if (now >= next_flush) {
            agg.flush();
            next_flush = now + milliseconds(o.flush_ms);
        }
        if (now >= next_report) {
            agg.report_progress();
            next_report = now + milliseconds(2000);
        }
        auto d = sub.recv(std::max(
            milliseconds(1), std::min(milliseconds(200), std::chrono::ceil<milliseconds>(
                                                             next_flush - clock_type::now()))));
        if (!d) continue;
        if (d->header.type == telemetry::sample_type)
            agg.on_sample(*d);
        else if (d->header.type == telemetry::end_type)
            agg.on_end(*d);
        else
            agg.on_sample(*d); // counted as malformed there unless it is a valid reading
    }
    agg.flush();
    agg.summary(sub.stats());
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    const options o = parse(argc, argv);
    try {
        return run(o);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", program, e.what());
        return 1;
    }
}
