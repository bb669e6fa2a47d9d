// Built with c++ -std=c++17 -Wall -Wextra -Werror -pedantic and run by cpp_headers.rs: every
// non-typed part of shmlane.hpp used against the real library in one process, checking what
// each returns or throws. argv[1]: a channel name prefix. Prints "ok" at the end.
#include "shmlane.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

using namespace std::chrono_literals;

static int failures = 0;
#define EXPECT(cond)                                                                               \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      std::fprintf(stderr, "FAILED line %d: %s\n", __LINE__, #cond);                               \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)

template <class F> static shmlane::Status thrown(F f) {
  try {
    f();
  } catch (const shmlane::Error &e) {
    EXPECT(!e.detail().empty());
    EXPECT(std::strstr(e.what(), e.detail().c_str()) != nullptr);
    return e.status();
  }
  return SHMLANE_OK;
}

static void byte_channel(const std::string &name) {
  shmlane::Options o;
  o.capacity(4096).unlink(shmlane::Unlink::last_detach).wait(shmlane::Wait::spin_yield);
  auto ch = shmlane::Channel::bytes(name, shmlane::How::create, o);
  EXPECT(ch.created());
  EXPECT(ch.kind() == shmlane::Kind::bytes);
  EXPECT(thrown([&] { shmlane::Channel::bytes(name, shmlane::How::create, o); }) == SHMLANE_E_EXISTS);
  EXPECT(thrown([&] { shmlane::Channel::broadcast(name, shmlane::How::open); }) == SHMLANE_E_WRONG_KIND);
  shmlane::ByteSender tx(ch);
  shmlane::ByteReceiver rx(ch);
  EXPECT(thrown([&] { shmlane::ByteReceiver second(ch); }) == SHMLANE_E_ROLE_TAKEN);

  char buf[64];
  std::size_t len = 0;
  EXPECT(rx.try_recv(buf, sizeof buf, len) == SHMLANE_E_EMPTY);
  EXPECT(!rx.try_recv(buf, sizeof buf).has_value());
  EXPECT(!rx.recv(buf, sizeof buf, 1ms).has_value());
  EXPECT(!rx.recv(buf, sizeof buf, -5s).has_value()); // negative: one attempt

  tx.send("hello");
  EXPECT(rx.recv_string() == "hello");
  EXPECT(tx.try_send("0123456789") == SHMLANE_OK);
  EXPECT(rx.try_recv(buf, 4, len) == SHMLANE_E_BUFFER_TOO_SMALL && len == 10);
  EXPECT(rx.recv(buf, sizeof buf) == 10 && std::memcmp(buf, "0123456789", 10) == 0);

  {
    shmlane::ByteClaim c = tx.claim(5);
    EXPECT(c.active() && c.size() == 5);
    shmlane::ByteClaim other;
    EXPECT(tx.try_claim(3, other) == SHMLANE_E_CLAIM && !other.active());
    std::memcpy(c.data(), "world", 5);
    c.commit();
    EXPECT(!c.active());
    EXPECT(c.try_commit() == SHMLANE_E_CLAIM);
  }
  EXPECT(rx.recv_string() == "world");
  {
    shmlane::ByteClaim dropped = tx.claim(7); // destroyed uncommitted: aborted
    std::memcpy(dropped.data(), "aborted", 7);
    shmlane::ByteClaim moved = std::move(dropped);
    EXPECT(!dropped.active() && moved.active());
  }
  EXPECT(tx.send("after", 5, 1s));
  auto got = rx.recv(buf, sizeof buf, 1s);
  EXPECT(got && *got == 5 && std::memcmp(buf, "after", 5) == 0);

  EXPECT(tx.try_send(std::string(tx.max_message() + 1, 'x')) == SHMLANE_E_TOO_LONG);
  EXPECT(thrown([&] { tx.send(std::string(tx.max_message() + 1, 'x')); }) == SHMLANE_E_TOO_LONG);
  EXPECT(tx.stats().messages >= 4);
  EXPECT(rx.stats().messages >= 4);

  shmlane::ByteSender moved = std::move(tx);
  EXPECT(tx.get() == nullptr);
  EXPECT(tx.try_send("x") == SHMLANE_E_NULL); // a moved-from handle: a status, no crash
  EXPECT(moved.try_send("y") == SHMLANE_OK);
  EXPECT(rx.recv_string() == "y");
}

