// SPDX-License-Identifier: MPL-2.0
// telemetry.hpp — what the telemetry example's sensors send and its aggregator reads.
//
// Two kinds of message go to the aggregator, both one msgpack map in a single payload frame:
//
//   topic "telemetry.METRIC.SENSOR", header type "telemetry.sample": one reading (sample);
//   topic "telemetry.end.SENSOR",    header type "telemetry.end":    the sensor's last word, the
//                                    count and sum it sent per metric (end_report).
//
// The metric comes before the sensor in the topic so that a subscriber can follow one metric of
// every sensor with a single prefix (`zmesh sub --topic telemetry.temperature.`).
//
// Values are multiples of 1/16 (value_step). Such numbers and their sums are exact in binary
// floating point (up to 2^49 in magnitude), so the totals come out the same whatever order the
// samples are added in: the sensor adds them one by one, the aggregator per time bucket and
// SQLite over the buckets, and the three sums are equal to the last bit.
#pragma once

#include <msgpack.hpp>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace telemetry {

inline constexpr std::string_view sample_type = "telemetry.sample";
inline constexpr std::string_view end_type = "telemetry.end";
/// The sensors' taps carry each reading as text for people to watch ("21.4375 C").
inline constexpr std::string_view text_type = "telemetry.text";
inline constexpr std::string_view topic_prefix = "telemetry.";
inline constexpr std::string_view end_topic_prefix = "telemetry.end.";

/// The resolution of every value: sums of multiples of 1/16 are exact in a double.
inline constexpr double value_step = 1.0 / 16.0;

/// @p x rounded to the nearest multiple of value_step.
inline double quantise(double x) {
    return std::round(x / value_step) * value_step;
}

/// One reading of one metric.
struct sample {
    std::string sensor;  ///< e.g. "sensor.3"
    std::string metric;  ///< e.g. "temperature"
    double value = 0;    ///< a multiple of value_step
    std::string unit;    ///< e.g. "C"
    std::uint64_t n = 0; ///< 1 for the sensor's first reading of this metric, then +1
    MSGPACK_DEFINE_MAP(sensor, metric, value, unit, n)
};

/// What a sensor sent of one metric.
struct metric_total {
    std::string metric;
    std::uint64_t count = 0;
    double sum = 0;
    MSGPACK_DEFINE_MAP(metric, count, sum)
};

/// A sensor's last message: everything it sent.
struct end_report {
    std::string sensor;
    std::vector<metric_total> totals;
    bool complete = true; ///< false if it stopped (signal) before sending all its samples
    MSGPACK_DEFINE_MAP(sensor, totals, complete)
};

/// Parses a whole decimal number for a command-line flag; exits with a one-line message (status
/// 2) if @p text is not one, or lies outside [lo, hi].
inline long long parse_number(const char* program, std::string_view flag, const std::string& text,
                              long long lo, long long hi) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno != 0 || v < lo || v > hi) {
        std::fprintf(stderr, "%s: %.*s: '%s' is not a whole number from %lld to %lld\n", program,
                     static_cast<int>(flag.size()), flag.data(), text.c_str(), lo, hi);
        std::exit(2);
    }
    return v;
}

} // namespace telemetry
