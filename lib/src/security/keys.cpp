// SPDX-License-Identifier: MPL-2.0
// keys.cpp — CURVE key pairs (rfc 26), their Z85 text (rfc 32), and czmq's zcert files.
//
// The files are ZPL (rfc 4) as czmq's zcert writes them, so the reader follows ZPL's rules
// rather than one writer's exact bytes: comments and blank lines anywhere, nesting by
// indentation (4 spaces per level in ZPL; any consistent depth is accepted here), values quoted
// with "" or '' or bare, entries in any order. pyzmq's zmq.auth writes bare metadata values
// that may contain spaces, so a bare value runs to the end of the line (or to a " #" comment).
// Only curve/public-key, curve/secret-key and metadata/name are read; the rest is ignored.
//
// Secret key text is wiped from the buffers this file owns (explicit_bzero) before they are
// freed, so that it does not linger in freed heap memory for a later bug to leak.
#include <zmesh/error.hpp>
#include <zmesh/security/keys.hpp>

#include <zmq.h>

#include <fcntl.h>
#include <string.h> // explicit_bzero
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <initializer_list>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace zmesh::security {
namespace {

namespace fs = std::filesystem;

// rfc 32's alphabet, in digit order.
constexpr std::string_view z85_alphabet =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
static_assert(z85_alphabet.size() == 85);

constexpr std::size_t z85_key_size = 40;
constexpr std::string_view public_suffix = ".key";
constexpr std::string_view secret_suffix = ".key_secret";
// A certificate is a few hundred bytes; the cap keeps a wrong path (a log, a device image) from
// being read whole into memory.
constexpr std::size_t max_file_size = 64 * 1024;
// NAME_MAX on Linux: the longer of the two file names must fit.
constexpr std::size_t max_name_size = 255 - secret_suffix.size();

[[noreturn]] void fail(errc e, const std::string& what) {
    throw error(e, what);
}

std::string reason(int err) {
    return std::generic_category().message(err);
}

/// @p bytes for a message: printable ASCII as is, any other byte as \xNN.
std::string quote(std::string_view bytes) {
    std::string out;
    for (char c : bytes) {
        const auto u = static_cast<unsigned char>(c);
        if (u >= 0x20 && u < 0x7f && c != '\\') {
            out += c;
        } else {
            char hex[5];
            std::snprintf(hex, sizeof hex, "\\x%02x", u);
            out += hex;
        }
    }
    return out;
}

/// @p path as a shell word, for a command the user may paste.
std::string shell_word(const std::string& path) {
    const bool plain = !path.empty() &&
                       path.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                              "0123456789_./-+,:@%") == std::string::npos;
    if (plain) return path;
    std::string out = "'";
    for (char c : path) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

void wipe(std::string& s) noexcept {
    explicit_bzero(s.data(), s.size());
}

/// A string that is wiped when it dies: file contents and Z85 text of secret keys.
struct secret_string {
    std::string text;
    secret_string() = default;
    secret_string(const secret_string&) = delete;
    secret_string& operator=(const secret_string&) = delete;
    ~secret_string() { wipe(text); }
};

class fd_guard {
  public:
    explicit fd_guard(int fd) noexcept : fd_(fd) {}
    ~fd_guard() {
        if (fd_ >= 0) ::close(fd_);
    }
    fd_guard(const fd_guard&) = delete;
    fd_guard& operator=(const fd_guard&) = delete;
    [[nodiscard]] int get() const noexcept { return fd_; }
    /// Closes now, so that a failing close (a deferred write error) can be reported.
    /// @returns 0, or the errno of close().
    int close() noexcept {
        const int rc = ::close(std::exchange(fd_, -1));
        return rc == 0 ? 0 : errno;
    }

  private:
    int fd_;
};

void require_curve() {
    if (!zmq_has("curve")) {
        int major = 0, minor = 0, patch = 0;
        zmq_version(&major, &minor, &patch);
        fail(errc::not_running, "CURVE is not available: libzmq " + std::to_string(major) + "." +
                                    std::to_string(minor) + "." + std::to_string(patch) +
                                    " was built without it");
    }
}

// ---- reading ---------------------------------------------------------------------------------

/// What a certificate file holds, as far as zmesh reads it.
struct parsed_file {
    std::optional<key_bytes> public_key;
    std::optional<key_bytes> secret_key;
    std::optional<std::string> name;
};

/// Parses the ZPL text of @p file (see the top of this file for the rules accepted).
/// @throws zmesh::error errc::malformed naming the file and line.
parsed_file parse_certificate(std::string_view text, const std::string& file) {
    parsed_file out;
    // The path from the root to the current line: (indentation, name) of each open ancestor.
    std::vector<std::pair<std::size_t, std::string>> open;
    std::size_t line_no = 0;
    while (!text.empty()) {
        const auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        ++line_no;
        const auto where = [&] { return file + ":" + std::to_string(line_no) + ": "; };
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

        const auto indent = line.find_first_not_of(" \t");
        if (indent == std::string_view::npos || line[indent] == '#') continue;
        std::string_view rest = line.substr(indent);

        const auto name_end = std::min(rest.find_first_of(" \t=#"), rest.size());
        const std::string_view name = rest.substr(0, name_end);
        if (name.empty()) fail(errc::malformed, where() + "expected a name before '='");
        rest.remove_prefix(name_end);
        rest.remove_prefix(std::min(rest.find_first_not_of(" \t"), rest.size()));

        // A line indented no deeper than an open entry closes it (and its children).
        while (!open.empty() && open.back().first >= indent) open.pop_back();
        std::string path;
        for (const auto& entry : open) path += entry.second + "/";
        path += name;
        open.emplace_back(indent, std::string(name));

        if (rest.empty() || rest.front() == '#') continue; // a section: children follow
        if (rest.front() != '=')
            fail(errc::malformed, where() + "expected '=' after '" + quote(name) + "'");
        rest.remove_prefix(1);
        rest.remove_prefix(std::min(rest.find_first_not_of(" \t"), rest.size()));

        std::string_view value;
        if (!rest.empty() && (rest.front() == '"' || rest.front() == '\'')) {
            const auto close = rest.find(rest.front(), 1);
            if (close == std::string_view::npos)
                fail(errc::malformed,
                     where() + "unterminated quoted value of '" + quote(name) + "'");
            value = rest.substr(1, close - 1);
            rest.remove_prefix(close + 1);
            rest.remove_prefix(std::min(rest.find_first_not_of(" \t"), rest.size()));
            if (!rest.empty() && rest.front() != '#')
                fail(errc::malformed,
                     where() + "unexpected text after the value of '" + quote(name) + "'");
        } else {
            // A bare value: a comment needs whitespace before its '#', because '#' is a Z85
            // digit and a bare key may contain one.
            std::size_t end = rest.size();
            for (std::size_t i = 1; i < rest.size(); ++i) {
                if (rest[i] == '#' && (rest[i - 1] == ' ' || rest[i - 1] == '\t')) {
                    end = i;
                    break;
                }
            }
            value = rest.substr(0, end);
            const auto last = value.find_last_not_of(" \t");
            value = value.substr(0, last == std::string_view::npos ? 0 : last + 1);
        }

        // The bad value is not quoted in the message: it may be most of a secret key.
        const auto key = [&](std::optional<key_bytes>& slot, const char* what) {
            if (slot) fail(errc::malformed, where() + "a second " + what);
            slot = from_z85(value);
            if (!slot)
                fail(errc::malformed,
                     where() + what + " is not a CURVE key (40 Z85 characters, rfc 32)");
        };
        if (path == "curve/public-key") {
            key(out.public_key, "public-key");
        } else if (path == "curve/secret-key") {
            key(out.secret_key, "secret-key");
        } else if (path == "metadata/name") {
            if (out.name) fail(errc::malformed, where() + "a second name");
            out.name = std::string(value);
        }
    }
    if (!out.public_key) fail(errc::malformed, file + " holds no public key (curve/public-key)");
    return out;
}

/// Reads @p file whole. For a secret file, first checks that only its owner may read it: the
/// check is on the open descriptor, so it is about the very file that is then read.
/// @throws zmesh::error naming @p file.
void read_file(const fs::path& file, bool secret, secret_string& out) {
    const std::string name = file.string();
    const char* kind = secret ? "secret key file " : "certificate file ";
    // O_NONBLOCK: a FIFO at that path must not hang the caller; it is refused below.
    const int raw = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (raw < 0) {
        const int e = errno;
        if (e == ENOENT) fail(errc::invalid_argument, std::string("no ") + kind + name);
        fail(errc::invalid_argument, std::string("cannot open ") + kind + name + ": " + reason(e));
    }
    fd_guard fd(raw);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
        fail(errc::invalid_argument,
             std::string("cannot stat ") + kind + name + ": " + reason(errno));
    if (!S_ISREG(st.st_mode))
        fail(errc::invalid_argument, std::string(kind) + name + " is not a regular file");
    if (secret && (st.st_mode & 077) != 0) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        // A public NAME.key given where the secret file belongs is the likelier mistake.
        const bool public_name = file.extension() == ".key";
        fail(errc::invalid_argument,
             std::string(kind) + name + " is readable by others (mode " + mode +
                 "): chmod 600 " + shell_word(name) +
                 (public_name ? " (or, if it is a public NAME.key, give NAME.key_secret here)"
                              : ""));
    }
    if (static_cast<std::uintmax_t>(st.st_size) > max_file_size)
        fail(errc::malformed, std::string(kind) + name + " is too large for a certificate (" +
                                  std::to_string(st.st_size) + " bytes)");

    // Sized once and only shrunk after, so that no reallocation leaves a copy of a secret behind
    // unwiped (the tail past what read() filled is zeros).
    out.text.resize(max_file_size + 1);
    std::size_t got = 0;
    while (got < out.text.size()) {
        const auto n = ::read(fd.get(), out.text.data() + got, out.text.size() - got);
        if (n == 0) break;
        if (n < 0) {
            if (errno == EINTR) continue;
            fail(errc::invalid_argument,
                 std::string("cannot read ") + kind + name + ": " + reason(errno));
        }
        got += static_cast<std::size_t>(n);
    }
    // The file grew after fstat().
    if (got > max_file_size)
        fail(errc::malformed, std::string(kind) + name + " is too large for a certificate");
    out.text.resize(got);
}

// ---- writing ---------------------------------------------------------------------------------

void check_name(const std::string& name) {
    const auto bad = [&](const std::string& why) {
        fail(errc::invalid_argument, "invalid certificate name '" + quote(name) + "': " + why);
    };
    if (name.empty()) fail(errc::invalid_argument, "invalid certificate name: it is empty");
    for (char c : name) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u >= 0x7f) bad("printable ASCII only");
    }
    if (name.find('/') != std::string::npos) bad("it must not contain '/'");
    // Also rules out "." and "..", and files that ls does not show.
    if (name.front() == '.') bad("it must not start with '.'");
    // ZPL has no escapes: a quoted value cannot hold its own quote character.
    if (name.find('"') != std::string::npos && name.find('\'') != std::string::npos)
        bad("it must not contain both ' and \"");
    if (name.size() > max_name_size)
        bad("longer than " + std::to_string(max_name_size) + " characters");
}

