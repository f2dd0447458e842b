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

namespace {

titanic::time_point now() {
    return std::chrono::time_point_cast<std::chrono::milliseconds>(
        std::chrono::system_clock::now());
}

/// A TSP-style id from a number: 32 lowercase hex digits.
std::string make_id(unsigned long long n, unsigned prefix = 0) {
    char buf[33];
    std::snprintf(buf, sizeof buf, "%016x%016llx", prefix, n);
    return buf;
}

/// A body with the awkward cases: NUL bytes, an empty frame, every byte value.
frames binary_body(unsigned long long n) {
    std::string all_bytes;
    for (int b = 0; b < 256; ++b) all_bytes.push_back(static_cast<char>(b));
    return {std::string("a\0b", 3), std::string(), all_bytes, "n=" + std::to_string(n)};
}

new_request make_request(unsigned long long n, titanic::time_point created, unsigned prefix = 0) {
    return {make_id(n, prefix), "echo", binary_body(n), created, std::nullopt};
}

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
    support::temp_dir dir;
    auto st = titanic::open_sqlite_store(dir.path() / "t.db");
    const auto t = now();
    std::vector<new_request> batch;
    for (unsigned long long n = 0; n < 5; ++n) batch.push_back(make_request(n, t));
    batch[1].body.clear();                                 // no frame at all
    batch[2].body = {std::string(200000, '\xff'), "tail"}; // spills to overflow pages
    batch[3].ttl = 1500ms;
    batch[4].service = ""; // empty but not NULL
    st->add_requests(batch);

    for (const auto& r : batch) {
        auto got = st->find(r.id);
        REQUIRE(got);
        CHECK(got->id == r.id);
        CHECK(got->service == r.service);
        CHECK(got->body == r.body);
        CHECK(got->created == r.created);
        CHECK(got->ttl == r.ttl);
        CHECK(got->attempts == 0);
        CHECK(got->next_attempt == r.created);
        CHECK(got->state == request_state::pending);
        CHECK(st->reply(r.id).state == reply_state::pending);
    }
    CHECK(st->due(t, 100).size() == batch.size());
    CHECK(st->counts().pending == batch.size());
}

TEST_CASE("a stored reply is returned frame for frame and the first reply stored wins") {
    support::temp_dir dir;
    auto st = titanic::open_sqlite_store(dir.path() / "t.db");
    const auto t = now();
    std::vector<new_request> batch{make_request(1, t), make_request(2, t)};
    st->add_requests(batch);

    std::vector<titanic::reply_record> replies{{make_id(1), {"200", std::string("\0\1", 2), ""}},
                                               {make_id(3), {"for nobody"}}};
    CHECK(st->store_replies(replies, t) == 1); // id 3 was never stored: dropped
    auto r = st->reply(make_id(1));
    CHECK(r.state == reply_state::replied);
    CHECK(r.body == replies[0].body);
    CHECK(st->reply(make_id(1)).body == replies[0].body); // reading does not consume it

    std::vector<titanic::reply_record> again{{make_id(1), {"second execution"}}};
    CHECK(st->store_replies(again, t) == 0);
    CHECK(st->reply(make_id(1)).body == replies[0].body);

    CHECK(st->reply(make_id(3)).state == reply_state::unknown);
    CHECK(st->find(make_id(1))->state == request_state::replied);
    CHECK(st->due(t, 100).size() == 1); // only the unanswered one is still work
    auto c = st->counts();
    CHECK(c.pending == 1);
    CHECK(c.replied == 1);
}

TEST_CASE("close forgets a request and its reply and is idempotent") {
    support::temp_dir dir;
    auto st = titanic::open_sqlite_store(dir.path() / "t.db");
    const auto t = now();
    std::vector<new_request> batch{make_request(1, t), make_request(2, t)};
    st->add_requests(batch);
    std::vector<titanic::reply_record> replies{{make_id(1), {"done"}}};
    st->store_replies(replies, t);

    CHECK(st->close(make_id(1)));
    CHECK_FALSE(st->close(make_id(1)));
    CHECK(st->close(make_id(2))); // a pending one too
    CHECK_FALSE(st->close(make_id(9)));
    CHECK(st->reply(make_id(1)).state == reply_state::unknown);
    CHECK(st->reply(make_id(2)).state == reply_state::unknown);
    CHECK_FALSE(st->find(make_id(1)));
    CHECK(st->due(t, 100).empty());
}

