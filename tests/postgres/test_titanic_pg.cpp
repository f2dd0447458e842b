// SPDX-License-Identifier: MPL-2.0
// test_titanic_pg.cpp — the Titanic store on PostgreSQL, against a real server this process
// starts (pg_server.hpp): the store checks every engine must pass (titanic_store_checks.hpp, the
// same ones test_titanic_store.cpp runs on SQLite), the schema, the CLI's --store for both
// commands, and the errors for a server that cannot be reached.
#include "pg_server.hpp"
#include "titanic/open_store.hpp"
#include "titanic/pg_store.hpp"
#include "titanic_store_checks.hpp"

#include "support/process.hpp"
#include "support/support.hpp"

#include <zmesh/error.hpp>

#include <doctest/doctest.h>

#include <string>

using namespace titanic_checks;
using pg_test::pg_server;

namespace {

/// PostgreSQL stores for the shared checks: one schema per name, fresh for each engine object.
class pg_engine final : public store_engine {
  public:
    pg_engine() : prefix_(pg_server::fresh_schema("checks")) {}
    std::unique_ptr<titanic::store> open(const std::string& name) override {
        return titanic::open_pg_store(pg_server::shared().conninfo(prefix_ + "_" + name));
    }

  private:
    std::string prefix_;
};

} // namespace

TEST_SUITE("postgres.titanic.store") {

// One case, one server: each check is a subcase with stores of its own.
TEST_CASE("the store checks of every engine pass on a real PostgreSQL server") {
    pg_server* server = nullptr;
    try {
        server = &pg_server::shared();
    } catch (const std::exception& e) {
        FAIL("cannot start the test's PostgreSQL server: " << e.what());
    }
    REQUIRE(server != nullptr);
    pg_engine e;
    SUBCASE("round trip of binary bodies") { check_round_trip(e); }
    SUBCASE("the first reply stored wins") { check_first_reply_wins(e); }
    SUBCASE("close") { check_close(e); }
    SUBCASE("malformed ids") { check_malformed_ids(e); }
    SUBCASE("a batch with a duplicate id") { check_duplicate_batch(e); }
    SUBCASE("due order") { check_due_order(e); }
    SUBCASE("failures") { check_failure(e); }
    SUBCASE("the dead-letter queue") { check_dlq(e); }
    SUBCASE("reopen") { check_reopen(e); }
    SUBCASE("claims") { check_claims(e); }
    SUBCASE("concurrent claims") { check_concurrent_claims(e); }
    SUBCASE("a service and a reason that are not UTF-8 are kept byte for byte") {
        auto st = e.open("t");
        auto r = make_request(1, now());
        r.service = std::string("s\0\xff", 3);
        st->add_requests(std::vector<new_request>{r});
        CHECK(st->find(make_id(1))->service == r.service);
        const std::string reason("bad \xc3\x28 \0 reason", 16);
        CHECK(st->move_to_dlq(make_id(1), reason, now()));
        CHECK(st->dlq_show(make_id(1))->reason == reason);
    }
    SUBCASE("a schema of another version is refused") {
        const auto conninfo = server->conninfo(pg_server::fresh_schema("version"));
        titanic::open_pg_store(conninfo);
        std::unique_ptr<PGconn, decltype(&PQfinish)> c(PQconnectdb(conninfo.c_str()), &PQfinish);
        REQUIRE(PQstatus(c.get()) == CONNECTION_OK);
        PQclear(PQexec(c.get(), "UPDATE zmesh_titanic_meta SET value = '7'"));
        try {
            titanic::open_pg_store(conninfo);
            FAIL("opened a store of schema version 7");
        } catch (const zmesh::error& ex) {
            CHECK(ex.code() == zmesh::errc::storage);
            CHECK(std::string(ex.what()).find("schema version '7'") != std::string::npos);
        }
    }
    SUBCASE("opening without create refuses a database with no store") {
        const auto conninfo = server->conninfo(pg_server::fresh_schema("empty"));
        CHECK_THROWS_WITH_AS(titanic::open_pg_store(conninfo, false),
                             doctest::Contains("holds no titanic store"), zmesh::error);
        titanic::open_pg_store(conninfo, true);
        CHECK_NOTHROW(titanic::open_pg_store(conninfo, false));
    }
}

TEST_CASE("store texts: PostgreSQL URIs and key=value strings, SQLite paths otherwise") {
    CHECK(titanic::is_pg_target("postgresql://u@h/db"));
    CHECK(titanic::is_pg_target("postgres://h"));
    CHECK(titanic::is_pg_target("host=/run/pg port=5 dbname=x"));
    CHECK(titanic::is_pg_target(" dbname = x"));
    CHECK_FALSE(titanic::is_pg_target("titanic.db"));
    CHECK_FALSE(titanic::is_pg_target("/var/lib/zmesh/t.db"));
    CHECK_FALSE(titanic::is_pg_target("./a=b.db"));
    CHECK_FALSE(titanic::is_pg_target(""));
    CHECK(titanic::pg_target_name("postgresql://alice:s3cret@db.example:5433/q") ==
          "host=db.example port=5433 dbname=q user=alice");
    CHECK(titanic::pg_target_name("host=/x password=s3cret dbname=d") == "host=/x dbname=d");
    CHECK(titanic::store_name("t.db") == "t.db");
}

TEST_CASE("an unreachable PostgreSQL is one line naming the target without its password and exit 1") {
    support::temp_dir dir; // nothing listens on a socket in it
    const std::string conninfo =
        "host=" + dir.path().string() + " port=5999 dbname=q user=alice password=s3cret";
    const std::vector<std::vector<std::string>> runs{
        {"titanic", "--store", conninfo, "--broker", "tcp://127.0.0.1:1"},
        {"dlq", "list", "--store", conninfo}};
    for (const auto& args : runs) {
        auto r = support::run_cli(args);
        INFO(args[0] << ": " << r.err);
        CHECK(r.code == 1);
        CHECK(support::count_lines(r.err) == 1);
        CHECK(r.err.find("host=" + dir.path().string() + " port=5999 dbname=q user=alice") !=
              std::string::npos);
        CHECK(r.err.find("cannot connect") != std::string::npos);
        CHECK(r.err.find("s3cret") == std::string::npos);
    }
}

TEST_CASE("zmesh dlq --store lists and replays the dead-letter queue of a PostgreSQL store") {
    const auto conninfo = pg_server::shared().conninfo(pg_server::fresh_schema("dlq"));
    {
        auto st = titanic::open_store(conninfo);
        st->add_requests(std::vector<new_request>{make_request(1, now()), make_request(2, now())});
        st->move_to_dlq(make_id(2), "failed 5 attempts", now());
    }
    auto listed = support::run_cli({"dlq", "list", "--store", conninfo});
    CHECK(listed.code == 0);
    CHECK(listed.out.find(make_id(2)) != std::string::npos);
    CHECK(listed.out.find("failed 5 attempts") != std::string::npos);
    CHECK(listed.out.find(make_id(1)) == std::string::npos);
    auto replayed = support::run_cli({"dlq", "replay", make_id(2), "--store", conninfo});
    CHECK(replayed.code == 0);
    CHECK(titanic::open_store(conninfo)->counts().pending == 2);
}

}
