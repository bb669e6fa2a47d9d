/* The latest-value channels through the C ABI, in one process, for tests/latest.rs (run under
 * valgrind and linked statically). argv[1]: a unique name prefix.
 * Bad input gets its documented status; a write/read round trip; SHMLANE_E_EMPTY before the
 * first write, SHMLANE_E_UNCHANGED for a version already returned; a value over the value
 * size is SHMLANE_E_TOO_LONG; a buffer too small reports the length needed and loses nothing;
 * wait_changed returns by its deadline; the slots reused many times. Exit 0, or 1 after
 * "FAIL line N: ..." lines; a call that blocks past its deadline is killed by SIGALRM after
 * 60 s (a failure, never a hang). */
#define _POSIX_C_SOURCE 200809L
#include "shmlane.h"
#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


#define VALUE 64

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Value i: its length (1 to VALUE) and bytes, a pattern of i. */
static size_t pattern(uint64_t i, unsigned char *v) {
    size_t len = 1 + (size_t)(i * 7 % VALUE), j;
    for (j = 0; j < len; j++) v[j] = (unsigned char)((i * 31 + j * 17) & 0xff);
    return len;
}

static void open_errors(const char *name, const char *bytes_name) {
    shmlane_channel *ch = NULL, *bch = NULL;
    shmlane_options *o = NULL;
    EXPECT(shmlane_latest_open(name, SHMLANE_CREATE, 0, NULL, &ch), SHMLANE_E_INVALID);
    EXPECT(shmlane_latest_open(name, SHMLANE_CREATE, (1 << 20) + 1, NULL, &ch), SHMLANE_E_INVALID);
    EXPECT(shmlane_latest_open(name, 7, VALUE, NULL, &ch), SHMLANE_E_INVALID);
    TRUE(strstr(shmlane_last_error(), "unknown how 7") != NULL);
    EXPECT(shmlane_latest_open(name, SHMLANE_CREATE, VALUE, NULL, NULL), SHMLANE_E_NULL);
    EXPECT(shmlane_latest_open(NULL, SHMLANE_CREATE, VALUE, NULL, &ch), SHMLANE_E_NULL);
    EXPECT(shmlane_latest_open("a/b", SHMLANE_CREATE, VALUE, NULL, &ch), SHMLANE_E_NAME);
    EXPECT(shmlane_latest_open(name, SHMLANE_OPEN, VALUE, NULL, &ch), SHMLANE_E_NOT_FOUND);
    EXPECT(shmlane_options_new(&o), SHMLANE_OK);
    EXPECT(shmlane_options_capacity(o, 3), SHMLANE_OK);
    EXPECT(shmlane_latest_open(name, SHMLANE_CREATE, VALUE, o, &ch), SHMLANE_E_INVALID);
    EXPECT(shmlane_options_capacity(o, 4), SHMLANE_OK);
    EXPECT(shmlane_options_msg_size(o, VALUE + 8), SHMLANE_OK);
    EXPECT(shmlane_latest_open(name, SHMLANE_CREATE, VALUE, o, &ch), SHMLANE_E_INVALID);
    TRUE(strstr(shmlane_last_error(), "msg_size") != NULL);
    EXPECT(shmlane_options_msg_size(o, VALUE), SHMLANE_OK);
    EXPECT(shmlane_options_checksum(o, 1), SHMLANE_OK);
    EXPECT(shmlane_latest_open(name, SHMLANE_CREATE, VALUE, o, &ch), SHMLANE_E_UNSUPPORTED);
    EXPECT(shmlane_options_close(o), SHMLANE_OK);
    TRUE(ch == NULL);
    /* A byte channel is not opened as a latest-value one, nor the other way round. */
    EXPECT(shmlane_bytes_open(bytes_name, SHMLANE_CREATE, NULL, &bch), SHMLANE_OK);
    EXPECT(shmlane_latest_open(bytes_name, SHMLANE_OPEN, VALUE, NULL, &ch), SHMLANE_E_WRONG_KIND);
    {
        shmlane_latest_writer *w = NULL;
        shmlane_latest_reader *r = NULL;
        EXPECT(shmlane_latest_writer_open(bch, &w), SHMLANE_E_WRONG_KIND);
        EXPECT(shmlane_latest_reader_open(bch, &r), SHMLANE_E_WRONG_KIND);
        TRUE(w == NULL && r == NULL);
    }
    EXPECT(shmlane_channel_close(bch), SHMLANE_OK);
    EXPECT(shmlane_remove(bytes_name), SHMLANE_OK);
}

