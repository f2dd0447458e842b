/* SPDX-License-Identifier: MPL-2.0 */
/* nng_reqrep.c — the peer of zmesh's brokerless request/reply in scripts/bench: an NNG req0
 * socket sends requests to a rep0 socket that echoes them, over tcp://127.0.0.1 (a port the
 * listener picks), each side in its own thread, as `zmesh bench freelance` runs its client and
 * server.
 *
 *   nng_reqrep [--size BYTES] [--duration SECONDS] [--window N] [--samples FILE]
 *
 * --window 1 (the default) is one synchronous request at a time, like the Freelance client;
 * above 1, the requester keeps N requests in flight on N contexts of the one req socket, and the
 * replier answers on N contexts of its rep socket.
 *
 * Each request starts with its send time (CLOCK_MONOTONIC ns). Output, one line:
 * "nng window=N size=B rate=R p50_us=X p99_us=Y lost=0"; --samples writes every round trip in
 * microseconds, one a line, sorted. */
#define _GNU_SOURCE
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_WINDOW 1024
#define MAX_SAMPLES 20000000

static size_t size = 64;
static double duration = 2.0;
static int window = 1;
static const char *samples_path = NULL;

static uint64_t *samples;
static long nsamples;
static atomic_int stopping;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t) t.tv_sec * 1000000000u + (uint64_t) t.tv_nsec;
}

static void fail(const char *what, int rv) {
    fprintf(stderr, "nng_reqrep: %s: %s\n", what, nng_strerror(rv));
    exit(1);
}

static nng_socket rep_sock, req_sock;

/* The replier: one thread, one context per request in flight, each echoing what it receives. */
static void *reply_loop(void *arg) {
    (void) arg;
    nng_ctx ctx[MAX_WINDOW];
    nng_aio *aio[MAX_WINDOW];
    int receiving[MAX_WINDOW];
    for (int i = 0; i < window; ++i) {
        int rv;
        if ((rv = nng_ctx_open(&ctx[i], rep_sock)) != 0) fail("rep context", rv);
        if ((rv = nng_aio_alloc(&aio[i], NULL, NULL)) != 0) fail("aio", rv);
        nng_ctx_recv(ctx[i], aio[i]);
        receiving[i] = 1;
    }
    while (!atomic_load(&stopping)) {
        for (int i = 0; i < window; ++i) {
            /* Waits on context i in turn; with one context that is a plain blocking loop. */
            nng_aio_wait(aio[i]);
            int rv = nng_aio_result(aio[i]);
            if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) goto closed;
            if (receiving[i]) {
                if (rv != 0) fail("rep receive", rv);
                nng_msg *m = nng_aio_get_msg(aio[i]);
                nng_aio_set_msg(aio[i], m);
                nng_ctx_send(ctx[i], aio[i]);
                receiving[i] = 0;
            } else {
                if (rv != 0) nng_msg_free(nng_aio_get_msg(aio[i]));
                nng_ctx_recv(ctx[i], aio[i]);
                receiving[i] = 1;
            }
        }
    }
