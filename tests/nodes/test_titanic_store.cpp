// SPDX-License-Identifier: MPL-2.0
// test_titanic_store.cpp — the Titanic node's durable store (nodes/titanic/store.hpp) on its
// SQLite engine: round trips, the dispatcher's work list, the dead-letter queue, durability
// across a SIGKILL of the writing process, refusal of files that are not ours (left
// byte-for-byte unchanged), a write that hits a file size limit, and a second process working on
// the store while it is open.
//
// The store is internal to zmesh::nodes (the node and `zmesh dlq` are its users), so this test
// includes its header from the source tree.
#include "titanic/sqlite_store.hpp"
#include "titanic_store_checks.hpp"

#include <zmesh/error.hpp>

#include "support/support.hpp"

#include <doctest/doctest.h>

#include <sqlite3.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace titanic = zmesh::nodes::titanic;
using titanic::frames;
using titanic::new_request;
using titanic::reply_state;
using titanic::request_state;
using titanic::sync_mode;

using namespace titanic_checks;

namespace {

/// SQLite stores for the shared checks: one file per name in a temporary directory.
class sqlite_engine final : public store_engine {
  public:
    std::unique_ptr<titanic::store> open(const std::string& name) override {
        return titanic::open_sqlite_store(dir_.path() / (name + ".db"));
    }

  private:
    support::temp_dir dir_;
};

std::string file_bytes(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::filesystem::path& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// Runs @p sql on @p p through the plain SQLite API (to make databases that are not ours).
void raw_sql(const std::filesystem::path& p, const char* sql) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(p.c_str(), &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
}

/// Opens @p p expecting errc::storage; checks the message names the path and the file is
/// untouched. Returns the message.
std::string expect_refused(const std::filesystem::path& p) {
    const std::string before = file_bytes(p);
    std::string what;
    try {
        titanic::open_sqlite_store(p, sync_mode::full);
        FAIL("opened " << p);
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::storage);
        what = e.what();
        CHECK(what.find(p.string()) != std::string::npos);
    }
    CHECK(file_bytes(p) == before);
    return what;
}

/// A forked child, SIGKILLed and reaped when the handle goes, so a failing test leaves none.
class forked {
  public:
    explicit forked(const std::function<int()>& body) : pid_(::fork()) {
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            int code = 99;
            try {
                code = body();
            } catch (...) {
                code = 98;
            }
            ::_exit(code); // no atexit handlers, no doctest reporting from the child
        }
    }
    ~forked() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            wait();
        }
    }
    forked(const forked&) = delete;
    forked& operator=(const forked&) = delete;

    /// Reaps the child; returns its raw wait status.
    int wait() {
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        pid_ = -1;
        return status;
    }
    /// Reaps the child if it has exited; returns its raw wait status then.
    std::optional<int> try_wait() {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) != pid_) return std::nullopt;
        pid_ = -1;
        return status;
    }
    [[nodiscard]] pid_t pid() const noexcept { return pid_; }

  private:
    pid_t pid_;
};

bool write_all(int fd, const std::string& s) {
    std::size_t at = 0;
    while (at < s.size()) {
        ssize_t n = ::write(fd, s.data() + at, s.size() - at);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        at += static_cast<std::size_t>(n);
    }
    return true;
}

/// Reads what is available on @p fd into @p out until @p deadline or EOF; returns false on EOF.
bool drain(int fd, std::string& out, std::chrono::steady_clock::time_point deadline) {
    char buf[4096];
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() < 0) return true;
        pollfd p{fd, POLLIN, 0};
        int r = ::poll(&p, 1, static_cast<int>(left.count()));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return true;
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        out.append(buf, static_cast<std::size_t>(n));
    }
}

} // namespace