int main(int argc, char **argv) {
    char name[200], bytes_name[200];
    shmlane_channel *ch = NULL, *ch2 = NULL;
    shmlane_options *o = NULL;
    shmlane_latest_writer *w = NULL, *w2 = NULL;
    shmlane_latest_reader *r = NULL, *r2 = NULL;
    unsigned char v[VALUE + 8], buf[VALUE + 8];
    size_t len, n;
    uint64_t ver, i;
    int32_t kind = -1, created = -1;
    double t0, dt;
    if (argc < 2) return 2;
    alarm(60);
    snprintf(name, sizeof name, "%s-latest", argv[1]);
    snprintf(bytes_name, sizeof bytes_name, "%s-bytes", argv[1]);
    memset(v, 0, sizeof v);

    open_errors(name, bytes_name);

    EXPECT(shmlane_options_new(&o), SHMLANE_OK);
    EXPECT(shmlane_options_capacity(o, 4), SHMLANE_OK);
    EXPECT(shmlane_options_unlink(o, SHMLANE_UNLINK_CREATOR_DROP), SHMLANE_OK);
    EXPECT(shmlane_latest_open(name, SHMLANE_CREATE, VALUE, o, &ch), SHMLANE_OK);
    EXPECT(shmlane_options_close(o), SHMLANE_OK);
    EXPECT(shmlane_channel_kind(ch, &kind), SHMLANE_OK);
    TRUE(kind == SHMLANE_KIND_LATEST);
    EXPECT(shmlane_channel_created(ch, &created), SHMLANE_OK);
    TRUE(created == 1);
    EXPECT(shmlane_latest_open(name, SHMLANE_CREATE, VALUE, NULL, &ch2), SHMLANE_E_EXISTS);
    EXPECT(shmlane_latest_open(name, SHMLANE_OPEN, VALUE / 2, NULL, &ch2), SHMLANE_E_MISMATCH);
    EXPECT(shmlane_bytes_open(name, SHMLANE_OPEN, NULL, &ch2), SHMLANE_E_WRONG_KIND);
    EXPECT(shmlane_latest_open(name, SHMLANE_OPEN_OR_CREATE, VALUE, NULL, &ch2), SHMLANE_OK);
    EXPECT(shmlane_channel_created(ch2, &created), SHMLANE_OK);
    TRUE(created == 0);

    /* Endpoints: any number of each; wrong kinds and handles refused. */
    EXPECT(shmlane_latest_writer_open(ch, &w), SHMLANE_OK);
    EXPECT(shmlane_latest_writer_open(ch2, &w2), SHMLANE_OK);
    EXPECT(shmlane_latest_reader_open(ch, &r), SHMLANE_OK);
    EXPECT(shmlane_latest_reader_open(ch2, &r2), SHMLANE_OK);
    EXPECT(shmlane_latest_writer_open(ch, NULL), SHMLANE_E_NULL);
    EXPECT(shmlane_byte_sender_open(ch, (shmlane_byte_sender **)&w2), SHMLANE_E_WRONG_KIND);
    EXPECT(shmlane_latest_write((shmlane_latest_writer *)r, v, 1, &ver), SHMLANE_E_WRONG_HANDLE);
    EXPECT(shmlane_latest_read((shmlane_latest_reader *)w, buf, sizeof buf, &len, &ver),
           SHMLANE_E_WRONG_HANDLE);
    EXPECT(shmlane_latest_writer_value_size(w, &n), SHMLANE_OK);
    TRUE(n == VALUE);
    EXPECT(shmlane_latest_reader_value_size(r, &n), SHMLANE_OK);
    TRUE(n == VALUE);

    /* Never written: version 0, EMPTY from both reads (nothing written to the outs), and
     * wait_changed times out. */
    EXPECT(shmlane_latest_version(r, &ver), SHMLANE_OK);
    TRUE(ver == 0);
    EXPECT(shmlane_latest_writer_version(w, &ver), SHMLANE_OK);
    TRUE(ver == 0);
    len = 999;
    ver = 999;
    EXPECT(shmlane_latest_read(r, buf, sizeof buf, &len, &ver), SHMLANE_E_EMPTY);
    TRUE(strstr(shmlane_last_error(), "never written") != NULL);
    EXPECT(shmlane_latest_read_if_changed(r, buf, sizeof buf, &len, &ver), SHMLANE_E_EMPTY);
    TRUE(len == 999 && ver == 999);
    EXPECT(shmlane_latest_wait_changed(r, buf, sizeof buf, &len, &ver, 0), SHMLANE_E_TIMEOUT);
    t0 = now_s();
    EXPECT(shmlane_latest_wait_changed(r, buf, sizeof buf, &len, &ver, 50000000), SHMLANE_E_TIMEOUT);
    dt = now_s() - t0;
    TRUE(dt >= 0.049 && dt < 1.0);
    TRUE(len == 999 && ver == 999);

    /* Round trip. */
    memcpy(v, "hello", 5);
    EXPECT(shmlane_latest_write(w, v, 5, &ver), SHMLANE_OK);
    TRUE(ver == 1);
    EXPECT(shmlane_latest_version(r, &ver), SHMLANE_OK);
    TRUE(ver == 1);
    EXPECT(shmlane_latest_writer_version(w2, &ver), SHMLANE_OK);
    TRUE(ver == 1);
    EXPECT(shmlane_latest_read_if_changed(r, buf, sizeof buf, &len, &ver), SHMLANE_OK);
    TRUE(len == 5 && ver == 1 && memcmp(buf, "hello", 5) == 0);
    /* Unchanged: its own status, nothing written to the outs. */
    len = 999;
    ver = 999;
    EXPECT(shmlane_latest_read_if_changed(r, buf, sizeof buf, &len, &ver), SHMLANE_E_UNCHANGED);
    TRUE(len == 999 && ver == 999);
    TRUE(strstr(shmlane_last_error(), "version 1") != NULL);
    /* read returns the value again; version may be NULL. */
    memset(buf, 0, sizeof buf);
    EXPECT(shmlane_latest_read(r, buf, sizeof buf, &len, NULL), SHMLANE_OK);
    TRUE(len == 5 && memcmp(buf, "hello", 5) == 0);
    EXPECT(shmlane_latest_read_if_changed(r, buf, sizeof buf, &len, &ver), SHMLANE_E_UNCHANGED);
    EXPECT(shmlane_latest_wait_changed(r, buf, sizeof buf, &len, &ver, 1000000), SHMLANE_E_TIMEOUT);

    /* Another writer's value: a new version, seen by both readers. */
    memcpy(v, "world!", 6);
    EXPECT(shmlane_latest_write(w2, v, 6, NULL), SHMLANE_OK);
    EXPECT(shmlane_latest_wait_changed(r, buf, sizeof buf, &len, &ver, -1), SHMLANE_OK);
    TRUE(len == 6 && ver == 2 && memcmp(buf, "world!", 6) == 0);

    /* Too long: refused, nothing published. The value size exactly is fine. */
    EXPECT(shmlane_latest_write(w, v, VALUE + 1, &ver), SHMLANE_E_TOO_LONG);
    TRUE(strstr(shmlane_last_error(), "65") != NULL && strstr(shmlane_last_error(), "64") != NULL);
    EXPECT(shmlane_latest_write(w, v, (size_t)-1, &ver), SHMLANE_E_TOO_LONG);
    EXPECT(shmlane_latest_version(r, &ver), SHMLANE_OK);
    TRUE(ver == 2);
    EXPECT(shmlane_latest_write(w, NULL, 3, &ver), SHMLANE_E_NULL);
    EXPECT(shmlane_latest_read(r, buf, sizeof buf, NULL, &ver), SHMLANE_E_NULL);
    EXPECT(shmlane_latest_read(r, NULL, sizeof buf, &len, &ver), SHMLANE_E_NULL);
    EXPECT(shmlane_latest_version(r, NULL), SHMLANE_E_NULL);

    /* Buffer too small: the length needed, and nothing lost: the same version is still
     * "changed" for read_if_changed, whole with a large enough buffer. */
    len = pattern(9, v); /* 1 + 9 * 7 % 64 = 64 bytes */
    TRUE(len == VALUE);
    EXPECT(shmlane_latest_write(w, v, len, &ver), SHMLANE_OK);
    TRUE(ver == 3);
    n = 0;
    EXPECT(shmlane_latest_read_if_changed(r, buf, 10, &n, &ver), SHMLANE_E_BUFFER_TOO_SMALL);
    TRUE(n == VALUE && ver == 3);
    EXPECT(shmlane_latest_read(r2, buf, VALUE - 1, &n, &ver), SHMLANE_E_BUFFER_TOO_SMALL);
    TRUE(n == VALUE);
    EXPECT(shmlane_latest_wait_changed(r2, buf, 0, &n, &ver, 0), SHMLANE_E_BUFFER_TOO_SMALL);
    TRUE(n == VALUE);
    memset(buf, 0, sizeof buf);
    EXPECT(shmlane_latest_read_if_changed(r, buf, VALUE, &n, &ver), SHMLANE_OK);
    TRUE(n == VALUE && ver == 3 && memcmp(buf, v, VALUE) == 0);
    memset(buf, 0, sizeof buf);
    EXPECT(shmlane_latest_read_if_changed(r2, buf, sizeof buf, &n, &ver), SHMLANE_OK);
    TRUE(n == VALUE && ver == 3 && memcmp(buf, v, VALUE) == 0);

    /* An empty value. */
    EXPECT(shmlane_latest_write(w, v, 0, &ver), SHMLANE_OK);
    TRUE(ver == 4);
    EXPECT(shmlane_latest_read(r, buf, 0, &n, &ver), SHMLANE_OK);
    TRUE(n == 0 && ver == 4);

    /* Many writes (each of the 4 slots reused ~250 times): every read is the newest, whole. */
    for (i = 0; i < 1000; i++) {
        unsigned char want[VALUE];
        size_t wl = pattern(i, v);
        uint64_t wv = 0;
        memcpy(want, v, wl);
        EXPECT(shmlane_latest_write(i % 2 ? w : w2, v, wl, &wv), SHMLANE_OK);
        TRUE(wv == 5 + i);
        memset(buf, 0, sizeof buf);
        EXPECT(shmlane_latest_read_if_changed(r, buf, sizeof buf, &n, &ver), SHMLANE_OK);
        TRUE(n == wl && ver == wv && memcmp(buf, want, wl) == 0);
        EXPECT(shmlane_latest_read_if_changed(r, buf, sizeof buf, &n, &ver), SHMLANE_E_UNCHANGED);
        if (failures > 20) break;
    }
    /* r2 skipped straight to the newest. */
    EXPECT(shmlane_latest_read_if_changed(r2, buf, sizeof buf, &n, &ver), SHMLANE_OK);
    TRUE(ver == 1004);

    /* Close; use after close is detected. */
    EXPECT(shmlane_latest_writer_close(w), SHMLANE_OK);
    EXPECT(shmlane_latest_write(w, v, 1, &ver), SHMLANE_E_CLOSED);
    EXPECT(shmlane_latest_writer_close(w), SHMLANE_E_CLOSED);
    EXPECT(shmlane_latest_reader_close(r), SHMLANE_OK);
    EXPECT(shmlane_latest_read(r, buf, sizeof buf, &n, &ver), SHMLANE_E_CLOSED);
    EXPECT(shmlane_latest_writer_close(NULL), SHMLANE_OK);
    EXPECT(shmlane_latest_reader_close(NULL), SHMLANE_OK);
    /* The endpoints outlive their channel handles. */
    EXPECT(shmlane_channel_close(ch2), SHMLANE_OK);
    EXPECT(shmlane_latest_write(w2, "x", 1, &ver), SHMLANE_OK);
    EXPECT(shmlane_latest_read(r2, buf, sizeof buf, &n, &ver), SHMLANE_OK);
    TRUE(n == 1 && buf[0] == 'x' && ver == 1005);
    EXPECT(shmlane_latest_writer_close(w2), SHMLANE_OK);
    EXPECT(shmlane_latest_reader_close(r2), SHMLANE_OK);
    EXPECT(shmlane_channel_close(ch), SHMLANE_OK);
    /* SHMLANE_UNLINK_CREATOR_DROP: the name went with the creating handle. */
    EXPECT(shmlane_latest_open(name, SHMLANE_OPEN, VALUE, NULL, &ch), SHMLANE_E_NOT_FOUND);

    if (failures) return 1;
    printf("ok latest abi\n");
    return 0;
}
