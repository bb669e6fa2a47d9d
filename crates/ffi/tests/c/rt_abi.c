/* The real-time proofs of docs/realtime.md for the C ABI's non-blocking calls, for
 * tests/realtime.rs. argv[1]: a unique name prefix.
 *
 * A forked child sets up one channel of each kind, runs ROUNDS rounds of the non-blocking
 * calls (wrapping small rings, FULL and EMPTY paths, a lapped subscriber, chunks, claims,
 * loans) with allocation forbidden (this program interposes malloc & co. and counts what is
 * called while `forbid` is set), then installs a seccomp filter on itself (every system call
 * but exit, exit_group and rt_sigreturn raises SIGSYS; the handler stores the call's number in
 * a page shared with the parent and exits 86) and runs the rounds again. Between the two, the
 * rounds run once more between two getrusage(RUSAGE_THREAD) calls (channels populated and
 * mlocked): no minor or major fault. The parent prints "ALLOCATIONS n", "FAULTS n",
 * "SYSCALL nr" or "FAIL ..." lines and exits 0 only if the child finished with no
 * allocation, no page fault and no system call. */
#define _GNU_SOURCE
#include "shmlane.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- allocation counting: every allocator entry point, forwarded to glibc's ---- */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static volatile int forbid;
static volatile long forbidden;

void *malloc(size_t n) {
    if (forbid) forbidden++;
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
    if (forbid) forbidden++;
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
    if (forbid) forbidden++;
    return __libc_realloc(p, n);
}
void *memalign(size_t al, size_t n) {
    if (forbid) forbidden++;
    return __libc_memalign(al, n);
}
void *aligned_alloc(size_t al, size_t n) {
    if (forbid) forbidden++;
    return __libc_memalign(al, n);
}
int posix_memalign(void **out, size_t al, size_t n) {
    if (forbid) forbidden++;
    *out = __libc_memalign(al, n);
    return *out ? 0 : 12;
}
void free(void *p) { __libc_free(p); }

/* ---- checks ---- */
static int failures;
#define EXPECT(call, want)                                                                    \
    do {                                                                                      \
        int32_t got_ = (call);                                                                \
        if (got_ != (want) && failures++ < 5) {                                               \
            forbid = 0;                                                                       \
            printf("FAIL line %d: %s: got %d, want %d: %s\n", __LINE__, #call, (int)got_,     \
                   (int)(want), shmlane_last_error());                                        \
        }                                                                                     \
    } while (0)

#define CAP 8
#define LATEST_SLOTS 4
#define ROUNDS 2000

static shmlane_sender *tx, *mtx;
static shmlane_receiver *rx, *mrx;
static shmlane_byte_sender *btx;
static shmlane_byte_receiver *brx;
static shmlane_publisher *pub, *tpub;
static shmlane_subscriber *fast, *slow, *tfast, *tslow;
static shmlane_latest_writer *lw;
static shmlane_latest_reader *lr, *lr0;

