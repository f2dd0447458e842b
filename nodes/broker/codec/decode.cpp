// SPDX-License-Identifier: MPL-2.0
// codec/decode.cpp — dispatch on the protocol frame (see decode.hpp).
#include "decode.hpp"

#include "mdp02.hpp"
#include "mdpc01.hpp"
#include "mdpw01.hpp"
#include "zmct01.hpp"
#include "zmwc01.hpp"

namespace zmesh::nodes::detail::codec {

decoded decode(const message& m) {
    if (m.size() < 3)
        return {protocol::mdpc01, malformed{"missing empty delimiter or protocol header", {}}};
    if (m[f_empty].size() != 0) {
        // 18/MDP layout: the protocol frame comes first.
        const auto header = view(m[f_empty]);
        if (const auto c = mdp::client_command_v3(header))
            return {protocol::zmct03, mdp02::decode_client_v3(m, *c)};
        if (header == mdp::client_v2) return {protocol::mdpc02, mdp02::decode_client(m, false)};
        if (header == mdp::client_header_v2)
            return {protocol::zmct02, mdp02::decode_client(m, true)};
        if (header == mdp::worker_v2) return {protocol::mdpw02, mdp02::decode_worker(m, false)};
        if (header == mdp::worker_header_v2)
            return {protocol::zmwc02, mdp02::decode_worker(m, true)};
        return {protocol::mdpc01, malformed{"missing empty delimiter or protocol header", {}}};
    }
    const auto header = view(m[f_header]);
    if (header == mdp::client_v1) return {protocol::mdpc01, mdpc01::decode(m)};
    if (header == mdp::worker_v1) return {protocol::mdpw01, mdpw01::decode(m)};
    if (header == mdp::client_tagged_v1) return {protocol::zmct01, zmct01::decode(m)};
    if (header == mdp::worker_credit_v1) return {protocol::zmwc01, zmwc01::decode(m)};
    return {protocol::mdpc01, malformed{"unknown protocol header", {}}};
}

void request_envelope(message& out, protocol p, std::string_view worker_id, request_tag tag,
                      std::string_view client, zmq::message_t&& header) {
    switch (p) {
    case protocol::zmwc01: zmwc01::request_envelope(out, worker_id, tag, client); return;
    case protocol::mdpw02: mdp02::request_envelope(out, false, worker_id, tag, client, {}); return;
    case protocol::zmwc02:
        mdp02::request_envelope(out, true, worker_id, tag, client, std::move(header));
        return;
    default: mdpw01::request_envelope(out, worker_id, client); return;
    }
}

void command_message(message& out, protocol p, std::string_view worker_id, mdp::worker_command c) {
    switch (p) {
    case protocol::zmwc01: zmwc01::command_message(out, worker_id, c); return;
    case protocol::mdpw02: mdp02::command_message(out, false, worker_id, c); return;
    case protocol::zmwc02: mdp02::command_message(out, true, worker_id, c); return;
    default: mdpw01::command_message(out, worker_id, c); return;
    }
}

void reply_envelope(message& out, protocol p, std::string_view client_id, std::string_view service,
                    zmq::message_t&& tag, zmq::message_t&& header, bool final) {
    switch (p) {
    case protocol::zmct01: zmct01::reply_envelope(out, client_id, service, std::move(tag)); return;
    case protocol::mdpc02: mdp02::reply_envelope(out, false, client_id, service, {}, final); return;
    case protocol::zmct02:
        mdp02::reply_envelope(out, true, client_id, service, std::move(header), final);
        return;
    case protocol::zmct03:
        mdp02::reply_envelope_v3(out, client_id, service, std::move(header), final);
        return;
    default: mdpc01::reply_envelope(out, client_id, service); return;
    }
}

} // namespace zmesh::nodes::detail::codec