std::string utc_now() {
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[64];
    if (std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0) return "?";
    return buf;
}

/// The ZPL text of @p cert; with its secret key if @p secret.
void certificate_text(const certificate& cert, bool secret, secret_string& out) {
    const char q = cert.name.find('"') == std::string::npos ? '"' : '\'';
    std::string& t = out.text;
    t.reserve(1024); // no reallocation once the secret key is in (see secret_string)
    t += "#   ****  Generated on " + utc_now() + " by zmesh  ****\n";
    if (secret) {
        t += "#   ZeroMQ CURVE **Secret** Certificate\n"
             "#   Whoever can read this file can act as its holder: keep it mode 0600, on\n"
             "#   this host. Give out the public certificate (the .key file) instead.\n";
    } else {
        t += "#   ZeroMQ CURVE Public Certificate\n"
             "#   Safe to hand to anyone. Whoever trusts it should check, by a channel they\n"
             "#   trust, that it is the holder's before adding it to an allowed-keys list.\n";
    }
    t += "\nmetadata\n    name = ";
    t += q;
    t += cert.name;
    t += q;
    t += "\ncurve\n    public-key = \"";
    t += to_z85(cert.public_key);
    t += "\"\n";
    if (secret) {
        t += "    secret-key = \"";
        secret_string z85;
        z85.text = to_z85(*cert.secret_key);
        t += z85.text;
        t += "\"\n";
    }
}

