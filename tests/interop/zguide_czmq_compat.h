/* SPDX-License-Identifier: MPL-2.0 */
/* zguide_czmq_compat.h — lets the zguide's C mdbroker.c build, unmodified, against czmq 4.
 *
 * The zguide's C examples were written against czmq 3, whose zctx and zsocket classes czmq 4
 * removed; Debian 12 ships czmq 4.2. mdbroker.c uses only a handful of them: a context, one
 * ROUTER socket, a bind, the context's destruction, and the interrupted flag. This header,
 * force-included by test_zguide_broker.py (cc -include), maps those calls onto libzmq directly;
 * everything else mdbroker.c uses (zmsg, zframe, zhash, zlist, zclock) is still in czmq 4 and
 * accepts a raw libzmq socket. It is zmesh's own code: nothing of the zguide is in this
 * repository, whose tests build the broker from a checkout named by ZMESH_ZGUIDE_DIR. */
#ifndef ZMESH_ZGUIDE_CZMQ_COMPAT_H
#define ZMESH_ZGUIDE_CZMQ_COMPAT_H

#include <czmq.h>

/* czmq 3's context; here a libzmq context under that name. */
typedef struct zmesh_compat_zctx zctx_t;

static inline zctx_t *zctx_new(void) { return (zctx_t *) zmq_ctx_new(); }

static inline void *zsocket_new(zctx_t *ctx, int type) { return zmq_socket(ctx, type); }

static inline int zsocket_bind(void *socket, const char *endpoint) {
    return zmq_bind(socket, endpoint);
}

/* The broker calls this only on its way out; shutting the context down unblocks every socket,
 * and the process exit that follows frees the rest. */
static inline void zctx_destroy(zctx_t **ctx) {
    if (*ctx) {
        zmq_ctx_shutdown(*ctx);
        *ctx = NULL;
    }
}

/* czmq 3 defined zctx_interrupted as an alias of zsys_interrupted, which czmq 4 keeps. */
#define zctx_interrupted zsys_interrupted

#endif
