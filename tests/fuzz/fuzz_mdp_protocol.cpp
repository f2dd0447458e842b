// SPDX-License-Identifier: MPL-2.0
// fuzz_mdp_protocol.cpp — libFuzzer target: the MDP frame parsers of mdp/protocol.hpp
// (parse_worker_command, parse_worker_credit, is_broker_service) on every frame of arbitrary
// multipart input, each compared with an independent reading of the rule protocol.hpp states.
//
// Input (README.md's frame scheme): one message, laid out as a worker's would be after the
// broker's ROUTER took its routing id: "" header command [credit | tag ...] ... Seeds are real
// MDPW01 and ZMWC01 commands, so mutations stay near the frames the broker really parses, but
// every frame is fed to every parser.
#include "fuzz_input.hpp"

#include <zmesh/mdp/protocol.hpp>

#include <charconv>
#include <cstdint>
#include <optional>
#include <string_view>

namespace {

namespace mdp = zmesh::mdp;

// "exactly one byte naming a known command"
std::optional<mdp::worker_command> expected_command(std::string_view f) {
    if (f.size() != 1) return std::nullopt;
    switch (static_cast<std::uint8_t>(f[0])) {
    case 0x01: return mdp::worker_command::ready;
    case 0x02: return mdp::worker_command::request;
    case 0x03: return mdp::worker_command::reply;
    case 0x04: return mdp::worker_command::heartbeat;
    case 0x05: return mdp::worker_command::disconnect;
    default: return std::nullopt;
    }
}

// "1 to 4 decimal digits, 1..max_worker_credit" (no sign, no leading zero, nothing else)
std::optional<std::uint32_t> expected_credit(std::string_view f) {
    if (f.empty() || f.size() > 4 || f.front() == '0') return std::nullopt;
    std::uint32_t n = 0;
    const auto [end, ec] = std::from_chars(f.data(), f.data() + f.size(), n);
    if (ec != std::errc() || end != f.data() + f.size()) return std::nullopt;
    if (n < 1 || n > mdp::max_worker_credit) return std::nullopt;
    return n;
}

void check_frame(std::string_view f) {
    const zmq::message_t frame(f.data(), f.size());

    const auto command = mdp::parse_worker_command(frame);
    ZMESH_FUZZ_CHECK(command == expected_command(f));
    if (command) {
        const zmq::message_t back = mdp::command_frame(*command);
        ZMESH_FUZZ_CHECK(zmesh::view(back) == f);
        ZMESH_FUZZ_CHECK(mdp::to_string(*command) != "?");
    }

    ZMESH_FUZZ_CHECK(mdp::parse_worker_credit(frame) == expected_credit(f));

    ZMESH_FUZZ_CHECK(mdp::is_broker_service(f) ==
                     (f.substr(0, 4) == "mmi." || f.substr(0, 6) == "zmesh."));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto frames = zmesh::fuzz::split_frames(data, size);
    for (auto f : frames) check_frame(f);
    // An empty frame's data() may be null; the parsers must not read it.
    check_frame(std::string_view());
    return 0;
}