static void setup(const char *prefix) {
    char n[200];
    shmlane_options *o = NULL;
    shmlane_channel *ch = NULL;
    EXPECT(shmlane_options_new(&o), SHMLANE_OK);
    EXPECT(shmlane_options_capacity(o, CAP), SHMLANE_OK);
    EXPECT(shmlane_options_unlink(o, SHMLANE_UNLINK_CREATOR_DROP), SHMLANE_OK);
    EXPECT(shmlane_options_populate(o, 1), SHMLANE_OK);
    /* Locked for the page-fault window (this test runs as root; the parent says so if not). */
    EXPECT(shmlane_options_mlock(o, 1), SHMLANE_OK);
    snprintf(n, sizeof n, "%s-spsc", prefix);
    EXPECT(shmlane_spsc_open(n, SHMLANE_CREATE, 8, 8, NULL, o, &ch), SHMLANE_OK);
    EXPECT(shmlane_sender_open(ch, &tx), SHMLANE_OK);
    EXPECT(shmlane_receiver_open(ch, &rx), SHMLANE_OK);
    /* The endpoints keep the channel; its handle is closed (the name goes with it). */
    EXPECT(shmlane_channel_close(ch), SHMLANE_OK);
    snprintf(n, sizeof n, "%s-mpmc", prefix);
    EXPECT(shmlane_mpmc_open(n, SHMLANE_CREATE, 8, 8, NULL, o, &ch), SHMLANE_OK);
    EXPECT(shmlane_sender_open(ch, &mtx), SHMLANE_OK);
    EXPECT(shmlane_receiver_open(ch, &mrx), SHMLANE_OK);
    EXPECT(shmlane_channel_close(ch), SHMLANE_OK);
    EXPECT(shmlane_options_capacity(o, 1024), SHMLANE_OK);
    snprintf(n, sizeof n, "%s-bytes", prefix);
    EXPECT(shmlane_bytes_open(n, SHMLANE_CREATE, o, &ch), SHMLANE_OK);
    EXPECT(shmlane_byte_sender_open(ch, &btx), SHMLANE_OK);
    EXPECT(shmlane_byte_receiver_open(ch, &brx), SHMLANE_OK);
    EXPECT(shmlane_channel_close(ch), SHMLANE_OK);
    EXPECT(shmlane_options_capacity(o, CAP), SHMLANE_OK);
    EXPECT(shmlane_options_msg_size(o, 64), SHMLANE_OK);
    snprintf(n, sizeof n, "%s-bcast", prefix);
    EXPECT(shmlane_broadcast_open(n, SHMLANE_CREATE, o, &ch), SHMLANE_OK);
    EXPECT(shmlane_publisher_open(ch, &pub), SHMLANE_OK);
    EXPECT(shmlane_subscriber_open(ch, SHMLANE_START_NEWEST, 0, &fast), SHMLANE_OK);
    EXPECT(shmlane_subscriber_open(ch, SHMLANE_START_NEWEST, 0, &slow), SHMLANE_OK);
    EXPECT(shmlane_channel_close(ch), SHMLANE_OK);
    EXPECT(shmlane_options_msg_size(o, 16), SHMLANE_OK);
    snprintf(n, sizeof n, "%s-tbcast", prefix);
    EXPECT(shmlane_broadcast_typed_open(n, SHMLANE_CREATE, 16, 8, NULL, o, &ch), SHMLANE_OK);
    EXPECT(shmlane_publisher_open(ch, &tpub), SHMLANE_OK);
    EXPECT(shmlane_subscriber_open(ch, SHMLANE_START_NEWEST, 0, &tfast), SHMLANE_OK);
    EXPECT(shmlane_subscriber_open(ch, SHMLANE_START_NEWEST, 0, &tslow), SHMLANE_OK);
    EXPECT(shmlane_channel_close(ch), SHMLANE_OK);
    /* Latest value: 4 slots of 64 bytes, and a channel never written (its reads: EMPTY). */
    EXPECT(shmlane_options_capacity(o, LATEST_SLOTS), SHMLANE_OK);
    EXPECT(shmlane_options_msg_size(o, 64), SHMLANE_OK);
    snprintf(n, sizeof n, "%s-latest", prefix);
    EXPECT(shmlane_latest_open(n, SHMLANE_CREATE, 64, o, &ch), SHMLANE_OK);
    EXPECT(shmlane_latest_writer_open(ch, &lw), SHMLANE_OK);
    EXPECT(shmlane_latest_reader_open(ch, &lr), SHMLANE_OK);
    EXPECT(shmlane_channel_close(ch), SHMLANE_OK);
    snprintf(n, sizeof n, "%s-latest0", prefix);
    EXPECT(shmlane_latest_open(n, SHMLANE_CREATE, 64, o, &ch), SHMLANE_OK);
    EXPECT(shmlane_latest_reader_open(ch, &lr0), SHMLANE_OK);
    EXPECT(shmlane_channel_close(ch), SHMLANE_OK);
    EXPECT(shmlane_options_close(o), SHMLANE_OK);
}

