// SPDX-License-Identifier: MPL-2.0
// mdp/protocol.hpp — wire constants of the Majordomo Protocol 0.1 (7/MDP,
// https://rfc.zeromq.org/spec/7/) and of the Majordomo Management Interface (8/MMI,
// https://rfc.zeromq.org/spec/8/).
//
// Client frames (REQ, or DEALER with the empty frame):   "" "MDPC01" service body...
// Worker frames (DEALER), every command:                 "" "MDPW01" command ...
//   READY       0x01  service
//   REQUEST     0x02  client-address "" body...     (broker to worker)
//   REPLY       0x03  client-address "" body...     (worker to broker)
//   HEARTBEAT   0x04
//   DISCONNECT  0x05
//
// zmesh extension, workers with credit (docs/broker.md, "Workers with credit"): the same commands
// under their own header, so a plain MDP/0.1 peer never mistakes one for the other.
//   "" "ZMWC01" command ...
//   READY       0x01  service credit            (credit: decimal ASCII, 1..max_worker_credit)
//   REQUEST     0x02  tag client-address "" body...   (tag: 8 opaque bytes chosen by the broker)
//   REPLY       0x03  tag client-address "" body...   (the tag of the request it answers)
//   HEARTBEAT   0x04
//   DISCONNECT  0x05
// The broker sends a worker up to `credit` REQUESTs before it has their REPLYs; each REPLY
// returns one unit of credit. Replies may come in any order.
//
// zmesh extension, tagged clients (docs/broker.md, "Tagged clients"): an MDP/0.1 client request
// with a tag frame the broker returns in the reply, so a client with several requests in flight
// knows which one each reply answers.
//   "" "ZMCT01" service tag body...    (both directions; tag: 1..max_client_tag bytes, opaque)
#pragma once

#include <zmesh/export.hpp>
#include <zmesh/header.hpp>

#include <zmq.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace zmesh::mdp {

/// Protocol header of every client message, both directions.
inline constexpr std::string_view client_v1 = "MDPC01";
/// Protocol header of every worker message, both directions.
inline constexpr std::string_view worker_v1 = "MDPW01";

/// Protocol header of a tagged client request and its reply (zmesh extension).
inline constexpr std::string_view client_tagged_v1 = "ZMCT01";
/// Largest tag frame of a tagged client request.
inline constexpr std::size_t max_client_tag = 255;

/// Protocol header of every message of a worker with credit (zmesh extension), both directions.
inline constexpr std::string_view worker_credit_v1 = "ZMWC01";
/// Largest credit a worker may ask for in READY.
inline constexpr std::uint32_t max_worker_credit = 1024;
/// Size of the tag frame of a ZMWC01 REQUEST and REPLY.
inline constexpr std::size_t request_tag_size = 8;

// ---- protocols with a header frame (docs/protocol.md) -----------------------------------------
// The "...02" protocols follow 18/MDP's layout: no empty delimiter, the protocol frame first, then
// a command byte.

/// 18/MDP (MDP/0.2) client: "MDPC02" command service body...
inline constexpr std::string_view client_v2 = "MDPC02";
/// 18/MDP (MDP/0.2) worker: "MDPW02" command ...
inline constexpr std::string_view worker_v2 = "MDPW02";
/// zmesh client with a header: "ZMCT02" command service header body... (docs/protocol.md)
inline constexpr std::string_view client_header_v2 = "ZMCT02";
/// zmesh client with a header, in one frame fewer: "ZMCT03"+command service header body...
/// (docs/protocol.md). The command byte is the seventh byte of the protocol frame, so that a
/// request has as many frames as a 7/MDP one (a frame costs more in libzmq than its bytes do).
inline constexpr std::string_view client_header_v3 = "ZMCT03";
/// Size of the ZMCT03 protocol frame: the six letters and the command byte.
inline constexpr std::size_t client_frame_v3_size = 7;
/// zmesh worker with a header and credit: "ZMWC02" command ... (docs/protocol.md)
inline constexpr std::string_view worker_header_v2 = "ZMWC02";

/// Command byte of MDPC02 and ZMCT02 messages (ZMCT03: the last byte of the protocol frame).
enum class client_command_v2 : std::uint8_t {
    request = 0x01, ///< client to broker
    partial = 0x02, ///< broker to client: one part of a streamed reply
    final = 0x03,   ///< broker to client: the reply, or its last part
};

