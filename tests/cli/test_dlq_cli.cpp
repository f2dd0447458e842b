// SPDX-License-Identifier: MPL-2.0
// test_dlq_cli.cpp — `zmesh dlq` on a titanic store file: the test fills a store through the
// store API, then runs the binary to list, show, replay and purge, and checks that bad paths,
// foreign files and bad arguments are refused without touching anything. Also (suite
// cli.request_durable) `zmesh request --durable` against a fake Titanic server in the test.
#include "support/process.hpp"
#include "support/support.hpp"

#include "titanic/sqlite_store.hpp"

#include <zmesh/header.hpp>
#include <zmesh/message.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <set>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>

using namespace std::chrono_literals;
namespace ts = zmesh::nodes::titanic;

namespace {

using support::run_cli;

using support::count_lines;

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

std::string read_file(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

const std::string id_a = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const std::string id_b = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const std::string id_c = "cccccccccccccccccccccccccccccccc"; // stays pending

ts::time_point now() {
    return std::chrono::time_point_cast<std::chrono::milliseconds>(
        std::chrono::system_clock::now());
}

/// A store file with two dead requests (a: 3 failed attempts, b: expired TTL) and one pending.
struct dlq_fixture {
    support::temp_dir dir;
    std::string path = (dir.path() / "titanic.db").string();

    dlq_fixture() {
        auto st = ts::open_sqlite_store(path, ts::sync_mode::normal);
        const auto t = now();
        std::vector<ts::new_request> batch{
            {id_a, "payments", {"charge", std::string("\x01\x02", 2)}, t, std::nullopt},
            {id_b, "mailer", {"hello"}, t, 500ms},
            {id_c, "echo", {"x"}, t, std::nullopt},
        };
        st->add_requests(batch);
        for (int i = 0; i < 3; ++i) REQUIRE(st->record_failure(id_a, t));
        REQUIRE(st->move_to_dlq(id_a, "failed 3 attempts; last: timeout", t));
        REQUIRE(st->move_to_dlq(id_b, "ttl of 500 ms expired", t));
    }

    std::unique_ptr<ts::store> open() const { return ts::open_sqlite_store(path); }
};

/// Fake broker + Titanic server: a ROUTER answering MDP client requests by a script. The handler
/// gets the service and the body frames and returns the answer frames.
class fake_titanic {
  public:
    using handler = std::function<std::vector<std::string>(const std::string& service,
                                                           const std::vector<std::string>& body)>;

    explicit fake_titanic(handler h)
        : router_(ctx_, zmq::socket_type::router), handler_(std::move(h)) {
        router_.set(zmq::sockopt::linger, 0);
        endpoint = support::bind_loopback(router_);
        thread_ = std::thread([this] { run(); });
    }
    ~fake_titanic() {
        stop_ = true;
        thread_.join();
    }
    fake_titanic(const fake_titanic&) = delete;
    fake_titanic& operator=(const fake_titanic&) = delete;

    std::vector<std::string> services_seen() {
        std::lock_guard lock(mutex_);
        return seen_;
    }

    std::string endpoint;

  private:
    void run() {
        while (!stop_) {
            auto in = support::recv_for(router_, 20ms);
            // `zmesh request` speaks ZMCT03 (routing-id "ZMCT03"+0x01 service header body...)
            // unless --plain (routing-id "" "MDPC01" service body...): the fake answers both.
            const bool v2 = in && in->size() >= 4 && zmesh::view((*in)[1]) == "ZMCT03\x01";
            if (!in || (!v2 && (in->size() < 4 || zmesh::view((*in)[2]) != "MDPC01"))) continue;
            const std::size_t service_at = v2 ? 2 : 3, body_at = service_at + (v2 ? 2 : 1);
            const std::string service = zmesh::to_string((*in)[service_at]);
            std::vector<std::string> body;
            for (std::size_t i = body_at; i < in->size(); ++i)
                body.push_back(zmesh::to_string((*in)[i]));
            {
                std::lock_guard lock(mutex_);
                seen_.push_back(service);
            }
            zmesh::message out;
            out.push_back(zmesh::to_string((*in)[0]));
            if (v2) {
                zmesh::header h = zmesh::make_header({});
                h.correlation_id = zmesh::decode_header((*in)[3]).id;
                out.push_back("ZMCT03\x03"); // FINAL
                out.push_back(service);
                out.push_back(zmesh::encode(h));
            } else {
                out.push_back("");
                out.push_back("MDPC01");
                out.push_back(service);
            }
            for (const auto& f : handler_(service, body)) out.push_back(f);
            (void)out.send(router_);
        }
    }

    zmq::context_t ctx_;
    zmq::socket_t router_;
    handler handler_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
    std::mutex mutex_;
    std::vector<std::string> seen_;
};

} // namespace

TEST_SUITE("cli.request_durable") {

    TEST_CASE("request --durable stores, waits for the reply, prints it and closes") {
        std::atomic<int> polls{0};
        fake_titanic server([&](const std::string& service, const std::vector<std::string>& body) {
            if (service == "titanic.request") {
                if (body == std::vector<std::string>{"echo", "hi there"})
                    return std::vector<std::string>{"200", id_a};
                return std::vector<std::string>{"400", "bad request"};
            }
            if (service == "titanic.reply" && body == std::vector<std::string>{id_a})
                return ++polls < 3 ? std::vector<std::string>{"300"}
                                   : std::vector<std::string>{"200", "hi there", "second"};
            if (service == "titanic.close" && body == std::vector<std::string>{id_a})
                return std::vector<std::string>{"200"};
            return std::vector<std::string>{"999"};
        });
        auto r = run_cli(
            {"request", "--durable", "--broker", server.endpoint, "--service", "echo", "hi there"});
        CHECK(r.code == 0);
        CHECK(r.out == "hi there\nsecond\n");
        CHECK(r.err == "durable request " + id_a + " stored\n");
        auto seen = server.services_seen();
        REQUIRE(!seen.empty());
        CHECK(seen.front() == "titanic.request");
        CHECK(seen.back() == "titanic.close");
    }

    TEST_CASE("request --durable gives up after --timeout-ms with one line of reason") {
        fake_titanic server([&](const std::string& service, const std::vector<std::string>&) {
            if (service == "titanic.request") return std::vector<std::string>{"200", id_b};
            if (service == "titanic.reply") return std::vector<std::string>{"300"};
            return std::vector<std::string>{"200"};
        });
        auto r = run_cli({"request", "--durable", "--broker", server.endpoint, "--service", "slow",
                          "--timeout-ms", "300", "x"});
        CHECK(r.code == 1);
        CHECK(r.out.empty());
        CHECK(count_lines(r.err) == 2); // the id line, then the reason
        CHECK(contains(r.err, "durable request " + id_b + " stored\n"));
        CHECK(contains(r.err, "no reply to durable request"));
    }

    TEST_CASE("request --durable reports a server that cannot store") {
        fake_titanic server([&](const std::string&, const std::vector<std::string>&) {
            return std::vector<std::string>{"500", "disk full"};
        });
        auto r = run_cli(
            {"request", "--durable", "--broker", server.endpoint, "--service", "echo", "x"});
        CHECK(r.code == 1);
        CHECK(count_lines(r.err) == 1);
        CHECK(contains(r.err, "disk full"));
    }

} // TEST_SUITE

TEST_SUITE("cli.dlq") {

    TEST_CASE("dlq list prints one line per dead request") {
        dlq_fixture f;
        auto r = run_cli({"dlq", "list", "--store", f.path});
        CHECK(r.code == 0);
        CHECK(count_lines(r.out) == 2);
        CHECK(contains(r.out,
                       id_a + " payments attempts=3 reason=failed 3 attempts; last: timeout\n"));
        CHECK(contains(r.out, id_b + " mailer attempts=0 reason=ttl of 500 ms expired\n"));
        CHECK_FALSE(contains(r.out, id_c));
    }

    TEST_CASE("dlq list and show --json print one JSON document each") {
        dlq_fixture f;
        auto r = run_cli({"dlq", "list", "--json", "--store", f.path});
        CHECK(r.code == 0);
        CHECK(count_lines(r.out) == 1);
        const auto all = nlohmann::json::parse(r.out);
        REQUIRE(all.size() == 2);
        std::set<std::string> ids{all[0]["id"], all[1]["id"]};
        CHECK(ids == std::set<std::string>{id_a, id_b});
        auto s = run_cli({"dlq", "show", id_a, "--json", "--store", f.path});
        CHECK(s.code == 0);
        const auto one = nlohmann::json::parse(s.out);
        CHECK(one["service"] == "payments");
        CHECK(one["attempts"] == 3);
        CHECK(one["ttl_ms"].is_null());
        REQUIRE(one["body"].size() == 2);
        CHECK(one["body"][0] == "charge");
        auto bad = run_cli({"dlq", "purge", "--all", "--json", "--store", f.path});
        CHECK(bad.code == 2);
    }

    TEST_CASE("dlq show prints the fields and the body of a dead request") {
        dlq_fixture f;
        auto r = run_cli({"dlq", "show", id_a, "--store", f.path});
        CHECK(r.code == 0);
        CHECK(contains(r.out, "id: " + id_a + "\n"));
        CHECK(contains(r.out, "service: payments\n"));
        CHECK(contains(r.out, "attempts: 3\n"));
        CHECK(contains(r.out, "reason: failed 3 attempts; last: timeout\n"));
        CHECK(contains(r.out, "ttl: none\n"));
        CHECK(contains(r.out, "body frames: 2\n"));
        CHECK(contains(r.out, "body[0]: charge\n"));
        CHECK(contains(r.out, "body[1]: \\x01\\x02\n"));
        auto b = run_cli({"dlq", "show", id_b, "--store", f.path});
        CHECK(b.code == 0);
        CHECK(contains(b.out, "ttl: 500 ms\n"));

        auto pending = run_cli({"dlq", "show", id_c, "--store", f.path});
        CHECK(pending.code == 1);
        CHECK(contains(pending.err, "no dead request " + id_c));
    }

    TEST_CASE("dlq replay puts a dead request back to pending, one or all") {
        dlq_fixture f;
        auto r = run_cli({"dlq", "replay", id_a, "--store", f.path});
        CHECK(r.code == 0);
        CHECK(r.out == "replayed " + id_a + "\n");
        {
            auto st = f.open();
            auto rec = st->find(id_a);
            REQUIRE(rec);
            CHECK(rec->state == ts::request_state::pending);
            CHECK(rec->attempts == 0);
            CHECK(st->dlq_list(10).size() == 1);
        }
        auto again = run_cli({"dlq", "replay", id_a, "--store", f.path});
        CHECK(again.code == 1);
        CHECK(contains(again.err, "no dead request " + id_a));

        auto all = run_cli({"dlq", "replay", "--all", "--store", f.path});
        CHECK(all.code == 0);
        CHECK(all.out == "replayed 1 dead requests\n");
        auto st = f.open();
        CHECK(st->dlq_list(10).empty());
        CHECK(st->counts().pending == 3);
    }

    TEST_CASE("dlq purge deletes a dead request, one or all, and leaves pending ones") {
        dlq_fixture f;
        auto r = run_cli({"dlq", "purge", id_b, "--store", f.path});
        CHECK(r.code == 0);
        CHECK(r.out == "purged " + id_b + "\n");
        auto none = run_cli({"dlq", "purge", id_c, "--store", f.path}); // pending, not dead
        CHECK(none.code == 1);
        auto all = run_cli({"dlq", "purge", "--all", "--store", f.path});
        CHECK(all.code == 0);
        CHECK(all.out == "purged 1 dead requests\n");
        auto list = run_cli({"dlq", "list", "--store", f.path});
        CHECK(list.code == 0);
        CHECK(list.out.empty());
        auto st = f.open();
        CHECK_FALSE(st->find(id_a));
        CHECK_FALSE(st->find(id_b));
        CHECK(st->find(id_c));
    }

    TEST_CASE("dlq on a missing store fails and creates nothing") {
        support::temp_dir dir;
        const auto path = dir.path() / "nothing-here.db";
        auto r = run_cli({"dlq", "list", "--store", path.string()});
        CHECK(r.code == 1);
        CHECK(contains(r.err, "no store at " + path.string()));
        CHECK(count_lines(r.err) == 1);
        CHECK_FALSE(std::filesystem::exists(path));
        auto replay = run_cli({"dlq", "replay", "--all", "--store", path.string()});
        CHECK(replay.code == 1);
        CHECK_FALSE(std::filesystem::exists(path));
    }

    TEST_CASE("dlq refuses a file that is not a titanic store and leaves it unchanged") {
        support::temp_dir dir;
        const auto path = dir.path() / "notes.txt";
        const std::string content = "this is not a database\n";
        { std::ofstream(path, std::ios::binary) << content; }
        for (std::vector<std::string> action :
             {std::vector<std::string>{"list"}, std::vector<std::string>{"purge", "--all"}}) {
            std::vector<std::string> args{"dlq"};
            args.insert(args.end(), action.begin(), action.end());
            args.insert(args.end(), {"--store", path.string()});
            auto r = run_cli(args);
            CHECK(r.code == 1);
            CHECK(count_lines(r.err) == 1);
            CHECK(contains(r.err, path.string()));
        }
        CHECK(read_file(path) == content);

        const auto empty = dir.path() / "empty.db";
        { std::ofstream touch(empty); }
        auto r = run_cli({"dlq", "list", "--store", empty.string()});
        CHECK(r.code == 1);
        CHECK(std::filesystem::file_size(empty) == 0);
    }

    TEST_CASE("dlq usage errors exit 2") {
        dlq_fixture f;
        const std::vector<std::vector<std::string>> bad{
            {"dlq", "--store", f.path},                         // no action
            {"dlq", "frobnicate", "--store", f.path},           // unknown action
            {"dlq", "list", id_a, "--store", f.path},           // list takes no id
            {"dlq", "show", "--all", "--store", f.path},        // show needs an id
            {"dlq", "replay", "--store", f.path},               // id or --all
            {"dlq", "purge", id_a, "--all", "--store", f.path}, // not both
            {"dlq", "show", "not-an-id", "--store", f.path},    // malformed id
            {"dlq", "list"},                                    // no --store
            {"dlq", "list", "--store", f.path, "--bogus"},      // unknown flag
            {"dlq", "show", id_a, id_b, "--store", f.path},     // extra argument
        };
        for (const auto& args : bad) {
            auto r = run_cli(args);
            CAPTURE(args.size() > 1 ? args[1] : std::string());
            CHECK(r.code == 2);
            CHECK(count_lines(r.err) == 1);
        }
        auto st = f.open();
        CHECK(st->dlq_list(10).size() == 2); // nothing was touched
    }

    TEST_CASE("dlq --help exits 0 and documents the store source") {
        auto r = run_cli({"dlq", "--help"});
        CHECK(r.code == 0);
        CHECK(contains(r.out, "--store"));
        CHECK(contains(r.out, "replay"));
    }

} // TEST_SUITE
