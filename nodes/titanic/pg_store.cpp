// SPDX-License-Identifier: MPL-2.0
// pg_store.cpp — the PostgreSQL engine of the Titanic store: schema, connection, statements.
//
// The row is the SQLite engine's (sqlite_store.cpp): a request, its state, reply, dead-letter
// reason and claim in one row, bodies as one bytea of length-prefixed frames (frame_codec.hpp).
// Every statement is prepared once per session, with binary parameters and binary results, so
// no value is ever quoted or escaped. The service and the dead-letter reason are bytea, not text:
// both come from the network, and one submission with a NUL or invalid UTF-8 in its service
// would otherwise fail the whole group commit it arrived in.
//
// Claims use `FOR UPDATE SKIP LOCKED`: a node's claim locks the rows it takes until it commits
// and skips rows another node's claim is taking, and READ COMMITTED re-checks a row's claim
// condition after waiting for it. Batches of replies are written in id order, so two nodes that
// store replies for the same requests lock them in the same order and cannot deadlock.
#include "pg_store.hpp"

#include "frame_codec.hpp"

#include <zmesh/error.hpp>

#include <libpq-fe.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

namespace zmesh::nodes::titanic {
namespace {

using detail::decode_frames;
using detail::encode_frames;

// Type OIDs of the parameters (pg_type.h, stable since PostgreSQL 7).
constexpr Oid oid_bytea = 17;
constexpr Oid oid_int8 = 20;
constexpr Oid oid_text = 25;
constexpr Oid oid_text_array = 1009;

/// Key of the advisory lock taken while creating the schema: "ZMTI", as SQLite's application_id.
constexpr const char* schema_lock_sql = "SELECT pg_advisory_xact_lock(1515017289)";

constexpr const char* schema_sql = R"(
CREATE TABLE IF NOT EXISTS zmesh_titanic_requests (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- arrival order
    id              TEXT NOT NULL UNIQUE,  -- 32 lowercase hex (TSP UUID)
    service         BYTEA NOT NULL,
    created_ms      BIGINT NOT NULL,       -- unix time, ms
    ttl_ms          BIGINT,                -- NULL: no TTL
    attempts        INTEGER NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    state           SMALLINT NOT NULL,     -- 0 pending, 1 replied, 2 dead
    claim_owner     TEXT,                  -- claim(): who holds it
    claim_until_ms  BIGINT,                -- and until when
    replied_ms      BIGINT,
    dead_reason     BYTEA,
    dead_ms         BIGINT,
    body            BYTEA NOT NULL,        -- frames: (u32 little-endian length, bytes)...
    reply           BYTEA
);
CREATE INDEX IF NOT EXISTS zmesh_titanic_due
    ON zmesh_titanic_requests (next_attempt_ms, seq) WHERE state = 0;
CREATE INDEX IF NOT EXISTS zmesh_titanic_dead
    ON zmesh_titanic_requests (dead_ms, seq) WHERE state = 2;
CREATE TABLE IF NOT EXISTS zmesh_titanic_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO zmesh_titanic_meta VALUES ('schema_version', '1') ON CONFLICT (key) DO NOTHING;
)";

constexpr const char* columns = "id, service, created_ms, ttl_ms, attempts, next_attempt_ms, "
                                "state, claim_owner, claim_until_ms, body";
constexpr int body_col = 9;
constexpr int dead_reason_col = 10; // after the columns above, in the dead-letter queries
constexpr int dead_ms_col = 11;

struct conn_closer {
    void operator()(PGconn* c) const noexcept { PQfinish(c); }
};
using conn_ptr = std::unique_ptr<PGconn, conn_closer>;

struct result_clearer {
    void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using result_ptr = std::unique_ptr<PGresult, result_clearer>;

/// libpq's messages span lines (a hint on a second line, tab-indented): one line here.
std::string one_line(const char* msg) {
    std::string out;
    bool space = false;
    for (const char* p = msg == nullptr ? "" : msg; *p != '\0'; ++p) {
        const bool ws = *p == '\n' || *p == '\t' || *p == '\r' || *p == ' ';
        if (ws) {
            space = !out.empty();
            continue;
        }
        if (space) out.push_back(' ');
        space = false;
        out.push_back(*p);
    }
    return out;
}

void ignore_notice(void*, const char*) {}

constexpr std::int64_t to_ms(time_point t) noexcept {
    return t.time_since_epoch().count();
}
constexpr time_point from_ms(std::int64_t ms) noexcept {
    return time_point(std::chrono::milliseconds(ms));
}

std::int64_t to_limit(std::size_t n) noexcept {
    constexpr auto max = static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max());
    return static_cast<std::int64_t>(n < max ? n : max);
}

/// Big-endian integer of @p n bytes (binary result format).
std::int64_t read_be(const char* p, int n) {
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
    if (n < 8 && n > 0 && (v >> (8 * n - 1)) != 0) v |= ~std::uint64_t{0} << (8 * n); // sign
    return static_cast<std::int64_t>(v);
}

/// The parameters of one statement call. Values are copied in, so callers may pass temporaries.
class params {
  public:
    params& text(std::string_view v) { return add(std::string(v), 1); }
    params& bytes(std::string v) { return add(std::move(v), 1); }
    params& int8(std::int64_t v) {
        std::string b(8, '\0');
        auto u = static_cast<std::uint64_t>(v);
        for (int i = 7; i >= 0; --i, u >>= 8)
            b[static_cast<std::size_t>(i)] = static_cast<char>(u & 0xffU);
        return add(std::move(b), 1);
    }
    params& null() {
        values_.emplace_back();
        null_.push_back(true);
        formats_.push_back(1);
        return *this;
    }
    /// A text[] of ids in the text format ({a,b,c}): TSP ids are hex, nothing to quote.
    params& text_array(std::span<const std::string> ids) {
        std::string v = "{";
        for (std::size_t i = 0; i < ids.size(); ++i) {
            if (i > 0) v += ',';
            v += ids[i];
        }
        v += '}';
        return add(std::move(v), 0);
    }