TEST_SUITE("nodes.titanic.store") {

TEST_CASE("requests with multi-frame binary bodies come back exactly as stored") {
    sqlite_engine e;
    check_round_trip(e);
}

TEST_CASE("a stored reply is returned frame for frame and the first reply stored wins") {
    sqlite_engine e;
    check_first_reply_wins(e);
}

TEST_CASE("close forgets a request and its reply and is idempotent") {
    sqlite_engine e;
    check_close(e);
}

TEST_CASE("malformed ids are unknown to lookups and refused when adding") {
    sqlite_engine e;
    check_malformed_ids(e);
}

TEST_CASE("a batch with an id already stored is refused as a whole") {
    sqlite_engine e;
    check_duplicate_batch(e);
}

TEST_CASE("due returns pending requests whose next attempt has come, earliest first") {
    sqlite_engine e;
    check_due_order(e);
}

TEST_CASE("a failed dispatch counts an attempt and postpones the request") {
    sqlite_engine e;
    check_failure(e);
}

TEST_CASE("the dead-letter queue lists, shows, replays and purges") {
    sqlite_engine e;
    check_dlq(e);
}

TEST_CASE("everything survives closing and reopening the store") {
    sqlite_engine e;
    check_reopen(e);
}

TEST_CASE("every batch the writer reported committed survives it being killed with SIGKILL") {
    std::mt19937 rng(std::random_device{}());
    for (int round = 0; round < 4; ++round) {
        support::temp_dir dir;
        const auto path = dir.path() / "crash.db";
        int fds[2];
        REQUIRE(::pipe(fds) == 0);
        std::string reported;
        const auto kill_after =
            std::chrono::milliseconds(std::uniform_int_distribution<int>(50, 300)(rng));
        {
            // Forked before this process opens the store: SQLite connections must not cross
            // a fork.
            forked child([&] {
                ::close(fds[0]);
                auto st = titanic::open_sqlite_store(path, sync_mode::full);
                for (unsigned long long n = 0;;) {
                    std::vector<new_request> batch;
                    std::string ids;
                    for (int i = 0; i < 16; ++i, ++n) {
                        batch.push_back(make_request(n, now()));
                        ids += batch.back().id;
                    }
                    st->add_requests(batch);
                    // Only after the commit returned: these ids are acknowledged.
                    if (!write_all(fds[1], ids)) return 3;
                }
            });
            ::close(fds[1]);
            // The kill is timed from the first acknowledged batch, not from the fork: creating
            // the store costs several fsyncs, which on a loaded machine or under TSan took longer
            // than the shortest kill_after, so such a round killed a writer that had
            // acknowledged nothing and failed.
            const auto first_by = std::chrono::steady_clock::now() + 10s;
            bool writing = true;
            while (writing && reported.empty() && std::chrono::steady_clock::now() < first_by)
                writing = drain(fds[0], reported, std::chrono::steady_clock::now() + 10ms);
            CHECK_MESSAGE(!reported.empty(), "the writer acknowledged nothing within 10 s");
            const auto kill_at = std::chrono::steady_clock::now() + kill_after;
            CHECK_MESSAGE(drain(fds[0], reported, kill_at), "the writer stopped by itself");
            ::kill(child.pid(), SIGKILL);
            drain(fds[0], reported, std::chrono::steady_clock::now() + 5s); // until EOF
            const int status = child.wait();
            CHECK(WIFSIGNALED(status));
            ::close(fds[0]);
        }
        const std::size_t acknowledged = reported.size() / 32; // a torn last id was committed too
        CHECK(acknowledged > 0);
        auto st = titanic::open_sqlite_store(path, sync_mode::full);
        std::size_t missing = 0;
        for (std::size_t i = 0; i < acknowledged; ++i) {
            auto r = st->find(reported.substr(i * 32, 32));
            if (!r) {
                ++missing;
            } else if (i % 97 == 0) {
                CHECK(r->body == binary_body(i));
            }
        }
        CHECK(missing == 0);
        CHECK(st->counts().pending >= acknowledged);
        MESSAGE("round " << round << ": killed after " << kill_after.count() << " ms, "
                         << acknowledged << " acknowledged, " << st->counts().pending
                         << " stored");
    }
}

TEST_CASE("a file that is not SQLite is refused and left unchanged") {
    support::temp_dir dir;
    const auto path = dir.path() / "notes.txt";
    std::string text = "not a database\n";
    for (int i = 0; i < 200; ++i) text += "line " + std::to_string(i) + "\n";
    write_file(path, text);
    auto what = expect_refused(path);
    CHECK(what.find("not a SQLite database") != std::string::npos);

    const auto tiny = dir.path() / "tiny";
    write_file(tiny, "x");
    expect_refused(tiny);
    CHECK_FALSE(std::filesystem::exists(dir.path() / "tiny-wal"));
}

TEST_CASE("a SQLite database of another application is refused and left unchanged") {
    support::temp_dir dir;
    const auto path = dir.path() / "other.db";
    raw_sql(path, "PRAGMA application_id=1234; CREATE TABLE requests(x); "
                  "INSERT INTO requests VALUES (1)");
    auto what = expect_refused(path);
    CHECK(what.find("not a zmesh titanic store") != std::string::npos);

    const auto plain = dir.path() / "plain.db"; // application_id 0, the SQLite default
    raw_sql(plain, "CREATE TABLE t(x)");
    expect_refused(plain);
}

TEST_CASE("a store of another schema version is refused and left unchanged") {
    support::temp_dir dir;
    const auto path = dir.path() / "t.db";
    titanic::open_sqlite_store(path);
    raw_sql(path, "PRAGMA user_version=99");
    auto what = expect_refused(path);
    CHECK(what.find("schema version 99") != std::string::npos);
}

TEST_CASE("a store of schema version 1 gets its claim columns when opened and keeps its requests") {
    support::temp_dir dir;
    const auto path = dir.path() / "t.db";
    // The schema of version 1, as a build before claims made it.
    raw_sql(path, "PRAGMA application_id=1515017289; PRAGMA user_version=1; "
                  "CREATE TABLE requests (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, "
                  "service TEXT NOT NULL, created_ms INTEGER NOT NULL, ttl_ms INTEGER, "
                  "attempts INTEGER NOT NULL, next_attempt_ms INTEGER NOT NULL, "
                  "state INTEGER NOT NULL, replied_ms INTEGER, dead_reason TEXT, dead_ms INTEGER, "
                  "body BLOB NOT NULL, reply BLOB); "
                  "INSERT INTO requests VALUES (1, '0000000000000000000000000000000a', 'echo', 5, "
                  "NULL, 0, 5, 0, NULL, NULL, NULL, x'0100000041', NULL)");
    auto st = titanic::open_sqlite_store(path);
    auto r = st->find(make_id(10));
    REQUIRE(r);
    CHECK(r->body == frames{"A"});
    CHECK(r->claimed_by.empty());
    CHECK(titanic_checks::ids_of(st->claim("n", now(), 1s, 10)) ==
          std::vector<std::string>{make_id(10)});
    CHECK(st->find(make_id(10))->claimed_by == "n");
    st.reset();
    CHECK(titanic::open_sqlite_store(path)->find(make_id(10))->claimed_by == "n");
}

TEST_CASE("claims hold a request for one owner until its lease ends or it is released") {
    sqlite_engine e;
    check_claims(e);
}

TEST_CASE("owners claiming at once through their own connections never share a request") {
    sqlite_engine e;
    check_concurrent_claims(e);
}

TEST_CASE("a corrupt store is refused and left unchanged") {
    support::temp_dir dir;
    const auto path = dir.path() / "t.db";
    {
        auto st = titanic::open_sqlite_store(path);
        std::vector<new_request> batch;
        for (unsigned long long n = 0; n < 200; ++n) batch.push_back(make_request(n, now()));
        st->add_requests(batch);
    } // the last connection closing checkpoints everything into the file
    std::string bytes = file_bytes(path);
    REQUIRE(bytes.size() > 3 * 4096);
    for (std::size_t i = 4096; i < 2 * 4096; ++i) bytes[i] = '\xab'; // page 2: the table root
    write_file(path, bytes);
    expect_refused(path);
}

TEST_CASE("a store is created at a new path or over an empty file, not in a missing directory") {
    support::temp_dir dir;
    write_file(dir.path() / "empty.db", "");
    titanic::open_sqlite_store(dir.path() / "empty.db")->add_requests(
        std::vector<new_request>{make_request(1, now())});
    CHECK(titanic::open_sqlite_store(dir.path() / "empty.db")->find(make_id(1)));

    const auto missing = dir.path() / "no" / "such" / "dir" / "t.db";
    try {
        titanic::open_sqlite_store(missing);
        FAIL("created a store in a missing directory");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::storage);
        CHECK(std::string(e.what()).find(missing.string()) != std::string::npos);
    }
    // Nothing but the stores: no temporary file left behind.
    std::size_t files = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
        (void)e;
        ++files;
    }
    CHECK(files == 1); // empty.db; the missing directory was not created either

    if (::geteuid() != 0) { // root writes anywhere: a read-only directory proves nothing
        const auto ro = dir.path() / "ro";
        std::filesystem::create_directory(ro);
        ::chmod(ro.c_str(), 0555);
        CHECK_THROWS_AS(titanic::open_sqlite_store(ro / "t.db"), zmesh::error);
        ::chmod(ro.c_str(), 0755);
    }
}