/// Creates @p path, which must not exist, with @p mode (exactly, if @p exact; else as the umask
/// narrows it), writes @p text and syncs it.
/// @throws zmesh::error naming @p path; nothing is left behind on failure.
void create_file(const fs::path& path, std::string_view text, mode_t mode, bool exact) {
    const std::string name = path.string();
    // O_EXCL: never overwrite, and never follow a symlink planted at the path.
    const int raw = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (raw < 0) {
        const int e = errno;
        if (e == EEXIST) fail(errc::invalid_argument, name + " exists already: not overwritten");
        fail(errc::storage, "cannot create " + name + ": " + reason(e));
    }
    fd_guard fd(raw);
    const auto failed = [&](const char* what, int e) {
        ::unlink(path.c_str());
        fail(errc::storage, std::string("cannot ") + what + " " + name + ": " + reason(e));
    };
    // open() created it no wider than mode (the umask and a default ACL only narrow it); this
    // makes a secret file exactly 0600, even under an odd umask such as 0277.
    if (exact && ::fchmod(fd.get(), mode) != 0) failed("chmod", errno);
    std::size_t done = 0;
    while (done < text.size()) {
        const auto n = ::write(fd.get(), text.data() + done, text.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            failed("write", errno);
        }
        done += static_cast<std::size_t>(n);
    }
    // A key pair that vanishes on a crash right after keygen printed its paths would be a
    // surprise; the cost is one sync per file, once.
    if (::fsync(fd.get()) != 0) failed("sync", errno);
    if (const int e = fd.close(); e != 0) failed("write", e);
}

} // namespace