    int count() const noexcept { return static_cast<int>(values_.size()); }
    /// Pointers into the values; valid while this object is neither changed nor moved.
    void fill(std::vector<const char*>& v, std::vector<int>& len) const {
        v.clear();
        len.clear();
        for (std::size_t i = 0; i < values_.size(); ++i) {
            v.push_back(null_[i] ? nullptr : values_[i].data());
            len.push_back(static_cast<int>(values_[i].size()));
        }
    }
    const int* formats() const noexcept { return formats_.data(); }

  private:
    params& add(std::string v, int format) {
        if (v.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()))
            throw zmesh::error(errc::invalid_argument, "titanic store: value larger than 2 GiB");
        values_.push_back(std::move(v));
        null_.push_back(false);
        formats_.push_back(format);
        return *this;
    }
    std::vector<std::string> values_;
    std::vector<bool> null_;
    std::vector<int> formats_;
};

struct statement {
    const char* name;
    std::string sql;
    std::vector<Oid> types;
};

class pg_store final : public store {
  public:
    pg_store(std::string conninfo, bool create);

    void add_requests(std::span<const new_request> batch) override;
    std::size_t store_replies(std::span<const reply_record> batch, time_point now) override;
    reply_status reply(std::string_view id) override;
    std::optional<request_record> find(std::string_view id) override;
    bool close(std::string_view id) override;
    std::vector<request_record> due(time_point now, std::size_t limit) override;
    std::vector<request_record> claim(std::string_view owner, time_point now,
                                      std::chrono::milliseconds lease, std::size_t limit) override;
    std::size_t renew(std::string_view owner, std::span<const std::string> ids,
                      time_point until) override;
    std::size_t release(std::string_view owner) override;
    std::optional<std::uint32_t> record_failure(std::string_view id,
                                                time_point next_attempt) override;
    bool move_to_dlq(std::string_view id, std::string_view reason, time_point now) override;
    std::vector<dlq_entry> dlq_list(std::size_t limit) override;
    std::optional<dlq_entry> dlq_show(std::string_view id) override;
    bool dlq_replay(std::string_view id, time_point now) override;
    std::size_t dlq_replay_all(time_point now) override;
    bool dlq_purge(std::string_view id) override;
    std::size_t dlq_purge_all() override;
    store_counts counts() override;

  private:
    class transaction;

