// SPDX-License-Identifier: MPL-2.0
// error.cpp — the "zmesh" error category.
#include <zmesh/error.hpp>

namespace zmesh {
namespace {

class zmesh_category final : public std::error_category {
  public:
    const char* name() const noexcept override { return "zmesh"; }
    std::string message(int ev) const override {
        switch (static_cast<errc>(ev)) {
        case errc::invalid_endpoint: return "invalid endpoint";
        case errc::invalid_argument: return "invalid argument";
        case errc::truncated: return "truncated buffer";
        case errc::oversized: return "oversized buffer or field";
        case errc::malformed: return "malformed buffer";
        case errc::protocol_violation: return "protocol violation";
        case errc::timeout: return "timed out";
        case errc::not_running: return "not running";
        case errc::storage: return "storage failure";
        case errc::bad_request: return "bad request";
        case errc::not_found: return "no such service";
        case errc::refused: return "refused by the worker";
        case errc::exhausted: return "workers failed every attempt";
        case errc::unavailable: return "broker limit reached";
        case errc::remote_error: return "remote error";
        case errc::forbidden: return "forbidden by the access list";
        }
        return "unknown zmesh error";
    }
};

} // namespace

const std::error_category& error_category() noexcept {
    static const zmesh_category category;
    return category;
}

} // namespace zmesh