/* One round of every non-blocking call, both sides in this thread (notify: no sleeper). */
static void round_(void) {
    uint64_t v = 7, many[CAP + 1];
    unsigned char buf[128];
    size_t k, n1, n2, len;
    void *w1, *w2, *d;
    const void *r1, *r2;
    uint64_t seq;
    int i;
    memset(many, 0, sizeof many);
    for (i = 0; i < CAP; i++) EXPECT(shmlane_try_send(tx, &v, 8), SHMLANE_OK);
    EXPECT(shmlane_try_send(tx, &v, 8), SHMLANE_E_FULL);
    for (i = 0; i < CAP; i++) EXPECT(shmlane_try_recv(rx, &v, 8), SHMLANE_OK);
    EXPECT(shmlane_try_recv(rx, &v, 8), SHMLANE_E_EMPTY);
    EXPECT(shmlane_try_send_many(tx, many, CAP + 1, 8, &k), SHMLANE_OK);
    EXPECT(shmlane_try_recv_many(rx, many, CAP + 1, 8, &k), SHMLANE_OK);
    EXPECT(shmlane_try_recv_many(rx, many, CAP + 1, 8, &k), SHMLANE_OK);
    EXPECT(shmlane_sender_write_chunk(tx, 3, &w1, &n1, &w2, &n2), SHMLANE_OK);
    EXPECT(shmlane_sender_commit(tx, 3), SHMLANE_OK);
    EXPECT(shmlane_receiver_read_chunk(rx, 3, &r1, &n1, &r2, &n2), SHMLANE_OK);
    EXPECT(shmlane_receiver_release(rx, 3), SHMLANE_OK);
    EXPECT(shmlane_receiver_read_chunk(rx, 1, &r1, &n1, &r2, &n2), SHMLANE_E_EMPTY);
    for (i = 0; i < CAP; i++) EXPECT(shmlane_sender_write_chunk(tx, 1, &w1, &n1, &w2, &n2) == 0 ? shmlane_sender_commit(tx, 1) : -1, SHMLANE_OK);
    EXPECT(shmlane_sender_write_chunk(tx, 1, &w1, &n1, &w2, &n2), SHMLANE_E_FULL);
    EXPECT(shmlane_try_recv_many(rx, many, CAP, 8, &k), SHMLANE_OK);

    for (i = 0; i < CAP; i++) EXPECT(shmlane_try_send(mtx, &v, 8), SHMLANE_OK);
    EXPECT(shmlane_try_send(mtx, &v, 8), SHMLANE_E_FULL);
    for (i = 0; i < CAP; i++) EXPECT(shmlane_try_recv(mrx, &v, 8), SHMLANE_OK);
    EXPECT(shmlane_try_recv(mrx, &v, 8), SHMLANE_E_EMPTY);

    for (i = 0; i < 100; i++) {
        int32_t r = shmlane_bytes_try_send(btx, buf, 100);
        if (r == SHMLANE_E_FULL) break;
        EXPECT(r, SHMLANE_OK);
    }
    EXPECT(shmlane_bytes_try_recv(brx, buf, 10, &len), SHMLANE_E_BUFFER_TOO_SMALL);
    while (shmlane_bytes_try_recv(brx, buf, sizeof buf, &len) == SHMLANE_OK) {
    }
    EXPECT(shmlane_bytes_try_recv(brx, buf, sizeof buf, &len), SHMLANE_E_EMPTY);
    EXPECT(shmlane_bytes_claim(btx, 40, &d), SHMLANE_OK);
    memset(d, 1, 40);
    EXPECT(shmlane_bytes_commit(btx), SHMLANE_OK);
    EXPECT(shmlane_bytes_claim(btx, 30, &d), SHMLANE_OK);
    EXPECT(shmlane_bytes_abort(btx), SHMLANE_OK);
    EXPECT(shmlane_bytes_try_recv(brx, buf, sizeof buf, &len), SHMLANE_OK);
    EXPECT(shmlane_bytes_try_recv(brx, buf, sizeof buf, &len), SHMLANE_E_EMPTY);

    for (i = 0; i <= CAP; i++) {
        EXPECT(shmlane_publish(pub, buf, 48, &seq), SHMLANE_OK);
        EXPECT(shmlane_subscriber_try_recv(fast, buf, sizeof buf, &len, &seq), SHMLANE_OK);
    }
    EXPECT(shmlane_subscriber_try_recv(fast, buf, sizeof buf, &len, &seq), SHMLANE_E_EMPTY);
    EXPECT(shmlane_subscriber_try_recv(slow, buf, sizeof buf, &len, &seq), SHMLANE_E_LAPPED);
    while (shmlane_subscriber_try_recv(slow, buf, sizeof buf, &len, &seq) == SHMLANE_OK) {
    }

    for (i = 0; i <= CAP; i++) {
        if (i % 2) {
            EXPECT(shmlane_publish(tpub, buf, 16, &seq), SHMLANE_OK);
        } else {
            EXPECT(shmlane_publisher_loan(tpub, &d), SHMLANE_OK);
            memset(d, i, 16);
            EXPECT(shmlane_publisher_loan_publish(tpub, &seq), SHMLANE_OK);
        }
        EXPECT(shmlane_subscriber_try_recv(tfast, buf, sizeof buf, &len, &seq), SHMLANE_OK);
    }
    EXPECT(shmlane_subscriber_try_recv(tfast, buf, sizeof buf, &len, &seq), SHMLANE_E_EMPTY);
    EXPECT(shmlane_subscriber_try_recv(tslow, buf, sizeof buf, &len, &seq), SHMLANE_E_LAPPED);
    while (shmlane_subscriber_try_recv(tslow, buf, sizeof buf, &len, &seq) == SHMLANE_OK) {
    }

    /* Latest value: more writes than slots (each slot reused every round), each read, then
     * read again unchanged; the error results TOO_LONG, BUFFER_TOO_SMALL and EMPTY. */
    for (i = 0; i <= 2 * LATEST_SLOTS; i++) {
        EXPECT(shmlane_latest_write(lw, buf, (size_t)(1 + i * 7), &seq), SHMLANE_OK);
        EXPECT(shmlane_latest_read_if_changed(lr, buf, sizeof buf, &len, &seq), SHMLANE_OK);
        EXPECT(shmlane_latest_read_if_changed(lr, buf, sizeof buf, &len, &seq), SHMLANE_E_UNCHANGED);
    }
    EXPECT(shmlane_latest_read(lr, buf, sizeof buf, &len, &seq), SHMLANE_OK);
    EXPECT(shmlane_latest_version(lr, &seq), SHMLANE_OK);
    EXPECT(shmlane_latest_writer_version(lw, &seq), SHMLANE_OK);
    EXPECT(shmlane_latest_write(lw, buf, 65, &seq), SHMLANE_E_TOO_LONG);
    EXPECT(shmlane_latest_write(lw, buf, 64, &seq), SHMLANE_OK);
    EXPECT(shmlane_latest_read(lr, buf, 10, &len, &seq), SHMLANE_E_BUFFER_TOO_SMALL);
    EXPECT(shmlane_latest_read_if_changed(lr, buf, sizeof buf, &len, &seq), SHMLANE_OK);
    EXPECT(shmlane_latest_read(lr0, buf, sizeof buf, &len, &seq), SHMLANE_E_EMPTY);
    EXPECT(shmlane_latest_read_if_changed(lr0, buf, sizeof buf, &len, &seq), SHMLANE_E_EMPTY);
}

