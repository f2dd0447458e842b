/* SPDX-License-Identifier: MPL-2.0 */
/* nats_bench.c — the peer of zmesh's forwarder in scripts/bench: one publisher and N subscribers
 * on one subject through a running nats-server, each a minimal client of the NATS text protocol
 * over its own TCP connection (INFO, CONNECT, SUB, PUB, MSG, PING/PONG), in its own thread.
 *
 *   nats_bench --server HOST:PORT [--size BYTES] [--subs N] [--duration SECONDS] [--window N]
 *
 * Lossless, and honestly so: nats-server itself drops nothing for a subscriber that keeps up,
 * but it cuts off a "slow consumer" whose pending bytes pass its limit (64 MiB by default).
 * So the publisher keeps at most --window messages (and at most 16 MiB) ahead of the slowest
 * subscriber, reading each subscriber's count (all run in this process), the way zmesh's
 * lossless forwarder holds the publisher back by its high-water marks. Every subscriber counts
 * and checks each message's sequence number; a gap, a duplicate or a missing message is
 * reported as lost and makes the exit status 1.
 *
 * Each payload starts with the send time (8 bytes, CLOCK_MONOTONIC ns) and the sequence number
 * (8 bytes). Output, one line: "nats subs=N size=B rate=R p50_us=X p99_us=Y lost=L sent=S",
 * where rate is messages received per second per subscriber over the publishing interval. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SUBS 64
#define SUBJECT "bench.quotes"
#define READ_BUFFER (1 << 20)
#define MAX_SAMPLES 4000000

static const char *host = "127.0.0.1";
static const char *port = NULL;
static size_t size = 64;
static int subs = 1;
static double duration = 2.0;
static long window = 10000;

struct subscriber {
    pthread_t thread;
    int fd;
    atomic_long received;   /* messages in order so far */
    atomic_long errors;     /* out-of-order or malformed messages */
    atomic_int ready;       /* 1: its SUB is known to the server (PONG seen); -1: failed */
    uint64_t *samples;      /* one-way latencies, ns */
    long nsamples;
};

static struct subscriber subscribers[MAX_SUBS];

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t) t.tv_sec * 1000000000u + (uint64_t) t.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "nats_bench: %s (nats-server at %s:%s): %s\n", what, host, port ? port : "?",
            strerror(errno));
    exit(1);
}

static int connect_server(void) {
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0 || !res) die("cannot resolve");
    int fd = socket(res->ai_family, res->ai_socktype, 0);
    if (fd < 0) die("socket");
    if (connect(fd, res->ai_addr, res->ai_addrlen) != 0) die("cannot connect");
    freeaddrinfo(res);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void write_all(int fd, const char *data, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, data, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            die("write");
        }
        data += w;
        n -= (size_t) w;
    }
}

/* Reads one protocol line (up to CRLF) byte by byte: used only during the handshake. */
static void read_line(int fd, char *line, size_t cap) {
    size_t n = 0;
    for (;;) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r <= 0) die("connection closed during the handshake");
        if (c == '\n') break;
        if (n + 1 < cap) line[n++] = c;
    }
    if (n > 0 && line[n - 1] == '\r') --n;
    line[n] = 0;
}

static void handshake(int fd) {
    char line[8192];
    read_line(fd, line, sizeof line);
    if (strncmp(line, "INFO ", 5) != 0) {
        fprintf(stderr, "nats_bench: expected INFO from %s:%s, got '%.80s'\n", host, port, line);
        exit(1);
    }
    const char *connect_cmd = "CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false,"
                              "\"name\":\"zmesh-bench\",\"lang\":\"c\",\"version\":\"1\"}\r\n";
    write_all(fd, connect_cmd, strlen(connect_cmd));
}