static void broadcast(const std::string &name) {
  shmlane::Options o;
  o.capacity(8).msg_size(32).unlink(shmlane::Unlink::last_detach);
  auto ch = shmlane::Channel::broadcast(name, shmlane::How::open_or_create, o);
  EXPECT(ch.kind() == shmlane::Kind::broadcast);
  shmlane::Publisher pub(ch);
  EXPECT(thrown([&] { shmlane::Publisher second(ch); }) == SHMLANE_E_ROLE_TAKEN);
  shmlane::Subscriber sub(ch, shmlane::Start::oldest);
  EXPECT(pub.subscribers() == 1);
  EXPECT(pub.max_message() == 32 && sub.max_message() == 32);
  char buf[32];
  std::size_t len = 0;
  std::uint64_t seq = 99;
  EXPECT(sub.try_recv(buf, sizeof buf, len, &seq) == SHMLANE_E_EMPTY);
  EXPECT(!sub.recv(buf, sizeof buf, 1ms).has_value());
  for (std::uint64_t i = 0; i < 3; i++) {
    EXPECT(pub.publish_value(i) == i);
  }
  for (std::uint64_t i = 0; i < 3; i++) {
    shmlane::Received r = sub.recv(buf, sizeof buf);
    std::uint64_t v = 0;
    std::memcpy(&v, buf, sizeof v);
    EXPECT(r.len == 8 && r.seq == i && r.lost == 0 && v == i);
  }
  for (std::uint64_t i = 3; i < 23; i++) { // 20 into 8 slots: the subscriber is lapped
    std::uint64_t s = 0;
    EXPECT(pub.try_publish(&i, sizeof i, &s) == SHMLANE_OK && s == i);
  }
  auto r = sub.recv(buf, sizeof buf, 1s);
  EXPECT(r.has_value() && r->lost > 0 && r->seq == 3 + r->lost);
  EXPECT(sub.lost() == r->lost);
  EXPECT(pub.next_seq() == 23);
  EXPECT(pub.try_publish(buf, 33) == SHMLANE_E_TOO_LONG);
  EXPECT(pub.stats().messages >= 23);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    return 2;
  }
  const std::string prefix = argv[1];
  EXPECT(shmlane::detail::timeout_ns(-1s) == 0);
  EXPECT(shmlane::detail::timeout_ns(std::chrono::hours::max()) == INT64_MAX);
  EXPECT(shmlane::detail::timeout_ns(1500us) == 1500000);
  EXPECT(std::strlen(shmlane::strerror(SHMLANE_E_FULL)) > 0);
  EXPECT(thrown([] { shmlane::Channel::bytes("bad/name"); }) == SHMLANE_E_NAME);
  EXPECT(thrown([&] { shmlane::Channel::bytes(prefix + "-none", shmlane::How::open); }) ==
         SHMLANE_E_NOT_FOUND);
  EXPECT(thrown([] { shmlane::Options().wait(static_cast<shmlane::Wait>(42)); }) ==
         SHMLANE_E_INVALID);
  EXPECT(shmlane::try_remove(nullptr) == SHMLANE_E_NULL);
  try {
    byte_channel(prefix + "-b");
    broadcast(prefix + "-c");
  } catch (const shmlane::Error &e) {
    std::fprintf(stderr, "unexpected: %s (status %d)\n", e.what(), e.status());
    return 1;
  }
  if (failures != 0) {
    return 1;
  }
  std::printf("OUT:ok cpp header\n");
  return 0;
}
