// SPDX-License-Identifier: MPL-2.0
// stop_signal.cpp — a flag set from a signal handler.
#include "stop_signal.hpp"

#include <csignal>

namespace zmesh::cli {
namespace {
volatile std::sig_atomic_t stop_flag = 0;
extern "C" void on_stop_signal(int) { stop_flag = 1; }
} // namespace

void install_stop_signals() {
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
}

bool stop_requested() noexcept { return stop_flag != 0; }

} // namespace zmesh::cli
