// SPDX-License-Identifier: MPL-2.0
// latency.cpp — percentiles over recorded samples.
#include "latency.hpp"

#include <algorithm>
#include <cmath>

namespace zmesh::bench {

std::uint64_t now_ns() noexcept {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::steady_clock::now().time_since_epoch())
                                          .count());
}

double latency_recorder::percentile_us(double q) {
    if (samples_.empty()) return 0.0;
    if (!sorted_) {
        std::sort(samples_.begin(), samples_.end());
        sorted_ = true;
    }
    auto idx = static_cast<std::size_t>(std::ceil(q * static_cast<double>(samples_.size()))) ;
    idx = std::min(idx == 0 ? 0 : idx - 1, samples_.size() - 1);
    return static_cast<double>(samples_[idx]) / 1000.0;
}

} // namespace zmesh::bench
