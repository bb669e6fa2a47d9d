/*
 * Market-data fan-out on a broadcast channel, through the C ABI: one feed process publishes
 * quotes to several strategy processes. The feed never waits: a strategy that falls a whole
 * ring behind is told how many quotes it lost (SHMLANE_E_LAPPED), and the sequence numbers
 * show the gap. The last strategy is deliberately slow.
 *
 *   make -C examples && examples/build/c_md_fanout [QUOTES STRATEGIES]
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

/* The message: plain data, the same bytes in every process. */
typedef struct {
  uint64_t sent_ns; /* CLOCK_MONOTONIC when published */
  int64_t bid, ask;
  uint32_t bid_qty, ask_qty, instrument;
  uint32_t last; /* 1 on the feed's last message */
} quote;

#define CAPACITY 16384 /* slots: a strategy further behind is lapped */
#define MAX_STRATEGIES 16

static void check(int32_t st, const char *what) {
  if (st != SHMLANE_OK) {
    fprintf(stderr, "c_md_fanout: %s: %s: %s\n", what, shmlane_strerror(st), shmlane_last_error());
    exit(1);
  }
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int strategy(const char *name, int slow) {
  shmlane_options *o = NULL;
  shmlane_channel *ch = NULL;
  shmlane_subscriber *sub = NULL;
  uint64_t got = 0, lost = 0, lost_total = 0, next = 0, seq, work = 0, lat_sum = 0, k;
  int have_next = 0;
  volatile uint64_t sink;
  quote q;
  size_t len;
  check(shmlane_options_new(&o), "options");
  check(shmlane_options_wait(o, SHMLANE_WAIT_SPIN_THEN_PARK, 20000, 10), "wait");
  check(shmlane_options_unlink(o, SHMLANE_UNLINK_LAST_DETACH), "unlink");
  check(shmlane_broadcast_open(name, SHMLANE_OPEN, o, &ch), name);
  shmlane_options_close(o);
  check(shmlane_subscriber_open(ch, SHMLANE_START_NEWEST, 0, &sub), "subscriber");
  for (;;) {
    int32_t st = shmlane_subscriber_recv(sub, &q, sizeof q, &len, &seq, INT64_C(30000000000));
    if (st == SHMLANE_E_LAPPED) {
      uint64_t now_lost;
      check(shmlane_subscriber_lost(sub, &now_lost), "lost");
      if (have_next) {
        next += now_lost - lost;
      }
      lost = now_lost;
      continue;
    }
    if (st == SHMLANE_E_DISCONNECTED) {
      break;
    }
    check(st, "recv");
    if (len != sizeof q) {
      fprintf(stderr, "%s: a message of %zu bytes\n", name, len);
      return 1;
    }
    if (have_next && seq != next) { /* every gap is a loss that was reported */
      fprintf(stderr, "%s: seq %" PRIu64 ", expected %" PRIu64 ": a gap not reported\n", name, seq,
              next);
      return 1;
    }
    have_next = 1;
    next = seq + 1;
    if (q.last == 1) {
      break;
    }
    got++;
    lat_sum += now_ns() - q.sent_ns;
    if (slow) {
      for (k = 0; k < 2000; k++) {
        work = work * 31 + (k ^ (uint64_t)q.bid);
      }
    }
  }
  check(shmlane_subscriber_lost(sub, &lost_total), "lost");
  printf("%s (%s): %" PRIu64 " quotes received, %" PRIu64 " lost to laps; mean latency %" PRIu64
         " ns\n",
         name, slow ? "slow" : "fast", got, lost_total, got ? lat_sum / got : 0);
  sink = work;
  (void)sink;
  shmlane_subscriber_close(sub);
  shmlane_channel_close(ch);
  return 0;
}

int main(int argc, char **argv) {
  uint64_t quotes = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
  int strategies = argc > 2 ? atoi(argv[2]) : 3, i, failed = 0;
  char name[64];
  shmlane_options *o = NULL;
  shmlane_channel *ch = NULL;
  shmlane_publisher *feed = NULL;
  pid_t kids[MAX_STRATEGIES];
  uint64_t subs = 0, n, t0, deadline;
  quote q;
  if (argc > 4 && strcmp(argv[3], "strategy") == 0) {
    return strategy(argv[4], argc > 5 && strcmp(argv[5], "slow") == 0);
  }
  if (strategies < 1 || strategies > MAX_STRATEGIES) {
    fprintf(stderr, "c_md_fanout: 1 to %d strategies\n", MAX_STRATEGIES);
    return 2;
  }
  snprintf(name, sizeof name, "mdc-%ld", (long)getpid());
  check(shmlane_options_new(&o), "options");
  check(shmlane_options_capacity(o, CAPACITY), "capacity");
  check(shmlane_options_msg_size(o, sizeof(quote)), "msg_size");
  check(shmlane_options_unlink(o, SHMLANE_UNLINK_LAST_DETACH), "unlink");
  check(shmlane_broadcast_open(name, SHMLANE_CREATE, o, &ch), name);
  shmlane_options_close(o);
  check(shmlane_publisher_open(ch, &feed), "publisher");
  for (i = 0; i < strategies; i++) {
    char *args[7];
    args[0] = argv[0];
    args[1] = "0";
    args[2] = "0";
    args[3] = "strategy";
    args[4] = name;
    args[5] = (i + 1 == strategies && strategies > 1) ? "slow" : "fast";
    args[6] = NULL;
    if (posix_spawn(&kids[i], "/proc/self/exe", NULL, NULL, args, environ) != 0) {
      perror("posix_spawn");
      return 1;
    }
  }
  /* Strategies start at the newest quote: wait until every one has subscribed. */
  deadline = now_ns() + UINT64_C(10000000000);
  while (subs < (uint64_t)strategies) {
    check(shmlane_publisher_subscribers(feed, &subs), "subscribers");
    if (now_ns() > deadline) {
      fprintf(stderr, "c_md_fanout: only %" PRIu64 " of %d subscribed within 10 s\n", subs,
              strategies);
      return 1;
    }
  }
  t0 = now_ns();
  for (n = 0; n < quotes; n++) {
    q.sent_ns = now_ns();
    q.bid = 100000 + (int64_t)(n % 7);
    q.ask = 100010 + (int64_t)(n % 5);
    q.bid_qty = 100;
    q.ask_qty = 200;
    q.instrument = (uint32_t)(n % 16);
    q.last = 0;
    check(shmlane_publish(feed, &q, sizeof q, NULL), "publish");
  }
  t0 = now_ns() - t0;
  memset(&q, 0, sizeof q);
  q.last = 1;
  check(shmlane_publish(feed, &q, sizeof q, NULL), "publish");
  for (i = 0; i < strategies; i++) {
    int status;
    if (waitpid(kids[i], &status, 0) != kids[i] || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      failed = 1;
    }
  }
  printf("feed: %" PRIu64 " quotes to %d strategies in %.3f s\n", quotes, strategies,
         (double)t0 / 1e9);
  shmlane_publisher_close(feed);
  shmlane_channel_close(ch);
  return failed;
}