    [[noreturn]] void fail(const std::string& what) const {
        throw zmesh::error(errc::storage, "titanic store postgresql '" + target_ + "': " + what);
    }
    /// Connects (or reconnects), sets up the session, creates or checks the schema, prepares.
    void connect();
    /// Reconnects if the connection was lost since the last call.
    void ensure();
    /// Runs plain SQL (no parameters); throws on failure.
    result_ptr exec(const char* sql, const char* what);
    /// Runs a prepared statement; throws errc::storage on failure (@p sqlstate, if given, gets
    /// the error's SQLSTATE first, and no throw happens if it is set to a state the caller
    /// handles: see add_requests).
    result_ptr run(const char* name, const params& p, const char* what,
                   std::string* sqlstate = nullptr);
    std::size_t changed(const PGresult* r) const;
    request_record read_request(const PGresult* r, int row) const;
    dlq_entry read_dlq(const PGresult* r, int row) const;

    std::string conninfo_;
    std::string target_;
    bool create_;
    conn_ptr conn_;
    std::string scratch_;
    std::vector<const char*> values_;
    std::vector<int> lengths_;
};

/// BEGIN … COMMIT, rolled back unless committed.
class pg_store::transaction {
  public:
    explicit transaction(pg_store& s) : s_(s) { s_.exec("BEGIN", "begin transaction"); }
    ~transaction() {
        if (!committed_ && PQstatus(s_.conn_.get()) == CONNECTION_OK)
            result_ptr(PQexec(s_.conn_.get(), "ROLLBACK"));
    }
    transaction(const transaction&) = delete;
    transaction& operator=(const transaction&) = delete;

    /// Returns once the server has committed (and, with synchronous_commit on, flushed its WAL).
    /// A lost connection during COMMIT is reported as a failure although the commit may have
    /// happened: a false failure makes a client resubmit (at least once), never a false success.
    void commit() {
        auto r = s_.exec("COMMIT", "commit");
        // COMMIT of a transaction the server aborted answers "ROLLBACK" without an error.
        if (std::strcmp(PQcmdStatus(r.get()), "COMMIT") != 0) s_.fail("commit: rolled back");
        committed_ = true;
    }

  private:
    pg_store& s_;
    bool committed_ = false;
};

std::vector<statement> statements() {
    const std::string cols = columns;
    const std::string t = " zmesh_titanic_requests ";
    const std::string replay = "UPDATE" + t +
                               "SET state = 0, attempts = 0, ttl_ms = NULL, dead_reason = NULL, "
                               "dead_ms = NULL, claim_owner = NULL, claim_until_ms = NULL, ";
    return {
        {"insert",
         "INSERT INTO" + t +
             "(id, service, created_ms, ttl_ms, attempts, next_attempt_ms, state, body) "
             "VALUES ($1, $2, $3, $4, 0, $3, 0, $5)",
         {oid_text, oid_bytea, oid_int8, oid_int8, oid_bytea}},
        {"store_reply",
         "UPDATE" + t +
             "SET state = 1, reply = $2, replied_ms = $3, dead_reason = NULL, dead_ms = NULL, "
             "claim_owner = NULL, claim_until_ms = NULL WHERE id = $1 AND state <> 1",
         {oid_text, oid_bytea, oid_int8}},
        {"reply", "SELECT state, reply FROM" + t + "WHERE id = $1", {oid_text}},
        {"find", "SELECT " + cols + " FROM" + t + "WHERE id = $1", {oid_text}},
        {"close", "DELETE FROM" + t + "WHERE id = $1", {oid_text}},
        {"due",
         "SELECT " + cols + " FROM" + t +
             "WHERE state = 0 AND next_attempt_ms <= $1 ORDER BY next_attempt_ms, seq LIMIT $2",
         {oid_int8, oid_int8}},
        {"claim",
         "UPDATE" + t + "SET claim_owner = $1, claim_until_ms = $3 WHERE seq IN (SELECT seq FROM" +
             t +
             "WHERE state = 0 AND next_attempt_ms <= $2 AND (claim_owner IS NULL OR "
             "claim_until_ms <= $2 OR claim_owner = $1) ORDER BY next_attempt_ms, seq LIMIT $4 "
             "FOR UPDATE SKIP LOCKED) RETURNING " +
             cols + ", seq",
         {oid_text, oid_int8, oid_int8, oid_int8}},
        {"renew",
         "UPDATE" + t +
             "SET claim_until_ms = $3 WHERE claim_owner = $1 AND state = 0 AND id = ANY($2)",
         {oid_text, oid_text_array, oid_int8}},
        {"release",
         "UPDATE" + t + "SET claim_owner = NULL, claim_until_ms = NULL WHERE claim_owner = $1",
         {oid_text}},
        {"failure",
         "UPDATE" + t +
             "SET attempts = attempts + 1, next_attempt_ms = $2 WHERE id = $1 AND state = 0 "
             "RETURNING attempts",
         {oid_text, oid_int8}},
        {"to_dlq",
         "UPDATE" + t + "SET state = 2, dead_reason = $2, dead_ms = $3 WHERE id = $1 AND state = 0",
         {oid_text, oid_bytea, oid_int8}},
        {"dlq_list",
         "SELECT " + cols + ", dead_reason, dead_ms FROM" + t +
             "WHERE state = 2 ORDER BY dead_ms, seq LIMIT $1",
         {oid_int8}},
        {"dlq_show",
         "SELECT " + cols + ", dead_reason, dead_ms FROM" + t + "WHERE id = $1 AND state = 2",
         {oid_text}},
        {"dlq_replay",
         replay + "next_attempt_ms = $2 WHERE state = 2 AND id = $1",
         {oid_text, oid_int8}},
        {"dlq_replay_all", replay + "next_attempt_ms = $1 WHERE state = 2", {oid_int8}},
        {"dlq_purge", "DELETE FROM" + t + "WHERE id = $1 AND state = 2", {oid_text}},
        {"dlq_purge_all", "DELETE FROM" + t + "WHERE state = 2", {}},
        {"counts", "SELECT state, count(*) FROM" + t + "GROUP BY state", {}},
    };
}

