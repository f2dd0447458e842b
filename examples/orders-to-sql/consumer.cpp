// SPDX-License-Identifier: MPL-2.0
// orders-consumer — the MDP worker that stores orders in SQL: SQLite or PostgreSQL.
//
// Each request is one order (msgpack, order.hpp). It is stored in one transaction that first
// records its message id in processed_messages and then inserts the row into orders; if the id
// is there already (a redelivery: Titanic sent it again after a consumer died before answering,
// or a client retried with the same Idempotency-Key), the transaction inserts nothing and the
// request is answered all the same. Because the id and the row commit together, a crash can
// leave neither or both, never one without the other: every order is stored exactly once.
//
// A database error answers the request with an error (500), which Titanic counts as a failed
// attempt and retries with a growing delay; after its --max-attempts it moves the order to its
// dead-letter queue (`zmesh dlq list --store ...`). A body that is not an order is refused.
#include "order.hpp"

#include <zmesh/codec.hpp>
#include <zmesh/error.hpp>
#include <zmesh/header.hpp>
#include <zmesh/mdp/durable_client.hpp>
#include <zmesh/mdp/worker.hpp>

#include <libpq-fe.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>

namespace {

constexpr const char* usage =
    "usage: orders-consumer --broker EP --db (sqlite:PATH | postgresql://...) [--service NAME]\n"
    "                       [--curve-server-key FILE --curve-key FILE]\n"
    "\n"
    "  --broker EP              the zmesh broker to serve through, e.g. tcp://127.0.0.1:5555\n"
    "  --db TARGET              sqlite:PATH (created if missing), or a PostgreSQL connection URI\n"
    "                           (postgresql://... or postgres://...); the tables are created\n"
    "                           if missing\n"
    "  --service NAME           the service to serve (default orders.store)\n"
    "  --curve-server-key FILE  the broker's public certificate (env ZMESH_CURVE_SERVER_KEY)\n"
    "  --curve-key FILE         this program's secret certificate (env ZMESH_CURVE_KEY)\n";

std::atomic<bool> stopping{false};
extern "C" void on_signal(int) {
    stopping = true;
}

/// @p text on one line: the database's multi-line messages (PostgreSQL's DETAIL) joined with
/// "; ", trailing blanks dropped, for the log and for the error reply Titanic keeps.
std::string one_line(std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    std::string out;
    for (char c : text) {
        if (c == '\n')
            out += "; ";
        else
            out += c;
    }
    return out;
}

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

/// Where orders are stored.
class order_store {
  public:
    virtual ~order_store() = default;
    /// Stores @p o unless its id was stored before, in one transaction.
    /// @returns true if stored now, false if it was a duplicate (nothing changed).
    /// @throws std::runtime_error with the database's reason; nothing was stored.
    virtual bool store(const orders::order& o) = 0;
    /// What it is, for the log ("sqlite /path", "postgresql host:port/db as user").
    [[nodiscard]] virtual std::string describe() const = 0;
};

// ---- SQLite ----------------------------------------------------------------------------------

class sqlite_store final : public order_store {
  public:
    explicit sqlite_store(std::string path) : path_(std::move(path)) {
        if (sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                            nullptr) != SQLITE_OK) {
            std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
            sqlite3_close(db_);
            throw std::runtime_error("cannot open SQLite database " + path_ + ": " + why);
        }
        sqlite3_busy_timeout(db_, 5000);
        exec("PRAGMA journal_mode=WAL");
        exec("PRAGMA synchronous=FULL");
        // processed_messages is the de-duplication: one row per message id ever stored. (A
        // UNIQUE message_id in orders would do for a single insert; a table of its own also
        // covers a handler whose effect is not one row, such as a stock update.)
        exec("CREATE TABLE IF NOT EXISTS processed_messages ("
             " message_id TEXT PRIMARY KEY,"
             " processed_at_ms INTEGER NOT NULL)");
        exec("CREATE TABLE IF NOT EXISTS orders ("
             " order_no INTEGER PRIMARY KEY AUTOINCREMENT,"
             " message_id TEXT NOT NULL,"
             " customer TEXT NOT NULL,"
             " sku TEXT NOT NULL,"
             " quantity INTEGER NOT NULL CHECK (quantity > 0),"
             " unit_price_cents INTEGER NOT NULL CHECK (unit_price_cents >= 0),"
             " accepted_at_ms INTEGER NOT NULL,"
             " stored_at_ms INTEGER NOT NULL)");
        exec("CREATE INDEX IF NOT EXISTS orders_by_message_id ON orders (message_id)");
        mark_ = prepare("INSERT INTO processed_messages (message_id, processed_at_ms) "
                        "VALUES (?1, ?2) ON CONFLICT (message_id) DO NOTHING");
        insert_ = prepare("INSERT INTO orders (message_id, customer, sku, quantity, "
                          "unit_price_cents, accepted_at_ms, stored_at_ms) "
                          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    }
    ~sqlite_store() override {
        sqlite3_finalize(mark_);
        sqlite3_finalize(insert_);
        sqlite3_close(db_);
    }
    sqlite_store(const sqlite_store&) = delete;
    sqlite_store& operator=(const sqlite_store&) = delete;

