// SPDX-License-Identifier: MPL-2.0
// codec/mdpc01.cpp — 7/MDP client frames (see mdpc01.hpp).
#include "mdpc01.hpp"

namespace zmesh::nodes::detail::codec::mdpc01 {
namespace {
constexpr std::size_t f_service = 3, f_body = 4;
} // namespace

command decode(const message& m) {
    if (m.size() <= f_body) return malformed{"client request without service or body", {}};
    const auto service = view(m[f_service]);
    return client_request{service, valid_service_name(service), 0, f_body};
}

void reply_envelope(message& out, std::string_view client_id, std::string_view service) {
    out.push_back(client_id);
    out.push_back(zmq::message_t());
    out.push_back(mdp::client_v1);
    out.push_back(service);
}

} // namespace zmesh::nodes::detail::codec::mdpc01
