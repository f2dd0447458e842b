// SPDX-License-Identifier: MPL-2.0
// sqlite_store.cpp — the SQLite engine of the Titanic store: schema, open checks, statements.
//
// One table holds a request, its state, its reply and its dead-letter reason in one row, so
// every state change is a single-row write and close() a single delete. Bodies are stored as one
// BLOB of length-prefixed frames. Every statement is prepared once when the store opens; each
// use resets it at once, so no statement keeps a read snapshot open (which would stall WAL
// checkpoints) or points at a caller's buffer after the call.
#include "sqlite_store.hpp"

#include "frame_codec.hpp"

#include <zmesh/error.hpp>

#include <sqlite3.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <system_error>
#include <utility>

namespace zmesh::nodes::titanic {
namespace {

namespace fs = std::filesystem;

/// How long a writer waits for another connection's write transaction (the node's, or a
/// `zmesh dlq` command's) before failing with errc::storage. Write transactions are a batch at
/// most, so this is orders of magnitude longer than any legitimate wait.
constexpr int busy_timeout_ms = 5000;

/// Cap on the WAL file kept after a checkpoint: a burst may grow it, and without a cap SQLite
/// keeps (and reuses) its largest size forever.
constexpr const char* journal_size_limit_sql = "PRAGMA journal_size_limit=67108864";

// Small columns first, blobs last: SQLite decodes a row's columns in order, so reading the
// metadata of a row (due(), counts(), the state checks) never walks a body's overflow pages.
// The partial indexes make due() and the dead-letter listing scan only the rows they return.
constexpr const char* schema_sql = R"(
CREATE TABLE requests (
    seq             INTEGER PRIMARY KEY,   -- arrival order, ties in due()
    id              TEXT NOT NULL UNIQUE,  -- 32 lowercase hex (TSP UUID)
    service         TEXT NOT NULL,
    created_ms      INTEGER NOT NULL,      -- unix time, ms
    ttl_ms          INTEGER,               -- NULL: no TTL
    attempts        INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    state           INTEGER NOT NULL,      -- 0 pending, 1 replied, 2 dead
    replied_ms      INTEGER,
    dead_reason     TEXT,
    dead_ms         INTEGER,
    claim_owner     TEXT,                  -- claim(): who holds it (schema 2)
    claim_until_ms  INTEGER,               -- and until when
    body            BLOB NOT NULL,         -- frames: (u32 little-endian length, bytes)...
    reply           BLOB
);
CREATE INDEX requests_due ON requests(next_attempt_ms) WHERE state = 0;
CREATE INDEX requests_dead ON requests(dead_ms) WHERE state = 2;
)";

/// Schema 1 had no claims: a store of that version gets the two columns when it is opened (one
/// transaction; ALTER TABLE appends them after the blobs, which only costs a claim's read of a
/// migrated row a walk past its body).
constexpr const char* migrate_1_to_2_sql =
    "BEGIN IMMEDIATE; ALTER TABLE requests ADD COLUMN claim_owner TEXT; "
    "ALTER TABLE requests ADD COLUMN claim_until_ms INTEGER; PRAGMA user_version=2; COMMIT;";

constexpr const char* columns = "id, service, created_ms, ttl_ms, attempts, next_attempt_ms, "
                                "state, claim_owner, claim_until_ms, body";
constexpr int body_col = 9;
constexpr int dead_reason_col = 10; // after the columns above, in the dead-letter queries
constexpr int dead_ms_col = 11;

struct db_closer {
    void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
using db_ptr = std::unique_ptr<sqlite3, db_closer>;

struct stmt_finalizer {
    void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
};
using stmt_ptr = std::unique_ptr<sqlite3_stmt, stmt_finalizer>;

std::string quoted(const fs::path& p) { return "'" + p.string() + "'"; }

[[noreturn]] void throw_storage(const fs::path& p, const std::string& what) {
    throw zmesh::error(errc::storage, "titanic store " + quoted(p) + ": " + what);
}

std::string sqlite_reason(sqlite3* db, int rc) {
    std::string r = sqlite3_errstr(rc);
    if (db != nullptr) {
        const char* msg = sqlite3_errmsg(db);
        if (msg != nullptr && r != msg) r += std::string(" (") + msg + ")";
    }
    return r;
}

/// Opens @p file; errors name @p shown (the store's path, also while @p file is a temporary).
db_ptr open_db(const fs::path& file, int flags, const fs::path& shown) {
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(file.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX, nullptr);
    db_ptr db(raw); // a handle is returned even on failure, and must be closed
    if (rc != SQLITE_OK) {
        const char* action = (flags & SQLITE_OPEN_CREATE) != 0 ? "cannot create" : "cannot open";
        throw_storage(shown, action + (": " + sqlite_reason(db.get(), rc)));
    }
    sqlite3_extended_result_codes(db.get(), 1);
    sqlite3_busy_timeout(db.get(), busy_timeout_ms);
    return db;
}

void exec(sqlite3* db, const fs::path& p, const char* sql, const char* what) {
    int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) throw_storage(p, std::string(what) + ": " + sqlite_reason(db, rc));
}

/// Runs a pragma returning one value, as text.
std::string pragma_value(sqlite3* db, const fs::path& p, const char* sql) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(db, sql, -1, &raw, nullptr);
    stmt_ptr s(raw);
    if (rc == SQLITE_OK) rc = sqlite3_step(s.get());
    if (rc != SQLITE_ROW) {
        // NOTADB / CORRUPT land here when the header looked right but the rest does not.
        throw_storage(p, std::string("cannot be read (") + sql + "): " + sqlite_reason(db, rc));
    }
    const unsigned char* text = sqlite3_column_text(s.get(), 0);
    return text == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(text));
}

