// A C++ Sender<Quote> (tests/cpp_typed.rs): opens the SPSC channel argv[1] as
// Channel::spsc<Quote>(..., "Quote"), sends argv[2] Quotes (seq, id 0, checksum), then a
// Receiver<Quote> on the MPMC channel argv[3] waits with fd()/rearm()/poll for one Quote back
// and prints its seq. Exit 0; 1 with a message on stderr otherwise.
#include "shmlane.hpp"

#include <poll.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

struct Quote {
  std::uint64_t seq, id, check;
};

static std::uint64_t quote_check(std::uint64_t seq, std::uint64_t id) {
  return (seq * 0x9E3779B97F4A7C15ull) ^ (id << 56) ^ 0x5157u;
}

int main(int argc, char **argv) {
  if (argc < 4) return 2;
  try {
    auto ch = shmlane::Channel::spsc<Quote>(argv[1], shmlane::How::open, nullptr, "Quote");
    shmlane::Sender<Quote> tx(ch);
    const std::uint64_t n = std::strtoull(argv[2], nullptr, 10);
    for (std::uint64_t i = 0; i < n; i++) {
      tx.send(Quote{i, 0, quote_check(i, 0)});
    }
    auto back = shmlane::Channel::mpmc<Quote>(argv[3], shmlane::How::open, nullptr, "Quote");
    shmlane::Receiver<Quote> rx(back);
    const int fd = rx.fd();
    Quote q{};
    for (;;) {
      if (!rx.rearm()) {
        // SHMLANE_READY: already something to receive.
      } else {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 20000) != 1) {
          std::fprintf(stderr, "FAIL poll: nothing within 20 s\n");
          return 1;
        }
      }
      if (rx.try_recv(q) == SHMLANE_OK) break;
    }
    std::printf("back %llu\n", static_cast<unsigned long long>(q.seq));
    return 0;
  } catch (const shmlane::Error &e) {
    std::fprintf(stderr, "FAIL %s\n", e.what());
    return 1;
  }
}
