// A C++ TypedSubscriber<Quote> and TypedPublisher<Quote> (include/shmlane.hpp) on typed broadcast
// channels, for tests/tbcast.rs. argv: IN OUT N. Subscribes to IN (a Rust broadcast_of::<Quote>
// publisher) from sequence number 0 and receives N Quotes, each checked whole with its seq (recv,
// and every third by try_recv); then publishes N Quotes to OUT through loans (get(), write())
// and copies, and prints "ok". Exit 1 with a "FAIL ..." line otherwise.
#include "shmlane.hpp"

#include <cstdio>
#include <cstdlib>

struct Quote {
  std::uint64_t seq;
  double bid;
  double ask;
  std::uint32_t instrument;
  std::uint32_t check;
};

static Quote make(std::uint64_t seq) {
  Quote q{};
  q.seq = seq;
  q.bid = 1.0 + static_cast<double>(seq) * 0.25;
  q.ask = q.bid + 0.5;
  q.instrument = static_cast<std::uint32_t>(seq % 97u);
  q.check = static_cast<std::uint32_t>(seq * 2654435761u) ^ q.instrument;
  return q;
}

static bool same(const Quote &a, const Quote &b) {
  return a.seq == b.seq && a.bid == b.bid && a.ask == b.ask && a.instrument == b.instrument &&
         a.check == b.check;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    std::printf("FAIL usage\n");
    return 1;
  }
  const std::uint64_t n = std::strtoull(argv[3], nullptr, 10);
  try {
    auto in = shmlane::Channel::broadcast_of<Quote>(argv[1], shmlane::How::open, nullptr, "Quote");
    shmlane::TypedSubscriber<Quote> sub(in, shmlane::Start::seq, 0);
    for (std::uint64_t i = 0; i < n; i++) {
      Quote q{};
      std::uint64_t seq = 0;
      if (i % 3 == 0) {
        shmlane::Status s;
        while ((s = sub.try_recv(q, &seq)) == SHMLANE_E_EMPTY) {
        }
        if (s != SHMLANE_OK) {
          std::printf("FAIL try_recv %llu: %d %s\n", static_cast<unsigned long long>(i), s,
                      shmlane_last_error());
          return 1;
        }
      } else {
        auto r = sub.recv(std::chrono::seconds(20));
        if (!r) {
          std::printf("FAIL recv %llu: timeout\n", static_cast<unsigned long long>(i));
          return 1;
        }
        q = r->value;
        seq = r->seq;
        if (r->lost != 0) {
          std::printf("FAIL lost %llu\n", static_cast<unsigned long long>(r->lost));
          return 1;
        }
      }
      if (seq != i || !same(q, make(i))) {
        std::printf("FAIL quote %llu: seq %llu quote seq %llu check %u\n",
                    static_cast<unsigned long long>(i), static_cast<unsigned long long>(seq),
                    static_cast<unsigned long long>(q.seq), q.check);
        return 1;
      }
    }
    auto out = shmlane::Channel::broadcast_of<Quote>(argv[2], shmlane::How::open, nullptr, "Quote");
    shmlane::TypedPublisher<Quote> pub(out);
    for (std::uint64_t i = 0; i < n; i++) {
      std::uint64_t seq = 0;
      if (i % 3 == 0) {
        seq = pub.publish(make(i));
      } else if (i % 3 == 1) {
        auto loan = pub.loan();
        *loan.get() = make(i);
        seq = loan.publish();
        // Once over, try_publish says SHMLANE_E_CLAIM as documented (review revtb).
        const shmlane::Status again = loan.try_publish();
        if (again != SHMLANE_E_CLAIM || static_cast<bool>(loan)) {
          std::printf("FAIL try_publish of a published loan: status %d, want %d\n",
                      static_cast<int>(again), static_cast<int>(SHMLANE_E_CLAIM));
          return 1;
        }
        try {
          (void)loan.publish();
          std::printf("FAIL publish of a published loan did not throw\n");
          return 1;
        } catch (const shmlane::Error &e) {
          if (e.status() != SHMLANE_E_CLAIM ||
              std::string(e.what()).find("loan was published") == std::string::npos) {
            std::printf("FAIL publish of a published loan: %s\n", e.what());
            return 1;
          }
        }
      } else {
        {
          auto dropped = pub.loan();  // abandoned by its destructor
          dropped->seq = ~0ull;
        }
        auto loan = pub.loan();
        loan.write(make(i));
        seq = loan.publish();
      }
      if (seq != i) {
        std::printf("FAIL publish %llu got seq %llu\n", static_cast<unsigned long long>(i),
                    static_cast<unsigned long long>(seq));
        return 1;
      }
    }
  } catch (const shmlane::Error &e) {
    std::printf("FAIL %s\n", e.what());
    return 1;
  }
  std::printf("ok\n");
  return 0;
}
