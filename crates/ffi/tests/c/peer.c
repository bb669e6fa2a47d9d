/* A C peer on a byte channel, for tests/interop.rs. Messages are numbered and checksummed:
 * message i has 16 + i % 49 bytes: i (8 bytes, little endian), then byte j = (i * 7 + j) & 0xff,
 * then the FNV-1a 32-bit hash of the bytes before it (4 bytes, little endian).
 *
 *   peer send NAME N          send messages 0..N (odd ones by claim/commit when there is
 *                             room, else by a blocking send), print "sent N"
 *   peer send-forever NAME    send until killed; print "started" after 1000
 *   peer recv NAME N          receive N messages, check each; print "received N ok"
 *   peer recv-until-end NAME  print "ready", receive and check until an error; print
 *                             "status S after K" (S the status, K messages received)
 *   peer publish NAME N       on the broadcast channel NAME (1024 slots of up to 64 bytes),
 *                             publish messages 0..N, checking each one's sequence number is i
 * Exit 0 on success; 1 with a "FAIL ..." line otherwise. */
#include "shmlane.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TIMEOUT_NS 20000000000LL /* 20 s: a hung peer fails the test, never hangs it */

static uint32_t fnv1a32(const unsigned char *p, size_t n) {
    uint32_t h = 2166136261u;
    size_t k;
    for (k = 0; k < n; k++) {
        h ^= p[k];
        h *= 16777619u;
    }
    return h;
}

static size_t make(uint64_t i, unsigned char *m) {
    size_t len = 16 + (size_t)(i % 49), j;
    uint32_t h;
    for (j = 0; j < 8; j++) m[j] = (unsigned char)(i >> (8 * j));
    for (j = 8; j < len - 4; j++) m[j] = (unsigned char)((i * 7 + j) & 0xff);
    h = fnv1a32(m, len - 4);
    for (j = 0; j < 4; j++) m[len - 4 + j] = (unsigned char)(h >> (8 * j));
    return len;
}

static void die(const char *what, int32_t s) {
    printf("FAIL %s: %d (%s): %s\n", what, (int)s, shmlane_strerror(s), shmlane_last_error());
    fflush(stdout);
    exit(1);
}

static shmlane_channel *open_channel(const char *name) {
    shmlane_channel *ch = NULL;
    shmlane_options *o = NULL;
    int32_t s = shmlane_options_new(&o);
    if (s == SHMLANE_OK) s = shmlane_options_capacity(o, 1u << 20);
    if (s == SHMLANE_OK) s = shmlane_bytes_open(name, SHMLANE_OPEN_OR_CREATE, o, &ch);
    if (s != SHMLANE_OK) die("open", s);
    shmlane_options_close(o);
    return ch;
}

static int check(uint64_t want, const unsigned char *m, size_t len) {
    unsigned char exp[80];
    size_t n = make(want, exp);
    if (len != n || memcmp(m, exp, n) != 0) {
        printf("FAIL message %llu: %zu bytes, want %zu, or other bytes\n", (unsigned long long)want,
               len, n);
        return 0;
    }
    return 1;
}

static int publish(const char *name, uint64_t n) {
    shmlane_channel *ch = NULL;
    shmlane_options *o = NULL;
    shmlane_publisher *p = NULL;
    unsigned char m[80];
    uint64_t i, seq = 0;
    int32_t s = shmlane_options_new(&o);
    if (s == SHMLANE_OK) s = shmlane_options_capacity(o, 1024);
    if (s == SHMLANE_OK) s = shmlane_options_msg_size(o, 64);
    if (s == SHMLANE_OK) s = shmlane_broadcast_open(name, SHMLANE_OPEN_OR_CREATE, o, &ch);
    if (s == SHMLANE_OK) s = shmlane_publisher_open(ch, &p);
    if (s != SHMLANE_OK) die("open publisher", s);
    for (i = 0; i < n; i++) {
        size_t len = make(i, m);
        if ((s = shmlane_publish(p, m, len, &seq)) != SHMLANE_OK) die("publish", s);
        if (seq != i) {
            printf("FAIL publish %llu got seq %llu\n", (unsigned long long)i,
                   (unsigned long long)seq);
            return 1;
        }
    }
    printf("published %llu\n", (unsigned long long)n);
    shmlane_publisher_close(p);
    shmlane_channel_close(ch);
    shmlane_options_close(o);
    return 0;
}

int main(int argc, char **argv) {
    shmlane_channel *ch;
    unsigned char m[256];
    uint64_t i, n = 0;
    size_t len;
    int32_t s;
    if (argc < 3) {
        printf("FAIL usage\n");
        return 1;
    }
    if (argc > 3) n = strtoull(argv[3], NULL, 10);
    if (strcmp(argv[1], "publish") == 0) return publish(argv[2], n);
    ch = open_channel(argv[2]);
    if (strcmp(argv[1], "send") == 0 || strcmp(argv[1], "send-forever") == 0) {
        int forever = strcmp(argv[1], "send-forever") == 0;
        shmlane_byte_sender *tx = NULL;
        if ((s = shmlane_byte_sender_open(ch, &tx)) != SHMLANE_OK) die("sender", s);
        for (i = 0; forever || i < n; i++) {
            len = make(i, m);
            if (i % 2 == 1) {
                /* odd messages zero copy when there is room: claim, write in place, commit */
                void *data = NULL;
                s = shmlane_bytes_claim(tx, len, &data);
                if (s == SHMLANE_OK) {
                    memcpy(data, m, len);
                    if ((s = shmlane_bytes_commit(tx)) != SHMLANE_OK) die("commit", s);
                    continue;
                }
                if (s != SHMLANE_E_FULL) die("claim", s);
            }
            if ((s = shmlane_bytes_send(tx, m, len, TIMEOUT_NS)) != SHMLANE_OK) die("send", s);
            if (forever && i == 1000) {
                printf("started\n");
                fflush(stdout);
            }
        }
        printf("sent %llu\n", (unsigned long long)n);
        shmlane_byte_sender_close(tx);
    } else if (strcmp(argv[1], "recv") == 0 || strcmp(argv[1], "recv-until-end") == 0) {
        int until_end = strcmp(argv[1], "recv-until-end") == 0;
        shmlane_byte_receiver *rx = NULL;
        if ((s = shmlane_byte_receiver_open(ch, &rx)) != SHMLANE_OK) die("receiver", s);
        if (until_end) {
            printf("ready\n");
            fflush(stdout);
        }
        for (i = 0; until_end || i < n; i++) {
            s = shmlane_bytes_recv(rx, m, sizeof m, &len, TIMEOUT_NS);
            if (s != SHMLANE_OK && until_end) {
                printf("status %d after %llu: %s\n", (int)s, (unsigned long long)i,
                       shmlane_last_error());
                break;
            }
            if (s != SHMLANE_OK) die("recv", s);
            if (!check(i, m, len)) return 1;
        }
        if (!until_end) printf("received %llu ok\n", (unsigned long long)n);
        shmlane_byte_receiver_close(rx);
    } else {
        printf("FAIL unknown mode %s\n", argv[1]);
        return 1;
    }
    shmlane_channel_close(ch);
    fflush(stdout);
    return 0;
}