static void *subscribe(void *arg) {
    struct subscriber *s = arg;
    s->fd = connect_server();
    handshake(s->fd);
    const char *sub = "SUB " SUBJECT " 1\r\nPING\r\n";
    write_all(s->fd, sub, strlen(sub));
    char *buf = malloc(READ_BUFFER);
    if (!buf) die("out of memory");
    size_t have = 0;
    long expected = 1; /* the publisher's sequence numbers start at 1 */
    for (;;) {
        ssize_t r = read(s->fd, buf + have, READ_BUFFER - have);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break; /* the connection closes when the benchmark ends */
        have += (size_t) r;
        size_t at = 0;
        for (;;) {
            char *eol = memchr(buf + at, '\n', have - at);
            if (!eol) break;
            size_t line_len = (size_t) (eol - (buf + at)) + 1;
            if (strncmp(buf + at, "MSG ", 4) == 0) {
                /* MSG <subject> <sid> [reply-to] <#bytes>\r\n<payload>\r\n */
                const char *p = eol - 1;
                while (p > buf + at && p[-1] != ' ') --p;
                size_t n = strtoul(p, NULL, 10);
                if (have - at < line_len + n + 2) break; /* the payload is not all here yet */
                const char *payload = buf + at + line_len;
                uint64_t stamp = 0, seq = 0;
                if (n >= 16) {
                    memcpy(&stamp, payload, 8);
                    memcpy(&seq, payload + 8, 8);
                }
                if ((long) seq == expected) {
                    ++expected;
                    if (s->nsamples < MAX_SAMPLES) s->samples[s->nsamples++] = now_ns() - stamp;
                    atomic_store_explicit(&s->received, expected - 1, memory_order_release);
                } else {
                    atomic_fetch_add(&s->errors, 1);
                }
                at += line_len + n + 2;
            } else if (strncmp(buf + at, "PING", 4) == 0) {
                write_all(s->fd, "PONG\r\n", 6);
                at += line_len;
            } else if (strncmp(buf + at, "PONG", 4) == 0) {
                atomic_store(&s->ready, 1);
                at += line_len;
            } else if (strncmp(buf + at, "-ERR", 4) == 0) {
                fprintf(stderr, "nats_bench: the server said %.*s\n", (int) line_len - 2, buf + at);
                atomic_store(&s->ready, -1);
                at += line_len;
            } else {
                at += line_len; /* +OK, INFO updates */
            }
        }
        memmove(buf, buf + at, have - at);
        have -= at;
        if (have == READ_BUFFER) {
            fprintf(stderr, "nats_bench: a message larger than %d bytes\n", READ_BUFFER);
            exit(1);
        }
    }
    free(buf);
    return NULL;
}

