// Market-data fan-out on a broadcast channel through shmlane.hpp: one feed process publishes
// quotes to several strategy processes; a strategy that falls a ring behind is told how many
// it lost, and the sequence numbers show the gap. The last strategy is deliberately slow.
//
//   make -C examples && examples/build/cpp_md_fanout [QUOTES STRATEGIES]
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "shmlane.hpp"

extern char **environ;

using namespace std::chrono_literals;

// The message: plain data, the same bytes in every process (and as the C example's).
struct Quote {
  std::uint64_t sent_ns; // CLOCK_MONOTONIC when published
  std::int64_t bid, ask;
  std::uint32_t bid_qty, ask_qty, instrument;
  std::uint32_t last; // 1 on the feed's last message
};
static_assert(std::is_trivially_copyable_v<Quote>);

constexpr std::uint64_t kCapacity = 16384; // slots: a strategy further behind is lapped

static std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

static int strategy(const std::string &name, bool slow) {
  shmlane::Options o;
  o.wait(shmlane::Wait::spin_then_park, 20000, 10).unlink(shmlane::Unlink::last_detach);
  auto ch = shmlane::Channel::broadcast(name, shmlane::How::open, o);
  shmlane::Subscriber sub(ch, shmlane::Start::newest);
  std::uint64_t got = 0, lat_sum = 0, work = 0, next = 0;
  bool have_next = false;
  Quote q{};
  for (;;) {
    std::optional<shmlane::Received> r;
    try {
      r = sub.recv(&q, sizeof q, 30s);
    } catch (const shmlane::Error &e) {
      if (e.status() == SHMLANE_E_DISCONNECTED) {
        break;
      }
      throw;
    }
    if (!r) {
      std::fprintf(stderr, "%s: nothing for 30 s\n", name.c_str());
      return 1;
    }
    if (have_next && r->seq != next + r->lost) { // every gap is a loss that was reported
      std::fprintf(stderr, "%s: a gap not reported\n", name.c_str());
      return 1;
    }
    have_next = true;
    next = r->seq + 1;
    if (q.last == 1) {
      break;
    }
    got++;
    lat_sum += now_ns() - q.sent_ns;
    if (slow) {
      for (std::uint64_t k = 0; k < 2000; k++) {
        work = work * 31 + (k ^ static_cast<std::uint64_t>(q.bid));
      }
    }
  }
  volatile std::uint64_t sink = work;
  (void)sink;
  std::printf("%s (%s): %llu quotes received, %llu lost to laps; mean latency %llu ns\n", name.c_str(),
              slow ? "slow" : "fast", static_cast<unsigned long long>(got),
              static_cast<unsigned long long>(sub.lost()),
              static_cast<unsigned long long>(got ? lat_sum / got : 0));
  return 0;
}

int main(int argc, char **argv) try {
  const std::uint64_t quotes = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1000000;
  const int strategies = argc > 2 ? std::atoi(argv[2]) : 3;
  if (argc > 4 && std::strcmp(argv[3], "strategy") == 0) {
    return strategy(argv[4], argc > 5 && std::strcmp(argv[5], "slow") == 0);
  }
  if (strategies < 1 || strategies > 64) {
    std::fprintf(stderr, "cpp_md_fanout: 1 to 64 strategies\n");
    return 2;
  }
  const std::string name = "mdx-" + std::to_string(getpid());
  shmlane::Options o;
  o.capacity(kCapacity).msg_size(sizeof(Quote)).unlink(shmlane::Unlink::last_detach);
  auto ch = shmlane::Channel::broadcast(name, shmlane::How::create, o);
  shmlane::Publisher feed(ch);
  std::vector<pid_t> kids;
  for (int i = 0; i < strategies; i++) {
    std::string zero = "0", role = "strategy", n = name;
    std::string pace = (i + 1 == strategies && strategies > 1) ? "slow" : "fast";
    char *args[] = {argv[0], zero.data(), zero.data(), role.data(), n.data(), pace.data(), nullptr};
    pid_t pid = 0;
    if (posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, args, environ) != 0) {
      std::perror("posix_spawn");
      return 1;
    }
    kids.push_back(pid);
  }
  // Strategies start at the newest quote: wait until every one has subscribed.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (feed.subscribers() < static_cast<std::uint64_t>(strategies)) {
    if (std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr, "cpp_md_fanout: not every strategy subscribed within 10 s\n");
      return 1;
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  for (std::uint64_t i = 0; i < quotes; i++) {
    const Quote q{now_ns(), 100000 + static_cast<std::int64_t>(i % 7), 100010 + static_cast<std::int64_t>(i % 5),
                  100, 200, static_cast<std::uint32_t>(i % 16), 0};
    if (feed.try_publish(&q, sizeof q) != SHMLANE_OK) { // the real-time path: never throws
      std::fprintf(stderr, "cpp_md_fanout: publish: %s\n", shmlane_last_error());
      return 1;
    }
  }
  const std::chrono::duration<double> secs = std::chrono::steady_clock::now() - t0;
  Quote end{};
  end.last = 1;
  feed.publish_value(end);
  int failed = 0;
  for (pid_t pid : kids) {
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      failed = 1;
    }
  }
  std::printf("feed: %llu quotes to %d strategies in %.3f s\n", static_cast<unsigned long long>(quotes),
              strategies, secs.count());
  return failed;
} catch (const shmlane::Error &e) {
  std::fprintf(stderr, "cpp_md_fanout: %s (status %d)\n", e.what(), e.status());
  return 1;
}
