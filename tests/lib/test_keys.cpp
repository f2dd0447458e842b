// SPDX-License-Identifier: MPL-2.0
// test_keys.cpp — CURVE key pairs and their certificate files: round trips, file modes, the
// refusals (group/world-readable secrets, missing files, bad keys naming file and line,
// mismatched halves, overwriting, bad names), Z85, and files in czmq's and pyzmq's layouts.
//
// Every case name mentions keys, so that `ctest -R keys` selects them all.
#include <zmesh/security/keys.hpp>
#include <zmesh/error.hpp>

#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace fs = std::filesystem;
namespace sec = zmesh::security;

namespace {

/// A fresh directory from mkdtemp (mode 0700), removed with its contents at the end.
class scratch_dir {
  public:
    scratch_dir() {
        char tmpl[] = "/tmp/zmesh-keys-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path_ = tmpl;
    }
    ~scratch_dir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    scratch_dir(const scratch_dir&) = delete;
    scratch_dir& operator=(const scratch_dir&) = delete;
    const fs::path& path() const noexcept { return path_; }
    fs::path operator/(const std::string& name) const { return path_ / name; }

  private:
    fs::path path_;
};

/// Restores the process umask on scope exit.
class umask_guard {
  public:
    explicit umask_guard(mode_t mask) : old_(::umask(mask)) {}
    ~umask_guard() { ::umask(old_); }
    umask_guard(const umask_guard&) = delete;
    umask_guard& operator=(const umask_guard&) = delete;

