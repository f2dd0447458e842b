// SPDX-License-Identifier: MPL-2.0
// stop_signal.hpp — internal: SIGINT/SIGTERM set a flag that loops in the CLI poll between waits.
#pragma once

namespace zmesh::cli {

/// Installs handlers for SIGINT and SIGTERM (without SA_RESTART, so blocking waits return early).
void install_stop_signals();

/// Whether SIGINT or SIGTERM has arrived since install_stop_signals().
bool stop_requested() noexcept;

} // namespace zmesh::cli