certificate generate(std::string name) {
    require_curve();
    secret_string public_z85, secret_z85;
    public_z85.text.resize(z85_key_size + 1);
    secret_z85.text.resize(z85_key_size + 1);
    if (zmq_curve_keypair(public_z85.text.data(), secret_z85.text.data()) != 0)
        fail(errc::not_running,
             std::string("cannot make a CURVE key pair: ") + zmq_strerror(zmq_errno()));
    public_z85.text.resize(z85_key_size);
    secret_z85.text.resize(z85_key_size);
    const auto public_key = from_z85(public_z85.text);
    auto secret_key = from_z85(secret_z85.text);
    if (!public_key || !secret_key)
        fail(errc::not_running, "libzmq made a CURVE key pair that is not valid Z85");
    certificate cert;
    cert.public_key = *public_key;
    cert.secret_key = secret_key;
    cert.name = std::move(name);
    return cert;
}

fs::path write_certificate(const certificate& cert, const fs::path& dir) {
    check_name(cert.name);
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec)
        fail(errc::storage, "cannot create the directory " + dir.string() + ": " + ec.message());

    const auto public_path = dir / (cert.name + std::string(public_suffix));
    const auto secret_path = dir / (cert.name + std::string(secret_suffix));
    // Checked before writing anything, so that an existing NAME.key does not leave a fresh
    // NAME.key_secret beside it. O_EXCL still guards against a file created meanwhile.
    for (const auto* p : {&public_path, &secret_path}) {
        if (!cert.secret_key && p == &secret_path) continue;
        if (fs::exists(fs::symlink_status(*p, ec)))
            fail(errc::invalid_argument, p->string() + " exists already: not overwritten");
    }

    if (cert.secret_key) {
        secret_string text;
        certificate_text(cert, true, text);
        create_file(secret_path, text.text, 0600, true);
    }
    secret_string text;
    certificate_text(cert, false, text);
    try {
        create_file(public_path, text.text, 0644, false);
    } catch (...) {
        // A secret without its public half is half a certificate: remove what we wrote.
        if (cert.secret_key) ::unlink(secret_path.c_str());
        throw;
    }
    return public_path;
}