pg_store::pg_store(std::string conninfo, bool create)
    : conninfo_(std::move(conninfo)), target_(pg_target_name(conninfo_)), create_(create) {
    connect();
}

void pg_store::connect() {
    // connect_timeout before dbname: a value in the connection string itself wins (libpq
    // applies later keywords over earlier ones, and dbname expands to the string's own).
    const char* keys[] = {"connect_timeout", "fallback_application_name", "dbname", nullptr};
    const char* vals[] = {"10", "zmesh-titanic", conninfo_.c_str(), nullptr};
    conn_.reset(PQconnectdbParams(keys, vals, 1));
    if (!conn_) fail("cannot connect: out of memory");
    if (PQstatus(conn_.get()) != CONNECTION_OK)
        fail("cannot connect: " + one_line(PQerrorMessage(conn_.get())));
    PQsetNoticeProcessor(conn_.get(), ignore_notice, nullptr); // "already exists, skipping"
    // Acknowledged means flushed to the server's WAL, whatever the server's default; a lock held
    // by a stuck transaction fails a call after 5 s (the SQLite engine's busy timeout) instead
    // of blocking the node.
    exec("SET synchronous_commit = on; SET lock_timeout = '5s'; SET client_encoding = 'UTF8'",
         "set up the session");
    if (create_) {
        transaction tx(*this);
        exec(schema_lock_sql, "lock the schema");
        exec(schema_sql, "create the schema");
        tx.commit();
    } else {
        auto r = exec("SELECT to_regclass('zmesh_titanic_meta') IS NOT NULL", "look for the store");
        if (std::strcmp(PQgetvalue(r.get(), 0, 0), "t") != 0)
            fail("holds no titanic store (no table zmesh_titanic_meta)");
    }
    auto v = exec("SELECT value FROM zmesh_titanic_meta WHERE key = 'schema_version'",
                  "read the schema version");
    const std::string version = PQntuples(v.get()) == 1 ? PQgetvalue(v.get(), 0, 0) : "";
    if (version != std::to_string(pg_schema_version))
        fail("holds a zmesh titanic store of schema version '" + version + "', this build reads " +
             std::to_string(pg_schema_version) + "; refusing to touch it");
    for (const auto& st : statements()) {
        result_ptr r(PQprepare(conn_.get(), st.name, st.sql.c_str(),
                               static_cast<int>(st.types.size()), st.types.data()));
        if (!r || PQresultStatus(r.get()) != PGRES_COMMAND_OK)
            fail(std::string("cannot prepare ") + st.name + ": " +
                 one_line(PQerrorMessage(conn_.get())));
    }
}

void pg_store::ensure() {
    if (conn_ && PQstatus(conn_.get()) == CONNECTION_OK) return;
    connect(); // a new session: settings and prepared statements again
}