static long slowest(void) {
    long low = -1;
    for (int i = 0; i < subs; ++i) {
        long r = atomic_load_explicit(&subscribers[i].received, memory_order_acquire);
        if (low < 0 || r < low) low = r;
    }
    return low;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

static void usage(void) {
    fprintf(stderr, "usage: nats_bench --server HOST:PORT [--size BYTES] [--subs N] "
                    "[--duration SECONDS] [--window N]\n");
    exit(2);
}

int main(int argc, char **argv) {
    static char server[256];
    for (int i = 1; i < argc; ++i) {
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(argv[i - 1], "--server")) snprintf(server, sizeof server, "%s", v);
        else if (!strcmp(argv[i - 1], "--size")) size = strtoul(v, NULL, 10);
        else if (!strcmp(argv[i - 1], "--subs")) subs = atoi(v);
        else if (!strcmp(argv[i - 1], "--duration")) duration = atof(v);
        else if (!strcmp(argv[i - 1], "--window")) window = atol(v);
        else usage();
    }
    char *colon = strrchr(server, ':');
    if (!colon) usage();
    *colon = 0;
    host = server;
    port = colon + 1;
    if (size < 16 || size > (64u << 20)) { fprintf(stderr, "nats_bench: --size must be in [16, 64M]\n"); return 2; }
    if (subs < 1 || subs > MAX_SUBS) { fprintf(stderr, "nats_bench: --subs must be in [1, %d]\n", MAX_SUBS); return 2; }
    if (!(duration > 0) || duration > 3600) { fprintf(stderr, "nats_bench: --duration must be in (0, 3600]\n"); return 2; }
    if (window < 1) { fprintf(stderr, "nats_bench: --window must be positive\n"); return 2; }
    if ((long) size * window > (16l << 20)) window = (16l << 20) / (long) size;
    if (window < 1) window = 1;

    for (int i = 0; i < subs; ++i) {
        subscribers[i].samples = malloc(sizeof(uint64_t) * MAX_SAMPLES);
        if (!subscribers[i].samples) die("out of memory");
        pthread_create(&subscribers[i].thread, NULL, subscribe, &subscribers[i]);
    }
    const uint64_t ready_by = now_ns() + 5000000000ull;
    for (int i = 0; i < subs; ++i)
        while (atomic_load(&subscribers[i].ready) != 1) {
            if (atomic_load(&subscribers[i].ready) < 0 || now_ns() > ready_by) {
                fprintf(stderr, "nats_bench: subscriber %d not subscribed within 5 s (%s:%s)\n", i, host, port);
                return 1;
            }
            usleep(1000);
        }

    int pub = connect_server();
    handshake(pub);
    char header[64];
    const int header_len = snprintf(header, sizeof header, "PUB " SUBJECT " %zu\r\n", size);
    const size_t command_len = (size_t) header_len + size + 2;
    /* A batch of PUB commands written with one write(), as a client library's buffer would. */
    const size_t batch_max = command_len > 65536 ? 1 : 65536 / command_len;
    char *batch = calloc(batch_max, command_len);
    if (!batch) die("out of memory");
    for (size_t b = 0; b < batch_max; ++b) {
        memcpy(batch + b * command_len, header, (size_t) header_len);
        memcpy(batch + b * command_len + header_len + size, "\r\n", 2);
    }
    long sent = 0;
    const uint64_t start = now_ns();
    const uint64_t end = start + (uint64_t) (duration * 1e9);
    uint64_t now = start;
    long received_at_end = 0;
    while ((now = now_ns()) < end) {
        long room = slowest() + window - sent;
        if (room <= 0) {
            struct timespec t = {0, 20000};
            nanosleep(&t, NULL);
            continue;
        }
        size_t n = (size_t) room < batch_max ? (size_t) room : batch_max;
        for (size_t b = 0; b < n; ++b) {
            char *payload = batch + b * command_len + header_len;
            uint64_t seq = (uint64_t) (sent + (long) b + 1);
            memcpy(payload, &now, 8);
            memcpy(payload + 8, &seq, 8);
        }
        write_all(pub, batch, n * command_len);
        sent += (long) n;
    }
    for (int i = 0; i < subs; ++i) received_at_end += atomic_load(&subscribers[i].received);
    const double seconds = (double) (now - start) / 1e9;
    /* Drain: every message sent must arrive (bounded wait). */
    const uint64_t drain_by = now_ns() + 5000000000ull;
    while (slowest() < sent && now_ns() < drain_by) usleep(1000);

    long lost = 0, errors = 0;
    long total = 0;
    for (int i = 0; i < subs; ++i) {
        lost += sent - atomic_load(&subscribers[i].received);
        errors += atomic_load(&subscribers[i].errors);
        total += subscribers[i].nsamples;
    }
    uint64_t *all = malloc(sizeof(uint64_t) * (size_t) (total ? total : 1));
    if (!all) die("out of memory");
    long k = 0;
    for (int i = 0; i < subs; ++i) {
        memcpy(all + k, subscribers[i].samples, sizeof(uint64_t) * (size_t) subscribers[i].nsamples);
        k += subscribers[i].nsamples;
    }
    qsort(all, (size_t) total, sizeof(uint64_t), cmp_u64);
    const double p50 = total ? (double) all[(size_t) (total * 0.50)] / 1000.0 : 0;
    const double p99 = total ? (double) all[(size_t) (total * 0.99)] / 1000.0 : 0;
    printf("nats subs=%d size=%zu rate=%.0f p50_us=%.1f p99_us=%.1f lost=%ld sent=%ld\n", subs, size,
           (double) received_at_end / subs / seconds, p50, p99, lost + errors, sent);
    fflush(stdout);
    close(pub);
    for (int i = 0; i < subs; ++i) shutdown(subscribers[i].fd, SHUT_RDWR);
    for (int i = 0; i < subs; ++i) pthread_join(subscribers[i].thread, NULL);
    for (int i = 0; i < subs; ++i) {
        close(subscribers[i].fd);
        free(subscribers[i].samples);
    }
    free(all);
    free(batch);
    return lost + errors == 0 ? 0 : 1;
}
