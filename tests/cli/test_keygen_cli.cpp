// SPDX-License-Identifier: MPL-2.0
// test_keygen_cli.cpp — `zmesh keygen`: the two files, their modes and the printed paths; the
// refusals (existing files, no name, bad names, unwritable directories); `--show`.
#include "support/process.hpp"

#include <zmesh/security/keys.hpp>

#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace fs = std::filesystem;
namespace sec = zmesh::security;

namespace {

using support::count_lines;
using support::run_cli;

/// A fresh directory from mkdtemp, removed with its contents at the end.
class scratch_dir {
  public:
    scratch_dir() {
        char tmpl[] = "/tmp/zmesh-keygen-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path_ = tmpl;
    }
    ~scratch_dir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    scratch_dir(const scratch_dir&) = delete;
    scratch_dir& operator=(const scratch_dir&) = delete;
    fs::path operator/(const std::string& name) const { return path_ / name; }
    std::string str() const { return path_.string(); }

  private:
    fs::path path_;
};

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

unsigned mode_of(const fs::path& p) {
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return static_cast<unsigned>(st.st_mode & 07777);
}

std::string read_file(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

} // namespace

TEST_SUITE("cli.keygen") {

TEST_CASE("keygen writes NAME.key and NAME.key_secret (0600) and prints both paths") {
    scratch_dir d;
    auto r = run_cli({"keygen", "alice", "--dir", d.str()});
    CHECK(r.code == 0);
    CHECK(r.err.empty());
    CHECK(r.out == (d / "alice.key").string() + "\n" + (d / "alice.key_secret").string() + "\n");
    CHECK(mode_of(d / "alice.key_secret") == 0600u);
    CHECK((mode_of(d / "alice.key") & 0022u) == 0u);

    const auto pub = sec::load_public(d / "alice.key");
    const auto both = sec::load_secret(d / "alice.key_secret");
    CHECK(pub.name == "alice");
    CHECK(both.public_key == pub.public_key);
    CHECK(both.secret_key.has_value());
}

TEST_CASE("keygen refuses to overwrite an existing key pair, naming the file") {
    scratch_dir d;
    REQUIRE(run_cli({"keygen", "alice", "--dir", d.str()}).code == 0);
    const auto before = read_file(d / "alice.key_secret");
    auto r = run_cli({"keygen", "alice", "--dir", d.str()});
    CHECK(r.code == 1);
    CHECK(r.out.empty());
    CHECK(count_lines(r.err) == 1);
    CHECK(contains(r.err, "zmesh: keygen: "));
    CHECK(contains(r.err, (d / "alice.key").string()));
    CHECK(contains(r.err, "exists"));
    CHECK(read_file(d / "alice.key_secret") == before);
}

TEST_CASE("keygen without a name is a usage error") {
    auto r = run_cli({"keygen"});
    CHECK(r.code == 2);
    CHECK(count_lines(r.err) == 1);
    CHECK(contains(r.err, "missing NAME"));
    CHECK(contains(r.err, "zmesh keygen --help"));

    auto help = run_cli({"keygen", "--help"});
    CHECK(help.code == 0);
    CHECK(contains(help.out, "usage: zmesh keygen"));
    CHECK(contains(run_cli({"--help"}).out, "keygen"));
}

TEST_CASE("keygen refuses names that are not plain file names") {
    scratch_dir d;
    for (const char* name : {"a/b", ".hidden", "bad\x01name"}) {
        CAPTURE(name);
        auto r = run_cli({"keygen", name, "--dir", d.str()});
        CHECK(r.code != 0);
        CHECK(count_lines(r.err) == 1);
        CHECK(contains(r.err, "name"));
    }
    CHECK(fs::is_empty(d / "."));
    // Also with the default --dir, the current directory: nothing is written anywhere.
    auto r = run_cli({"keygen", "a/b"});
    CHECK(r.code != 0);
    CHECK(contains(r.err, "a/b"));
}

TEST_CASE("keygen into a directory that cannot be made fails naming it") {
    scratch_dir d;
    { std::ofstream(d / "plain") << "not a directory"; }
    const auto dir = (d / "plain" / "keys").string();
    auto r = run_cli({"keygen", "alice", "--dir", dir});
    CHECK(r.code == 1);
    CHECK(count_lines(r.err) == 1);
    CHECK(contains(r.err, dir));
}

TEST_CASE("keygen --show prints the name and public key of either file") {
    scratch_dir d;
    REQUIRE(run_cli({"keygen", "alice", "--dir", d.str()}).code == 0);
    const auto z85 = sec::to_z85(sec::load_public(d / "alice.key").public_key);
    for (const char* file : {"alice.key", "alice.key_secret"}) {
        CAPTURE(file);
        auto r = run_cli({"keygen", "--show", (d / file).string()});
        CHECK(r.code == 0);
        CHECK(r.out == "name: alice\npublic-key: " + z85 + "\n");
    }

    // A secret file others may read is refused, as everywhere in zmesh.
    REQUIRE(::chmod((d / "alice.key_secret").c_str(), 0644) == 0);
    auto r = run_cli({"keygen", "--show", (d / "alice.key_secret").string()});
    CHECK(r.code == 1);
    CHECK(count_lines(r.err) == 1);
    CHECK(contains(r.err, "readable by others"));

    auto missing = run_cli({"keygen", "--show", (d / "nobody.key").string()});
    CHECK(missing.code == 1);
    CHECK(contains(missing.err, (d / "nobody.key").string()));
}

TEST_CASE("keygen --show with a name or --dir is a usage error") {
    CHECK(run_cli({"keygen", "alice", "--show", "x.key"}).code == 2);
    CHECK(run_cli({"keygen", "--show", "x.key", "--dir", "/tmp"}).code == 2);
    CHECK(run_cli({"keygen", "alice", "bob"}).code == 2);
}

} // TEST_SUITE
