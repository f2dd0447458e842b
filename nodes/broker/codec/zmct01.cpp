// SPDX-License-Identifier: MPL-2.0
// codec/zmct01.cpp — zmesh tagged-client frames (see zmct01.hpp).
#include "zmct01.hpp"

namespace zmesh::nodes::detail::codec::zmct01 {
namespace {
constexpr std::size_t f_service = 3, f_tag = 4, f_body = 5;
} // namespace

command decode(const message& m) {
    if (m.size() <= f_body) return malformed{"tagged client request without service, tag or body", {}};
    if (m[f_tag].size() == 0 || m[f_tag].size() > mdp::max_client_tag)
        return malformed{"tagged client request with an empty or oversized tag", {}};
    const auto service = view(m[f_service]);
    return client_request{service, valid_service_name(service), f_tag, f_body};
}

void reply_envelope(message& out, std::string_view client_id, std::string_view service,
                    zmq::message_t&& tag) {
    out.push_back(client_id);
    out.push_back(zmq::message_t());
    out.push_back(mdp::client_tagged_v1);
    out.push_back(service);
    out.push_back(std::move(tag));
}

} // namespace zmesh::nodes::detail::codec::zmct01
