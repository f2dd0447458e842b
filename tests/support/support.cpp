// SPDX-License-Identifier: MPL-2.0
// support.cpp — test helpers.
#include "support/support.hpp"

#include <atomic>
#include <random>
#include <unistd.h>

namespace support {
namespace {
std::atomic<unsigned> counter{0};

std::string unique_stem(const std::string& stem) {
    return stem + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}
} // namespace

std::string bind_loopback(zmq::socket_t& s) {
    s.bind("tcp://127.0.0.1:*");
    return s.get(zmq::sockopt::last_endpoint);
}

std::string ipc_endpoint(const std::string& stem) {
    static temp_dir dir;
    return "ipc://" + (dir.path() / unique_stem(stem)).string();
}

std::string inproc_endpoint(const std::string& stem) { return "inproc://" + unique_stem(stem); }

std::optional<zmesh::message> recv_for(zmq::socket_t& s, std::chrono::milliseconds timeout) {
    zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, timeout) <= 0) return std::nullopt;
    zmesh::message m;
    if (!m.recv(s, zmq::recv_flags::dontwait)) return std::nullopt;
    return m;
}

std::vector<std::string> texts(const zmesh::message& m) {
    std::vector<std::string> out;
    for (const auto& f : m) out.push_back(zmesh::to_string(f));
    return out;
}

zmesh::message frames(const std::vector<std::string>& parts) {
    zmesh::message m;
    for (const auto& p : parts) m.push_back(std::string_view(p));
    return m;
}

zmq::socket_t dealer(zmq::context_t& ctx, const std::string& endpoint,
                     const std::string& routing_id) {
    zmq::socket_t s(ctx, zmq::socket_type::dealer);
    s.set(zmq::sockopt::linger, 0);
    if (!routing_id.empty()) s.set(zmq::sockopt::routing_id, routing_id);
    s.connect(endpoint);
    return s;
}

temp_dir::temp_dir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("zmesh-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
}

temp_dir::~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

} // namespace support