result_ptr pg_store::exec(const char* sql, const char* what) {
    result_ptr r(PQexec(conn_.get(), sql));
    const auto st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail(std::string(what) + ": " + one_line(PQerrorMessage(conn_.get())));
    return r;
}

result_ptr pg_store::run(const char* name, const params& p, const char* what,
                         std::string* sqlstate) {
    p.fill(values_, lengths_);
    result_ptr r(PQexecPrepared(conn_.get(), name, p.count(), values_.data(), lengths_.data(),
                                p.formats(), 1));
    const auto st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
    if (sqlstate != nullptr) {
        const char* code = r ? PQresultErrorField(r.get(), PG_DIAG_SQLSTATE) : nullptr;
        *sqlstate = code == nullptr ? "" : code;
    }
    fail(std::string(what) + ": " + one_line(PQerrorMessage(conn_.get())));
}

std::size_t pg_store::changed(const PGresult* r) const {
    const char* n = PQcmdTuples(const_cast<PGresult*>(r));
    return n == nullptr || *n == '\0' ? 0 : static_cast<std::size_t>(std::stoull(n));
}

request_record pg_store::read_request(const PGresult* res, int row) const {
    auto* r = const_cast<PGresult*>(res);
    auto bytes = [&](int col) {
        return std::string(PQgetvalue(r, row, col),
                           static_cast<std::size_t>(PQgetlength(r, row, col)));
    };
    auto integer = [&](int col) {
        return read_be(PQgetvalue(r, row, col), PQgetlength(r, row, col));
    };
    request_record out;
    out.id = bytes(0);
    out.service = bytes(1);
    out.created = from_ms(integer(2));
    if (!PQgetisnull(r, row, 3)) out.ttl = std::chrono::milliseconds(integer(3));
    const auto attempts = integer(4);
    out.attempts = attempts < 0 ? 0 : static_cast<std::uint32_t>(attempts);
    out.next_attempt = from_ms(integer(5));
    const auto state = integer(6);
    if (state < 0 || state > 2) fail("corrupt state in request " + out.id);
    out.state = static_cast<request_state>(state);
    if (!PQgetisnull(r, row, 7)) {
        out.claimed_by = bytes(7);
        out.claimed_until = from_ms(integer(8));
    }
    auto body = decode_frames(PQgetvalue(r, row, body_col),
                              static_cast<std::size_t>(PQgetlength(r, row, body_col)));
    if (!body) fail("corrupt body in request " + out.id);
    out.body = std::move(*body);
    return out;
}

dlq_entry pg_store::read_dlq(const PGresult* res, int row) const {
    auto* r = const_cast<PGresult*>(res);
    dlq_entry e;
    e.request = read_request(res, row);
    if (!PQgetisnull(r, row, dead_reason_col))
        e.reason.assign(PQgetvalue(r, row, dead_reason_col),
                        static_cast<std::size_t>(PQgetlength(r, row, dead_reason_col)));
    e.moved = from_ms(read_be(PQgetvalue(r, row, dead_ms_col), PQgetlength(r, row, dead_ms_col)));
    return e;
}

void pg_store::add_requests(std::span<const new_request> batch) {
    for (const auto& r : batch) {
        if (!is_valid_id(r.id)) {
            throw zmesh::error(errc::invalid_argument,
                               "titanic store: request id is not 32 lowercase hex characters");
        }
    }
    if (batch.empty()) return;
    ensure();
    transaction tx(*this);
    for (const auto& r : batch) {
        encode_frames(r.body, scratch_);
        params p;
        p.text(r.id).bytes(r.service).int8(to_ms(r.created));
        if (r.ttl)
            p.int8(r.ttl->count());
        else
            p.null();
        p.bytes(scratch_);
        std::string state;
        try {
            run("insert", p, "store requests", &state);
        } catch (const zmesh::error&) {
            if (state == "23505") // unique_violation
                throw zmesh::error(errc::invalid_argument,
                                   "titanic store: request id " + r.id + " is already stored");
            throw;
        }
    }
    tx.commit();
}

std::size_t pg_store::store_replies(std::span<const reply_record> batch, time_point now) {
    if (batch.empty()) return 0;
    // In id order: two nodes storing replies to the same requests lock rows in the same order.
    std::vector<const reply_record*> sorted;
    for (const auto& r : batch)
        if (is_valid_id(r.id)) sorted.push_back(&r);
    std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->id < b->id; });
    ensure();
    std::size_t stored = 0;
    transaction tx(*this);
    for (const auto* r : sorted) {
        encode_frames(r->body, scratch_);
        params p;
        p.text(r->id).bytes(scratch_).int8(to_ms(now));
        stored += changed(run("store_reply", p, "store replies").get());
    }
    tx.commit();
    return stored;
}

