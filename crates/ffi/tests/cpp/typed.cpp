// Compiled (not run) by cpp_headers.rs: every member of the typed Sender<T> / Receiver<T> and
// Channel::spsc<T> / mpmc<T> instantiated, against the typed C ABI (the spec's declarations
// in typed_abi_spec.h while include/shmlane.h lacks them: -DSHMLANE_TEST_TYPED_SPEC).
#ifdef SHMLANE_TEST_TYPED_SPEC
#include "typed_abi_spec.h"
#endif
#include "shmlane.hpp"

#include <chrono>
#include <utility>

struct Quote {
  double bid, ask;
  int instrument;
};

int main() {
  using namespace std::chrono_literals;
  shmlane::Options o;
  o.capacity(64);
  auto ch = shmlane::Channel::spsc<Quote>("typed-compile", shmlane::How::open_or_create, &o, "Quote");
  auto ch2 = shmlane::Channel::mpmc<Quote>("typed-compile-2");
  shmlane::Sender<Quote> tx(ch);
  shmlane::Receiver<Quote> rx(ch2);
  Quote q{1.0, 2.0, 3};
  std::size_t n = 0;
  (void)tx.try_send(q);
  tx.send(q);
  (void)tx.send(q, 5ms);
  (void)tx.try_send_many(&q, 1, n);
  (void)rx.try_recv(q);
  (void)rx.try_recv();
  (void)rx.recv();
  (void)rx.recv(1s);
  (void)rx.try_recv_many(&q, 1, n);
  (void)rx.fd();
  (void)rx.try_rearm();
  (void)rx.rearm();
  shmlane::Sender<Quote> tx2 = std::move(tx);
  tx = std::move(tx2);
  shmlane::Receiver<Quote> rx2 = std::move(rx);
  rx = std::move(rx2);
  return tx.get() != nullptr && rx.get() != nullptr ? 0 : 1;
}
