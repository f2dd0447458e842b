// SPDX-License-Identifier: MPL-2.0
// latency.hpp — internal to the benchmarks: latency samples and their percentiles.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace zmesh::bench {

/// Nanoseconds on the steady clock, the timestamp benchmarks put in message bodies.
std::uint64_t now_ns() noexcept;

/// Collects samples into storage reserved up front, so recording allocates nothing.
class latency_recorder {
  public:
    explicit latency_recorder(std::size_t capacity) { samples_.reserve(capacity); }
    void record(std::uint64_t ns) noexcept {
        if (samples_.size() < samples_.capacity()) samples_.push_back(ns);
    }
    [[nodiscard]] std::size_t count() const noexcept { return samples_.size(); }
    /// The @p q quantile (0..1) in microseconds; sorts the samples on first use.
    double percentile_us(double q);

  private:
    std::vector<std::uint64_t> samples_;
    bool sorted_ = false;
};

} // namespace zmesh::bench