reply_status pg_store::reply(std::string_view id) {
    reply_status out;
    if (!is_valid_id(id)) return out;
    ensure();
    auto r = run("reply", params().text(id), "read reply");
    if (PQntuples(r.get()) == 0) return out;
    switch (read_be(PQgetvalue(r.get(), 0, 0), PQgetlength(r.get(), 0, 0))) {
    case 0:
        out.state = reply_state::pending;
        break;
    case 1: {
        auto body = decode_frames(PQgetvalue(r.get(), 0, 1),
                                  static_cast<std::size_t>(PQgetlength(r.get(), 0, 1)));
        if (!body) fail("corrupt reply for request " + std::string(id));
        out.state = reply_state::replied;
        out.body = std::move(*body);
        break;
    }
    case 2:
        out.state = reply_state::dead;
        break;
    default:
        fail("corrupt state in request " + std::string(id));
    }
    return out;
}

std::optional<request_record> pg_store::find(std::string_view id) {
    if (!is_valid_id(id)) return std::nullopt;
    ensure();
    auto r = run("find", params().text(id), "find request");
    if (PQntuples(r.get()) == 0) return std::nullopt;
    return read_request(r.get(), 0);
}

bool pg_store::close(std::string_view id) {
    if (!is_valid_id(id)) return false;
    ensure();
    return changed(run("close", params().text(id), "close request").get()) > 0;
}

std::vector<request_record> pg_store::due(time_point now, std::size_t limit) {
    ensure();
    auto r = run("due", params().int8(to_ms(now)).int8(to_limit(limit)), "list due requests");
    std::vector<request_record> out;
    for (int i = 0; i < PQntuples(r.get()); ++i) out.push_back(read_request(r.get(), i));
    return out;
}

std::vector<request_record> pg_store::claim(std::string_view owner, time_point now,
                                            std::chrono::milliseconds lease, std::size_t limit) {
    if (owner.empty())
        throw zmesh::error(errc::invalid_argument, "titanic store: claim needs an owner");
    ensure();
    // One statement is its own transaction: the rows are locked, marked and committed together.
    auto r =
        run("claim",
            params().text(owner).int8(to_ms(now)).int8(to_ms(now + lease)).int8(to_limit(limit)),
            "claim due requests");
    std::vector<std::pair<std::int64_t, request_record>> got;
    const int n = PQntuples(r.get());
    for (int i = 0; i < n; ++i) {
        auto seq =
            read_be(PQgetvalue(r.get(), i, body_col + 1), PQgetlength(r.get(), i, body_col + 1));
        got.emplace_back(seq, read_request(r.get(), i));
    }
    // RETURNING comes in no particular order.
    std::sort(got.begin(), got.end(), [](const auto& a, const auto& b) {
        return a.second.next_attempt != b.second.next_attempt
                   ? a.second.next_attempt < b.second.next_attempt
                   : a.first < b.first;
    });
    std::vector<request_record> out;
    out.reserve(got.size());
    for (auto& g : got) out.push_back(std::move(g.second));
    return out;
}

std::size_t pg_store::renew(std::string_view owner, std::span<const std::string> ids,
                            time_point until) {
    if (ids.empty() || owner.empty()) return 0;
    std::vector<std::string> valid;
    for (const auto& id : ids)
        if (is_valid_id(id)) valid.push_back(id); // nothing else may enter the array literal
    if (valid.empty()) return 0;
    ensure();
    return changed(
        run("renew", params().text(owner).text_array(valid).int8(to_ms(until)), "renew claims")
            .get());
}

std::size_t pg_store::release(std::string_view owner) {
    if (owner.empty()) return 0;
    ensure();
    return changed(run("release", params().text(owner), "release claims").get());
}

std::optional<std::uint32_t> pg_store::record_failure(std::string_view id,
                                                      time_point next_attempt) {
    if (!is_valid_id(id)) return std::nullopt;
    ensure();
    auto r = run("failure", params().text(id).int8(to_ms(next_attempt)), "record failure");
    if (PQntuples(r.get()) == 0) return std::nullopt;
    return static_cast<std::uint32_t>(
        read_be(PQgetvalue(r.get(), 0, 0), PQgetlength(r.get(), 0, 0)));
}