/// Command byte of MDPW02 and ZMWC02 messages (18/MDP numbering).
enum class worker_command_v2 : std::uint8_t {
    ready = 0x01,
    request = 0x02,
    partial = 0x03,
    final = 0x04,
    heartbeat = 0x05,
    disconnect = 0x06,
};

/// Reply header type of an error: body = status code (3 ASCII digits), reason.
inline constexpr std::string_view error_type = "zmesh.error";
/// Reply header type by which a ZMWC02 worker refuses a request: body = reason.
inline constexpr std::string_view refused_type = "zmesh.refused";
/// Header extension key of the fail-fast flag (value: msgpack true).
inline constexpr std::string_view fail_fast_key = "ff";
/// The broker's dead-letter queue service (docs/protocol.md, "The dead-letter queue").
inline constexpr std::string_view zmesh_dlq = "zmesh.dlq";
/// Where a worker sends the replies it kept (worker_options::replay_window) after registering
/// with a new broker; a Binary Star broker answers it (docs/patterns/binary_star.md).
inline constexpr std::string_view zmesh_replay = "zmesh.replay";

/// Marks @p h as fail-fast (docs/protocol.md): the broker answers 404 at once if no worker has
/// ever served the service, instead of queueing the request.
inline void set_fail_fast(header& h) {
    for (const auto& [key, value] : h.extensions)
        if (key == fail_fast_key) return;
    h.extensions.emplace_back(std::string(fail_fast_key), std::string("\xc3", 1)); // msgpack true
}

/// Whether @p h asks to fail fast.
[[nodiscard]] inline bool wants_fail_fast(const header& h) noexcept {
    for (const auto& [key, value] : h.extensions)
        if (key == fail_fast_key) return value.size() == 1 && value[0] == '\xc3';
    return false;
}

/// A one-byte frame holding the command byte @p c (client_command_v2 or worker_command_v2).
template <typename Command>
[[nodiscard]] inline zmq::message_t command_frame_v2(Command c) {
    const auto b = static_cast<std::uint8_t>(c);
    return zmq::message_t(&b, 1);
}

/// The ZMCT03 protocol frame of command @p c: "ZMCT03" and the command byte.
[[nodiscard]] inline zmq::message_t client_frame_v3(client_command_v2 c) {
    const char frame[client_frame_v3_size] = {'Z', 'M', 'C', 'T', '0', '3', static_cast<char>(c)};
    return zmq::message_t(frame, sizeof frame);
}

/// The command of a ZMCT03 protocol frame @p frame, or std::nullopt if it is not one.
[[nodiscard]] inline std::optional<client_command_v2>
client_command_v3(std::string_view frame) noexcept {
    if (frame.size() != client_frame_v3_size || frame.substr(0, 6) != client_header_v3)
        return std::nullopt;
    return static_cast<client_command_v2>(static_cast<std::uint8_t>(frame[6]));
}

/// Worker command byte (the frame after the header).
enum class worker_command : std::uint8_t {
    ready = 0x01,
    request = 0x02,
    reply = 0x03,
    heartbeat = 0x04,
    disconnect = 0x05,
};

/// The reference heartbeat interval of 7/MDP's implementations.
inline constexpr std::chrono::milliseconds default_heartbeat_interval{2500};
/// Missed heartbeats after which a peer is declared dead.
inline constexpr int default_liveness = 3;

/// Services whose name starts with this are answered by the broker itself (8/MMI).
inline constexpr std::string_view mmi_prefix = "mmi.";
/// 8/MMI: body = a service name; reply "200" if it has a worker, "404" otherwise.
inline constexpr std::string_view mmi_service = "mmi.service";
/// zmesh extension: reply = msgpack map of every service with waiting workers, queue depth and
/// requests in flight.
inline constexpr std::string_view zmesh_services = "zmesh.services";
/// zmesh extension: reply = msgpack map of the broker's counters (requests, replies, malformed…).
inline constexpr std::string_view zmesh_stats = "zmesh.stats";

/// Services whose name starts with this are answered by a zmesh broker itself; an unknown one
/// gets "501", as 8/MMI does for mmi.*.
inline constexpr std::string_view zmesh_prefix = "zmesh.";

/// Whether a broker answers @p service itself (mmi.* and zmesh.*), so no worker may register it.
[[nodiscard]] constexpr bool is_broker_service(std::string_view service) noexcept {
    return service.starts_with(mmi_prefix) || service.starts_with(zmesh_prefix);
}