/// Throws unless the database behind @p db is a Titanic store of our schema version.
void check_ours(sqlite3* db, const fs::path& p) {
    long long app = std::stoll(pragma_value(db, p, "PRAGMA application_id"));
    if (app != sqlite_application_id) {
        char hex[16];
        std::snprintf(hex, sizeof hex, "0x%08llx", app & 0xffffffffLL);
        throw_storage(p, std::string("is a SQLite database but not a zmesh titanic store "
                                     "(application_id ") +
                             hex + "); refusing to touch it");
    }
    long long version = std::stoll(pragma_value(db, p, "PRAGMA user_version"));
    if (version != sqlite_schema_version && version != 1) { // 1 is migrated on open
        throw_storage(p, "is a zmesh titanic store of schema version " + std::to_string(version) +
                             ", this build reads version " + std::to_string(sqlite_schema_version) +
                             "; refusing to touch it");
    }
}

/// PRAGMA quick_check: "ok", or its first few findings on one line.
std::string quick_check(sqlite3* db, const fs::path& p) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(3)", -1, &raw, nullptr);
    stmt_ptr s(raw);
    std::string out;
    while (rc == SQLITE_OK && (rc = sqlite3_step(s.get())) == SQLITE_ROW) {
        const unsigned char* text = sqlite3_column_text(s.get(), 0);
        if (!out.empty()) out += "; ";
        if (text != nullptr) out += reinterpret_cast<const char*>(text);
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_DONE)
        throw_storage(p, "is corrupt (quick_check: " + sqlite_reason(db, rc) + ")");
    for (char& c : out) {
        if (c == '\n') c = ' ';
    }
    return out;
}

