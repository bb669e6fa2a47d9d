/* Typed broadcast through the C ABI, in one process, for tests/tbcast.rs (run under valgrind and
 * linked statically). argv[1]: a unique name prefix. Layouts and type names (WRONG_TYPE both ways
 * between byte and typed broadcast), loans (aligned slot, one at a time, publish / abandon /
 * misuse), the element size on publish and receive (INVALID / BUFFER_TOO_SMALL, nothing lost),
 * laps, a checksummed channel fed by loans, the subscriber's fd, close with a loan open, use after
 * close. Exit 0, or 1 after "FAIL line N: ..." lines. */
#define _POSIX_C_SOURCE 200809L
#include "shmlane.h"
#include "check.h"

#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>


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

static int same(const Quote *a, uint64_t seq) {
    Quote b;
    make(&b, seq);
    return a->seq == b.seq && a->bid == b.bid && a->ask == b.ask && a->instrument == b.instrument &&
           a->check == b.check;
}

static int readable_within(int fd, int ms) {
    struct pollfd p;
    p.fd = fd;
    p.events = POLLIN;
    p.revents = 0;
    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

static int readable(int fd) { return readable_within(fd, 0); }

int main(int argc, char **argv) {
    char n1[200], n2[200], n3[200];
    shmlane_channel *ch = NULL, *other = NULL, *bch = NULL, *ck = NULL;
    shmlane_publisher *p = NULL, *bp = NULL, *cp = NULL;
    shmlane_subscriber *s = NULL, *cs = NULL;
    shmlane_sender *tx = NULL;
    shmlane_options *o = NULL;
    Quote q, out, big[2];
    void *data = NULL, *data2 = NULL;
    size_t len = 0, max = 0;
    uint64_t seq = 0, lost = 0, k;
    int32_t kind = -1;
    int fd = -1;
    shmlane_stats st;
    if (argc < 2) return 2;
    snprintf(n1, sizeof n1, "%s-quotes", argv[1]);
    snprintf(n2, sizeof n2, "%s-bytes", argv[1]);
    snprintf(n3, sizeof n3, "%s-ck", argv[1]);

    EXPECT(shmlane_options_new(&o), SHMLANE_OK);
    EXPECT(shmlane_options_capacity(o, 8), SHMLANE_OK);
    EXPECT(shmlane_options_unlink(o, SHMLANE_UNLINK_LAST_DETACH), SHMLANE_OK);

    /* Layout arguments. */
    EXPECT(shmlane_broadcast_typed_open(n1, SHMLANE_CREATE, 0, 8, "Quote", o, &ch), SHMLANE_E_INVALID);
    EXPECT(shmlane_broadcast_typed_open(n1, SHMLANE_CREATE, 32, 3, "Quote", o, &ch), SHMLANE_E_INVALID);
    EXPECT(shmlane_broadcast_typed_open(n1, SHMLANE_CREATE, 12, 8, "Quote", o, &ch), SHMLANE_E_INVALID);
    EXPECT(shmlane_broadcast_typed_open(n1, 7, 32, 8, "Quote", o, &ch), SHMLANE_E_INVALID);
    EXPECT(shmlane_broadcast_typed_open(n1, SHMLANE_CREATE, 32, 8, "Quote", o, NULL), SHMLANE_E_NULL);
    EXPECT(shmlane_broadcast_typed_open("a/b", SHMLANE_CREATE, 32, 8, "Quote", o, &ch), SHMLANE_E_NAME);
    EXPECT(shmlane_broadcast_typed_open(n1, SHMLANE_OPEN, 32, 8, "Quote", o, &ch), SHMLANE_E_NOT_FOUND);
    EXPECT(shmlane_broadcast_typed_open(n1, SHMLANE_CREATE, 32, 8, "Quote", o, &ch), SHMLANE_OK);
    EXPECT(shmlane_channel_kind(ch, &kind), SHMLANE_OK);
    TRUE(kind == SHMLANE_KIND_BROADCAST);

    /* Another layout, type name, or the byte form: WRONG_TYPE. */
    EXPECT(shmlane_broadcast_typed_open(n1, SHMLANE_OPEN, 24, 8, "Quote", NULL, &other), SHMLANE_E_WRONG_TYPE);
    EXPECT(shmlane_broadcast_typed_open(n1, SHMLANE_OPEN, 32, 16, "Quote", NULL, &other), SHMLANE_E_WRONG_TYPE);
    EXPECT(shmlane_broadcast_typed_open(n1, SHMLANE_OPEN, 32, 8, "Trade", NULL, &other), SHMLANE_E_WRONG_TYPE);
    TRUE(strstr(shmlane_last_error(), "Quote") != NULL && strstr(shmlane_last_error(), "Trade") != NULL);
    EXPECT(shmlane_broadcast_typed_open(n1, SHMLANE_OPEN, 32, 8, NULL, NULL, &other), SHMLANE_E_WRONG_TYPE);
    EXPECT(shmlane_broadcast_open(n1, SHMLANE_OPEN, NULL, &other), SHMLANE_E_WRONG_TYPE);
    EXPECT(shmlane_spsc_open(n1, SHMLANE_OPEN, 32, 8, "Quote", NULL, &other), SHMLANE_E_WRONG_KIND);
    EXPECT(shmlane_broadcast_open(n2, SHMLANE_CREATE, o, &bch), SHMLANE_OK);
    EXPECT(shmlane_broadcast_typed_open(n2, SHMLANE_OPEN, 32, 8, "Quote", NULL, &other), SHMLANE_E_WRONG_TYPE);
    EXPECT(shmlane_broadcast_typed_open(n1, SHMLANE_OPEN, 32, 8, "Quote", NULL, &other), SHMLANE_OK);
    EXPECT(shmlane_channel_close(other), SHMLANE_OK);
    EXPECT(shmlane_sender_open(ch, &tx), SHMLANE_E_WRONG_KIND);

    /* Endpoints. */
    EXPECT(shmlane_publisher_open(ch, &p), SHMLANE_OK);
    EXPECT(shmlane_subscriber_open(ch, SHMLANE_START_NEWEST, 0, &s), SHMLANE_OK);
    EXPECT(shmlane_publisher_max_message(p, &max), SHMLANE_OK);
    TRUE(max == sizeof(Quote));
    EXPECT(shmlane_subscriber_max_message(s, &max), SHMLANE_OK);
    TRUE(max == sizeof(Quote));

    /* A loan: an aligned slot, one loan at a time, no copy publish meanwhile. */
    EXPECT(shmlane_publisher_loan(p, NULL), SHMLANE_E_NULL);
    EXPECT(shmlane_publisher_loan(NULL, &data), SHMLANE_E_NULL);
    EXPECT(shmlane_publisher_loan_publish(p, &seq), SHMLANE_E_CLAIM);
    EXPECT(shmlane_publisher_loan_abandon(p), SHMLANE_E_CLAIM);
    EXPECT(shmlane_publisher_loan(p, &data), SHMLANE_OK);
    TRUE(data != NULL && ((uintptr_t)data % 8) == 0);
    EXPECT(shmlane_publisher_loan(p, &data2), SHMLANE_E_CLAIM);
    make(&q, 0);
    EXPECT(shmlane_publish(p, &q, sizeof q, &seq), SHMLANE_E_CLAIM);
    make((Quote *)data, 0);
    /* Nothing is delivered before the publish. */
    EXPECT(shmlane_subscriber_try_recv(s, &out, sizeof out, &len, &seq), SHMLANE_E_EMPTY);
    seq = 99;
    EXPECT(shmlane_publisher_loan_publish(p, &seq), SHMLANE_OK);
    TRUE(seq == 0);
    EXPECT(shmlane_publisher_loan_publish(p, &seq), SHMLANE_E_CLAIM);
    memset(&out, 0, sizeof out);
    EXPECT(shmlane_subscriber_try_recv(s, &out, sizeof out, &len, &seq), SHMLANE_OK);
    TRUE(len == sizeof out && seq == 0 && same(&out, 0));
    EXPECT(shmlane_subscriber_try_recv(s, &out, sizeof out, &len, &seq), SHMLANE_E_EMPTY);

    /* Copies: exactly one element. */
    make(&q, 1);
    EXPECT(shmlane_publish(p, &q, sizeof q - 1, &seq), SHMLANE_E_INVALID);
    EXPECT(shmlane_publish(p, &q, sizeof q + 1, &seq), SHMLANE_E_INVALID);
    EXPECT(shmlane_publish(p, &q, 0, &seq), SHMLANE_E_INVALID);
    EXPECT(shmlane_publish(p, NULL, sizeof q, &seq), SHMLANE_E_NULL);
    EXPECT(shmlane_publish(p, &q, sizeof q, &seq), SHMLANE_OK);
    TRUE(seq == 1);
    /* A buffer shorter than the element: BUFFER_TOO_SMALL with the length, nothing consumed. */
    len = 0;
    EXPECT(shmlane_subscriber_try_recv(s, &out, sizeof out - 8, &len, &seq), SHMLANE_E_BUFFER_TOO_SMALL);
    TRUE(len == sizeof out);
    EXPECT(shmlane_subscriber_try_recv(s, NULL, sizeof out, &len, &seq), SHMLANE_E_NULL);
    EXPECT(shmlane_subscriber_try_recv(s, &out, sizeof out, NULL, &seq), SHMLANE_E_NULL);
    /* A larger buffer is fine: the element goes to its start. */
    memset(big, 0, sizeof big);
    EXPECT(shmlane_subscriber_try_recv(s, big, sizeof big, &len, &seq), SHMLANE_OK);
    TRUE(len == sizeof(Quote) && seq == 1 && same(&big[0], 1) && big[1].seq == 0);

    /* An abandoned loan: subscribers wait; the next loan is the same slot; then published. */
    EXPECT(shmlane_publisher_loan(p, &data), SHMLANE_OK);
    ((Quote *)data)->seq = 12345;
    EXPECT(shmlane_publisher_loan_abandon(p), SHMLANE_OK);
    EXPECT(shmlane_subscriber_try_recv(s, &out, sizeof out, &len, &seq), SHMLANE_E_EMPTY);
    EXPECT(shmlane_publisher_next_seq(p, &seq), SHMLANE_OK);
    TRUE(seq == 2);
    EXPECT(shmlane_publisher_loan(p, &data2), SHMLANE_OK);
    TRUE(data2 == data && ((Quote *)data2)->seq == 12345);
    make((Quote *)data2, 2);
    EXPECT(shmlane_publisher_loan_publish(p, NULL), SHMLANE_OK);
    EXPECT(shmlane_subscriber_recv(s, &out, sizeof out, &len, &seq, 1000000000LL), SHMLANE_OK);
    TRUE(seq == 2 && same(&out, 2));
    EXPECT(shmlane_subscriber_recv(s, &out, sizeof out, &len, &seq, 1000000LL), SHMLANE_E_TIMEOUT);

    /* A lap: 20 loans through 8 slots; the loss is told once, then the newest in order. */
    for (k = 3; k < 23; k++) {
        EXPECT(shmlane_publisher_loan(p, &data), SHMLANE_OK);
        make((Quote *)data, k);
        EXPECT(shmlane_publisher_loan_publish(p, &seq), SHMLANE_OK);
        TRUE(seq == k);
    }
    EXPECT(shmlane_subscriber_try_recv(s, &out, sizeof out, &len, &seq), SHMLANE_E_LAPPED);
    EXPECT(shmlane_subscriber_lost(s, &lost), SHMLANE_OK);
    TRUE(lost > 0);
    k = 3 + lost;
    while (shmlane_subscriber_try_recv(s, &out, sizeof out, &len, &seq) == SHMLANE_OK) {
        TRUE(seq == k && same(&out, k));
        k++;
    }
    TRUE(k == 23);

    /* The subscriber's descriptor. */
    EXPECT(shmlane_subscriber_fd(s, &fd), SHMLANE_OK);
    EXPECT(shmlane_subscriber_rearm(s), SHMLANE_OK);
    TRUE(!readable(fd));
    EXPECT(shmlane_publisher_loan(p, &data), SHMLANE_OK);
    make((Quote *)data, 23);
    EXPECT(shmlane_publisher_loan_publish(p, &seq), SHMLANE_OK);
    TRUE(readable_within(fd, 5000));
    EXPECT(shmlane_subscriber_try_recv(s, &out, sizeof out, &len, &seq), SHMLANE_OK);
    TRUE(seq == 23 && same(&out, 23));
    EXPECT(shmlane_subscriber_try_recv(s, &out, sizeof out, &len, &seq), SHMLANE_E_EMPTY);
    EXPECT(shmlane_subscriber_rearm(s), SHMLANE_OK);
    TRUE(!readable(fd));

    EXPECT(shmlane_publisher_stats(p, &st), SHMLANE_OK);
    TRUE(st.messages == 24 && st.bytes == 24 * sizeof(Quote));

    /* Loans are for typed channels. */
    EXPECT(shmlane_publisher_open(bch, &bp), SHMLANE_OK);
    EXPECT(shmlane_publisher_loan(bp, &data), SHMLANE_E_UNSUPPORTED);
    EXPECT(shmlane_publisher_loan_publish(bp, &seq), SHMLANE_E_UNSUPPORTED);
    EXPECT(shmlane_publisher_loan((shmlane_publisher *)s, &data), SHMLANE_E_WRONG_HANDLE);

    /* A checksummed typed channel fed by loans and copies. */
    EXPECT(shmlane_options_checksum(o, 1), SHMLANE_OK);
    /* Without room for the checksum (msg_size 32 = the element): the endpoints refuse. */
    EXPECT(shmlane_broadcast_typed_open(n3, SHMLANE_CREATE, 32, 8, "Quote", o, &ck), SHMLANE_OK);
    EXPECT(shmlane_publisher_open(ck, &cp), SHMLANE_E_MISMATCH);
    TRUE(strstr(shmlane_last_error(), "msg_size(36)") != NULL);
    EXPECT(shmlane_subscriber_open(ck, SHMLANE_START_OLDEST, 0, &cs), SHMLANE_E_MISMATCH);
    EXPECT(shmlane_channel_close(ck), SHMLANE_OK);
    ck = NULL;
    EXPECT(shmlane_options_msg_size(o, 36), SHMLANE_OK);
    EXPECT(shmlane_broadcast_typed_open(n3, SHMLANE_CREATE, 32, 8, "Quote", o, &ck), SHMLANE_OK);
    EXPECT(shmlane_publisher_open(ck, &cp), SHMLANE_OK);
    EXPECT(shmlane_subscriber_open(ck, SHMLANE_START_OLDEST, 0, &cs), SHMLANE_OK);
    for (k = 0; k < 6; k++) {
        if (k % 2) {
            make(&q, k);
            EXPECT(shmlane_publish(cp, &q, sizeof q, &seq), SHMLANE_OK);
        } else {
            EXPECT(shmlane_publisher_loan(cp, &data), SHMLANE_OK);
            make((Quote *)data, k);
            EXPECT(shmlane_publisher_loan_publish(cp, &seq), SHMLANE_OK);
        }
        EXPECT(shmlane_subscriber_try_recv(cs, &out, sizeof out, &len, &seq), SHMLANE_OK);
        TRUE(seq == k && len == sizeof out && same(&out, k));
    }

    /* Close with a loan open (abandoned), then use after close. */
    EXPECT(shmlane_publisher_loan(p, &data), SHMLANE_OK);
    EXPECT(shmlane_publisher_close(p), SHMLANE_OK);
    EXPECT(shmlane_publisher_loan(p, &data), SHMLANE_E_CLOSED);
    EXPECT(shmlane_publisher_loan_publish(p, &seq), SHMLANE_E_CLOSED);
    EXPECT(shmlane_subscriber_close(s), SHMLANE_OK);
    EXPECT(shmlane_subscriber_try_recv(s, &out, sizeof out, &len, &seq), SHMLANE_E_CLOSED);
    EXPECT(shmlane_publisher_close(bp), SHMLANE_OK);
    EXPECT(shmlane_publisher_close(cp), SHMLANE_OK);
    EXPECT(shmlane_subscriber_close(cs), SHMLANE_OK);
    EXPECT(shmlane_channel_close(ch), SHMLANE_OK);
    EXPECT(shmlane_channel_close(bch), SHMLANE_OK);
    EXPECT(shmlane_channel_close(ck), SHMLANE_OK);
    EXPECT(shmlane_options_close(o), SHMLANE_OK);
    shmlane_remove(n1);
    shmlane_remove(n2);
    shmlane_remove(n3);
    if (failures) return 1;
    printf("ok\n");
    return 0;
}