closed:
    for (int i = 0; i < window; ++i) {
        nng_aio_stop(aio[i]);
        if (!receiving[i] && nng_aio_get_msg(aio[i])) nng_msg_free(nng_aio_get_msg(aio[i]));
        nng_aio_free(aio[i]);
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

static void usage(void) {
    fprintf(stderr, "usage: nng_reqrep [--size BYTES] [--duration SECONDS] [--window N] [--samples FILE]\n");
    exit(2);
}

static void send_request(nng_ctx ctx, nng_aio *aio) {
    nng_msg *m;
    int rv;
    if ((rv = nng_msg_alloc(&m, size)) != 0) fail("message", rv);
    memset(nng_msg_body(m), 0, size);
    uint64_t t = now_ns();
    memcpy(nng_msg_body(m), &t, sizeof t);
    nng_aio_set_msg(aio, m);
    nng_ctx_send(ctx, aio);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; ++i) {
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(argv[i - 1], "--size")) size = strtoul(v, NULL, 10);
        else if (!strcmp(argv[i - 1], "--duration")) duration = atof(v);
        else if (!strcmp(argv[i - 1], "--window")) window = atoi(v);
        else if (!strcmp(argv[i - 1], "--samples")) samples_path = v;
        else usage();
    }
    if (size < 8 || size > (64u << 20)) { fprintf(stderr, "nng_reqrep: --size must be in [8, 64M]\n"); return 2; }
    if (!(duration > 0) || duration > 3600) { fprintf(stderr, "nng_reqrep: --duration must be in (0, 3600]\n"); return 2; }
    if (window < 1 || window > MAX_WINDOW) { fprintf(stderr, "nng_reqrep: --window must be in [1, %d]\n", MAX_WINDOW); return 2; }
    samples = malloc(sizeof(uint64_t) * MAX_SAMPLES);
    if (!samples) { fprintf(stderr, "nng_reqrep: out of memory\n"); return 1; }

    int rv;
    nng_listener listener;
    if ((rv = nng_rep0_open(&rep_sock)) != 0) fail("rep socket", rv);
    if ((rv = nng_listen(rep_sock, "tcp://127.0.0.1:0", &listener, 0)) != 0) fail("listen on tcp://127.0.0.1:0", rv);
    nng_sockaddr sa;
    if ((rv = nng_listener_get_addr(listener, NNG_OPT_LOCADDR, &sa)) != 0) fail("listener address", rv);
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%u", (unsigned) ntohs(sa.s_in.sa_port));
    pthread_t replier;
    pthread_create(&replier, NULL, reply_loop, NULL);

    if ((rv = nng_req0_open(&req_sock)) != 0) fail("req socket", rv);
    if ((rv = nng_dial(req_sock, url, NULL, 0)) != 0) fail(url, rv);
    nng_ctx ctx[MAX_WINDOW];
    nng_aio *aio[MAX_WINDOW];
    for (int i = 0; i < window; ++i) {
        if ((rv = nng_ctx_open(&ctx[i], req_sock)) != 0) fail("req context", rv);
        if ((rv = nng_aio_alloc(&aio[i], NULL, NULL)) != 0) fail("aio", rv);
        nng_aio_set_timeout(aio[i], 5000);
    }
    /* Warm-up: one round trip, so the connection is up before the clock starts. */
    send_request(ctx[0], aio[0]);
    nng_aio_wait(aio[0]);
    if ((rv = nng_aio_result(aio[0])) != 0) fail("warm-up request", rv);
    nng_ctx_recv(ctx[0], aio[0]);
    nng_aio_wait(aio[0]);
    if ((rv = nng_aio_result(aio[0])) != 0) fail("warm-up reply (5 s)", rv);
    nng_msg_free(nng_aio_get_msg(aio[0]));

    long done = 0;
    const uint64_t start = now_ns();
    const uint64_t end = start + (uint64_t) (duration * 1e9);
    for (int i = 0; i < window; ++i) send_request(ctx[i], aio[i]);
    int receiving[MAX_WINDOW] = {0};
    uint64_t now = start;
    int active = window;
    while (active > 0) {
        for (int i = 0; i < window; ++i) {
            if (!aio[i]) continue;
            nng_aio_wait(aio[i]);
            if ((rv = nng_aio_result(aio[i])) != 0) fail(receiving[i] ? "reply (5 s)" : "request", rv);
            if (!receiving[i]) {
                nng_ctx_recv(ctx[i], aio[i]);
                receiving[i] = 1;
                continue;
            }
            nng_msg *m = nng_aio_get_msg(aio[i]);
            uint64_t t;
            memcpy(&t, nng_msg_body(m), sizeof t);
            nng_msg_free(m);
            now = now_ns();
            if (nsamples < MAX_SAMPLES) samples[nsamples++] = now - t;
            ++done;
            receiving[i] = 0;
            if (now < end) {
                send_request(ctx[i], aio[i]);
            } else {
                nng_aio_free(aio[i]);
                aio[i] = NULL;
                --active;
            }
        }
    }
    const double seconds = (double) (now - start) / 1e9;
    atomic_store(&stopping, 1);
    nng_close(req_sock);
    nng_close(rep_sock);
    pthread_join(replier, NULL);
    for (int i = 0; i < window; ++i) if (aio[i]) nng_aio_free(aio[i]);

    qsort(samples, (size_t) nsamples, sizeof(uint64_t), cmp_u64);
    const double p50 = nsamples ? (double) samples[(size_t) (nsamples * 0.50)] / 1000.0 : 0;
    const double p99 = nsamples ? (double) samples[(size_t) (nsamples * 0.99)] / 1000.0 : 0;
    printf("nng window=%d size=%zu rate=%.0f p50_us=%.1f p99_us=%.1f lost=0\n", window, size,
           (double) done / seconds, p50, p99);
    fflush(stdout);
    if (samples_path) {
        FILE *f = fopen(samples_path, "w");
        if (!f) { fprintf(stderr, "nng_reqrep: cannot write the samples to %s\n", samples_path); return 1; }
        for (long i = 0; i < nsamples; ++i) fprintf(f, "%.2f\n", (double) samples[i] / 1000.0);
        if (fclose(f) != 0) { fprintf(stderr, "nng_reqrep: cannot write the samples to %s\n", samples_path); return 1; }
    }
    free(samples);
    return 0;
}
