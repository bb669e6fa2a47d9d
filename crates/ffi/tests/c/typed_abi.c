/* The typed channels and the pollable descriptors through the C ABI, in one process, for
 * tests/typed.rs (run under valgrind and linked statically). argv[1]: a unique name prefix.
 * Bad input gets its documented status; zero-copy chunks across the wrap; every receiver kind's
 * fd: quiet while empty and armed, readable after a send, SHMLANE_READY from a rearm after a
 * send that came before it. Exit 0, or 1 after "FAIL line N: ..." lines. */
#define _POSIX_C_SOURCE 200809L
#include "shmlane.h"
#include "check.h"

#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>


typedef struct Quote {
    uint64_t seq;
    uint64_t id;
    uint64_t check;
} Quote;

static int readable(int fd) {
    struct pollfd p;
    p.fd = fd;
    p.events = POLLIN;
    p.revents = 0;
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static int readable_within(int fd, int ms) {
    struct pollfd p;
    p.fd = fd;
    p.events = POLLIN;
    p.revents = 0;
    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

int main(int argc, char **argv) {
    char n1[200], n2[200], n3[200], n4[200];
    shmlane_channel *ch = NULL, *ch2 = NULL, *mp = NULL, *bch = NULL, *bc = NULL;
    shmlane_sender *tx = NULL, *tx2 = NULL, *mtx = NULL;
    shmlane_receiver *rx = NULL, *mrx = NULL;
    shmlane_options *o = NULL;
    Quote q, out, many[8];
    size_t k, cnt, a, b;
    void *w1, *w2;
    const void *r1, *r2;
    int fd = -1, fd2 = -1, kind = -1;
    shmlane_stats st;
    if (argc < 2) return 2;
    snprintf(n1, sizeof n1, "%s-spsc", argv[1]);
    snprintf(n2, sizeof n2, "%s-mpmc", argv[1]);
    snprintf(n3, sizeof n3, "%s-bytes", argv[1]);
    snprintf(n4, sizeof n4, "%s-bcast", argv[1]);
    memset(&q, 0, sizeof q);

    /* Layout arguments. */
    EXPECT(shmlane_spsc_open(n1, SHMLANE_CREATE, 0, 8, "Quote", NULL, &ch), SHMLANE_E_INVALID);
    EXPECT(shmlane_spsc_open(n1, SHMLANE_CREATE, 24, 3, "Quote", NULL, &ch), SHMLANE_E_INVALID);
    EXPECT(shmlane_spsc_open(n1, SHMLANE_CREATE, 12, 8, "Quote", NULL, &ch), SHMLANE_E_INVALID);
    EXPECT(shmlane_spsc_open(n1, SHMLANE_CREATE, 24, 0, "Quote", NULL, &ch), SHMLANE_E_INVALID);
    EXPECT(shmlane_spsc_open(n1, 7, 24, 8, "Quote", NULL, &ch), SHMLANE_E_INVALID);
    EXPECT(shmlane_spsc_open(n1, SHMLANE_CREATE, 24, 8, "Quote", NULL, NULL), SHMLANE_E_NULL);
    EXPECT(shmlane_spsc_open("a/b", SHMLANE_CREATE, 24, 8, "Quote", NULL, &ch), SHMLANE_E_NAME);
    EXPECT(shmlane_spsc_open(n1, SHMLANE_OPEN, 24, 8, "Quote", NULL, &ch), SHMLANE_E_NOT_FOUND);

    EXPECT(shmlane_options_new(&o), SHMLANE_OK);
    EXPECT(shmlane_options_capacity(o, 8), SHMLANE_OK);
    EXPECT(shmlane_spsc_open(n1, SHMLANE_CREATE, 24, 8, "Quote", o, &ch), SHMLANE_OK);
    EXPECT(shmlane_channel_kind(ch, &kind), SHMLANE_OK);
    TRUE(kind == SHMLANE_KIND_SPSC);
    /* Wrong element size, alignment, type name: WRONG_TYPE naming both types. */
    EXPECT(shmlane_spsc_open(n1, SHMLANE_OPEN, 16, 8, "Quote", NULL, &ch2), SHMLANE_E_WRONG_TYPE);
    EXPECT(shmlane_spsc_open(n1, SHMLANE_OPEN, 24, 4, "Quote", NULL, &ch2), SHMLANE_E_WRONG_TYPE);
    EXPECT(shmlane_spsc_open(n1, SHMLANE_OPEN, 24, 8, "Trade", NULL, &ch2), SHMLANE_E_WRONG_TYPE);
    TRUE(strstr(shmlane_last_error(), "Quote") != NULL);
    TRUE(strstr(shmlane_last_error(), "Trade") != NULL);
    EXPECT(shmlane_spsc_open(n1, SHMLANE_OPEN, 24, 8, NULL, NULL, &ch2), SHMLANE_E_WRONG_TYPE);
    TRUE(strstr(shmlane_last_error(), "Quote") != NULL);
    EXPECT(shmlane_mpmc_open(n1, SHMLANE_OPEN, 24, 8, "Quote", NULL, &ch2), SHMLANE_E_WRONG_KIND);
    EXPECT(shmlane_bytes_open(n1, SHMLANE_OPEN, NULL, &ch2), SHMLANE_E_WRONG_KIND);

    /* Endpoints. */
    EXPECT(shmlane_sender_open(ch, &tx), SHMLANE_OK);
    EXPECT(shmlane_sender_open(ch, &tx2), SHMLANE_E_ROLE_TAKEN);
    EXPECT(shmlane_receiver_open(ch, &rx), SHMLANE_OK);
    EXPECT(shmlane_byte_sender_open(ch, (shmlane_byte_sender **)&tx2), SHMLANE_E_WRONG_KIND);
    EXPECT(shmlane_try_send((shmlane_sender *)rx, &q, sizeof q), SHMLANE_E_WRONG_HANDLE);
    EXPECT(shmlane_try_send(tx, &q, 16), SHMLANE_E_INVALID);
    EXPECT(shmlane_try_send(tx, &q, 32), SHMLANE_E_INVALID);
    EXPECT(shmlane_try_send(tx, NULL, sizeof q), SHMLANE_E_NULL);
    /* 2 x 12 bytes is one Quote's length: still the wrong element size. */
    EXPECT(shmlane_try_send_many(tx, many, 2, 12, &cnt), SHMLANE_E_INVALID);
    EXPECT(shmlane_try_recv_many(rx, many, 2, 12, &cnt), SHMLANE_E_INVALID);
    EXPECT(shmlane_try_recv(rx, &out, sizeof out), SHMLANE_E_EMPTY);
    EXPECT(shmlane_try_recv(rx, &out, 23), SHMLANE_E_INVALID);
    EXPECT(shmlane_recv(rx, &out, sizeof out, 1000000), SHMLANE_E_TIMEOUT);

    /* The descriptor: rearm before fd is INVALID; quiet while empty and armed. */
    EXPECT(shmlane_receiver_rearm(rx), SHMLANE_E_INVALID);
    EXPECT(shmlane_receiver_fd(rx, NULL), SHMLANE_E_NULL);
    EXPECT(shmlane_receiver_fd(rx, &fd), SHMLANE_OK);
    EXPECT(shmlane_receiver_fd(rx, &fd2), SHMLANE_OK);
    TRUE(fd >= 0 && fd == fd2);
    TRUE(!readable(fd));
    EXPECT(shmlane_receiver_rearm(rx), SHMLANE_OK);
    TRUE(!readable(fd));
    q.seq = 1;
    EXPECT(shmlane_try_send(tx, &q, sizeof q), SHMLANE_OK);
    TRUE(readable_within(fd, 5000));
    EXPECT(shmlane_try_recv(rx, &out, sizeof out), SHMLANE_OK);
    TRUE(out.seq == 1);
    EXPECT(shmlane_try_recv(rx, &out, sizeof out), SHMLANE_E_EMPTY);
    EXPECT(shmlane_receiver_rearm(rx), SHMLANE_OK);
    TRUE(!readable(fd));
    /* A send between the drain and the rearm: READY, and the fd readable at once. */
    q.seq = 2;
    EXPECT(shmlane_try_send(tx, &q, sizeof q), SHMLANE_OK);
    TRUE(readable_within(fd, 5000));
    EXPECT(shmlane_receiver_rearm(rx), SHMLANE_READY);
    TRUE(readable(fd));
    EXPECT(shmlane_try_recv(rx, &out, sizeof out), SHMLANE_OK);
    TRUE(out.seq == 2);

    /* Zero copy across the wrap (capacity 8): 5 in, 5 out, then 8 slots as 3 + 5. */
    for (k = 0; k < 5; k++) {
        q.seq = 100 + k;
        EXPECT(shmlane_try_send(tx, &q, sizeof q), SHMLANE_OK);
    }
    EXPECT(shmlane_try_recv_many(rx, many, 8, sizeof(Quote), &cnt), SHMLANE_OK);
    TRUE(cnt == 5 && many[0].seq == 100 && many[4].seq == 104);
    EXPECT(shmlane_sender_write_chunk(tx, 0, &w1, &a, &w2, &b), SHMLANE_E_INVALID);
    EXPECT(shmlane_sender_write_chunk(tx, 100, &w1, &a, &w2, &b), SHMLANE_OK);
    TRUE(a == 1 && b == 7); /* positions: 7 used so far (1 + 1 + 5): slot 7, then 0..6 */
    for (k = 0; k < a + b; k++) {
        Quote *s = k < a ? (Quote *)w1 + k : (Quote *)w2 + (k - a);
        TRUE(((uintptr_t)s & 7) == 0);
        s->seq = 200 + k;
        s->id = 9;
        s->check = 0;
    }
    EXPECT(shmlane_sender_commit(tx, 9), SHMLANE_E_CLAIM);
    EXPECT(shmlane_sender_commit(tx, 8), SHMLANE_OK);
    EXPECT(shmlane_sender_write_chunk(tx, 1, &w1, &a, &w2, &b), SHMLANE_E_FULL);
    EXPECT(shmlane_try_send(tx, &q, sizeof q), SHMLANE_E_FULL);
    EXPECT(shmlane_receiver_read_chunk(rx, 100, &r1, &a, &r2, &b), SHMLANE_OK);
    TRUE(a == 1 && b == 7);
    for (k = 0; k < a + b; k++) {
        const Quote *s = k < a ? (const Quote *)r1 + k : (const Quote *)r2 + (k - a);
        TRUE(s->seq == 200 + k && s->id == 9);
    }
    EXPECT(shmlane_receiver_release(rx, 9), SHMLANE_E_CLAIM);
    EXPECT(shmlane_receiver_release(rx, 8), SHMLANE_OK);
    EXPECT(shmlane_receiver_read_chunk(rx, 1, &r1, &a, &r2, &b), SHMLANE_E_EMPTY);
    EXPECT(shmlane_try_send_many(tx, many, 0, sizeof(Quote), &cnt), SHMLANE_OK);
    TRUE(cnt == 0);
    EXPECT(shmlane_try_send_many(tx, many, 5, sizeof(Quote), &cnt), SHMLANE_OK);
    TRUE(cnt == 5);
    EXPECT(shmlane_try_send_many(tx, many, 5, sizeof(Quote), &cnt), SHMLANE_OK);
    TRUE(cnt == 3);
    EXPECT(shmlane_sender_stats(tx, &st), SHMLANE_OK);
    TRUE(st.messages == 2 + 5 + 8 + 8);
    EXPECT(shmlane_receiver_stats(rx, &st), SHMLANE_OK);
    TRUE(st.messages == 2 + 5 + 8);

    /* MPMC: the same calls; chunks UNSUPPORTED. */
    EXPECT(shmlane_mpmc_open(n2, SHMLANE_CREATE, 24, 8, "Quote", o, &mp), SHMLANE_OK);
    EXPECT(shmlane_channel_kind(mp, &kind), SHMLANE_OK);
    TRUE(kind == SHMLANE_KIND_MPMC);
    EXPECT(shmlane_sender_open(mp, &mtx), SHMLANE_OK);
    EXPECT(shmlane_receiver_open(mp, &mrx), SHMLANE_OK);
    EXPECT(shmlane_sender_write_chunk(mtx, 1, &w1, &a, &w2, &b), SHMLANE_E_UNSUPPORTED);
    EXPECT(shmlane_sender_commit(mtx, 1), SHMLANE_E_UNSUPPORTED);
    EXPECT(shmlane_receiver_read_chunk(mrx, 1, &r1, &a, &r2, &b), SHMLANE_E_UNSUPPORTED);
    EXPECT(shmlane_receiver_release(mrx, 1), SHMLANE_E_UNSUPPORTED);
    EXPECT(shmlane_try_send(mtx, &q, 8), SHMLANE_E_INVALID);
    EXPECT(shmlane_receiver_fd(mrx, &fd), SHMLANE_OK);
    EXPECT(shmlane_receiver_rearm(mrx), SHMLANE_OK);
    TRUE(!readable(fd));
    q.seq = 7;
    EXPECT(shmlane_send(mtx, &q, sizeof q, -1), SHMLANE_OK);
    TRUE(readable_within(fd, 5000));
    EXPECT(shmlane_recv(mrx, &out, sizeof out, 0), SHMLANE_OK);
    TRUE(out.seq == 7);
    EXPECT(shmlane_try_send_many(mtx, many, 3, sizeof(Quote), &cnt), SHMLANE_OK);
    TRUE(cnt == 3);
    EXPECT(shmlane_try_recv_many(mrx, many, 8, sizeof(Quote), &cnt), SHMLANE_OK);
    TRUE(cnt == 3);
    /* Fired, then not drained before the rearm: READY, and the fd readable at once. */
    EXPECT(shmlane_try_recv(mrx, &out, sizeof out), SHMLANE_E_EMPTY);
    EXPECT(shmlane_receiver_rearm(mrx), SHMLANE_OK);
    TRUE(!readable(fd));
    q.seq = 8;
    EXPECT(shmlane_try_send(mtx, &q, sizeof q), SHMLANE_OK);
    TRUE(readable_within(fd, 5000));
    EXPECT(shmlane_receiver_rearm(mrx), SHMLANE_READY);
    TRUE(readable(fd));
    EXPECT(shmlane_try_recv(mrx, &out, sizeof out), SHMLANE_OK);
    TRUE(out.seq == 8);
    EXPECT(shmlane_receiver_stats(mrx, &st), SHMLANE_OK);
    TRUE(st.messages == 5);
    EXPECT(shmlane_sender_stats(mtx, &st), SHMLANE_OK);
    TRUE(st.messages == 5);

    /* Byte receiver and subscriber descriptors. */
    {
        shmlane_byte_sender *bt = NULL;
        shmlane_byte_receiver *br = NULL;
        shmlane_publisher *pb = NULL;
        shmlane_subscriber *sb = NULL;
        char buf[64];
        size_t len = 0;
        EXPECT(shmlane_bytes_open(n3, SHMLANE_CREATE, NULL, &bch), SHMLANE_OK);
        EXPECT(shmlane_sender_open(bch, &tx2), SHMLANE_E_WRONG_KIND);
        EXPECT(shmlane_receiver_open(bch, &rx), SHMLANE_E_WRONG_KIND);
        EXPECT(shmlane_byte_sender_open(bch, &bt), SHMLANE_OK);
        EXPECT(shmlane_byte_receiver_open(bch, &br), SHMLANE_OK);
        EXPECT(shmlane_byte_receiver_rearm(br), SHMLANE_E_INVALID);
        EXPECT(shmlane_byte_receiver_fd(br, &fd), SHMLANE_OK);
        EXPECT(shmlane_byte_receiver_rearm(br), SHMLANE_OK);
        TRUE(!readable(fd));
        EXPECT(shmlane_bytes_try_send(bt, "hello", 5), SHMLANE_OK);
        TRUE(readable_within(fd, 5000));
        EXPECT(shmlane_bytes_try_recv(br, buf, sizeof buf, &len), SHMLANE_OK);
        TRUE(len == 5);
        EXPECT(shmlane_bytes_try_recv(br, buf, sizeof buf, &len), SHMLANE_E_EMPTY);
        EXPECT(shmlane_byte_receiver_rearm(br), SHMLANE_OK);
        TRUE(!readable(fd));
        EXPECT(shmlane_byte_sender_close(bt), SHMLANE_OK);
        EXPECT(shmlane_byte_receiver_close(br), SHMLANE_OK);
        TRUE(fcntl(fd, F_GETFD) == -1); /* the descriptor was closed with its handle */
        EXPECT(shmlane_byte_receiver_fd(br, &fd), SHMLANE_E_CLOSED);

        EXPECT(shmlane_broadcast_open(n4, SHMLANE_CREATE, NULL, &bc), SHMLANE_OK);
        EXPECT(shmlane_publisher_open(bc, &pb), SHMLANE_OK);
        EXPECT(shmlane_subscriber_open(bc, SHMLANE_START_NEWEST, 0, &sb), SHMLANE_OK);
        EXPECT(shmlane_subscriber_fd(sb, &fd), SHMLANE_OK);
        EXPECT(shmlane_subscriber_rearm(sb), SHMLANE_OK);
        TRUE(!readable(fd));
        EXPECT(shmlane_publish(pb, "tick", 4, NULL), SHMLANE_OK);
        TRUE(readable_within(fd, 5000));
        EXPECT(shmlane_subscriber_try_recv(sb, buf, sizeof buf, &len, NULL), SHMLANE_OK);
        TRUE(len == 4);
        EXPECT(shmlane_subscriber_rearm(sb), SHMLANE_OK);
        EXPECT(shmlane_receiver_fd((shmlane_receiver *)sb, &fd), SHMLANE_E_WRONG_HANDLE);
        EXPECT(shmlane_subscriber_close(sb), SHMLANE_OK);
        TRUE(fcntl(fd, F_GETFD) == -1);
        EXPECT(shmlane_publisher_close(pb), SHMLANE_OK);
    }

    /* Close; use after close. */
    EXPECT(shmlane_sender_close(tx), SHMLANE_OK);
    EXPECT(shmlane_receiver_fd(rx, &fd), SHMLANE_OK);
    EXPECT(shmlane_receiver_close(rx), SHMLANE_OK);
    TRUE(fcntl(fd, F_GETFD) == -1);
    EXPECT(shmlane_try_send(tx, &q, sizeof q), SHMLANE_E_CLOSED);
    EXPECT(shmlane_receiver_rearm(rx), SHMLANE_E_CLOSED);
    EXPECT(shmlane_receiver_close(rx), SHMLANE_E_CLOSED);
    EXPECT(shmlane_sender_close(NULL), SHMLANE_OK);
    EXPECT(shmlane_receiver_close(NULL), SHMLANE_OK);
    EXPECT(shmlane_sender_close(mtx), SHMLANE_OK);
    EXPECT(shmlane_receiver_fd(mrx, &fd), SHMLANE_OK);
    EXPECT(shmlane_receiver_close(mrx), SHMLANE_OK);
    TRUE(fcntl(fd, F_GETFD) == -1);
    EXPECT(shmlane_channel_close(ch), SHMLANE_OK);
    EXPECT(shmlane_channel_close(mp), SHMLANE_OK);
    EXPECT(shmlane_channel_close(bch), SHMLANE_OK);
    EXPECT(shmlane_channel_close(bc), SHMLANE_OK);
    EXPECT(shmlane_options_close(o), SHMLANE_OK);
    shmlane_remove(n1);
    shmlane_remove(n2);
    shmlane_remove(n3);
    shmlane_remove(n4);
    if (failures) {
        printf("%d failures\n", failures);
        return 1;
    }
    printf("typed_abi ok\n");
    return 0;
}
