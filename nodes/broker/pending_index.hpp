// SPDX-License-Identifier: MPL-2.0
// pending_index.hpp — internal: the requests that are queued or at a worker, by message id
// (docs/protocol.md, "Executed once": a retry joins the pending request).
//
// Every ZMCT02/03 request is looked up, added and removed once, so this sits on the broker's hot
// path: a flat open-addressing table (zmesh/detail/id_index.hpp, which the client uses too).
#pragma once

#include <zmesh/detail/id_index.hpp>
#include <zmesh/header.hpp>

namespace zmesh::nodes::detail {

/// The id a request is indexed by: its header's.
struct request_header_id {
    template <typename Request>
    const message_id& operator()(const Request& r) const noexcept { return r.hdr.id; }
};

/// @tparam Request has a member `hdr.id` (a message_id) that does not change while indexed.
template <typename Request>
using pending_index = zmesh::detail::id_index<Request, request_header_id>;

} // namespace zmesh::nodes::detail