TEST_CASE("malformed ids are unknown to lookups and refused when adding") {
    support::temp_dir dir;
    auto st = titanic::open_sqlite_store(dir.path() / "t.db");
    for (std::string_view bad : {"", "0123", "0123456789ABCDEF0123456789abcdef",
                                 "0123456789abcdef0123456789abcdeg",
                                 "0123456789abcdef0123456789abcdef0"}) {
        CHECK(st->reply(bad).state == reply_state::unknown);
        CHECK_FALSE(st->find(bad));
        CHECK_FALSE(st->close(bad));
        CHECK_FALSE(st->record_failure(bad, now()));
        CHECK_FALSE(st->move_to_dlq(bad, "x", now()));
    }
    std::vector<new_request> batch{make_request(1, now()), make_request(2, now())};
    batch[1].id = "not-an-id";
    try {
        st->add_requests(batch);
        FAIL("accepted a malformed id");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::invalid_argument);
    }
    CHECK_FALSE(st->find(make_id(1)));
}

TEST_CASE("a batch with an id already stored is refused as a whole") {
    support::temp_dir dir;
    auto st = titanic::open_sqlite_store(dir.path() / "t.db");
    std::vector<new_request> first{make_request(1, now())};
    st->add_requests(first);
    std::vector<new_request> batch{make_request(2, now()), make_request(1, now())};
    try {
        st->add_requests(batch);
        FAIL("accepted a duplicate id");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::invalid_argument);
    }
    CHECK_FALSE(st->find(make_id(2)));
    CHECK(st->counts().pending == 1);
    std::vector<new_request> next{make_request(3, now())}; // the store carries on
    st->add_requests(next);
    CHECK(st->find(make_id(3)));
}

TEST_CASE("due returns pending requests whose next attempt has come, earliest first") {
    support::temp_dir dir;
    auto st = titanic::open_sqlite_store(dir.path() / "t.db");
    const auto t = now();
    // Added out of time order; ties keep the order of arrival.
    std::vector<new_request> batch{make_request(1, t + 20ms), make_request(2, t),
                                   make_request(3, t + 10ms), make_request(4, t + 10ms),
                                   make_request(5, t + 1h)};
    st->add_requests(batch);

    CHECK(st->due(t - 1ms, 100).empty());
    auto ids = [](const std::vector<titanic::request_record>& rs) {
        std::vector<std::string> out;
        for (const auto& r : rs) out.push_back(r.id);
        return out;
    };
    CHECK(ids(st->due(t + 20ms, 100)) ==
          std::vector<std::string>{make_id(2), make_id(3), make_id(4), make_id(1)});
    CHECK(ids(st->due(t + 20ms, 2)) == std::vector<std::string>{make_id(2), make_id(3)});
    CHECK(st->due(t + 2h, 100).size() == 5);
    CHECK(st->due(t + 2h, 0).empty());
}

TEST_CASE("a failed dispatch counts an attempt and postpones the request") {
    support::temp_dir dir;
    auto st = titanic::open_sqlite_store(dir.path() / "t.db");
    const auto t = now();
    std::vector<new_request> batch{make_request(1, t), make_request(2, t)};
    st->add_requests(batch);

    CHECK(st->record_failure(make_id(1), t + 1s) == 1u);
    CHECK(st->record_failure(make_id(1), t + 3s) == 2u);
    auto r = st->find(make_id(1));
    REQUIRE(r);
    CHECK(r->attempts == 2);
    CHECK(r->next_attempt == t + 3s);
    REQUIRE(st->due(t + 1s, 100).size() == 1);
    CHECK(st->due(t + 1s, 100)[0].id == make_id(2));
    REQUIRE(st->due(t + 3s, 100).size() == 2);
    CHECK(st->due(t + 3s, 100)[1].attempts == 2);

    CHECK_FALSE(st->record_failure(make_id(9), t)); // unknown
    std::vector<titanic::reply_record> replies{{make_id(2), {"ok"}}};
    st->store_replies(replies, t);
    CHECK_FALSE(st->record_failure(make_id(2), t)); // no longer pending
}