certificate load_public(const fs::path& file) {
    secret_string text;
    read_file(file, false, text);
    auto parsed = parse_certificate(text.text, file.string());
    certificate cert;
    cert.public_key = *parsed.public_key;
    cert.name = parsed.name ? std::move(*parsed.name) : file.stem().string();
    return cert;
}

certificate load_secret(const fs::path& file) {
    secret_string text;
    read_file(file, true, text);
    const auto name = file.string();
    auto parsed = parse_certificate(text.text, name);
    if (!parsed.secret_key)
        fail(errc::invalid_argument,
             name + " holds no secret key (curve/secret-key): is it a public certificate?");

    // A file edited by hand, or pieced together from two certificates, would otherwise pass
    // here and fail later as a handshake that no server explains.
    require_curve();
    secret_string secret_z85, derived;
    secret_z85.text = to_z85(*parsed.secret_key);
    derived.text.resize(z85_key_size + 1);
    if (zmq_curve_public(derived.text.data(), secret_z85.text.c_str()) != 0)
        fail(errc::not_running,
             std::string("cannot derive a CURVE public key: ") + zmq_strerror(zmq_errno()));
    derived.text.resize(z85_key_size);
    if (derived.text != to_z85(*parsed.public_key))
        fail(errc::malformed, name + ": the secret key does not match the public key");

    certificate cert;
    cert.public_key = *parsed.public_key;
    cert.secret_key = parsed.secret_key;
    cert.name = parsed.name ? std::move(*parsed.name) : file.stem().string();
    return cert;
}

std::string to_z85(const key_bytes& key) {
    char buf[z85_key_size + 1];
    // Cannot fail: 32 bytes are a whole number of 4-byte groups.
    zmq_z85_encode(buf, key.data(), key.size());
    std::string out(buf, z85_key_size);
    explicit_bzero(buf, sizeof buf);
    return out;
}

std::optional<key_bytes> from_z85(std::string_view text) noexcept {
    if (text.size() != z85_key_size) return std::nullopt;
    // Checked here as well as by zmq_z85_decode, so that what is accepted does not depend on how
    // strict the linked libzmq's decoder is: every character in the alphabet, and no 5-digit
    // group above 2^32 - 1 (which would wrap silently to another key).
    for (std::size_t group = 0; group < z85_key_size; group += 5) {
        std::uint64_t value = 0;
        for (std::size_t i = group; i < group + 5; ++i) {
            const auto digit = z85_alphabet.find(text[i]);
            if (digit == std::string_view::npos) return std::nullopt;
            value = value * 85 + digit;
        }
        if (value > 0xffffffffu) return std::nullopt;
    }
    char buf[z85_key_size + 1];
    text.copy(buf, z85_key_size);
    buf[z85_key_size] = '\0';
    key_bytes key{};
    const bool ok = zmq_z85_decode(key.data(), buf) != nullptr;
    explicit_bzero(buf, sizeof buf);
    if (!ok) return std::nullopt;
    return key;
}

} // namespace zmesh::security
