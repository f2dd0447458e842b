/* SPDX-License-Identifier: MPL-2.0 */
/* mdbroker_endpoint.h — force-included (cc -include) after tests/interop/zguide_czmq_compat.h
 * when scripts/bench builds the zguide's C mdbroker.c, unmodified, from a zguide checkout.
 *
 * mdbroker.c binds the fixed tcp://*:5555 and takes no argument for it. The benchmark needs a
 * private port (and must not collide with anything listening on 5555), so the broker's one
 * zsocket_bind call binds $ZMESH_MDBROKER_ENDPOINT instead when that is set. zmesh's own code;
 * nothing of the zguide is in this repository. */
#ifndef ZMESH_BENCH_MDBROKER_ENDPOINT_H
#define ZMESH_BENCH_MDBROKER_ENDPOINT_H

#include <stdio.h>
#include <stdlib.h>
#include <zmq.h>

static inline int zmesh_bench_bind(void *socket, const char *endpoint) {
    const char *chosen = getenv("ZMESH_MDBROKER_ENDPOINT");
    if (!chosen || !*chosen) chosen = endpoint;
    int rc = zmq_bind(socket, chosen);
    if (rc != 0) fprintf(stderr, "mdbroker: cannot bind %s: %s\n", chosen, zmq_strerror(zmq_errno()));
    else fprintf(stderr, "mdbroker: bound %s\n", chosen);
    return rc;
}

#define zsocket_bind zmesh_bench_bind

#endif
