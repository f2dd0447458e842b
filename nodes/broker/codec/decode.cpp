// SPDX-License-Identifier: MPL-2.0
// codec/decode.cpp — dispatch on the header frame (see decode.hpp).
#include "decode.hpp"

#include "mdpc01.hpp"
#include "mdpw01.hpp"
#include "zmct01.hpp"
#include "zmwc01.hpp"

namespace zmesh::nodes::detail::codec {

decoded decode(const message& m) {
    if (m.size() < 3 || m[f_empty].size() != 0)
        return {protocol::mdpc01, malformed{"missing empty delimiter or protocol header", {}}};
    const auto header = view(m[f_header]);
    if (header == mdp::client_v1) return {protocol::mdpc01, mdpc01::decode(m)};
    if (header == mdp::worker_v1) return {protocol::mdpw01, mdpw01::decode(m)};
    if (header == mdp::client_tagged_v1) return {protocol::zmct01, zmct01::decode(m)};
    if (header == mdp::worker_credit_v1) return {protocol::zmwc01, zmwc01::decode(m)};
    return {protocol::mdpc01, malformed{"unknown protocol header", {}}};
}

void request_envelope(message& out, protocol p, std::string_view worker_id, request_tag tag,
                      std::string_view client) {
    if (p == protocol::zmwc01) zmwc01::request_envelope(out, worker_id, tag, client);
    else mdpw01::request_envelope(out, worker_id, client);
}

void command_message(message& out, protocol p, std::string_view worker_id, mdp::worker_command c) {
    if (p == protocol::zmwc01) zmwc01::command_message(out, worker_id, c);
    else mdpw01::command_message(out, worker_id, c);
}

void reply_envelope(message& out, std::string_view client_id, std::string_view service,
                    zmq::message_t&& tag) {
    if (tag.size() != 0) zmct01::reply_envelope(out, client_id, service, std::move(tag));
    else mdpc01::reply_envelope(out, client_id, service);
}

} // namespace zmesh::nodes::detail::codec
