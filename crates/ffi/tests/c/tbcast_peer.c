/* A C peer on a typed broadcast channel of Quotes, for tests/tbcast.rs. A Quote is 32 bytes,
 * aligned to 8, recorded with the type name "Quote" (the Rust side: [u64; 4] with
 * type_name("Quote"): seq, the bits of bid and ask, instrument | check << 32).
 *
 *   tbcast_peer sub NAME N     subscribe from sequence number 0 and receive N Quotes (by
 *                              shmlane_subscriber_recv, every third by try_recv until not EMPTY),
 *                              each checked whole and with its seq; no loss; print "received N ok"
 *   tbcast_peer pub NAME N     publish N Quotes: through loans (written in place), every fifth by
 *                              shmlane_publish, and every 1000th loan abandoned once and taken
 *                              again (the same slot); each seq checked; print "published N"
 *   tbcast_peer loan-hang NAME K  publish K Quotes through loans, then take a loan, write half of
 *                              a Quote (seq UINT64_MAX), print "loaned" and hang until killed
 *   tbcast_peer open NAME SIZE ALIGN TYPE   open the channel with that layout (TYPE "-": NULL);
 *                              print "status S" and the last error
 * Exit 0 on success; 1 with a "FAIL ..." line otherwise. */
#define _POSIX_C_SOURCE 200809L
#include "shmlane.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TIMEOUT_NS 20000000000LL

typedef struct Quote {
    uint64_t seq;
    double bid;
    double ask;
    uint32_t instrument;
    uint32_t check;
} Quote;

static void make(Quote *q, uint64_t seq) {
    q->seq = seq;
    q->bid = 1.0 + (double)seq * 0.25;
    q->ask = q->bid + 0.5;
    q->instrument = (uint32_t)(seq % 97u);
    q->check = (uint32_t)(seq * 2654435761u) ^ q->instrument;
}

static void die(const char *what, int32_t s) {
    printf("FAIL %s: %d (%s): %s\n", what, (int)s, shmlane_strerror(s), shmlane_last_error());
    fflush(stdout);
    exit(1);
}

static void check(const Quote *q, uint64_t seq, uint64_t got_seq) {
    Quote want;
    make(&want, seq);
    if (got_seq != seq || q->seq != want.seq || q->bid != want.bid || q->ask != want.ask ||
        q->instrument != want.instrument || q->check != want.check) {
        printf("FAIL quote %llu: seq %llu, got quote seq %llu bid %f ask %f instrument %u check %u\n",
               (unsigned long long)seq, (unsigned long long)got_seq,
               (unsigned long long)q->seq, q->bid, q->ask, q->instrument, q->check);
        fflush(stdout);
        exit(1);
    }
}

static shmlane_channel *open_quotes(const char *name) {
    shmlane_channel *ch = NULL;
    int32_t s = shmlane_broadcast_typed_open(name, SHMLANE_OPEN, sizeof(Quote), 8, "Quote", NULL, &ch);
    if (s != SHMLANE_OK) die("open", s);
    return ch;
}

static int sub(const char *name, uint64_t n) {
    shmlane_channel *ch = open_quotes(name);
    shmlane_subscriber *sb = NULL;
    int32_t s = shmlane_subscriber_open(ch, SHMLANE_START_SEQ, 0, &sb);
    if (s != SHMLANE_OK) die("subscriber_open", s);
    for (uint64_t i = 0; i < n; i++) {
        Quote q;
        size_t len = 0;
        uint64_t seq = UINT64_MAX;
        if (i % 3 == 0) {
            while ((s = shmlane_subscriber_try_recv(sb, &q, sizeof q, &len, &seq)) == SHMLANE_E_EMPTY) {
            }
        } else {
            s = shmlane_subscriber_recv(sb, &q, sizeof q, &len, &seq, TIMEOUT_NS);
        }
        if (s != SHMLANE_OK) die("recv", s);
        if (len != sizeof q) die("len is not sizeof(Quote)", (int32_t)len);
        check(&q, i, seq);
    }
    uint64_t lost = 1;
    s = shmlane_subscriber_lost(sb, &lost);
    if (s != SHMLANE_OK || lost != 0) die("lost", (int32_t)lost);
    shmlane_subscriber_close(sb);
    shmlane_channel_close(ch);
    printf("received %llu ok\n", (unsigned long long)n);
    return 0;
}

