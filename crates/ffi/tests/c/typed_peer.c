/* A C peer on a typed channel of Quotes, for tests/typed.rs. A Quote is 24 bytes, aligned to 8,
 * recorded with the type name "Quote" (the Rust side: [u64; 3] with type_name("Quote")):
 * seq, the sender's id, and a checksum of both (quote_check).
 *
 *   typed_peer send spsc|mpmc NAME N ID   send Quotes seq 0..N with id ID (SPSC: every other
 *                                         block of up to 64 by write_chunk/commit across the
 *                                         wrap, the rest by shmlane_send); print "sent N"
 *   typed_peer recv spsc NAME N           receive N Quotes (id 0) in order, by read_chunk/release
 *                                         and try_recv_many and recv; print "received N ok"
 *   typed_peer poll spsc NAME             a pollable receiver: rearm, check the fd is quiet
 *                                         (poll timeout 0), print "armed"; then poll, drain with
 *                                         try_recv until EMPTY, rearm, until rearm fails; print
 *                                         "got K" after each drain and "status S after K" at the end
 * Exit 0 on success; 1 with a "FAIL ..." line otherwise. */
#define _POSIX_C_SOURCE 200809L
#include "shmlane.h"

#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TIMEOUT_NS 20000000000LL

typedef struct Quote {
    uint64_t seq;
    uint64_t id;
    uint64_t check;
} Quote;

static uint64_t quote_check(uint64_t seq, uint64_t id) {
    return (seq * 0x9E3779B97F4A7C15ull) ^ (id << 56) ^ 0x5157u;
}

static void die(const char *what, int32_t s) {
    printf("FAIL %s: %d (%s): %s\n", what, (int)s, shmlane_strerror(s), shmlane_last_error());
    fflush(stdout);
    exit(1);
}

static void check(const Quote *q, uint64_t seq, uint64_t id) {
    if (q->seq != seq || q->id != id || q->check != quote_check(seq, id)) {
        printf("FAIL quote %llu: got seq %llu id %llu check %llx\n", (unsigned long long)seq,
               (unsigned long long)q->seq, (unsigned long long)q->id,
               (unsigned long long)q->check);
        fflush(stdout);
        exit(1);
    }
}

static shmlane_channel *open_channel(const char *kind, const char *name) {
    shmlane_channel *ch = NULL;
    int32_t s;
    if (strcmp(kind, "spsc") == 0)
        s = shmlane_spsc_open(name, SHMLANE_OPEN, sizeof(Quote), 8, "Quote", NULL, &ch);
    else
        s = shmlane_mpmc_open(name, SHMLANE_OPEN, sizeof(Quote), 8, "Quote", NULL, &ch);
    if (s != SHMLANE_OK) die("open", s);
    return ch;
}

static void fill(Quote *q, uint64_t seq, uint64_t id) {
    q->seq = seq;
    q->id = id;
    q->check = quote_check(seq, id);
}

static void send(const char *kind, const char *name, uint64_t n, uint64_t id) {
    shmlane_channel *ch = open_channel(kind, name);
    shmlane_sender *tx = NULL;
    int32_t s = shmlane_sender_open(ch, &tx);
    uint64_t i = 0, block = 0;
    if (s != SHMLANE_OK) die("sender_open", s);
    shmlane_channel_close(ch);
    while (i < n) {
        Quote q;
        if (strcmp(kind, "spsc") == 0 && (block++ & 1)) {
            void *p1, *p2;
            size_t n1, n2, k, want = (size_t)(n - i < 64 ? n - i : 64);
            s = shmlane_sender_write_chunk(tx, want, &p1, &n1, &p2, &n2);
            if (s == SHMLANE_OK) {
                for (k = 0; k < n1 + n2; k++) {
                    /* The slots are aligned: write a Quote in place. */
                    Quote *slot = k < n1 ? (Quote *)p1 + k : (Quote *)p2 + (k - n1);
                    fill(slot, i + k, id);
                }
                s = shmlane_sender_commit(tx, n1 + n2);
                if (s != SHMLANE_OK) die("commit", s);
                i += n1 + n2;
                continue;
            }
            if (s != SHMLANE_E_FULL) die("write_chunk", s);
        }
        fill(&q, i, id);
        s = shmlane_send(tx, &q, sizeof q, TIMEOUT_NS);
        if (s != SHMLANE_OK) die("send", s);
        i++;
    }
    printf("sent %llu\n", (unsigned long long)n);
    fflush(stdout);
    shmlane_sender_close(tx);
}

