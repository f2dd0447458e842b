// SPDX-License-Identifier: MPL-2.0
// client_handles.cpp — random client handles and the seeded ROUTER (see client_handles.hpp).
#include "client_handles.hpp"

#include <sys/random.h>

#include <cerrno>
#include <cstdlib>
#include <system_error>

namespace zmesh::nodes::detail {
namespace {

void fill_random(void* buf, std::size_t n) {
    auto* p = static_cast<unsigned char*>(buf);
    while (n > 0) {
        const ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            throw std::system_error(errno, std::generic_category(), "getrandom");
        }
        p += got;
        n -= static_cast<std::size_t>(got);
    }
}

} // namespace

std::string handle_source::next() {
    if (used_ + client_handle_size > pool_.size()) {
        fill_random(pool_.data(), pool_.size());
        used_ = 0;
    }
    std::string h(reinterpret_cast<const char*>(pool_.data() + used_), client_handle_size);
    used_ += client_handle_size;
    return h;
}

} // namespace zmesh::nodes::detail