static int pub(const char *name, uint64_t n) {
    shmlane_channel *ch = open_quotes(name);
    shmlane_publisher *p = NULL;
    int32_t s = shmlane_publisher_open(ch, &p);
    if (s != SHMLANE_OK) die("publisher_open", s);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t seq = UINT64_MAX;
        if (i % 5 == 4) {
            Quote q;
            make(&q, i);
            s = shmlane_publish(p, &q, sizeof q, &seq);
            if (s != SHMLANE_OK) die("publish", s);
        } else {
            void *data = NULL;
            s = shmlane_publisher_loan(p, &data);
            if (s != SHMLANE_OK) die("loan", s);
            if (i % 1000 == 500) {
                /* Half-written, then given up: the slot stays the next message's. */
                Quote *bad = data;
                bad->seq = UINT64_MAX;
                bad->check = 7;
                s = shmlane_publisher_loan_abandon(p);
                if (s != SHMLANE_OK) die("abandon", s);
                void *again = NULL;
                s = shmlane_publisher_loan(p, &again);
                if (s != SHMLANE_OK) die("loan again", s);
                if (again != data) die("the loan after an abandoned one is another slot", 0);
            }
            Quote *q = data; /* the slot is 8-byte aligned: Quote's alignment */
            make(q, i);
            s = shmlane_publisher_loan_publish(p, &seq);
            if (s != SHMLANE_OK) die("loan_publish", s);
        }
        if (seq != i) die("publish seq", (int32_t)seq);
    }
    shmlane_publisher_close(p);
    shmlane_channel_close(ch);
    printf("published %llu\n", (unsigned long long)n);
    return 0;
}

static int loan_hang(const char *name, uint64_t k) {
    shmlane_channel *ch = open_quotes(name);
    shmlane_publisher *p = NULL;
    void *data = NULL;
    int32_t s = shmlane_publisher_open(ch, &p);
    if (s != SHMLANE_OK) die("publisher_open", s);
    for (uint64_t i = 0; i < k; i++) {
        s = shmlane_publisher_loan(p, &data);
        if (s != SHMLANE_OK) die("loan", s);
        make((Quote *)data, i);
        s = shmlane_publisher_loan_publish(p, NULL);
        if (s != SHMLANE_OK) die("loan_publish", s);
    }
    s = shmlane_publisher_loan(p, &data);
    if (s != SHMLANE_OK) die("loan", s);
    ((Quote *)data)->seq = UINT64_MAX;
    ((Quote *)data)->bid = -1.0;
    printf("loaned\n");
    fflush(stdout);
    sleep(60); /* killed long before */
    printf("FAIL not killed\n");
    return 1;
}

static int open_with(const char *name, const char *size, const char *align, const char *type) {
    shmlane_channel *ch = NULL;
    int32_t s = shmlane_broadcast_typed_open(name, SHMLANE_OPEN, (size_t)strtoull(size, NULL, 10),
                                             (size_t)strtoull(align, NULL, 10),
                                             strcmp(type, "-") == 0 ? NULL : type, NULL, &ch);
    printf("status %d: %s\n", (int)s, s == SHMLANE_OK ? "" : shmlane_last_error());
    shmlane_channel_close(ch);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "sub") == 0) return sub(argv[2], strtoull(argv[3], NULL, 10));
    if (argc == 4 && strcmp(argv[1], "pub") == 0) return pub(argv[2], strtoull(argv[3], NULL, 10));
    if (argc == 4 && strcmp(argv[1], "loan-hang") == 0)
        return loan_hang(argv[2], strtoull(argv[3], NULL, 10));
    if (argc == 6 && strcmp(argv[1], "open") == 0) return open_with(argv[2], argv[3], argv[4], argv[5]);
    printf("FAIL usage\n");
    return 1;
}