static void recv(const char *kind, const char *name, uint64_t n) {
    shmlane_channel *ch = open_channel(kind, name);
    shmlane_receiver *rx = NULL;
    uint64_t i = 0, round = 0;
    Quote many[32];
    int32_t s = shmlane_receiver_open(ch, &rx);
    if (s != SHMLANE_OK) die("receiver_open", s);
    shmlane_channel_close(ch);
    while (i < n) {
        switch (round++ % 3) {
        case 0: {
            const void *p1, *p2;
            size_t n1, n2, k;
            s = shmlane_receiver_read_chunk(rx, 50, &p1, &n1, &p2, &n2);
            if (s == SHMLANE_E_EMPTY) break;
            if (s != SHMLANE_OK) die("read_chunk", s);
            for (k = 0; k < n1 + n2; k++)
                check(k < n1 ? (const Quote *)p1 + k : (const Quote *)p2 + (k - n1), i + k, 0);
            s = shmlane_receiver_release(rx, n1 + n2);
            if (s != SHMLANE_OK) die("release", s);
            i += n1 + n2;
            break;
        }
        case 1: {
            size_t got = 0, k, want = (size_t)(n - i < 32 ? n - i : 32);
            s = shmlane_try_recv_many(rx, many, want, sizeof(Quote), &got);
            if (s == SHMLANE_E_EMPTY) break;
            if (s != SHMLANE_OK) die("try_recv_many", s);
            for (k = 0; k < got; k++) check(&many[k], i + k, 0);
            i += got;
            break;
        }
        default: {
            Quote q;
            s = shmlane_recv(rx, &q, sizeof q, TIMEOUT_NS);
            if (s != SHMLANE_OK) die("recv", s);
            check(&q, i, 0);
            i++;
        }
        }
    }
    printf("received %llu ok\n", (unsigned long long)n);
    fflush(stdout);
    shmlane_receiver_close(rx);
}

static void pollrx(const char *kind, const char *name) {
    shmlane_channel *ch = open_channel(kind, name);
    shmlane_receiver *rx = NULL;
    struct pollfd p;
    uint64_t got = 0;
    int fd = -1, r;
    int32_t s = shmlane_receiver_open(ch, &rx);
    if (s != SHMLANE_OK) die("receiver_open", s);
    shmlane_channel_close(ch);
    s = shmlane_receiver_fd(rx, &fd);
    if (s != SHMLANE_OK) die("receiver_fd", s);
    s = shmlane_receiver_rearm(rx);
    if (s != SHMLANE_OK) die("first rearm (want 0: nothing sent yet)", s);
    p.fd = fd;
    p.events = POLLIN;
    p.revents = 0;
    r = poll(&p, 1, 0);
    if (r != 0) {
        printf("FAIL readable while empty and armed: poll %d\n", r);
        fflush(stdout);
        exit(1);
    }
    printf("armed\n");
    fflush(stdout);
    for (;;) {
        Quote q;
        r = poll(&p, 1, 20000);
        if (r != 1) {
            printf("FAIL poll returned %d after %llu\n", r, (unsigned long long)got);
            exit(1);
        }
        while ((s = shmlane_try_recv(rx, &q, sizeof q)) == SHMLANE_OK) {
            check(&q, got, 0);
            got++;
        }
        if (s != SHMLANE_E_EMPTY) die("try_recv", s);
        printf("got %llu\n", (unsigned long long)got);
        fflush(stdout);
        do {
            s = shmlane_receiver_rearm(rx);
            if (s == SHMLANE_READY) {
                while ((s = shmlane_try_recv(rx, &q, sizeof q)) == SHMLANE_OK) {
                    check(&q, got, 0);
                    got++;
                }
                if (s != SHMLANE_E_EMPTY) die("try_recv", s);
                /* What arrived while rearming counts too: the sender may still have been
                   sending when poll first returned (a loaded machine). */
                printf("got %llu\n", (unsigned long long)got);
                fflush(stdout);
                s = SHMLANE_READY;
            }
        } while (s == SHMLANE_READY);
        if (s < 0) break;
    }
    printf("status %d after %llu\n", (int)s, (unsigned long long)got);
    fflush(stdout);
    shmlane_receiver_close(rx);
}

int main(int argc, char **argv) {
    if (argc >= 6 && strcmp(argv[1], "send") == 0) {
        send(argv[2], argv[3], strtoull(argv[4], NULL, 10), strtoull(argv[5], NULL, 10));
    } else if (argc >= 5 && strcmp(argv[1], "recv") == 0) {
        recv(argv[2], argv[3], strtoull(argv[4], NULL, 10));
    } else if (argc >= 4 && strcmp(argv[1], "poll") == 0) {
        pollrx(argv[2], argv[3]);
    } else {
        printf("FAIL usage: typed_peer send|recv|poll spsc|mpmc NAME [N [ID]]\n");
        return 1;
    }
    return 0;
}
