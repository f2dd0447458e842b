// SPDX-License-Identifier: MPL-2.0
// fault_worker.cpp — the worker that test_fault.cpp starts and SIGKILLs: an MDP/0.1 echo worker
// that records every request it executes.
//
// usage: fault_worker BROKER SERVICE HEARTBEAT_MS LOG_FILE SEED
//
// For each request it appends "<body>\n" to LOG_FILE with one O_APPEND write(2), then "works"
// for 0–4 ms, then replies with the same body. Logging first and replying last is what makes a
// kill during the work an executed-but-unanswered request, which the broker must re-queue; the
// log then shows the duplicate execution. It prints "ready" once it handles SIGTERM and SIGINT,
// which end it cleanly (DISCONNECT, exit 0).
#include <zmesh/mdp/worker.hpp>
#include <zmesh/message.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <random>
#include <string>
#include <thread>

namespace {

volatile std::sig_atomic_t stop_flag = 0;
extern "C" void on_stop(int) { stop_flag = 1; }

bool append_line(int fd, std::string line) {
    line.push_back('\n');
    // One write per id: O_APPEND makes it land whole at the end even if the process dies next.
    const ssize_t n = ::write(fd, line.data(), line.size());
    return n == static_cast<ssize_t>(line.size());
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 6 && argc != 7) {
        std::fprintf(stderr,
                     "usage: fault_worker BROKER SERVICE HEARTBEAT_MS LOG_FILE SEED [CREDIT]\n");
        return 2;
    }
    struct sigaction sa {};
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGTERM, &sa, nullptr);
    ::sigaction(SIGINT, &sa, nullptr);

    const int fd = ::open(argv[4], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        std::perror("fault_worker: open log");
        return 1;
    }
    std::mt19937 rng(static_cast<std::uint32_t>(std::strtoul(argv[5], nullptr, 10)));
    std::uniform_int_distribution<int> work_us(0, 4000);
    try {
        zmq::context_t ctx;
        zmesh::mdp::worker_options options;
        options.heartbeat = std::chrono::milliseconds(std::atoi(argv[3]));
        if (argc == 7) options.credit = static_cast<std::uint32_t>(std::strtoul(argv[6], nullptr, 10));
        zmesh::mdp::worker worker(ctx, argv[1], argv[2], options);
        // Tells the test that SIGTERM is now handled (a slow start must not die of it instead).
        std::printf("ready\n");
        std::fflush(stdout);
        while (!stop_flag) {
            std::optional<zmesh::message> request;
            try {
                request = worker.recv(std::chrono::milliseconds(100));
            } catch (const zmq::error_t& e) {
                if (e.num() == EINTR) continue;
                throw;
            }
            if (!request) continue;
            const std::string id = request->empty() ? std::string() : zmesh::to_string((*request)[0]);
            if (!append_line(fd, id)) {
                std::perror("fault_worker: write log");
                return 1;
            }
            std::this_thread::sleep_for(std::chrono::microseconds(work_us(rng)));
            worker.reply(std::move(*request));
        }
        worker.close();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fault_worker: %s\n", e.what());
        return 1;
    }
    ::close(fd);
    return 0;
}