TEST_CASE("the dead-letter queue lists, shows, replays and purges") {
    support::temp_dir dir;
    auto st = titanic::open_sqlite_store(dir.path() / "t.db");
    const auto t = now();
    std::vector<new_request> batch;
    for (unsigned long long n = 1; n <= 4; ++n) batch.push_back(make_request(n, t));
    batch[2].ttl = 10ms;
    st->add_requests(batch);
    st->record_failure(make_id(1), t);
    st->record_failure(make_id(1), t);

    CHECK(st->move_to_dlq(make_id(1), "3 attempts failed", t + 2ms));
    CHECK(st->move_to_dlq(make_id(3), "ttl expired", t + 1ms));
    CHECK(st->move_to_dlq(make_id(4), "3 attempts failed", t + 3ms));
    CHECK_FALSE(st->move_to_dlq(make_id(1), "again", t)); // already dead
    CHECK_FALSE(st->move_to_dlq(make_id(9), "unknown", t));

    auto list = st->dlq_list(100);
    REQUIRE(list.size() == 3);
    CHECK(list[0].request.id == make_id(3)); // oldest move first
    CHECK(list[1].request.id == make_id(1));
    CHECK(list[2].request.id == make_id(4));
    CHECK(st->dlq_list(1).size() == 1);
    CHECK(list[1].reason == "3 attempts failed");
    CHECK(list[1].moved == t + 2ms);
    CHECK(list[1].request.attempts == 2);
    CHECK(list[1].request.state == request_state::dead);
    CHECK(list[1].request.body == batch[0].body);

    auto shown = st->dlq_show(make_id(3));
    REQUIRE(shown);
    CHECK(shown->reason == "ttl expired");
    CHECK_FALSE(st->dlq_show(make_id(2))); // pending, not dead
    CHECK(st->reply(make_id(3)).state == reply_state::dead);
    CHECK(st->due(t + 1h, 100).size() == 1); // dead requests are not work
    CHECK(st->counts().dead == 3);

    // Replay: back to pending, due now, attempts reset, the TTL that killed it dropped.
    CHECK(st->dlq_replay(make_id(3), t + 5s));
    CHECK_FALSE(st->dlq_replay(make_id(3), t + 5s));
    auto r = st->find(make_id(3));
    REQUIRE(r);
    CHECK(r->state == request_state::pending);
    CHECK(r->attempts == 0);
    CHECK(r->next_attempt == t + 5s);
    CHECK_FALSE(r->ttl);
    CHECK_FALSE(st->dlq_show(make_id(3)));

    CHECK(st->dlq_purge(make_id(4)));
    CHECK_FALSE(st->dlq_purge(make_id(4)));
    CHECK_FALSE(st->dlq_purge(make_id(2))); // pending: not the DLQ's to purge
    CHECK(st->find(make_id(2)));
    CHECK_FALSE(st->find(make_id(4)));

    CHECK(st->dlq_replay_all(t + 6s) == 1); // id 1
    CHECK(st->find(make_id(1))->attempts == 0);
    CHECK(st->dlq_list(100).empty());

    st->move_to_dlq(make_id(1), "x", t);
    st->move_to_dlq(make_id(2), "x", t);
    CHECK(st->dlq_purge_all() == 2);
    CHECK(st->dlq_list(100).empty());
    CHECK(st->counts().pending == 1); // id 3, replayed

    // A late reply to a dead request answers it and takes it out of the DLQ.
    st->move_to_dlq(make_id(3), "x", t);
    std::vector<titanic::reply_record> replies{{make_id(3), {"late"}}};
    CHECK(st->store_replies(replies, t) == 1);
    CHECK(st->dlq_list(100).empty());
    CHECK(st->reply(make_id(3)).state == reply_state::replied);
}

TEST_CASE("everything survives closing and reopening the store") {
    support::temp_dir dir;
    const auto path = dir.path() / "t.db";
    const auto t = now();
    std::vector<new_request> batch;
    for (unsigned long long n = 1; n <= 3; ++n) batch.push_back(make_request(n, t));
    {
        auto st = titanic::open_sqlite_store(path, sync_mode::normal);
        st->add_requests(batch);
        std::vector<titanic::reply_record> replies{{make_id(1), {"r", "s"}}};
        st->store_replies(replies, t);
        st->record_failure(make_id(2), t + 1s);
        st->move_to_dlq(make_id(3), "why", t);
    }
    auto st = titanic::open_sqlite_store(path);
    CHECK(st->reply(make_id(1)).body == frames{"r", "s"});
    auto pending = st->due(t + 1s, 100);
    REQUIRE(pending.size() == 1);
    CHECK(pending[0].id == make_id(2));
    CHECK(pending[0].attempts == 1);
    CHECK(pending[0].body == batch[1].body);
    auto dead = st->dlq_show(make_id(3));
    REQUIRE(dead);
    CHECK(dead->reason == "why");
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
    raw_sql(path, "PRAGMA user_version=2");
    auto what = expect_refused(path);
    CHECK(what.find("schema version 2") != std::string::npos);
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
