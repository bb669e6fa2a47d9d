/* Bad input through the C ABI: every misuse gets its documented status and a last-error
 * message (a substring is checked), and nothing crashes. Run by tests/abi.rs (under valgrind
 * when present) as `abi <name-prefix>`; prints "ok <n> checks" and exits 0, or prints the
 * failing line and exits 1. */
#include "shmlane.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int checks = 0;

static void fail(int line, const char *what, int32_t got, int32_t want) {
    printf("FAIL line %d: %s: got %d (%s), want %d (%s); last error: %s\n", line, what, (int)got,
           shmlane_strerror(got), (int)want, shmlane_strerror(want), shmlane_last_error());
    exit(1);
}

static void check_sub(int line, const char *call, const char *sub) {
    if (sub != NULL && strstr(shmlane_last_error(), sub) == NULL) {
        printf("FAIL line %d: %s: last error \"%s\" lacks \"%s\"\n", line, call,
               shmlane_last_error(), sub);
        exit(1);
    }
}

/* EXPECT(call, status, substring of the last error or NULL) */
#define EXPECT(call, want, sub)                                                            \
    do {                                                                                   \
        int32_t got_ = (call);                                                             \
        checks++;                                                                          \
        if (got_ != (want)) fail(__LINE__, #call, got_, (want));                           \
        check_sub(__LINE__, #call, (sub));                                                 \
    } while (0)

#define OK(call) EXPECT(call, SHMLANE_OK, NULL)

#define TRUE(cond)                                                                         \
    do {                                                                                   \
        checks++;                                                                          \
        if (!(cond)) {                                                                     \
            printf("FAIL line %d: %s\n", __LINE__, #cond);                                \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

static char names[8][256];
static const char *name(int i, const char *prefix) {
    snprintf(names[i], sizeof names[i], "%s-%d", prefix, i);
    return names[i];
}

static void statuses(void) {
    int32_t s;
    for (s = 0; s >= -29; s--) {
        TRUE(strlen(shmlane_strerror(s)) > 0);
        TRUE(strstr(shmlane_strerror(s), "unknown") == NULL);
    }
    TRUE(strstr(shmlane_strerror(-30), "unknown") != NULL);
    TRUE(strstr(shmlane_strerror(1), "unknown") != NULL);
    TRUE(strstr(shmlane_strerror(SHMLANE_E_BUFFER_TOO_SMALL), "not consumed") != NULL);
}

static void options_and_names(const char *prefix) {
    shmlane_options *o = NULL;
    shmlane_channel *ch = NULL;
    char longname[300];

    EXPECT(shmlane_options_new(NULL), SHMLANE_E_NULL, "out is NULL");
    EXPECT(shmlane_options_capacity(NULL, 4096), SHMLANE_E_NULL, "options is NULL");
    OK(shmlane_options_new(&o));
    EXPECT(shmlane_options_backend(o, 7, NULL), SHMLANE_E_INVALID, "unknown backend 7");
    EXPECT(shmlane_options_backend(o, SHMLANE_BACKEND_FILE, NULL), SHMLANE_E_NULL, "path");
    EXPECT(shmlane_options_wait(o, -1, 0, 0), SHMLANE_E_INVALID, "unknown wait strategy");
    EXPECT(shmlane_options_unlink(o, 9), SHMLANE_E_INVALID, "unlink policy");
    EXPECT(shmlane_options_peers_leave(o, 2), SHMLANE_E_INVALID, "peers-leave");
    EXPECT(shmlane_options_wakes(o, 2), SHMLANE_E_INVALID, "unknown wakes value 2");
    EXPECT(shmlane_options_wakes(NULL, SHMLANE_WAKES_NEVER), SHMLANE_E_NULL, "options is NULL");
    OK(shmlane_options_wakes(o, SHMLANE_WAKES_NEVER));
    OK(shmlane_options_wakes(o, SHMLANE_WAKES_PEERS));

    EXPECT(shmlane_bytes_open(NULL, SHMLANE_CREATE, NULL, &ch), SHMLANE_E_NULL, "name is NULL");
    EXPECT(shmlane_bytes_open(name(0, prefix), SHMLANE_CREATE, NULL, NULL), SHMLANE_E_NULL,
           "out is NULL");
    EXPECT(shmlane_bytes_open("a/b", SHMLANE_OPEN_OR_CREATE, NULL, &ch), SHMLANE_E_NAME, "a/b");
    EXPECT(shmlane_bytes_open("", SHMLANE_OPEN_OR_CREATE, NULL, &ch), SHMLANE_E_NAME, "empty");
    memset(longname, 'x', 250);
    longname[250] = '\0';
    EXPECT(shmlane_broadcast_open(longname, SHMLANE_CREATE, NULL, &ch), SHMLANE_E_NAME,
           "invalid channel name");
    EXPECT(shmlane_bytes_open("\xff\xfe", SHMLANE_CREATE, NULL, &ch), SHMLANE_E_NAME, "UTF-8");
    EXPECT(shmlane_bytes_open(name(0, prefix), 3, NULL, &ch), SHMLANE_E_INVALID, "unknown how 3");
    EXPECT(shmlane_bytes_open(name(0, prefix), SHMLANE_OPEN, NULL, &ch), SHMLANE_E_NOT_FOUND,
           "no segment named");
    OK(shmlane_options_capacity(o, 1000));
    EXPECT(shmlane_bytes_open(name(0, prefix), SHMLANE_CREATE, o, &ch), SHMLANE_E_INVALID,
           "power of two");
    TRUE(ch == NULL); /* out-params untouched on failure */
    /* an options handle is not a channel handle */
    EXPECT(shmlane_channel_close((shmlane_channel *)o), SHMLANE_E_WRONG_HANDLE, "got: options");
    OK(shmlane_options_close(o));
    EXPECT(shmlane_options_close(o), SHMLANE_E_CLOSED, "already closed");
    EXPECT(shmlane_options_capacity(o, 1), SHMLANE_E_CLOSED, "already closed");
    OK(shmlane_options_close(NULL));
}

static void byte_channel(const char *prefix) {
    shmlane_options *o = NULL, *o2 = NULL;
    shmlane_channel *ch = NULL, *ch2 = NULL;
    shmlane_byte_sender *tx = NULL;
    shmlane_byte_receiver *rx = NULL, *rx2 = NULL;
    shmlane_publisher *pub = NULL;
    shmlane_stats st;
    char buf[256];
    size_t len = 0, max = 0;
    void *data = NULL;
    int32_t kind = -1, created = -1;
    const char *n = name(1, prefix);

    OK(shmlane_options_new(&o));
    OK(shmlane_options_capacity(o, 4096));
    OK(shmlane_options_unlink(o, SHMLANE_UNLINK_LAST_DETACH));
    OK(shmlane_bytes_open(n, SHMLANE_CREATE, o, &ch));
    EXPECT(shmlane_bytes_open(n, SHMLANE_CREATE, o, &ch2), SHMLANE_E_EXISTS, "already exists");
    EXPECT(shmlane_broadcast_open(n, SHMLANE_OPEN, NULL, &ch2), SHMLANE_E_WRONG_KIND, n);
    OK(shmlane_options_new(&o2));
    OK(shmlane_options_capacity(o2, 8192));
    EXPECT(shmlane_bytes_open(n, SHMLANE_OPEN, o2, &ch2), SHMLANE_E_MISMATCH, "capacity");
    OK(shmlane_options_close(o2));
    OK(shmlane_channel_kind(ch, &kind));
    TRUE(kind == SHMLANE_KIND_BYTES);
    OK(shmlane_channel_created(ch, &created));
    TRUE(created == 1);
    EXPECT(shmlane_channel_kind(ch, NULL), SHMLANE_E_NULL, "kind is NULL");
    EXPECT(shmlane_channel_kind(NULL, &kind), SHMLANE_E_NULL, "channel is NULL");

    EXPECT(shmlane_publisher_open(ch, &pub), SHMLANE_E_WRONG_KIND, "byte channel");
    EXPECT(shmlane_byte_sender_open(NULL, &tx), SHMLANE_E_NULL, "channel is NULL");
    EXPECT(shmlane_byte_sender_open(ch, NULL), SHMLANE_E_NULL, "out is NULL");
    OK(shmlane_byte_sender_open(ch, &tx));
    OK(shmlane_byte_receiver_open(ch, &rx));
    EXPECT(shmlane_byte_receiver_open(ch, &rx2), SHMLANE_E_ROLE_TAKEN, "already held");
    /* a receiver is not a sender */
    EXPECT(shmlane_bytes_try_send((shmlane_byte_sender *)rx, "x", 1), SHMLANE_E_WRONG_HANDLE,
           "got: byte receiver");
    EXPECT(shmlane_bytes_try_recv((shmlane_byte_receiver *)ch, buf, sizeof buf, &len),
           SHMLANE_E_WRONG_HANDLE, "got: channel");

    /* lengths and buffers */
    OK(shmlane_byte_sender_max_message(tx, &max));
    TRUE(max > 0 && max < 4096);
    EXPECT(shmlane_bytes_try_send(NULL, "x", 1), SHMLANE_E_NULL, "byte sender is NULL");
    EXPECT(shmlane_bytes_try_send(tx, NULL, 1), SHMLANE_E_NULL, "msg is NULL");
    EXPECT(shmlane_bytes_try_send(tx, buf, max + 1), SHMLANE_E_TOO_LONG, "at most");
    EXPECT(shmlane_bytes_send(tx, buf, SIZE_MAX, 0), SHMLANE_E_TOO_LONG, "at most");
    EXPECT(shmlane_bytes_try_recv(rx, buf, sizeof buf, &len), SHMLANE_E_EMPTY, "empty");
    EXPECT(shmlane_bytes_recv(rx, buf, sizeof buf, &len, 1000000), SHMLANE_E_TIMEOUT, "timed out");
    OK(shmlane_bytes_try_send(tx, "", 0)); /* an empty message is a message */
    len = 99;
    OK(shmlane_bytes_try_recv(rx, buf, sizeof buf, &len));
    TRUE(len == 0);
    OK(shmlane_bytes_try_send(tx, "hello world", 11));
    EXPECT(shmlane_bytes_try_recv(rx, NULL, sizeof buf, &len), SHMLANE_E_NULL, "buf is NULL");
    EXPECT(shmlane_bytes_try_recv(rx, buf, sizeof buf, NULL), SHMLANE_E_NULL, "len is NULL");
    len = 0;
    EXPECT(shmlane_bytes_try_recv(rx, buf, 4, &len), SHMLANE_E_BUFFER_TOO_SMALL, "11 bytes");
    TRUE(len == 11);
    len = 0;
    EXPECT(shmlane_bytes_recv(rx, buf, 0, &len, -1), SHMLANE_E_BUFFER_TOO_SMALL, "11 bytes");
    TRUE(len == 11);
    OK(shmlane_bytes_try_recv(rx, buf, sizeof buf, &len)); /* not lost */
    TRUE(len == 11 && memcmp(buf, "hello world", 11) == 0);

    /* claims */
    EXPECT(shmlane_bytes_commit(tx), SHMLANE_E_CLAIM, "no claim is open");
    EXPECT(shmlane_bytes_abort(tx), SHMLANE_E_CLAIM, "no claim is open");
    EXPECT(shmlane_bytes_claim(tx, 5, NULL), SHMLANE_E_NULL, "data is NULL");
    EXPECT(shmlane_bytes_claim(tx, max + 1, &data), SHMLANE_E_TOO_LONG, "at most");
    OK(shmlane_bytes_claim(tx, 5, &data));
    TRUE(data != NULL);
    EXPECT(shmlane_bytes_claim(tx, 5, &data), SHMLANE_E_CLAIM, "a claim is open");
    EXPECT(shmlane_bytes_try_send(tx, "x", 1), SHMLANE_E_CLAIM, "commit or abort it");
    EXPECT(shmlane_byte_sender_stats(tx, &st), SHMLANE_E_CLAIM, "a claim is open");
    OK(shmlane_byte_sender_max_message(tx, &max));
    memcpy(data, "claim", 5);
    OK(shmlane_bytes_commit(tx));
    EXPECT(shmlane_bytes_commit(tx), SHMLANE_E_CLAIM, "no claim is open");
    OK(shmlane_bytes_try_recv(rx, buf, sizeof buf, &len));
    TRUE(len == 5 && memcmp(buf, "claim", 5) == 0);
    OK(shmlane_bytes_claim(tx, 3, &data));
    memcpy(data, "abc", 3);
    OK(shmlane_bytes_abort(tx));
    OK(shmlane_bytes_try_send(tx, "after", 5));
    OK(shmlane_bytes_try_recv(rx, buf, sizeof buf, &len)); /* the aborted one is skipped */
    TRUE(len == 5 && memcmp(buf, "after", 5) == 0);
    OK(shmlane_bytes_claim(tx, 4, &data)); /* left open: closing the sender aborts it */

    /* stats */
    OK(shmlane_byte_receiver_stats(rx, &st));
    TRUE(st.messages == 4 && st.bytes == 21);
    EXPECT(shmlane_byte_receiver_stats(rx, NULL), SHMLANE_E_NULL, "out is NULL");

    /* use after close */
    OK(shmlane_byte_sender_close(tx));
    EXPECT(shmlane_bytes_try_send(tx, "x", 1), SHMLANE_E_CLOSED, "already closed");
    EXPECT(shmlane_bytes_commit(tx), SHMLANE_E_CLOSED, "already closed");
    EXPECT(shmlane_byte_sender_close(tx), SHMLANE_E_CLOSED, "already closed");
    /* LAST_DETACH implies SHMLANE_PEERS_DISCONNECT: the sender left, its open claim was aborted */
    EXPECT(shmlane_bytes_try_recv(rx, buf, sizeof buf, &len), SHMLANE_E_DISCONNECTED, "drained");
    OK(shmlane_byte_receiver_close(rx));
    EXPECT(shmlane_bytes_try_recv(rx, buf, sizeof buf, &len), SHMLANE_E_CLOSED, "byte receiver");
    OK(shmlane_byte_sender_close(NULL));
    OK(shmlane_channel_close(ch));
    EXPECT(shmlane_channel_kind(ch, &kind), SHMLANE_E_CLOSED, "channel handle was already closed");
    EXPECT(shmlane_byte_sender_open(ch, &tx), SHMLANE_E_CLOSED, "already closed");

    /* a checksummed channel refuses claims */
    OK(shmlane_options_checksum(o, 1));
    OK(shmlane_bytes_open(name(2, prefix), SHMLANE_CREATE, o, &ch));
    OK(shmlane_byte_sender_open(ch, &tx));
    EXPECT(shmlane_bytes_claim(tx, 4, &data), SHMLANE_E_CLAIM, "checksums");
    OK(shmlane_byte_sender_close(tx));
    OK(shmlane_channel_close(ch));
    /* endpoints outlive their channel handle */
    OK(shmlane_options_checksum(o, 0));
    OK(shmlane_bytes_open(name(4, prefix), SHMLANE_CREATE, o, &ch));
    OK(shmlane_byte_sender_open(ch, &tx));
    OK(shmlane_byte_receiver_open(ch, &rx));
    OK(shmlane_channel_close(ch));
    OK(shmlane_bytes_send(tx, "still here", 10, 0));
    OK(shmlane_bytes_recv(rx, buf, sizeof buf, &len, 0));
    TRUE(len == 10 && memcmp(buf, "still here", 10) == 0);
    OK(shmlane_byte_receiver_close(rx));
    OK(shmlane_byte_sender_close(tx));
    OK(shmlane_options_close(o));
    EXPECT(shmlane_remove(name(1, prefix)), SHMLANE_E_NOT_FOUND, "no segment named");
    EXPECT(shmlane_remove("x/y"), SHMLANE_E_NAME, "invalid channel name");
    EXPECT(shmlane_remove(NULL), SHMLANE_E_NULL, "name is NULL");
}

static void broadcast(const char *prefix) {
    shmlane_options *o = NULL;
    shmlane_channel *ch = NULL;
    shmlane_publisher *pub = NULL, *pub2 = NULL;
    shmlane_subscriber *sub = NULL, *sub2 = NULL;
    shmlane_byte_sender *tx = NULL;
    char buf[64];
    size_t len = 0;
    uint64_t seq = 99, n = 0, lost = 0, i;
    const char *nm = name(3, prefix);

    OK(shmlane_options_new(&o));
    OK(shmlane_options_capacity(o, 8));
    OK(shmlane_options_msg_size(o, 32));
    OK(shmlane_options_unlink(o, SHMLANE_UNLINK_LAST_DETACH));
    OK(shmlane_broadcast_open(nm, SHMLANE_OPEN_OR_CREATE, o, &ch));
    EXPECT(shmlane_bytes_open(nm, SHMLANE_OPEN, NULL, &ch), SHMLANE_E_WRONG_KIND, "broadcast");
    EXPECT(shmlane_byte_sender_open(ch, &tx), SHMLANE_E_WRONG_KIND, "no byte sender");
    OK(shmlane_publisher_open(ch, &pub));
    EXPECT(shmlane_publisher_open(ch, &pub2), SHMLANE_E_ROLE_TAKEN, "publisher");
    EXPECT(shmlane_subscriber_open(ch, 5, 0, &sub), SHMLANE_E_INVALID, "unknown start 5");
    OK(shmlane_subscriber_open(ch, SHMLANE_START_NEWEST, 0, &sub));
    OK(shmlane_publisher_subscribers(pub, &n));
    TRUE(n == 1);
    EXPECT(shmlane_subscriber_try_recv(sub, buf, sizeof buf, &len, &seq), SHMLANE_E_EMPTY, "empty");
    EXPECT(shmlane_publish(pub, buf, 33, NULL), SHMLANE_E_TOO_LONG, "at most 32");
    EXPECT(shmlane_publish(pub, NULL, 3, NULL), SHMLANE_E_NULL, "msg is NULL");
    OK(shmlane_publish(pub, "m0", 2, &seq));
    TRUE(seq == 0);
    OK(shmlane_publish(pub, "m1-longer", 9, NULL));
    EXPECT(shmlane_subscriber_try_recv(sub, buf, 1, &len, &seq), SHMLANE_E_BUFFER_TOO_SMALL, "2 bytes");
    TRUE(len == 2);
    OK(shmlane_subscriber_try_recv(sub, buf, sizeof buf, &len, &seq));
    TRUE(len == 2 && seq == 0 && memcmp(buf, "m0", 2) == 0);
    OK(shmlane_subscriber_recv(sub, buf, sizeof buf, &len, NULL, -1));
    TRUE(len == 9 && memcmp(buf, "m1-longer", 9) == 0);
    /* a late subscriber from seq 1 sees m1 again */
    OK(shmlane_subscriber_open(ch, SHMLANE_START_SEQ, 1, &sub2));
    OK(shmlane_subscriber_try_recv(sub2, buf, sizeof buf, &len, &seq));
    TRUE(seq == 1 && len == 9);
    /* lapping: 20 messages into 8 slots */
    for (i = 0; i < 20; i++) OK(shmlane_publish(pub, &i, sizeof i, NULL));
    EXPECT(shmlane_subscriber_try_recv(sub, buf, sizeof buf, &len, &seq), SHMLANE_E_LAPPED, "lost");
    OK(shmlane_subscriber_lost(sub, &lost));
    TRUE(lost > 0 && lost <= 20);
    OK(shmlane_subscriber_try_recv(sub, buf, sizeof buf, &len, &seq));
    TRUE(len == 8 && seq == 2 + lost);
    EXPECT(shmlane_subscriber_lost(sub, NULL), SHMLANE_E_NULL, "lost is NULL");
    EXPECT(shmlane_subscriber_lost((shmlane_subscriber *)pub, &lost), SHMLANE_E_WRONG_HANDLE,
           "got: publisher");
    OK(shmlane_subscriber_close(sub2));
    OK(shmlane_subscriber_close(sub));
    EXPECT(shmlane_subscriber_recv(sub, buf, sizeof buf, &len, NULL, 0), SHMLANE_E_CLOSED, "closed");
    OK(shmlane_publisher_close(pub));
    EXPECT(shmlane_publish(pub, "x", 1, NULL), SHMLANE_E_CLOSED, "closed");
    OK(shmlane_channel_close(ch));
    OK(shmlane_options_close(o));
}

int main(int argc, char **argv) {
    const char *prefix = argc > 1 ? argv[1] : "shmlane-test-ffi-abi";
    statuses();
    options_and_names(prefix);
    byte_channel(prefix);
    broadcast(prefix);
    printf("ok %d checks\n", checks);
    return 0;
}
