/* A C writer or reader of a latest-value channel, for tests/latest.rs (the other side is a
 * Rust process).
 *   latest_peer write NAME N   writes values 0..N-1 (pausing 1 ms every 4096 so that a
 *                              reader parks in wait_changed and is woken), checks every
 *                              returned version grows, prints "wrote N last V".
 *   latest_peer read NAME N    prints "ready", then waits for changes until it has value N-1:
 *                              every value whole (length and bytes of its number), numbers and
 *                              versions strictly increasing; prints "read K last N-1 ok".
 *   latest_peer open NAME 0    only opens the channel (SHMLANE_OPEN) and prints "status S" with
 *                              its status and last error.
 * Value i: 16 + i % 49 bytes: i, check(i) (two native uint64_t), then (i * 31 + j) & 0xff.
 * The channel: open_or_create, value size 64, 4 slots. Exit 0, or 1 after a "FAIL ..." line. */
#define _POSIX_C_SOURCE 200809L
#include "shmlane.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define VALUE 64

static uint64_t check_of(uint64_t i) { return i * 0x9E3779B97F4A7C15ull ^ 0x4C41ull; }

static size_t make(uint64_t i, unsigned char *v) {
    size_t len = 16 + (size_t)(i % 49), j;
    uint64_t c = check_of(i);
    memcpy(v, &i, 8);
    memcpy(v + 8, &c, 8);
    for (j = 16; j < len; j++) v[j] = (unsigned char)((i * 31 + j) & 0xff);
    return len;
}

static int fail(const char *what, int32_t s) {
    printf("FAIL %s: %d (%s): %s\n", what, (int)s, shmlane_strerror(s), shmlane_last_error());
    return 1;
}

static int writer(shmlane_channel *ch, uint64_t n) {
    shmlane_latest_writer *w = NULL;
    unsigned char v[VALUE];
    uint64_t i, ver = 0, prev = 0;
    int32_t s = shmlane_latest_writer_open(ch, &w);
    if (s != SHMLANE_OK) return fail("writer_open", s);
    for (i = 0; i < n; i++) {
        size_t len = make(i, v);
        s = shmlane_latest_write(w, v, len, &ver);
        if (s != SHMLANE_OK) return fail("write", s);
        if (ver <= prev) {
            printf("FAIL version %llu after %llu\n", (unsigned long long)ver,
                   (unsigned long long)prev);
            return 1;
        }
        prev = ver;
        if (i % 4096 == 4095) {
            struct timespec t = {0, 1000000};
            nanosleep(&t, NULL);
        }
    }
    printf("wrote %llu last %llu\n", (unsigned long long)n, (unsigned long long)ver);
    return shmlane_latest_writer_close(w) == SHMLANE_OK ? 0 : 1;
}

static int reader(shmlane_channel *ch, uint64_t n) {
    shmlane_latest_reader *r = NULL;
    unsigned char buf[VALUE], want[VALUE];
    uint64_t seq = 0, c, ver = 0, prev_ver = 0, prev_seq = 0, reads = 0;
    size_t len = 0, wl;
    int32_t s = shmlane_latest_reader_open(ch, &r);
    if (s != SHMLANE_OK) return fail("reader_open", s);
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        s = shmlane_latest_wait_changed(r, buf, sizeof buf, &len, &ver, 20000000000LL);
        if (s != SHMLANE_OK) return fail("wait_changed", s);
        if (len < 16) {
            printf("FAIL value of %zu bytes\n", len);
            return 1;
        }
        memcpy(&seq, buf, 8);
        memcpy(&c, buf + 8, 8);
        wl = make(seq, want);
        if (c != check_of(seq) || len != wl || memcmp(buf, want, wl) != 0) {
            printf("FAIL value %llu torn or wrong (len %zu, want %zu)\n",
                   (unsigned long long)seq, len, wl);
            return 1;
        }
        if (ver <= prev_ver || (reads > 0 && seq <= prev_seq)) {
            printf("FAIL not increasing: value %llu version %llu after value %llu version %llu\n",
                   (unsigned long long)seq, (unsigned long long)ver,
                   (unsigned long long)prev_seq, (unsigned long long)prev_ver);
            return 1;
        }
        prev_ver = ver;
        prev_seq = seq;
        reads++;
        if (seq == n - 1) break;
    }
    printf("read %llu last %llu ok\n", (unsigned long long)reads, (unsigned long long)seq);
    return shmlane_latest_reader_close(r) == SHMLANE_OK ? 0 : 1;
}

int main(int argc, char **argv) {
    shmlane_channel *ch = NULL;
    shmlane_options *o = NULL;
    uint64_t n;
    int rc;
    int32_t s;
    if (argc < 4) return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    n = strtoull(argv[3], NULL, 10);
    if (strcmp(argv[1], "open") == 0) {
        s = shmlane_latest_open(argv[2], SHMLANE_OPEN, VALUE, NULL, &ch);
        printf("status %d: %s\n", (int)s, s == SHMLANE_OK ? "" : shmlane_last_error());
        shmlane_channel_close(ch);
        return 0;
    }
    if (shmlane_options_new(&o) != SHMLANE_OK || shmlane_options_capacity(o, 4) != SHMLANE_OK)
        return fail("options", -1);
    s = shmlane_latest_open(argv[2], SHMLANE_OPEN_OR_CREATE, VALUE, o, &ch);
    shmlane_options_close(o);
    if (s != SHMLANE_OK) return fail("latest_open", s);
    if (strcmp(argv[1], "write") == 0) {
        rc = writer(ch, n);
    } else if (strcmp(argv[1], "read") == 0) {
        rc = reader(ch, n);
    } else {
        rc = 2;
    }
    shmlane_channel_close(ch);
    return rc;
}