/// Longest service name, in bytes, that zmesh's broker, worker and CLI accept. 7/MDP sets no
/// limit; names are labels that people read in logs and tables, and a bound keeps a hostile peer
/// from creating huge map keys in a broker.
inline constexpr std::size_t max_service_name = 255;

/// Why @p name cannot name a service at all, or an empty view if it can: a service name is 1 to
/// max_service_name bytes of printable ASCII without spaces (0x21..0x7E), so that no name can
/// carry control bytes into a log or a terminal. Space is excluded too: names are typed on
/// command lines and printed in space-separated tables. zmesh's broker applies the same rule to
/// requests and READYs. Reserved names pass (clients call mmi.service); see
/// worker_service_name_problem() for registration.
[[nodiscard]] constexpr std::string_view service_name_problem(std::string_view name) noexcept {
    if (name.empty()) return "is empty";
    if (name.size() > max_service_name) return "is longer than 255 bytes";
    for (char c : name)
        if (c < '!' || c > '~')
            return "has a byte that is not printable ASCII (0x21..0x7E; no spaces or control "
                   "characters)";
    return {};
}

/// Why a worker cannot register @p name, or an empty view if it can: service_name_problem(), and
/// not a name the broker answers itself (is_broker_service(): mmi.*, zmesh.*).
[[nodiscard]] constexpr std::string_view
worker_service_name_problem(std::string_view name) noexcept {
    if (auto problem = service_name_problem(name); !problem.empty()) return problem;
    if (is_broker_service(name))
        return "is reserved: mmi.* and zmesh.* are answered by the broker itself";
    return {};
}

/// @p name as it may be shown on one line of a message or log: printable ASCII as is, any
/// other byte (and the backslash) as \xNN, and no more than 64 bytes of it, with the length
/// after a longer one.
[[nodiscard]] inline std::string printable_service_name(std::string_view name) {
    static constexpr char hex[] = "0123456789abcdef";
    constexpr std::size_t shown = 64;
    std::string out;
    for (std::size_t i = 0; i < name.size() && i < shown; ++i) {
        const auto c = static_cast<unsigned char>(name[i]);
        if (c >= 0x20 && c <= 0x7e && c != '\\') {
            out += static_cast<char>(c);
        } else {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 0xf];
        }
    }
    if (name.size() > shown) out += "... (" + std::to_string(name.size()) + " bytes)";
    return out;
}

/// Decodes a command frame: exactly one byte naming a known command.
[[nodiscard]] inline std::optional<worker_command>
parse_worker_command(const zmq::message_t& frame) noexcept {
    if (frame.size() != 1) return std::nullopt;
    const auto b = *static_cast<const std::uint8_t*>(frame.data());
    if (b < 0x01 || b > 0x05) return std::nullopt;
    return static_cast<worker_command>(b);
}

/// Decodes the credit frame of a ZMWC01 READY: 1 to 4 decimal digits, 1..max_worker_credit.
[[nodiscard]] inline std::optional<std::uint32_t>
parse_worker_credit(const zmq::message_t& frame) noexcept {
    const auto* p = static_cast<const char*>(frame.data());
    if (frame.size() == 0 || frame.size() > 4 || p[0] == '0') return std::nullopt;
    std::uint32_t credit = 0;
    for (std::size_t i = 0; i < frame.size(); ++i) {
        if (p[i] < '0' || p[i] > '9') return std::nullopt;
        credit = credit * 10 + static_cast<std::uint32_t>(p[i] - '0');
    }
    if (credit > max_worker_credit) return std::nullopt;
    return credit;
}

/// A one-byte frame holding @p c.
[[nodiscard]] inline zmq::message_t command_frame(worker_command c) {
    const auto b = static_cast<std::uint8_t>(c);
    return zmq::message_t(&b, 1);
}

/// Name of a command, for logs.
[[nodiscard]] constexpr std::string_view to_string(worker_command c) noexcept {
    switch (c) {
    case worker_command::ready: return "READY";
    case worker_command::request: return "REQUEST";
    case worker_command::reply: return "REPLY";
    case worker_command::heartbeat: return "HEARTBEAT";
    case worker_command::disconnect: return "DISCONNECT";
    }
    return "?";
}

} // namespace zmesh::mdp
