/*
 * Ping-pong between two processes over two typed SPSC channels of uint64_t, through the C ABI
 * (shmlane_spsc_open with sizeof/alignment of uint64_t and the Rust type name "u64"): 8-byte
 * round trips, percentiles (the C twin of `cargo run --release -p shmlane --example pingpong`,
 * same channel options).
 *
 *   make -C examples && target/examples/c_pingpong_typed [ROUND_TRIPS]
 *
 * The parent creates both channels, starts itself again as the echo child (argv: N echo TAG),
 * sends a counter and waits for it to come back, ROUND_TRIPS times.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmlane.h"

extern char **environ;

#define TEN_S INT64_C(10000000000)

static void check(int32_t st, const char *what) {
  if (st != SHMLANE_OK) {
    fprintf(stderr, "c_pingpong_typed: %s: %s: %s\n", what, shmlane_strerror(st), shmlane_last_error());
    exit(1);
  }
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

static shmlane_channel *open_channel(const char *name, int32_t how) {
  shmlane_options *o = NULL;
  shmlane_channel *ch = NULL;
  check(shmlane_options_new(&o), "options");
  check(shmlane_options_capacity(o, 64), "capacity");
  check(shmlane_options_wait(o, SHMLANE_WAIT_SPIN_THEN_PARK, 100000, 10), "wait");
  check(shmlane_options_unlink(o, SHMLANE_UNLINK_LAST_DETACH), "unlink");
  check(shmlane_spsc_open(name, how, sizeof(uint64_t), sizeof(uint64_t), "u64", o, &ch), name);
  check(shmlane_options_close(o), "options close");
  return ch;
}

static int echo(uint64_t n, const char *tag) {
  char there[64], back[64];
  shmlane_channel *a, *b;
  shmlane_receiver *rx = NULL;
  shmlane_sender *tx = NULL;
  uint64_t i, v;
  snprintf(there, sizeof there, "ppt-there-%s", tag);
  snprintf(back, sizeof back, "ppt-back-%s", tag);
  a = open_channel(there, SHMLANE_OPEN);
  b = open_channel(back, SHMLANE_OPEN);
  check(shmlane_receiver_open(a, &rx), "receiver");
  check(shmlane_sender_open(b, &tx), "sender");
  for (i = 0; i < n; i++) {
    check(shmlane_recv(rx, &v, sizeof v, TEN_S), "recv");
    check(shmlane_send(tx, &v, sizeof v, -1), "send");
  }
  shmlane_sender_close(tx);
  shmlane_receiver_close(rx);
  shmlane_channel_close(a);
  shmlane_channel_close(b);
  return 0;
}

int main(int argc, char **argv) {
  uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 100000;
  char tag[32], nbuf[32], there[64], back[64];
  char *child_argv[5];
  shmlane_channel *a, *b;
  shmlane_sender *tx = NULL;
  shmlane_receiver *rx = NULL;
  uint64_t *rtt, i, v;
  pid_t child;
  int status;
  if (n == 0) {
    n = 1;
  }
  if (argc > 3 && strcmp(argv[2], "echo") == 0) {
    return echo(n, argv[3]);
  }
  snprintf(tag, sizeof tag, "%ld", (long)getpid());
  snprintf(there, sizeof there, "ppt-there-%s", tag);
  snprintf(back, sizeof back, "ppt-back-%s", tag);
  a = open_channel(there, SHMLANE_CREATE);
  b = open_channel(back, SHMLANE_CREATE);
  check(shmlane_sender_open(a, &tx), "sender");
  check(shmlane_receiver_open(b, &rx), "receiver");
  snprintf(nbuf, sizeof nbuf, "%" PRIu64, n);
  child_argv[0] = argv[0];
  child_argv[1] = nbuf;
  child_argv[2] = "echo";
  child_argv[3] = tag;
  child_argv[4] = NULL;
  if (posix_spawn(&child, "/proc/self/exe", NULL, NULL, child_argv, environ) != 0) {
    perror("c_pingpong_typed: posix_spawn");
    return 1;
  }
  rtt = malloc(n * sizeof *rtt);
  if (rtt == NULL) {
    return 1;
  }
  for (i = 0; i < n; i++) {
    uint64_t t0 = now_ns();
    check(shmlane_send(tx, &i, sizeof i, -1), "send");
    check(shmlane_recv(rx, &v, sizeof v, TEN_S), "recv");
    rtt[i] = now_ns() - t0;
    if (v != i) {
      fprintf(stderr, "c_pingpong_typed: sent %" PRIu64 ", got %" PRIu64 "\n", i, v);
      return 1;
    }
  }
  if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "c_pingpong_typed: the echo child failed\n");
    return 1;
  }
  qsort(rtt, n, sizeof *rtt, cmp_u64);
  printf("%" PRIu64 " round trips between two processes (C ABI, typed SPSC): p50 %" PRIu64
         " ns, p99 %" PRIu64 " ns, p99.9 %" PRIu64 " ns, max %" PRIu64 " ns\n",
         n, rtt[(n - 1) / 2], rtt[(uint64_t)((double)(n - 1) * 0.99)],
         rtt[(uint64_t)((double)(n - 1) * 0.999)], rtt[n - 1]);
  free(rtt);
  shmlane_sender_close(tx);
  shmlane_receiver_close(rx);
  shmlane_channel_close(a);
  shmlane_channel_close(b);
  return 0;
}