static volatile int *report;

static void on_sigsys(int sig, siginfo_t *info, void *ctx) {
    (void)sig;
    (void)ctx;
    report[0] = info->si_syscall;
    _exit(86);
}

static void forbid_syscalls(void) {
    struct sigaction sa;
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_exit, 3, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_exit_group, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_rt_sigreturn, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fprog;
    fprog.len = (unsigned short)(sizeof prog / sizeof prog[0]);
    fprog.filter = prog;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, NULL) != 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0) {
        perror("seccomp");
        _exit(2);
    }
}

int main(int argc, char **argv) {
    pid_t pid;
    int status, i;
    long allocs;
    const char *mode = argc > 2 ? argv[2] : "";
    if (argc < 2) return 2;
    setvbuf(stdout, NULL, _IONBF, 0);
    report = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (report == MAP_FAILED) return 2;
    report[0] = -1;
    report[1] = -1;
    report[2] = -1;
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        setup(argv[1]);
        if (failures) _exit(3);
        if (strcmp(mode, "mutate-alloc") == 0) {
            /* The proof fails: one allocation in the window. */
            forbid = 1;
            free(malloc(16));
            forbid = 0;
        }
        /* From the very first round: the first error a thread records must not allocate. */
        forbid = 1;
        for (i = 0; i < ROUNDS && !failures; i++) round_();
        forbid = 0;
        report[1] = (int)forbidden;
        if (failures) _exit(3);
        {
            /* No page fault after set-up: the rounds above were the warm-up. */
            struct rusage a, b;
            getrusage(RUSAGE_THREAD, &a);
            for (i = 0; i < ROUNDS && !failures; i++) round_();
            getrusage(RUSAGE_THREAD, &b);
            report[2] = (int)((b.ru_minflt - a.ru_minflt) + (b.ru_majflt - a.ru_majflt));
        }
        forbid_syscalls();
        if (strcmp(mode, "mutate-syscall") == 0) (void)syscall(SYS_getpid);
        for (i = 0; i < ROUNDS && !failures; i++) round_();
        _exit(failures ? 3 : 0);
    }
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return 2;
    allocs = report[1];
    printf("ALLOCATIONS %ld\n", allocs);
    printf("FAULTS %d\n", report[2]);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 86) {
        printf("SYSCALL %d\n", report[0]);
        return 1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("FAIL child status %d\n", status);
        return 1;
    }
    return allocs == 0 && report[2] == 0 ? 0 : 1;
}
