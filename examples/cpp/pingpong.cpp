// Ping-pong between two processes over two shmlane byte channels, through shmlane.hpp:
// 8-byte round trips, percentiles (the C++ twin of examples/c/pingpong.c).
//
//   make -C examples && examples/build/cpp_pingpong [ROUND_TRIPS]
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "shmlane.hpp"

extern char **environ;

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

static shmlane::Channel open_channel(const std::string &name, shmlane::How how) {
  shmlane::Options o;
  o.capacity(4096).wait(shmlane::Wait::spin_then_park, 100000, 10).unlink(shmlane::Unlink::last_detach);
  return shmlane::Channel::bytes(name, how, o);
}

static int echo(std::uint64_t n, const std::string &tag) {
  auto there = open_channel("ppx-there-" + tag, shmlane::How::open);
  auto back = open_channel("ppx-back-" + tag, shmlane::How::open);
  shmlane::ByteReceiver rx(there);
  shmlane::ByteSender tx(back);
  std::uint64_t v = 0;
  for (std::uint64_t i = 0; i < n; i++) {
    auto len = rx.recv(&v, sizeof v, 10s);
    if (!len) {
      std::fprintf(stderr, "cpp_pingpong echo: nothing for 10 s\n");
      return 1;
    }
    tx.send(&v, *len);
  }
  return 0;
}

int main(int argc, char **argv) try {
  std::uint64_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 100000;
  n = std::max<std::uint64_t>(n, 1);
  if (argc > 3 && std::strcmp(argv[2], "echo") == 0) {
    return echo(n, argv[3]);
  }
  const std::string tag = std::to_string(getpid());
  auto there = open_channel("ppx-there-" + tag, shmlane::How::create);
  auto back = open_channel("ppx-back-" + tag, shmlane::How::create);
  shmlane::ByteSender tx(there);
  shmlane::ByteReceiver rx(back);
  std::string ns = std::to_string(n), echo_arg = "echo", tag_arg = tag;
  char *child_argv[] = {argv[0], ns.data(), echo_arg.data(), tag_arg.data(), nullptr};
  pid_t child = 0;
  if (posix_spawn(&child, "/proc/self/exe", nullptr, nullptr, child_argv, environ) != 0) {
    std::perror("cpp_pingpong: posix_spawn");
    return 1;
  }
  std::vector<std::uint64_t> rtt(n);
  for (std::uint64_t i = 0; i < n; i++) {
    const auto t0 = Clock::now();
    tx.send(&i, sizeof i);
    std::uint64_t v = 0;
    auto len = rx.recv(&v, sizeof v, 10s);
    rtt[i] = static_cast<std::uint64_t>(std::chrono::nanoseconds(Clock::now() - t0).count());
    if (!len || *len != sizeof v || v != i) {
      std::fprintf(stderr, "cpp_pingpong: round trip %llu failed\n", static_cast<unsigned long long>(i));
      return 1;
    }
  }
  int status = 0;
  if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "cpp_pingpong: the echo child failed\n");
    return 1;
  }
  std::sort(rtt.begin(), rtt.end());
  auto q = [&](double p) {
    return static_cast<unsigned long long>(rtt[static_cast<std::size_t>(static_cast<double>(n - 1) * p)]);
  };
  std::printf("%llu round trips between two processes (C++ header, byte channel): p50 %llu ns, "
              "p99 %llu ns, p99.9 %llu ns, max %llu ns\n",
              static_cast<unsigned long long>(n), q(0.5), q(0.99), q(0.999), q(1.0));
  return 0;
} catch (const shmlane::Error &e) {
  std::fprintf(stderr, "cpp_pingpong: %s (status %d)\n", e.what(), e.status());
  return 1;
}