/// Validates an existing, non-empty file without writing to it: the SQLite magic, then on a
/// read-only connection the application id, the schema version and a quick_check. Read-only
/// matters: a read-write connection would roll back a hot journal or checkpoint a WAL into
/// the file on close, modifying a file that may not be ours. quick_check reads every page, which
/// costs startup time proportional to the store, and is the price of refusing a corrupt store at
/// start instead of failing on some request later.
void validate_existing(const fs::path& p) {
    static constexpr char magic[] = "SQLite format 3"; // 16 bytes with its NUL, as on disk
    std::array<char, sizeof magic> header{};
    std::ifstream in(p, std::ios::binary);
    if (!in) throw_storage(p, "cannot be read: " + std::string(std::strerror(errno)));
    in.read(header.data(), static_cast<std::streamsize>(header.size()));
    if (in.gcount() != static_cast<std::streamsize>(header.size()) ||
        std::memcmp(header.data(), magic, sizeof magic) != 0) {
        throw_storage(p, "is not a SQLite database (and so not a titanic store); refusing to "
                         "touch it");
    }
    in.close();

    db_ptr db = open_db(p, SQLITE_OPEN_READONLY, p);
    sqlite3_db_config(db.get(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
    check_ours(db.get(), p);
    std::string check = quick_check(db.get(), p);
    if (check != "ok") throw_storage(p, "is corrupt (quick_check: " + check + ")");
}

void fsync_dir(const fs::path& dir) {
    int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return; // best effort: the store itself is already fsync'ed
    ::fsync(fd);
    ::close(fd);
}

void remove_quietly(const fs::path& p) {
    std::error_code ec;
    fs::remove(p, ec);
}

/// Creates a new store at @p p (absent, or an empty file). The schema is built in a temporary
/// file and linked into place only when complete: a crash mid-way leaves a stray temporary file,
/// never a half-made store that the next start would have to refuse. link() rather than
/// rename() so that a store created meanwhile by another process is never replaced; an empty
/// file holds nothing to lose and is replaced.
void create_store(const fs::path& p, bool replace_empty) {
    fs::path tmp = p;
    tmp += ".init-" + std::to_string(::getpid());
    for (const char* suffix : {"", "-journal", "-wal", "-shm"})
        remove_quietly(tmp.string() + suffix);
    try {
        db_ptr db = open_db(tmp, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, p);
        exec(db.get(), p, "PRAGMA synchronous=FULL", "cannot create: set synchronous");
        const std::string id = std::to_string(sqlite_application_id);
        const std::string version = std::to_string(sqlite_schema_version);
        const std::string sql = "BEGIN IMMEDIATE; PRAGMA application_id=" + id +
                                "; PRAGMA user_version=" + version + ";" + schema_sql + "COMMIT;";
        exec(db.get(), p, sql.c_str(), "cannot create the schema");
        // WAL is a persistent property of the file; set last, then closing checkpoints the WAL
        // into the file (fsync'ed: synchronous=FULL) and removes it, so the single file linked
        // below is complete and durable.
        if (pragma_value(db.get(), p, "PRAGMA journal_mode=WAL") != "wal") {
            throw_storage(p, "cannot create: cannot switch to WAL mode");
        }
    } catch (...) {
        for (const char* suffix : {"", "-journal", "-wal", "-shm"})
            remove_quietly(tmp.string() + suffix);
        throw;
    }
    int rc = replace_empty ? std::rename(tmp.c_str(), p.c_str()) : ::link(tmp.c_str(), p.c_str());
    int err = errno;
    for (const char* suffix : {"", "-wal", "-shm"}) remove_quietly(tmp.string() + suffix);
    if (rc != 0 && !(err == EEXIST && !replace_empty)) { // EEXIST: another process won the race
        throw_storage(p, "cannot create: " + std::string(std::strerror(err)));
    }
    fsync_dir(p.parent_path());
}

constexpr std::int64_t to_ms(time_point t) noexcept { return t.time_since_epoch().count(); }
constexpr time_point from_ms(std::int64_t ms) noexcept {
    return time_point(std::chrono::milliseconds(ms));
}

std::int64_t to_limit(std::size_t n) noexcept {
    constexpr auto max = static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max());
    return static_cast<std::int64_t>(n < max ? n : max);
}

using detail::decode_frames;
using detail::encode_frames;

/// Resets a statement and clears its bindings when a call is done with it, error or not.
class statement_use {
  public:
    explicit statement_use(sqlite3_stmt* s) noexcept : s_(s) {}
    ~statement_use() {
        sqlite3_reset(s_);
        sqlite3_clear_bindings(s_);
    }
    statement_use(const statement_use&) = delete;
    statement_use& operator=(const statement_use&) = delete;
    sqlite3_stmt* get() const noexcept { return s_; }

  private:
    sqlite3_stmt* s_;
};

class sqlite_store final : public store {
  public:
    sqlite_store(fs::path path, sync_mode mode);

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

    [[noreturn]] void fail(const std::string& what, int rc) const {
        throw_storage(path_, what + ": " + sqlite_reason(db_.get(), rc));
    }
    stmt_ptr prepare(const std::string& sql);
    /// Steps @p s; returns SQLITE_ROW or SQLITE_DONE, throws errc::storage on anything else.
    int step(sqlite3_stmt* s, const char* what);
    /// Steps a statement that returns no row, to completion.
    void run(sqlite3_stmt* s, const char* what);
    /// Steps a bound write statement to completion; returns the rows it changed.
    std::size_t write(sqlite3_stmt* s, const char* what);
    void bind_text(sqlite3_stmt* s, int i, std::string_view v);
    void bind_blob(sqlite3_stmt* s, int i, const std::string& v);
    void bind_int(sqlite3_stmt* s, int i, std::int64_t v);
    request_record read_request(sqlite3_stmt* s) const;
    dlq_entry read_dlq(sqlite3_stmt* s) const;
    std::size_t changes() const noexcept {
        return static_cast<std::size_t>(sqlite3_changes64(db_.get()));
    }

    fs::path path_;
    db_ptr db_;
    std::string scratch_; // body encoding buffer, kept between calls to avoid reallocating
    // Statements are declared after db_ so they are finalized before it closes.
    stmt_ptr begin_, commit_, rollback_;
    stmt_ptr insert_, store_reply_, reply_, find_, close_, due_, failure_, to_dlq_;
    stmt_ptr claim_, renew_, release_;
    stmt_ptr dlq_list_, dlq_show_, dlq_replay_, dlq_replay_all_, dlq_purge_, dlq_purge_all_;
    stmt_ptr counts_;
};

/// BEGIN IMMEDIATE … COMMIT, rolled back unless committed. IMMEDIATE takes the write lock at
/// BEGIN, where the busy timeout applies; a deferred transaction that reads and then writes can
/// instead fail at once with SQLITE_BUSY_SNAPSHOT when another process wrote in between.
class sqlite_store::transaction {
  public:
    explicit transaction(sqlite_store& s) : s_(s) { s_.run(s_.begin_.get(), "begin transaction"); }
    ~transaction() {
        // SQLite rolls back by itself after some errors (SQLITE_FULL, I/O errors); only an
        // open transaction may be rolled back.
        if (!committed_ && sqlite3_get_autocommit(s_.db_.get()) == 0) {
            sqlite3_step(s_.rollback_.get());
            sqlite3_reset(s_.rollback_.get());
        }
    }
    transaction(const transaction&) = delete;
    transaction& operator=(const transaction&) = delete;

    /// Returns once the commit is durable (per sync_mode). If it throws, nothing was committed
    /// as far as the caller may assume. (An fsync that fails after the log was written may
    /// still leave the batch on disk; the caller reports a failure and the client retries,
    /// which at-least-once delivery allows: a false failure is harmless, a false
    /// acknowledgement is not.)
    void commit() {
        s_.run(s_.commit_.get(), "commit");
        committed_ = true;
    }

  private:
    sqlite_store& s_;
    bool committed_ = false;
};

sqlite_store::sqlite_store(fs::path path, sync_mode mode) : path_(std::move(path)) {
    std::error_code ec;
    auto st = fs::status(path_, ec);
    if (ec && ec != std::errc::no_such_file_or_directory) {
        throw_storage(path_, "cannot be read: " + ec.message());
    }
    if (!fs::exists(st)) {
        create_store(path_, false);
    } else if (!fs::is_regular_file(st)) {
        throw_storage(path_, "is not a regular file");
    } else if (fs::file_size(path_, ec) == 0 && !ec) {
        create_store(path_, true);
    }
    // Validate even a store just created: another process may have created it first.
    validate_existing(path_);

    db_ = open_db(path_, SQLITE_OPEN_READWRITE, path_);
    // Re-checked on the connection we keep, in case the file was swapped since validation.
    check_ours(db_.get(), path_);
    if (pragma_value(db_.get(), path_, "PRAGMA user_version") == "1") {
        int rc = sqlite3_exec(db_.get(), migrate_1_to_2_sql, nullptr, nullptr, nullptr);
        if (rc != SQLITE_OK) {
            const std::string why = sqlite_reason(db_.get(), rc);
            sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
            // Another process may have migrated it first (duplicate column): fine if so.
            if (pragma_value(db_.get(), path_, "PRAGMA user_version") != "2")
                throw_storage(path_, "cannot upgrade schema version 1 to 2: " + why);
        }
    }
    if (pragma_value(db_.get(), path_, "PRAGMA journal_mode=WAL") != "wal") {
        throw_storage(path_, "cannot switch to WAL mode");
    }
    // FULL: the WAL is fsync'ed at every commit, so a returned commit survives power loss.
    // NORMAL: fsync only at checkpoints; survives a killed process, not a power loss.
    exec(db_.get(), path_,
         mode == sync_mode::full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
         "set synchronous");
    exec(db_.get(), path_, journal_size_limit_sql, "set journal_size_limit");

    const std::string cols = columns;
    begin_ = prepare("BEGIN IMMEDIATE");
    commit_ = prepare("COMMIT");
    rollback_ = prepare("ROLLBACK");
    insert_ = prepare("INSERT INTO requests (id, service, created_ms, ttl_ms, attempts, "
                      "next_attempt_ms, state, body) VALUES (?1, ?2, ?3, ?4, 0, ?3, 0, ?5)");
    store_reply_ = prepare("UPDATE requests SET state = 1, reply = ?2, replied_ms = ?3, "
                           "dead_reason = NULL, dead_ms = NULL, claim_owner = NULL, "
                           "claim_until_ms = NULL WHERE id = ?1 AND state <> 1");
    reply_ = prepare("SELECT state, reply FROM requests WHERE id = ?1");
    find_ = prepare("SELECT " + cols + " FROM requests WHERE id = ?1");
    close_ = prepare("DELETE FROM requests WHERE id = ?1");
    due_ = prepare("SELECT " + cols +
                   " FROM requests WHERE state = 0 AND next_attempt_ms <= ?1 "
                   "ORDER BY next_attempt_ms, seq LIMIT ?2");
    // SQLite serialises writers, so one UPDATE ... RETURNING is the whole claim: no other
    // connection can take a row between the SELECT and the UPDATE. RETURNING comes in no
    // particular order: seq is returned too, to sort by.
    claim_ = prepare("UPDATE requests SET claim_owner = ?1, claim_until_ms = ?3 WHERE seq IN "
                     "(SELECT seq FROM requests WHERE state = 0 AND next_attempt_ms <= ?2 AND "
                     "(claim_owner IS NULL OR claim_until_ms <= ?2 OR claim_owner = ?1) "
                     "ORDER BY next_attempt_ms, seq LIMIT ?4) RETURNING " +
                     cols + ", seq");
    renew_ = prepare("UPDATE requests SET claim_until_ms = ?3 WHERE id = ?2 AND claim_owner = ?1 "
                     "AND state = 0");
    release_ = prepare("UPDATE requests SET claim_owner = NULL, claim_until_ms = NULL "
                       "WHERE claim_owner = ?1");
    failure_ = prepare("UPDATE requests SET attempts = attempts + 1, next_attempt_ms = ?2 "
                       "WHERE id = ?1 AND state = 0 RETURNING attempts");
    to_dlq_ = prepare("UPDATE requests SET state = 2, dead_reason = ?2, dead_ms = ?3 "
                      "WHERE id = ?1 AND state = 0");
    dlq_list_ = prepare("SELECT " + cols +
                        ", dead_reason, dead_ms FROM requests "
                        "WHERE state = 2 ORDER BY dead_ms, seq LIMIT ?1");
    dlq_show_ = prepare("SELECT " + cols +
                        ", dead_reason, dead_ms FROM requests "
                        "WHERE id = ?1 AND state = 2");
    const std::string replay = "UPDATE requests SET state = 0, attempts = 0, next_attempt_ms = ?2, "
                               "ttl_ms = NULL, dead_reason = NULL, dead_ms = NULL, "
                               "claim_owner = NULL, claim_until_ms = NULL WHERE state = 2";
    dlq_replay_ = prepare(replay + " AND id = ?1");
    dlq_replay_all_ = prepare(replay);
    dlq_purge_ = prepare("DELETE FROM requests WHERE id = ?1 AND state = 2");
    dlq_purge_all_ = prepare("DELETE FROM requests WHERE state = 2");
    counts_ = prepare("SELECT state, count(*) FROM requests GROUP BY state");
}

stmt_ptr sqlite_store::prepare(const std::string& sql) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v3(db_.get(), sql.c_str(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    stmt_ptr s(raw);
    if (rc != SQLITE_OK) fail("cannot prepare \"" + sql + "\"", rc);
    return s;
}

int sqlite_store::step(sqlite3_stmt* s, const char* what) {
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) fail(what, rc);
    return rc;
}

void sqlite_store::run(sqlite3_stmt* s, const char* what) {
    statement_use use(s);
    while (step(s, what) == SQLITE_ROW) {
    }
}

std::size_t sqlite_store::write(sqlite3_stmt* s, const char* what) {
    while (step(s, what) == SQLITE_ROW) {
    }
    return changes();
}

void sqlite_store::bind_text(sqlite3_stmt* s, int i, std::string_view v) {
    // A null pointer would bind SQL NULL; an empty string must stay an empty string.
    int rc =
        sqlite3_bind_text64(s, i, v.empty() ? "" : v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8);
    if (rc != SQLITE_OK) fail("bind", rc);
}

void sqlite_store::bind_blob(sqlite3_stmt* s, int i, const std::string& v) {
    int rc = sqlite3_bind_blob64(s, i, v.empty() ? "" : v.data(), v.size(), SQLITE_STATIC);
    if (rc != SQLITE_OK) fail("bind", rc); // SQLITE_TOOBIG: larger than SQLite's blob limit
}

void sqlite_store::bind_int(sqlite3_stmt* s, int i, std::int64_t v) {
    int rc = sqlite3_bind_int64(s, i, v);
    if (rc != SQLITE_OK) fail("bind", rc);
}

request_record sqlite_store::read_request(sqlite3_stmt* s) const {
    auto text = [s](int col) {
        const unsigned char* t = sqlite3_column_text(s, col);
        return t == nullptr ? std::string()
                            : std::string(reinterpret_cast<const char*>(t),
                                          static_cast<std::size_t>(sqlite3_column_bytes(s, col)));
    };
    request_record r;
    r.id = text(0);
    r.service = text(1);
    r.created = from_ms(sqlite3_column_int64(s, 2));
    if (sqlite3_column_type(s, 3) != SQLITE_NULL) {
        r.ttl = std::chrono::milliseconds(sqlite3_column_int64(s, 3));
    }
    std::int64_t attempts = sqlite3_column_int64(s, 4);
    r.attempts = attempts < 0 ? 0
                 : attempts > std::numeric_limits<std::uint32_t>::max()
                     ? std::numeric_limits<std::uint32_t>::max()
                     : static_cast<std::uint32_t>(attempts);
    r.next_attempt = from_ms(sqlite3_column_int64(s, 5));
    std::int64_t state = sqlite3_column_int64(s, 6);
    if (state < 0 || state > 2) throw_storage(path_, "corrupt state in request " + r.id);
    r.state = static_cast<request_state>(state);
    if (sqlite3_column_type(s, 7) != SQLITE_NULL) {
        r.claimed_by = text(7);
        r.claimed_until = from_ms(sqlite3_column_int64(s, 8));
    }
    const void* blob = sqlite3_column_blob(s, body_col); // blob before bytes, as SQLite requires
    auto body = decode_frames(blob, static_cast<std::size_t>(sqlite3_column_bytes(s, body_col)));
    if (!body) throw_storage(path_, "corrupt body in request " + r.id);
    r.body = std::move(*body);
    return r;
}

dlq_entry sqlite_store::read_dlq(sqlite3_stmt* s) const {
    dlq_entry e;
    e.request = read_request(s);
    const unsigned char* t = sqlite3_column_text(s, dead_reason_col);
    if (t != nullptr) e.reason = reinterpret_cast<const char*>(t);
    e.moved = from_ms(sqlite3_column_int64(s, dead_ms_col));
    return e;
}

void sqlite_store::add_requests(std::span<const new_request> batch) {
    for (const auto& r : batch) {
        if (!is_valid_id(r.id)) {
            throw zmesh::error(errc::invalid_argument,
                               "titanic store: request id is not 32 lowercase hex characters");
        }
    }
    if (batch.empty()) return;
    transaction tx(*this);
    for (const auto& r : batch) {
        statement_use use(insert_.get());
        encode_frames(r.body, scratch_);
        bind_text(insert_.get(), 1, r.id);
        bind_text(insert_.get(), 2, r.service);
        bind_int(insert_.get(), 3, to_ms(r.created));
        if (r.ttl) bind_int(insert_.get(), 4, r.ttl->count());
        bind_blob(insert_.get(), 5, scratch_);
        int rc = sqlite3_step(insert_.get());
        if ((rc & 0xff) == SQLITE_CONSTRAINT) {
            throw zmesh::error(errc::invalid_argument,
                               "titanic store: request id " + r.id + " is already stored");
        }
        if (rc != SQLITE_DONE) fail("store requests", rc);
    }
    tx.commit();
}

std::size_t sqlite_store::store_replies(std::span<const reply_record> batch, time_point now) {
    if (batch.empty()) return 0;
    std::size_t stored = 0;
    transaction tx(*this);
    for (const auto& r : batch) {
        if (!is_valid_id(r.id)) continue;
        statement_use use(store_reply_.get());
        encode_frames(r.body, scratch_);
        bind_text(store_reply_.get(), 1, r.id);
        bind_blob(store_reply_.get(), 2, scratch_);
        bind_int(store_reply_.get(), 3, to_ms(now));
        stored += write(store_reply_.get(), "store replies");
    }
    tx.commit();
    return stored;
}

reply_status sqlite_store::reply(std::string_view id) {
    reply_status out;
    if (!is_valid_id(id)) return out;
    statement_use use(reply_.get());
    bind_text(reply_.get(), 1, id);
    if (step(reply_.get(), "read reply") == SQLITE_DONE) return out;
    switch (sqlite3_column_int64(reply_.get(), 0)) {
    case 0:
        out.state = reply_state::pending;
        break;
    case 1: {
        const void* blob = sqlite3_column_blob(reply_.get(), 1);
        auto body =
            decode_frames(blob, static_cast<std::size_t>(sqlite3_column_bytes(reply_.get(), 1)));
        if (!body) throw_storage(path_, "corrupt reply for request " + std::string(id));
        out.state = reply_state::replied;
        out.body = std::move(*body);
        break;
    }
    case 2:
        out.state = reply_state::dead;
        break;
    default:
        throw_storage(path_, "corrupt state in request " + std::string(id));
    }
    return out;
}

std::optional<request_record> sqlite_store::find(std::string_view id) {
    if (!is_valid_id(id)) return std::nullopt;
    statement_use use(find_.get());
    bind_text(find_.get(), 1, id);
    if (step(find_.get(), "find request") == SQLITE_DONE) return std::nullopt;
    return read_request(find_.get());
}

bool sqlite_store::close(std::string_view id) {
    if (!is_valid_id(id)) return false;
    statement_use use(close_.get());
    bind_text(close_.get(), 1, id);
    return write(close_.get(), "close request") > 0;
}

std::vector<request_record> sqlite_store::due(time_point now, std::size_t limit) {
    std::vector<request_record> out;
    statement_use use(due_.get());
    bind_int(due_.get(), 1, to_ms(now));
    bind_int(due_.get(), 2, to_limit(limit));
    while (step(due_.get(), "list due requests") == SQLITE_ROW) {
        out.push_back(read_request(due_.get()));
    }
    return out;
}

std::vector<request_record> sqlite_store::claim(std::string_view owner, time_point now,
                                                std::chrono::milliseconds lease,
                                                std::size_t limit) {
    if (owner.empty())
        throw zmesh::error(errc::invalid_argument, "titanic store: claim needs an owner");
    std::vector<std::pair<std::int64_t, request_record>> got;
    {
        statement_use use(claim_.get());
        bind_text(claim_.get(), 1, owner);
        bind_int(claim_.get(), 2, to_ms(now));
        bind_int(claim_.get(), 3, to_ms(now + lease));
        bind_int(claim_.get(), 4, to_limit(limit));
        // Stepped to SQLITE_DONE: with RETURNING, the autocommit completes only then.
        while (step(claim_.get(), "claim due requests") == SQLITE_ROW) {
            auto seq = sqlite3_column_int64(claim_.get(), body_col + 1);
            got.emplace_back(seq, read_request(claim_.get()));
        }
    }
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

std::size_t sqlite_store::renew(std::string_view owner, std::span<const std::string> ids,
                                time_point until) {
    if (ids.empty() || owner.empty()) return 0;
    std::size_t renewed = 0;
    transaction tx(*this);
    for (const auto& id : ids) {
        statement_use use(renew_.get());
        bind_text(renew_.get(), 1, owner);
        bind_text(renew_.get(), 2, id);
        bind_int(renew_.get(), 3, to_ms(until));
        renewed += write(renew_.get(), "renew claims");
    }
    tx.commit();
    return renewed;
}

std::size_t sqlite_store::release(std::string_view owner) {
    if (owner.empty()) return 0;
    statement_use use(release_.get());
    bind_text(release_.get(), 1, owner);
    return write(release_.get(), "release claims");
}

std::optional<std::uint32_t> sqlite_store::record_failure(std::string_view id,
                                                          time_point next_attempt) {
    if (!is_valid_id(id)) return std::nullopt;
    statement_use use(failure_.get());
    bind_text(failure_.get(), 1, id);
    bind_int(failure_.get(), 2, to_ms(next_attempt));
    std::optional<std::uint32_t> attempts;
    // Stepped to SQLITE_DONE: with RETURNING, the autocommit (and its fsync) completes only then.
    while (step(failure_.get(), "record failure") == SQLITE_ROW) {
        attempts = static_cast<std::uint32_t>(sqlite3_column_int64(failure_.get(), 0));
    }
    return attempts;
}

bool sqlite_store::move_to_dlq(std::string_view id, std::string_view reason, time_point now) {
    if (!is_valid_id(id)) return false;
    statement_use use(to_dlq_.get());
    bind_text(to_dlq_.get(), 1, id);
    bind_text(to_dlq_.get(), 2, reason);
    bind_int(to_dlq_.get(), 3, to_ms(now));
    return write(to_dlq_.get(), "move to dead-letter queue") > 0;
}

std::vector<dlq_entry> sqlite_store::dlq_list(std::size_t limit) {
    std::vector<dlq_entry> out;
    statement_use use(dlq_list_.get());
    bind_int(dlq_list_.get(), 1, to_limit(limit));
    while (step(dlq_list_.get(), "list dead-letter queue") == SQLITE_ROW) {
        out.push_back(read_dlq(dlq_list_.get()));
    }
    return out;
}

std::optional<dlq_entry> sqlite_store::dlq_show(std::string_view id) {
    if (!is_valid_id(id)) return std::nullopt;
    statement_use use(dlq_show_.get());
    bind_text(dlq_show_.get(), 1, id);
    if (step(dlq_show_.get(), "show dead-letter entry") == SQLITE_DONE) return std::nullopt;
    return read_dlq(dlq_show_.get());
}

bool sqlite_store::dlq_replay(std::string_view id, time_point now) {
    if (!is_valid_id(id)) return false;
    statement_use use(dlq_replay_.get());
    bind_text(dlq_replay_.get(), 1, id);
    bind_int(dlq_replay_.get(), 2, to_ms(now));
    return write(dlq_replay_.get(), "replay dead-letter entry") > 0;
}

std::size_t sqlite_store::dlq_replay_all(time_point now) {
    statement_use use(dlq_replay_all_.get());
    bind_int(dlq_replay_all_.get(), 2, to_ms(now));
    return write(dlq_replay_all_.get(), "replay dead-letter queue");
}

bool sqlite_store::dlq_purge(std::string_view id) {
    if (!is_valid_id(id)) return false;
    statement_use use(dlq_purge_.get());
    bind_text(dlq_purge_.get(), 1, id);
    return write(dlq_purge_.get(), "purge dead-letter entry") > 0;
}

std::size_t sqlite_store::dlq_purge_all() {
    statement_use use(dlq_purge_all_.get());
    return write(dlq_purge_all_.get(), "purge dead-letter queue");
}

store_counts sqlite_store::counts() {
    store_counts out;
    statement_use use(counts_.get());
    while (step(counts_.get(), "count requests") == SQLITE_ROW) {
        auto n = static_cast<std::size_t>(sqlite3_column_int64(counts_.get(), 1));
        switch (sqlite3_column_int64(counts_.get(), 0)) {
        case 0:
            out.pending = n;
            break;
        case 1:
            out.replied = n;
            break;
        case 2:
            out.dead = n;
            break;
        default:
            break;
        }
    }
    return out;
}

} // namespace

std::unique_ptr<store> open_sqlite_store(const std::filesystem::path& path, sync_mode mode) {
    return std::make_unique<sqlite_store>(path, mode);
}

} // namespace zmesh::nodes::titanic