    bool store(const orders::order& o) override {
        exec("BEGIN IMMEDIATE");
        try {
            const std::int64_t now = now_ms();
            sqlite3_reset(mark_);
            sqlite3_bind_text(mark_, 1, o.id.c_str(), -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(mark_, 2, now);
            step(mark_, "insert into processed_messages");
            if (sqlite3_changes(db_) == 0) { // stored before: nothing to do
                exec("COMMIT");
                return false;
            }
            sqlite3_reset(insert_);
            sqlite3_bind_text(insert_, 1, o.id.c_str(), -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(insert_, 2, o.customer.c_str(), -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(insert_, 3, o.sku.c_str(), -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(insert_, 4, o.quantity);
            sqlite3_bind_int64(insert_, 5, o.unit_price_cents);
            sqlite3_bind_int64(insert_, 6, o.accepted_at_ms);
            sqlite3_bind_int64(insert_, 7, now);
            step(insert_, "insert into orders");
            exec("COMMIT");
            return true;
        } catch (...) {
            sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
            throw;
        }
    }
    [[nodiscard]] std::string describe() const override { return "SQLite " + path_; }

  private:
    void exec(const char* sql) {
        char* err = nullptr;
        if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
            std::string why = err ? err : sqlite3_errmsg(db_);
            sqlite3_free(err);
            throw std::runtime_error(path_ + ": " + sql + ": " + why);
        }
    }
    sqlite3_stmt* prepare(const char* sql) {
        sqlite3_stmt* s = nullptr;
        if (sqlite3_prepare_v2(db_, sql, -1, &s, nullptr) != SQLITE_OK)
            throw std::runtime_error(path_ + ": " + sqlite3_errmsg(db_));
        return s;
    }
    void step(sqlite3_stmt* s, const char* what) {
        const int rc = sqlite3_step(s);
        if (rc != SQLITE_DONE) {
            std::string why = sqlite3_errmsg(db_);
            sqlite3_reset(s);
            throw std::runtime_error(std::string(what) + ": " + why);
        }
    }

    std::string path_;
    sqlite3* db_ = nullptr;
    sqlite3_stmt* mark_ = nullptr;
    sqlite3_stmt* insert_ = nullptr;
};

// ---- PostgreSQL ------------------------------------------------------------------------------

/// Owns a PGresult.
struct pg_result {
    PGresult* r;
    explicit pg_result(PGresult* p) : r(p) {}
    ~pg_result() { PQclear(r); }
    pg_result(const pg_result&) = delete;
    pg_result& operator=(const pg_result&) = delete;
};

class pg_store final : public order_store {
  public:
    explicit pg_store(std::string conninfo) : conninfo_(std::move(conninfo)) {
        conn_ = PQconnectdb(conninfo_.c_str());
        if (PQstatus(conn_) != CONNECTION_OK) {
            std::string why = one_line(PQerrorMessage(conn_));
            PQfinish(conn_);
            throw std::runtime_error("cannot connect to PostgreSQL: " + why);
        }
        where_ = std::string(PQhost(conn_)) + ":" + PQport(conn_) + "/" + PQdb(conn_) + " as " +
                 PQuser(conn_);
        command("SET synchronous_commit = on");
        // Two consumers starting together may both create the tables: serialise on a lock.
        command("SELECT pg_advisory_lock(7460330)");
        command("CREATE TABLE IF NOT EXISTS processed_messages ("
                " message_id TEXT PRIMARY KEY,"
                " processed_at_ms BIGINT NOT NULL)");
        command("CREATE TABLE IF NOT EXISTS orders ("
                " order_no BIGSERIAL PRIMARY KEY,"
                " message_id TEXT NOT NULL,"
                " customer TEXT NOT NULL,"
                " sku TEXT NOT NULL,"
                " quantity BIGINT NOT NULL CHECK (quantity > 0),"
                " unit_price_cents BIGINT NOT NULL CHECK (unit_price_cents >= 0),"
                " accepted_at_ms BIGINT NOT NULL,"
                " stored_at_ms BIGINT NOT NULL)");
        command("CREATE INDEX IF NOT EXISTS orders_by_message_id ON orders (message_id)");
        command("SELECT pg_advisory_unlock(7460330)");
    }
    ~pg_store() override { PQfinish(conn_); }
    pg_store(const pg_store&) = delete;
    pg_store& operator=(const pg_store&) = delete;

    bool store(const orders::order& o) override {
        if (PQstatus(conn_) != CONNECTION_OK) {
            // The server restarted or the connection broke: one reconnect per order. If it
            // fails, the order fails and Titanic tries again later.
            PQreset(conn_);
            if (PQstatus(conn_) != CONNECTION_OK) throw std::runtime_error(error("reconnect"));
            command("SET synchronous_commit = on");
        }
        command("BEGIN");
        try {
            const std::string now = std::to_string(now_ms());
            const char* mark[] = {o.id.c_str(), now.c_str()};
            pg_result marked(PQexecParams(conn_,
                                          "INSERT INTO processed_messages (message_id, "
                                          "processed_at_ms) VALUES ($1, $2) "
                                          "ON CONFLICT (message_id) DO NOTHING",
                                          2, nullptr, mark, nullptr, nullptr, 0));
            check(marked, PGRES_COMMAND_OK, "insert into processed_messages");
            if (std::string(PQcmdTuples(marked.r)) == "0") { // stored before
                command("COMMIT");
                return false;
            }
            const std::string q = std::to_string(o.quantity);
            const std::string p = std::to_string(o.unit_price_cents);
            const std::string a = std::to_string(o.accepted_at_ms);
            const char* row[] = {o.id.c_str(), o.customer.c_str(), o.sku.c_str(), q.c_str(),
                                 p.c_str(),    a.c_str(),          now.c_str()};
            pg_result inserted(PQexecParams(conn_,
                                            "INSERT INTO orders (message_id, customer, sku, "
                                            "quantity, unit_price_cents, accepted_at_ms, "
                                            "stored_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                                            7, nullptr, row, nullptr, nullptr, 0));
            check(inserted, PGRES_COMMAND_OK, "insert into orders");
            command("COMMIT");
            return true;
        } catch (...) {
            if (PQstatus(conn_) == CONNECTION_OK) pg_result rollback(PQexec(conn_, "ROLLBACK"));
            throw;
        }
    }
    [[nodiscard]] std::string describe() const override { return "PostgreSQL " + where_; }

  private:
    std::string error(const char* what) const {
        return std::string(what) + ": " + one_line(PQerrorMessage(conn_));
    }
    void check(const pg_result& r, ExecStatusType want, const char* what) const {
        if (PQresultStatus(r.r) != want) {
            throw std::runtime_error(std::string(what) + ": " +
                                     one_line(PQresultErrorMessage(r.r)));
        }
    }
    void command(const char* sql) {
        pg_result r(PQexec(conn_, sql));
        const auto s = PQresultStatus(r.r);
        if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) check(r, PGRES_COMMAND_OK, sql);
    }

    std::string conninfo_;
    std::string where_;
    PGconn* conn_ = nullptr;
};

std::unique_ptr<order_store> open_store(const std::string& target) {
    if (target.rfind("sqlite:", 0) == 0 && target.size() > 7)
        return std::make_unique<sqlite_store>(target.substr(7));
    if (target.rfind("postgresql://", 0) == 0 || target.rfind("postgres://", 0) == 0)
        return std::make_unique<pg_store>(target);
    throw std::invalid_argument("flag --db: '" + target +
                                "' is neither sqlite:PATH nor postgresql://...");
}

} // namespace

int main(int argc, char** argv) try {
    const orders::flags f(argc, argv, {"broker", "db", "service", "curve-server-key", "curve-key"});
    if (f.help()) {
        std::fputs(usage, stdout);
        return 0;
    }
    const std::string broker = f.require("broker");
    const std::string service = f.get("service", "orders.store");
    const auto curve = orders::curve_from(f);
    auto db = open_store(f.require("db"));

    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);

    zmq::context_t ctx;
    zmesh::mdp::worker worker(ctx, broker, service, {.curve = curve});
    std::printf("orders-consumer: serving %s at %s (CURVE %s), storing into %s\n", service.c_str(),
                broker.c_str(), curve ? "on" : "off", db->describe().c_str());
    std::fflush(stdout);

    std::uint64_t stored = 0, duplicates = 0, failed = 0, refused = 0;
    std::uint64_t reported = 0;
    auto last_report = std::chrono::steady_clock::now();
    while (!stopping) {
        auto request = worker.take(std::chrono::milliseconds(200));
        const auto now = std::chrono::steady_clock::now();
        if (stored + duplicates + failed + refused != reported &&
            now - last_report > std::chrono::seconds(2)) {
            reported = stored + duplicates + failed + refused;
            last_report = now;
            std::printf("orders-consumer: %llu stored, %llu duplicates skipped, %llu failed "
                        "attempts, %llu refused\n",
                        static_cast<unsigned long long>(stored),
                        static_cast<unsigned long long>(duplicates),
                        static_cast<unsigned long long>(failed),
                        static_cast<unsigned long long>(refused));
            std::fflush(stdout);
        }
        if (!request) continue;
        std::error_code ec;
        std::string why;
        std::optional<orders::order> o;
        if (request->body.size() == 1)
            o = zmesh::unpack<orders::order>(request->body.front(), ec, &why);
        else
            why = std::to_string(request->body.size()) + " frames instead of 1";
        if (o && !zmesh::mdp::is_tsp_id(o->id)) {
            why = "its id is not 32 hex digits";
            o.reset();
        }
        if (!o) {
            ++refused;
            std::fprintf(stderr, "orders-consumer: refused a request that is not an order: %s\n",
                         why.c_str());
            worker.refuse(std::move(request->token), "not an order: " + why);
            continue;
        }
        try {
            if (db->store(*o)) {
                ++stored;
                worker.reply(std::move(request->token), zmesh::message{"stored", o->id});
            } else {
                ++duplicates;
                worker.reply(std::move(request->token), zmesh::message{"duplicate", o->id});
            }
        } catch (const std::exception& e) {
            ++failed;
            std::fprintf(stderr, "orders-consumer: order %s not stored: %s\n", o->id.c_str(),
                         e.what());
            worker.fail(std::move(request->token), "500",
                        "order " + o->id + " not stored in " + db->describe() + ": " + e.what());
        }
    }
    std::printf("orders-consumer: stopping; %llu stored, %llu duplicates skipped, %llu failed "
                "attempts, %llu refused\n",
                static_cast<unsigned long long>(stored),
                static_cast<unsigned long long>(duplicates),
                static_cast<unsigned long long>(failed), static_cast<unsigned long long>(refused));
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "orders-consumer: %s\n", e.what());
    return 1;
}