  private:
    mode_t old_;
};

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

unsigned mode_of(const fs::path& p) {
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return static_cast<unsigned>(st.st_mode & 07777);
}

void write_file(const fs::path& p, const std::string& text, mode_t mode) {
    {
        std::ofstream f(p, std::ios::binary | std::ios::trunc);
        f << text;
        REQUIRE(f.good());
    }
    REQUIRE(::chmod(p.c_str(), mode) == 0);
}

std::string read_file(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

/// The zmesh::error that @p f throws, or std::nullopt if it throws none.
template <class F> std::optional<zmesh::error> error_of(F f) {
    try {
        f();
    } catch (const zmesh::error& e) {
        return e;
    }
    return std::nullopt;
}

// The example client key pair of libzmq's zmq_curve(7) man page, so that the reader is also
// checked against keys that zmesh did not make.
const std::string known_public = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID";
const std::string known_secret = "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs";
// Another pair's public key: its secret is not known_secret's.
const std::string other_public = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";

/// A secret certificate's text in the layout czmq's zcert_save_secret produces.
std::string zcert_secret(const std::string& public_key, const std::string& secret_key) {
    return "#   ****  Generated on 2015-06-01 12:00:00 by CZMQ  ****\n"
           "#   ZeroMQ CURVE **Secret** Certificate\n"
           "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n"
           "\n"
           "metadata\n"
           "    name = \"Client One\"\n"
           "    email = \"one@example.com\"\n"
           "curve\n"
           "    public-key = \"" +
           public_key +
           "\"\n"
           "    secret-key = \"" +
           secret_key + "\"\n";
}

} // namespace

TEST_SUITE("lib.security.keys") {

TEST_CASE("generated keys round-trip through the certificate files") {
    scratch_dir dir;
    const auto cert = sec::generate("alice");
    REQUIRE(cert.secret_key);
    CHECK(cert.name == "alice");
    CHECK(cert.public_key != *cert.secret_key);

    const auto public_path = sec::write_certificate(cert, dir.path());
    CHECK(public_path == dir / "alice.key");
    CHECK(fs::is_regular_file(dir / "alice.key_secret"));

    const auto pub = sec::load_public(public_path);
    CHECK(pub.public_key == cert.public_key);
    CHECK_FALSE(pub.secret_key);
    CHECK(pub.name == "alice");

    const auto both = sec::load_secret(dir / "alice.key_secret");
    CHECK(both.public_key == cert.public_key);
    REQUIRE(both.secret_key);
    CHECK(*both.secret_key == *cert.secret_key);
    CHECK(both.name == "alice");

    // load_public of the secret file gives its public half only.
    const auto half = sec::load_public(dir / "alice.key_secret");
    CHECK(half.public_key == cert.public_key);
    CHECK_FALSE(half.secret_key);

    // Two key pairs are never the same.
    CHECK(sec::generate("bob").public_key != cert.public_key);
}

TEST_CASE("secret keys are written mode 0600, public keys readable as the umask allows") {
    scratch_dir dir;
    {
        umask_guard mask(022);
        sec::write_certificate(sec::generate("alice"), dir.path());
    }
    CHECK(mode_of(dir / "alice.key_secret") == 0600u);
    CHECK(mode_of(dir / "alice.key") == 0644u);

    // An odd umask cannot make the secret file narrower than usable, nor anything wider.
    {
        umask_guard mask(0277);
        sec::write_certificate(sec::generate("bob"), dir.path());
    }
    CHECK(mode_of(dir / "bob.key_secret") == 0600u);
    CHECK(mode_of(dir / "bob.key") == 0400u);
    {
        umask_guard mask(0);
        sec::write_certificate(sec::generate("carol"), dir.path());
    }
    CHECK(mode_of(dir / "carol.key_secret") == 0600u);
    CHECK(mode_of(dir / "carol.key") == 0644u);
}

TEST_CASE("load_secret refuses secret keys that the group or others may read") {
    scratch_dir dir;
    sec::write_certificate(sec::generate("alice"), dir.path());
    const auto file = dir / "alice.key_secret";
    for (const mode_t mode : {0644u, 0640u, 0604u, 0660u, 0700u, 0610u}) {
        CAPTURE(mode);
        REQUIRE(::chmod(file.c_str(), mode) == 0);
        if (mode == 0700u) {
            // Owner bits are the owner's business: only group and others matter.
            CHECK_NOTHROW((void)sec::load_secret(file));
            continue;
        }
        const auto e = error_of([&] { (void)sec::load_secret(file); });
        REQUIRE(e);
        CHECK(e->code() == zmesh::errc::invalid_argument);
        const std::string what = e->what();
        CHECK(contains(what, "readable by others"));
        CHECK(contains(what, file.string()));
        CHECK(contains(what, "chmod 600 " + file.string()));
        char octal[32];
        std::snprintf(octal, sizeof octal, "(mode %04o)", static_cast<unsigned>(mode));
        CHECK(contains(what, octal));
    }
    // The public file may be read by anyone, and so may the public half of a secret file.
    REQUIRE(::chmod(file.c_str(), 0644) == 0);
    CHECK_NOTHROW((void)sec::load_public(file));
    REQUIRE(::chmod(file.c_str(), 0600) == 0);
    CHECK_NOTHROW((void)sec::load_secret(file));
}

TEST_CASE("loading keys from a missing file names it") {
    scratch_dir dir;
    const auto missing = dir / "nobody.key_secret";
    for (const bool secret : {true, false}) {
        const auto e = error_of([&] {
            (void)(secret ? sec::load_secret(missing) : sec::load_public(missing));
        });
        REQUIRE(e);
        CHECK(e->code() == zmesh::errc::invalid_argument);
        CHECK(contains(e->what(), missing.string()));
    }
    // A directory is not a certificate either.
    const auto e = error_of([&] { (void)sec::load_public(dir.path()); });
    REQUIRE(e);
    CHECK(contains(e->what(), dir.path().string()));
}

TEST_CASE("malformed keys are refused with the file and line") {
    scratch_dir dir;
    const std::vector<std::string> bad = {
        known_public.substr(0, 39),                 // too short
        known_public + "x",                         // too long
        "",                                         // empty
        known_public.substr(0, 39) + "~",           // '~' is not a Z85 digit
        known_public.substr(0, 39) + "_",           // nor '_'
        std::string(40, '#'),                       // Z85 digits, but groups above 2^32 - 1
        known_public.substr(0, 20) + " " + known_public.substr(21), // a space inside
    };
    int n = 0;
    for (const auto& key : bad) {
        CAPTURE(key);
        // The bad key on line 6, after a comment and a blank line.
        const auto file = dir / ("bad" + std::to_string(n++) + ".key");
        write_file(file,
                   "# a comment\n\nmetadata\n    name = \"x\"\ncurve\n    public-key = \"" + key +
                       "\"\n",
                   0644);
        const auto e = error_of([&] { (void)sec::load_public(file); });
        REQUIRE(e);
        CHECK(e->code() == zmesh::errc::malformed);
        CHECK(contains(e->what(), file.string() + ":6:"));
        CHECK(contains(e->what(), "public-key"));
    }
    // A bad secret key is found the same way, also by load_public (the file is corrupt).
    const auto file = dir / "badsecret.key_secret";
    write_file(file, zcert_secret(known_public, known_secret.substr(1)), 0600);
    for (const bool secret : {true, false}) {
        const auto e = error_of([&] {
            (void)(secret ? sec::load_secret(file) : sec::load_public(file));
        });
        REQUIRE(e);
        CHECK(e->code() == zmesh::errc::malformed);
        CHECK(contains(e->what(), file.string() + ":10:"));
        CHECK(contains(e->what(), "secret-key"));
    }
    // ZPL syntax errors name the line too.
    const std::vector<std::pair<std::string, std::string>> syntax = {
        {"curve\n    public-key = \"" + known_public + "\n", ":2:"},   // unterminated quote
        {"curve\n    public-key = \"" + known_public + "\" x\n", ":2:"}, // text after the value
        {"curve\n    public-key \"" + known_public + "\"\n", ":2:"},  // no '='
        {"curve\n    = \"" + known_public + "\"\n", ":2:"},           // no name
        {"curve\n    public-key = \"" + known_public + "\"\n    public-key = \"" + known_public +
             "\"\n",
         ":3:"}, // twice
    };
    for (const auto& [text, line] : syntax) {
        CAPTURE(text);
        const auto f = dir / ("syntax" + std::to_string(n++) + ".key");
        write_file(f, text, 0644);
        const auto e = error_of([&] { (void)sec::load_public(f); });
        REQUIRE(e);
        CHECK(e->code() == zmesh::errc::malformed);
        CHECK(contains(e->what(), f.string() + line));
    }
    // No public key at all: the file is named.
    const auto none = dir / "none.key";
    write_file(none, "metadata\n    name = \"x\"\ncurve\n", 0644);
    const auto e = error_of([&] { (void)sec::load_public(none); });
    REQUIRE(e);
    CHECK(e->code() == zmesh::errc::malformed);
    CHECK(contains(e->what(), none.string()));
    CHECK(contains(e->what(), "no public key"));
}

TEST_CASE("load_secret refuses a secret key that does not match its public key") {
    scratch_dir dir;
    const auto file = dir / "mixed.key_secret";
    write_file(file, zcert_secret(other_public, known_secret), 0600);
    const auto e = error_of([&] { (void)sec::load_secret(file); });
    REQUIRE(e);
    CHECK(e->code() == zmesh::errc::malformed);
    CHECK(contains(e->what(), file.string()));
    CHECK(contains(e->what(), "does not match"));

    // The halves of two generated pairs, put together by hand, are refused as well.
    const auto a = sec::generate("a");
    const auto b = sec::generate("b");
    const auto spliced = dir / "spliced.key_secret";
    write_file(spliced, zcert_secret(sec::to_z85(a.public_key), sec::to_z85(*b.secret_key)),
               0600);
    CHECK(error_of([&] { (void)sec::load_secret(spliced); }).has_value());
}

TEST_CASE("load_secret refuses a public keys file, which has no secret key") {
    scratch_dir dir;
    sec::write_certificate(sec::generate("alice"), dir.path());
    const auto file = dir / "alice.key";
    REQUIRE(::chmod(file.c_str(), 0600) == 0); // past the mode check, to the content
    const auto e = error_of([&] { (void)sec::load_secret(file); });
    REQUIRE(e);
    CHECK(e->code() == zmesh::errc::invalid_argument);
    CHECK(contains(e->what(), file.string()));
    CHECK(contains(e->what(), "no secret key"));
}

TEST_CASE("writing keys never overwrites an existing file") {
    scratch_dir dir;
    sec::write_certificate(sec::generate("alice"), dir.path());
    const auto public_before = read_file(dir / "alice.key");
    const auto secret_before = read_file(dir / "alice.key_secret");

    auto e = error_of([&] { sec::write_certificate(sec::generate("alice"), dir.path()); });
    REQUIRE(e);
    CHECK(e->code() == zmesh::errc::invalid_argument);
    CHECK(contains(e->what(), (dir / "alice.key").string()));
    CHECK(read_file(dir / "alice.key") == public_before);
    CHECK(read_file(dir / "alice.key_secret") == secret_before);

    // Either file alone blocks the pair, and nothing is written beside it.
    fs::remove(dir / "alice.key");
    e = error_of([&] { sec::write_certificate(sec::generate("alice"), dir.path()); });
    REQUIRE(e);
    CHECK(contains(e->what(), (dir / "alice.key_secret").string()));
    CHECK_FALSE(fs::exists(dir / "alice.key"));
    CHECK(read_file(dir / "alice.key_secret") == secret_before);

    // A symlink counts as existing, even a dangling one: it is never followed.
    fs::create_symlink(dir / "elsewhere", dir / "bob.key_secret");
    CHECK(error_of([&] { sec::write_certificate(sec::generate("bob"), dir.path()); }).has_value());
    CHECK_FALSE(fs::exists(dir / "elsewhere"));
    CHECK_FALSE(fs::exists(dir / "bob.key"));
}

TEST_CASE("keys are only written under plain file names") {
    scratch_dir dir;
    for (const std::string& name :
         {std::string(), std::string("a/b"), std::string("/abs"), std::string(".hidden"),
          std::string("."), std::string(".."), std::string("tab\there"),
          std::string("new\nline"), std::string("caf\xc3\xa9"), std::string("both'\""),
          std::string(300, 'x')}) {
        CAPTURE(name);
        auto cert = sec::generate("x");
        cert.name = name;
        const auto e = error_of([&] { sec::write_certificate(cert, dir.path()); });
        REQUIRE(e);
        CHECK(e->code() == zmesh::errc::invalid_argument);
        CHECK(contains(e->what(), "name"));
    }
    CHECK(fs::is_empty(dir.path()));

    // Spaces and one kind of quote are fine, and survive the trip through the file.
    for (const std::string name : {"Alice Smith", "o'brien", "say \"hi\""}) {
        CAPTURE(name);
        auto cert = sec::generate(name);
        const auto path = sec::write_certificate(cert, dir.path());
        CHECK(sec::load_public(path).name == name);
        CHECK(sec::load_secret(dir / (name + ".key_secret")).name == name);
    }
}

TEST_CASE("keys are written into a new directory, and an unwritable one is a storage error") {
    scratch_dir dir;
    const auto nested = dir / "a/b/c";
    const auto path = sec::write_certificate(sec::generate("alice"), nested);
    CHECK(path == nested / "alice.key");
    CHECK(fs::is_regular_file(nested / "alice.key_secret"));

    write_file(dir / "plain", "not a directory", 0644);
    const auto under_file = dir / "plain" / "sub";
    const auto e = error_of([&] { sec::write_certificate(sec::generate("alice"), under_file); });
    REQUIRE(e);
    CHECK(e->code() == zmesh::errc::storage);
    CHECK(contains(e->what(), under_file.string()));
}

TEST_CASE("a certificate without a secret key writes only the public keys file") {
    scratch_dir dir;
    auto cert = sec::generate("peer");
    cert.secret_key.reset();
    sec::write_certificate(cert, dir.path());
    CHECK(fs::exists(dir / "peer.key"));
    CHECK_FALSE(fs::exists(dir / "peer.key_secret"));
    CHECK(sec::load_public(dir / "peer.key").public_key == cert.public_key);
}

TEST_CASE("keys round-trip through Z85, and bad Z85 text is refused") {
    for (int i = 0; i < 20; ++i) {
        const auto cert = sec::generate("z");
        const auto text = sec::to_z85(cert.public_key);
        CHECK(text.size() == 40);
        CHECK(sec::from_z85(text) == cert.public_key);
        CHECK(sec::from_z85(sec::to_z85(*cert.secret_key)) == cert.secret_key);
    }
    // Zero bytes are all "0"s; 0xffffffff is "%nSc0" in base 85 with rfc 32's digits.
    sec::key_bytes zeros{};
    CHECK(sec::to_z85(zeros) == std::string(40, '0'));
    sec::key_bytes ones;
    ones.fill(0xff);
    std::string ff;
    for (int i = 0; i < 8; ++i) ff += "%nSc0";
    CHECK(sec::to_z85(ones) == ff);
    CHECK(sec::from_z85(ff) == ones);

    const auto known = sec::from_z85(known_public);
    REQUIRE(known);
    CHECK(sec::to_z85(*known) == known_public);

    CHECK_FALSE(sec::from_z85(""));
    CHECK_FALSE(sec::from_z85(known_public.substr(0, 39)));
    CHECK_FALSE(sec::from_z85(known_public + "0"));
    CHECK_FALSE(sec::from_z85(known_public.substr(0, 35))); // 5-aligned, but not 40
    for (const char c : {' ', '"', '\'', '~', '_', '|', '\\', ',', ';', '`', '\0', '\x80'}) {
        CAPTURE(static_cast<int>(c));
        std::string text = known_public;
        text[17] = c;
        CHECK_FALSE(sec::from_z85(text));
    }
    CHECK_FALSE(sec::from_z85(std::string(40, '#')));       // each group is 85^5 - 1
    CHECK_FALSE(sec::from_z85("%nSc1" + ff.substr(5)));      // 2^32: one past the largest group
}

TEST_CASE("a zcert secret keys file in czmq's layout loads, comments and metadata included") {
    scratch_dir dir;
    const auto file = dir / "client.key_secret";
    write_file(file, zcert_secret(known_public, known_secret), 0600);
    const auto cert = sec::load_secret(file);
    CHECK(sec::to_z85(cert.public_key) == known_public);
    REQUIRE(cert.secret_key);
    CHECK(sec::to_z85(*cert.secret_key) == known_secret);
    CHECK(cert.name == "Client One");

    // czmq's public file: the same without secret-key (and the public banner).
    const auto pub = dir / "client.key";
    write_file(pub,
               "#   ****  Generated on 2015-06-01 12:00:00 by CZMQ  ****\n"
               "#   ZeroMQ CURVE Public Certificate\n"
               "#   Exchange securely, or use a secure mechanism to verify the contents\n"
               "#   of this file after exchange. Store public certificates in your home\n"
               "#   directory, in the .curve subdirectory.\n"
               "\n"
               "metadata\n"
               "    name = \"Client One\"\n"
               "curve\n"
               "    public-key = \"" +
                   known_public + "\"\n",
               0644);
    CHECK(sec::to_z85(sec::load_public(pub).public_key) == known_public);
}

TEST_CASE("keys files load whatever ZPL's rules allow: indentation, quotes, order, comments") {
    scratch_dir dir;
    struct variant {
        const char* what;
        std::string text;
        std::string name; // expected
    };
    const std::vector<variant> variants = {
        {"pyzmq's layout: empty metadata, no name (the file stem is the name)",
         "#   ****  Generated on 2026-12-04 12:00:00.123456 by pyzmq  ****\n"
         "#   ZeroMQ CURVE **Secret** Certificate\n\nmetadata\ncurve\n    public-key = \"" +
             known_public + "\"\n    secret-key = \"" + known_secret + "\"\n",
         "v0"},
        {"pyzmq's bare metadata values, with spaces",
         "metadata\n    name = Bob Smith\n    email = bob@example.com\ncurve\n"
         "    public-key = \"" +
             known_public + "\"\n    secret-key = \"" + known_secret + "\"\n",
         "Bob Smith"},
        {"single quotes, curve first, two-space indentation",
         "curve\n  secret-key = '" + known_secret + "'\n  public-key = '" + known_public +
             "'\nmetadata\n  name = 'two'\n",
         "two"},
        {"bare keys, comments after values and between lines, tab indentation",
         "  # indented comment\ncurve    # the keys\n    public-key = " + known_public +
             "   # trailing comment\n\n    # between\n    secret-key=" + known_secret +
             "\nmetadata\n\tname = \"tabbed\"  # tab indentation\n",
         "tabbed"},
        {"CRLF line ends, other sections and nested entries ignored",
         "context\r\n    iothreads = 1\r\n    curve\r\n        public-key = \"" + other_public +
             "\"\r\ncurve\r\n    public-key = \"" + known_public + "\"\r\n    secret-key = \"" +
             known_secret + "\"\r\n    extra\r\n        deep = 1\r\nmetadata\r\n    name = \"crlf\"\r\n",
         "crlf"},
        {"no final newline", "curve\n    public-key = \"" + known_public +
                                 "\"\n    secret-key = \"" + known_secret + "\"",
         "v5"},
    };
    int n = 0;
    for (const auto& v : variants) {
        CAPTURE(v.what);
        const auto file = dir / ("v" + std::to_string(n++) + ".key_secret");
        write_file(file, v.text, 0600);
        const auto cert = sec::load_secret(file);
        CHECK(sec::to_z85(cert.public_key) == known_public);
        REQUIRE(cert.secret_key);
        CHECK(sec::to_z85(*cert.secret_key) == known_secret);
        CHECK(cert.name == v.name);
    }

    // A public-key outside the curve section is not the certificate's key.
    const auto stray = dir / "stray.key";
    write_file(stray, "public-key = \"" + known_public + "\"\nother\n    public-key = \"" +
                          known_public + "\"\n",
               0644);
    CHECK(error_of([&] { (void)sec::load_public(stray); }).has_value());

    // '#' is a Z85 digit: in a bare key it is part of the key, not a comment.
    for (int i = 0; i < 1000; ++i) {
        const auto cert = sec::generate("hash");
        const auto text = sec::to_z85(cert.public_key);
        const auto at = text.find('#');
        if (at == std::string::npos || at == 0) continue;
        const auto bare = dir / "bare.key";
        write_file(bare, "curve\n    public-key = " + text + "  # a comment\n", 0644);
        CHECK(sec::load_public(bare).public_key == cert.public_key);
        break;
    }
}

} // TEST_SUITE