bool pg_store::move_to_dlq(std::string_view id, std::string_view reason, time_point now) {
    if (!is_valid_id(id)) return false;
    ensure();
    return changed(run("to_dlq", params().text(id).bytes(std::string(reason)).int8(to_ms(now)),
                       "move to dead-letter queue")
                       .get()) > 0;
}

std::vector<dlq_entry> pg_store::dlq_list(std::size_t limit) {
    ensure();
    auto r = run("dlq_list", params().int8(to_limit(limit)), "list dead-letter queue");
    std::vector<dlq_entry> out;
    for (int i = 0; i < PQntuples(r.get()); ++i) out.push_back(read_dlq(r.get(), i));
    return out;
}

std::optional<dlq_entry> pg_store::dlq_show(std::string_view id) {
    if (!is_valid_id(id)) return std::nullopt;
    ensure();
    auto r = run("dlq_show", params().text(id), "show dead-letter entry");
    if (PQntuples(r.get()) == 0) return std::nullopt;
    return read_dlq(r.get(), 0);
}

bool pg_store::dlq_replay(std::string_view id, time_point now) {
    if (!is_valid_id(id)) return false;
    ensure();
    return changed(run("dlq_replay", params().text(id).int8(to_ms(now)), "replay dead-letter entry")
                       .get()) > 0;
}

std::size_t pg_store::dlq_replay_all(time_point now) {
    ensure();
    return changed(
        run("dlq_replay_all", params().int8(to_ms(now)), "replay dead-letter queue").get());
}

bool pg_store::dlq_purge(std::string_view id) {
    if (!is_valid_id(id)) return false;
    ensure();
    return changed(run("dlq_purge", params().text(id), "purge dead-letter entry").get()) > 0;
}

std::size_t pg_store::dlq_purge_all() {
    ensure();
    return changed(run("dlq_purge_all", params(), "purge dead-letter queue").get());
}

store_counts pg_store::counts() {
    ensure();
    auto r = run("counts", params(), "count requests");
    store_counts out;
    for (int i = 0; i < PQntuples(r.get()); ++i) {
        const auto state = read_be(PQgetvalue(r.get(), i, 0), PQgetlength(r.get(), i, 0));
        const auto n = static_cast<std::size_t>(
            read_be(PQgetvalue(r.get(), i, 1), PQgetlength(r.get(), i, 1)));
        if (state == 0) out.pending = n;
        if (state == 1) out.replied = n;
        if (state == 2) out.dead = n;
    }
    return out;
}

} // namespace

bool is_pg_target(std::string_view spec) noexcept {
    if (spec.starts_with("postgresql://") || spec.starts_with("postgres://")) return true;
    // key=value: the first word is an identifier followed by '=' (spaces allowed around it).
    std::size_t i = 0;
    while (i < spec.size() && spec[i] == ' ') ++i;
    const std::size_t start = i;
    while (i < spec.size() && ((spec[i] >= 'a' && spec[i] <= 'z') ||
                               (spec[i] >= 'A' && spec[i] <= 'Z') || spec[i] == '_'))
        ++i;
    if (i == start) return false;
    while (i < spec.size() && spec[i] == ' ') ++i;
    return i < spec.size() && spec[i] == '=';
}

std::string pg_target_name(const std::string& conninfo) {
    char* err = nullptr;
    PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
    if (opts == nullptr) {
        std::string why = err != nullptr ? one_line(err) : "out of memory";
        PQfreemem(err);
        throw zmesh::error(errc::storage,
                           "titanic store: invalid PostgreSQL connection string: " + why);
    }
    std::string out;
    for (const char* key : {"host", "hostaddr", "port", "dbname", "user"}) {
        for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
            if (std::strcmp(o->keyword, key) != 0 || o->val == nullptr || *o->val == '\0') continue;
            if (!out.empty()) out += ' ';
            out += std::string(key) + '=' + o->val;
        }
    }
    PQconninfoFree(opts);
    return out.empty() ? "(libpq defaults)" : out;
}

std::unique_ptr<store> open_pg_store(const std::string& conninfo, bool create) {
    return std::make_unique<pg_store>(conninfo, create);
}

} // namespace zmesh::nodes::titanic