TEST_CASE("a write that cannot reach the disk fails and stores nothing of its batch") {
    // RLIMIT_FSIZE stands in for a full disk: writes past it fail (EFBIG, or a short write that
    // SQLite reports as SQLITE_FULL), and it needs no special file system.
    support::temp_dir dir;
    const auto path = dir.path() / "t.db";
    auto st = titanic::open_sqlite_store(path, sync_mode::full);
    std::vector<new_request> first{make_request(1, now())};
    st->add_requests(first);

    std::vector<new_request> big;
    for (unsigned long long n = 100; n < 164; ++n) {
        big.push_back(make_request(n, now()));
        big.back().body.push_back(std::string(32 * 1024, 'z'));
    }
    rlimit old{};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    auto* old_handler = ::signal(SIGXFSZ, SIG_IGN); // else the first write past it kills us
    std::error_code ec;
    auto wal_size = std::filesystem::file_size(path.string() + "-wal", ec);
    if (ec) wal_size = 0;
    rlimit small = old;
    small.rlim_cur = std::max<rlim_t>(std::filesystem::file_size(path), wal_size) + 60000;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
    std::string what;
    bool threw = false;
    try {
        st->add_requests(big);
    } catch (const zmesh::error& e) {
        threw = e.code() == zmesh::errc::storage;
        what = e.what();
    }
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &old) == 0);
    ::signal(SIGXFSZ, old_handler);
    CHECK(threw);
    MESSAGE(what);

    for (const auto& r : big) CHECK_FALSE(st->find(r.id));
    CHECK(st->counts().pending == 1);
    std::vector<new_request> next{make_request(2, now())}; // the store carries on
    st->add_requests(next);
    st.reset();
    auto again = titanic::open_sqlite_store(path);
    CHECK(again->counts().pending == 2);
    CHECK_FALSE(again->find(big.front().id));
}

