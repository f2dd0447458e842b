// SPDX-License-Identifier: MPL-2.0
// peer_bench.hpp — internal: the zmesh side of the benchmarks that scripts/bench runs beside
// other software (docs/perf.md): `zmesh bench mdp-peer` (an MDP/0.1 client and plain workers
// against a broker in another process, such as `zmesh broker` or the zguide's mdbroker) and
// `zmesh bench freelance` (brokerless request/reply, the peer of NNG's req/rep).
#pragma once

#include <string>
#include <vector>

namespace zmesh::cli {

int run_mdp_peer_bench(const std::vector<std::string>& args);
int run_freelance_bench(const std::vector<std::string>& args);

} // namespace zmesh::cli
