// SPDX-License-Identifier: MPL-2.0
// up_command.cpp — `zmesh up`: start a whole topology from one file and supervise it.
//
//   zmesh up FILE [--state PATH] [--run-dir DIR] [--no-color]   start, supervise, stop on Ctrl-C
//   zmesh up --check FILE                                      validate only
//
// The file format, readiness, restarts and the state file are in docs/up.md; the work is in
// up/topology.cpp (the file, pure) and up/supervisor.cpp (the processes).
#include "command.hpp"
#include "up/supervisor.hpp"
#include "up/topology.hpp"

#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace zmesh::cli {

namespace {

/// The binary running now, for run[0] == "zmesh" (the same build runs every node).
std::string self_exe() {
    char buf[PATH_MAX];
    const auto n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return {};
    return std::string(buf, static_cast<std::size_t>(n));
}

/// A new scratch directory zmesh-up-NAME-XXXXXX under $TMPDIR (or /tmp).
std::string make_run_dir(const std::string& name) {
    const char* tmp = std::getenv("TMPDIR");
    std::string base = tmp && *tmp ? tmp : "/tmp";
    std::string safe;
    for (char c : name) safe += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ? c : '_';
    std::string pattern = base + "/zmesh-up-" + safe + "-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data()))
        throw std::runtime_error("cannot make a run directory under " + base + ": " +
                                 std::strerror(errno));
    return std::string(buf.data());
}

} // namespace

int run_up(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    std::string file, state_path, run_dir;
    po::options_description options("options");
    // clang-format off
    options.add_options()
        ("check", po::bool_switch(),
         "validate FILE (syntax, keys, references, cycles, variables, executables) and exit: "
         "errors are FILE:LINE: message (exit 1), success prints FILE: ok, N nodes")
        ("state", po::value(&state_path),
         "keep a JSON file at PATH with each process's pid, state, restarts and endpoints "
         "(rewritten atomically on every change)")
        ("run-dir", po::value(&run_dir),
         "the run's scratch directory, ${up.run_dir} (created if missing; default a new "
         "zmesh-up-NAME-XXXXXX under $TMPDIR or /tmp)")
        ("no-color", po::bool_switch(),
         "no colours in the name prefixes (also when NO_COLOR is set or stdout is not a terminal)")
        ("file", po::value(&file), "the topology file (TOML, see docs/up.md)");
    // clang-format on
    po::positional_options_description positional;
    positional.add("file", 1);
    po::variables_map vm;
    if (!parse("up",
               "FILE [--state PATH] [--run-dir DIR] [--no-color] | --check FILE\n\n"
               "Starts every node of a topology file in dependency order, each once the nodes it "
               "refers to are ready, prefixes their output with their names, restarts those that "
               "crash (with backoff) and stops them all, in reverse order, on Ctrl-C. The format "
               "is in docs/up.md.",
               options, args, vm, &positional))
        return ok;
    if (file.empty()) throw usage_error("missing FILE: the topology file");

    up::load_options load;
    load.zmesh_path = self_exe();
    if (vm["check"].as<bool>()) {
        if (!state_path.empty()) throw usage_error("--state does not apply to --check");
        load.run_dir = run_dir;
        try {
            const auto topo = up::load_file(file, load);
            std::printf("%s: ok, %zu nodes", file.c_str(), topo.node_count);
            if (topo.instances.size() != topo.node_count)
                std::printf(" (%zu processes)", topo.instances.size());
            std::printf("\n");
            return ok;
        } catch (const up::topology_error& e) {
            std::fprintf(stderr, "%s\n", e.what());
            return failure;
        }
    }

    if (!state_path.empty()) {
        const auto parent = std::filesystem::absolute(state_path).parent_path();
        std::error_code ec;
        if (!std::filesystem::is_directory(parent, ec))
            throw usage_error("--state " + state_path + ": the directory " + parent.string() +
                              " does not exist");
    }
    // The name (for the run directory) comes from the file; read it once without a run dir to
    // fail early, before creating anything, on a bad file.
    up::topology probe_topo;
    try {
        probe_topo = up::load_file(file, load);
    } catch (const up::topology_error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return failure;
    }
    if (run_dir.empty()) {
        run_dir = make_run_dir(probe_topo.name);
    } else {
        std::error_code ec;
        std::filesystem::create_directories(run_dir, ec);
        if (ec) throw std::runtime_error("cannot make --run-dir " + run_dir + ": " + ec.message());
        run_dir = std::filesystem::absolute(run_dir).lexically_normal().string();
    }
    load.run_dir = run_dir;
    up::topology topo;
    try {
        topo = up::load_file(file, load);
    } catch (const up::topology_error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return failure;
    }
    up::supervisor_options sup;
    sup.state_path = state_path;
    const char* no_color = std::getenv("NO_COLOR");
    sup.color = !vm["no-color"].as<bool>() && !(no_color && *no_color) && ::isatty(STDOUT_FILENO);
    return up::supervise(topo, sup);
}

} // namespace zmesh::cli
