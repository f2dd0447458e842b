// SPDX-License-Identifier: MPL-2.0
// pg_server.hpp — a real, private PostgreSQL server for the tests that need one.
//
// initdb and pg_ctl (Debian's postgresql package, /usr/lib/postgresql/15/bin, or $ZMESH_PG_BIN)
// make a cluster in a fresh temporary directory, which is also its unix socket directory; it
// listens on no TCP address, so servers of tests running in parallel never meet. PostgreSQL
// refuses to run as root, and the tests do: then the directory is given to the `postgres` system
// user (made by the package) and the tools run as that user through runuser. The server is
// stopped (pg_ctl stop -m immediate) and its directory removed when the object goes, also when
// the test failed; and if the test process dies without running its destructors (a crash, an
// abort under a sanitizer, ctest's timeout kill), a watchdog process does it instead: it waits
// for the end of a pipe only the test process holds. shared() makes one server per test process;
// tests isolate themselves from one another with a schema each (conninfo()).
//
// Missing binaries or user are an error, never a skip: scripts/test installs the package.
#pragma once

#include <doctest/doctest.h>

#include <libpq-fe.h>

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>

namespace pg_test {

class pg_server {
  public:
    pg_server() {
        const char* env = std::getenv("ZMESH_PG_BIN");
        bin_ = env != nullptr && *env != '\0' ? env : "/usr/lib/postgresql/15/bin";
        for (const char* tool : {"initdb", "pg_ctl", "postgres"}) {
            if (::access((bin_ / tool).c_str(), X_OK) != 0)
                throw std::runtime_error("PostgreSQL server binaries not found: no executable " +
                                         (bin_ / tool).string() +
                                         " (install the Debian package postgresql, as "
                                         "scripts/setup.sh does, or set ZMESH_PG_BIN)");
        }
        char tmpl[] = "/tmp/zmesh-pg-XXXXXX"; // short: a socket path must fit in 107 bytes
        if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
        dir_ = tmpl;
        if (::geteuid() == 0) {
            const passwd* pw = ::getpwnam("postgres");
            if (pw == nullptr) {
                cleanup();
                throw std::runtime_error("running as root, and there is no 'postgres' user to run "
                                         "the PostgreSQL server as (the postgresql package makes "
                                         "it)");
            }
            if (::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
                cleanup();
                throw std::runtime_error("cannot give " + dir_.string() + " to user postgres");
            }
            as_ = "runuser -u postgres -- ";
        }
        ::chmod(dir_.c_str(), 0700);
        const auto log = dir_ / "setup.log";
        if (!sh("timeout 60 " + bin("initdb") + " -D " + (dir_ / "data").string() +
                " -A trust -U postgres -E UTF8 --locale=C --no-sync >>" + log.string() + " 2>&1")) {
            const auto why = read(log);
            cleanup();
            throw std::runtime_error("initdb failed: " + why);
        }
        // fsync stays on: acknowledged means flushed, in the tests as in production.
        if (!sh("timeout 60 " + bin("pg_ctl") + " -D " + (dir_ / "data").string() + " -l " +
                (dir_ / "server.log").string() + " -w -t 30 -s -o \"-k " + dir_.string() +
                " -c listen_addresses='' -c max_connections=60\" start >>" + log.string() +
                " 2>&1")) {
            const auto why = read(log) + read(dir_ / "server.log");
            stop();
            cleanup();
            throw std::runtime_error("pg_ctl start failed: " + why);
        }
        started_ = true;
        start_watchdog();
    }

    ~pg_server() {
        stop();
        cleanup();
        if (watchdog_write_ >= 0) ::close(watchdog_write_); // the watchdog finds nothing left
        if (watchdog_ > 0) ::waitpid(watchdog_, nullptr, 0);
    }
    pg_server(const pg_server&) = delete;
    pg_server& operator=(const pg_server&) = delete;

    /// A connection string for the database postgres, with @p schema (created here if
    /// missing) first on the search path, so that the store's tables are made in it.
    std::string conninfo(const std::string& schema) {
        const std::string base = "host=" + dir_.string() + " user=postgres dbname=postgres";
        std::unique_ptr<PGconn, decltype(&PQfinish)> c(PQconnectdb(base.c_str()), &PQfinish);
        if (PQstatus(c.get()) != CONNECTION_OK)
            throw std::runtime_error(std::string("test server: ") + PQerrorMessage(c.get()));
        PQsetNoticeProcessor(c.get(), [](void*, const char*) {}, nullptr); // "already exists"
        const std::string sql = "CREATE SCHEMA IF NOT EXISTS " + schema;
        std::unique_ptr<PGresult, decltype(&PQclear)> r(PQexec(c.get(), sql.c_str()), &PQclear);
        if (PQresultStatus(r.get()) != PGRES_COMMAND_OK)
            throw std::runtime_error("test server: " + sql + ": " + PQerrorMessage(c.get()));
        return base + " options='-c search_path=" + schema + "'";
    }

    /// A schema name no other caller in this process got.
    static std::string fresh_schema(const std::string& stem) {
        static std::atomic<int> n{0};
        return stem + "_" + std::to_string(::getpid()) + "_" + std::to_string(++n);
    }

    const std::filesystem::path& dir() const noexcept { return dir_; }

    /// The server of this test process, started on first use.
    static pg_server& shared() {
        static pg_server server;
        return server;
    }

  private:
    std::string bin(const char* tool) const { return as_ + (bin_ / tool).string(); }

    static bool sh(const std::string& cmd) { return std::system(cmd.c_str()) == 0; }

    static std::string read(const std::filesystem::path& p) {
        std::ifstream in(p);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }

    /// Forks a process that sleeps until the write end of a pipe closes, which happens however
    /// this process ends, and then stops the server and removes its directory. Everything it
    /// runs is prepared before fork(): the child only calls read() and execv().
    void start_watchdog() {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) return; // best effort: the destructor still cleans up
        const std::string script = bin("pg_ctl") + " -D " + (dir_ / "data").string() +
                                   " -m immediate -w -t 30 -s stop >/dev/null 2>&1; rm -rf " +
                                   dir_.string();
        std::string sh_path = "/bin/sh", dash_c = "-c", cmd = script;
        char* argv[] = {sh_path.data(), dash_c.data(), cmd.data(), nullptr};
        const pid_t pid = ::fork();
        if (pid == 0) {
            ::close(fds[1]);
            char c;
            while (::read(fds[0], &c, 1) != 0) {
            }
            ::execv("/bin/sh", argv);
            ::_exit(127);
        }
        ::close(fds[0]);
        if (pid < 0) {
            ::close(fds[1]);
            return;
        }
        watchdog_ = pid;
        watchdog_write_ = fds[1];
    }

    void stop() noexcept {
        if (!started_ && !std::filesystem::exists(dir_ / "data" / "postmaster.pid")) return;
        started_ = false;
        sh("timeout 60 " + bin("pg_ctl") + " -D " + (dir_ / "data").string() +
           " -m immediate -w -t 30 -s stop >/dev/null 2>&1");
    }

    void cleanup() noexcept {
        std::error_code ec;
        if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
    }

    std::filesystem::path bin_;
    std::filesystem::path dir_;
    std::string as_; // "runuser -u postgres -- " when root
    bool started_ = false;
    pid_t watchdog_ = -1;
    int watchdog_write_ = -1;
};

} // namespace pg_test