TEST_CASE("another process works on the dead-letter queue while the store is open and written") {
    support::temp_dir dir;
    const auto path = dir.path() / "t.db";
    int go[2];
    REQUIRE(::pipe(go) == 0);
    // Forked before this process opens the store (connections must not cross a fork); it
    // starts when told, as `zmesh dlq` would next to a running node.
    forked child([&] {
        ::close(go[1]);
        char c = 0;
        if (::read(go[0], &c, 1) != 1) return 10;
        auto st = titanic::open_sqlite_store(path);
        if (st->dlq_list(100).size() != 5) return 11;
        if (!st->dlq_show(make_id(0))) return 12;
        if (st->dlq_replay_all(now()) != 5) return 13;
        std::vector<new_request> batch{make_request(1, now(), 7)};
        st->add_requests(batch);
        return 0;
    });
    ::close(go[0]);

    auto st = titanic::open_sqlite_store(path);
    std::vector<new_request> batch;
    for (unsigned long long n = 0; n < 10; ++n) batch.push_back(make_request(n, now()));
    st->add_requests(batch);
    for (unsigned long long n = 0; n < 5; ++n) st->move_to_dlq(make_id(n), "failed", now());
    REQUIRE(::write(go[1], "g", 1) == 1);
    ::close(go[1]);

    // Keep writing while the other process reads and writes: both go through.
    unsigned long long n = 1000;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    std::optional<int> status;
    while (!status && std::chrono::steady_clock::now() < deadline) {
        std::vector<new_request> more{make_request(n++, now())};
        st->add_requests(more);
        status = child.try_wait();
        // SQLite's busy handler retries by sleeping, so a writer that takes the lock again the
        // instant it commits can starve the other process past its busy timeout (seen under CI
        // load). A node commits in batches with gaps between them; so does this writer.
        std::this_thread::sleep_for(1ms);
    }
    REQUIRE(status);
    REQUIRE(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
    CHECK(st->dlq_list(100).empty());
    CHECK(st->find(make_id(1, 7)));
    CHECK(st->counts().pending == 10 + 1 + (n - 1000));
}

} // TEST_SUITE
