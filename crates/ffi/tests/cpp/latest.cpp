// Built with c++ -std=c++17 -Wall -Wextra -Werror -pedantic and run by cpp_latest.rs: the
// latest-value wrappers of shmlane.hpp (Channel::latest, LatestWriter, LatestReader) against the
// real library, checking what each returns or throws; then a LatestReader waits for the values
// 1..=100 (uint64_t) a Rust writer process writes to the channel argv[2]: every one it sees
// larger than the one before, ending on 100. argv[1]: a name prefix. Prints "ok cpp latest".
#include "shmlane.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>
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

static void in_process(const std::string &name) {
  shmlane::Options o;
  o.capacity(4).unlink(shmlane::Unlink::creator_drop);
  auto ch = shmlane::Channel::latest(name, 32, shmlane::How::create, o);
  EXPECT(ch.created());
  EXPECT(ch.kind() == shmlane::Kind::latest);
  EXPECT(thrown([&] { shmlane::Channel::latest(name, 32, shmlane::How::create); }) ==
         SHMLANE_E_EXISTS);
  EXPECT(thrown([&] { shmlane::Channel::latest(name, 16, shmlane::How::open); }) ==
         SHMLANE_E_MISMATCH);
  EXPECT(thrown([&] { shmlane::Channel::bytes(name, shmlane::How::open); }) ==
         SHMLANE_E_WRONG_KIND);
  EXPECT(thrown([&] { shmlane::ByteSender s(ch); }) == SHMLANE_E_WRONG_KIND);
  shmlane::LatestWriter w(ch);
  shmlane::LatestReader r(ch);
  EXPECT(w.value_size() == 32 && r.value_size() == 32);

  char buf[64];
  std::size_t len = 0;
  std::uint64_t ver = 0;
  // Never written.
  EXPECT(r.version() == 0 && w.version() == 0);
  EXPECT(r.try_read(buf, sizeof buf, len) == SHMLANE_E_EMPTY);
  EXPECT(r.try_read_if_changed(buf, sizeof buf, len) == SHMLANE_E_EMPTY);
  EXPECT(!r.read(buf, sizeof buf).has_value());
  EXPECT(!r.read_if_changed(buf, sizeof buf).has_value());
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT(!r.wait_changed(buf, sizeof buf, 20ms).has_value());
  const auto dt = std::chrono::steady_clock::now() - t0;
  EXPECT(dt >= 19ms && dt < 1s);
  EXPECT(!r.wait_changed(buf, sizeof buf, -5s).has_value()); // negative: one attempt

  // Round trip, unchanged.
  EXPECT(w.write("hello") == 1);
  EXPECT(r.try_version(ver) == SHMLANE_OK && ver == 1);
  auto got = r.read_if_changed(buf, sizeof buf);
  EXPECT(got && got->len == 5 && got->version == 1 && std::memcmp(buf, "hello", 5) == 0);
  EXPECT(!r.read_if_changed(buf, sizeof buf).has_value());
  EXPECT(r.try_read_if_changed(buf, sizeof buf, len, &ver) == SHMLANE_E_UNCHANGED);
  got = r.read(buf, sizeof buf);
  EXPECT(got && got->len == 5 && got->version == 1);
  EXPECT(!r.wait_changed(buf, sizeof buf, 1ms).has_value());

  // Too long; buffer too small (length reported, nothing lost); a typed value.
  const std::string long_value(33, 'x');
  EXPECT(w.try_write(long_value.data(), long_value.size(), &ver) == SHMLANE_E_TOO_LONG);
  EXPECT(thrown([&] { w.write(long_value); }) == SHMLANE_E_TOO_LONG);
  EXPECT(w.version() == 1);
  const std::string full(32, 'y');
  EXPECT(w.write(full) == 2);
  EXPECT(r.try_read_if_changed(buf, 8, len) == SHMLANE_E_BUFFER_TOO_SMALL && len == 32);
  EXPECT(thrown([&] { (void)r.read(buf, 8); }) == SHMLANE_E_BUFFER_TOO_SMALL);
  got = r.read_if_changed(buf, sizeof buf);
  EXPECT(got && got->len == 32 && got->version == 2 && std::memcmp(buf, full.data(), 32) == 0);
  const std::uint64_t x = 0x1122334455667788ull;
  EXPECT(w.write_value(x) == 3);
  const auto waited = r.wait_changed(buf, sizeof buf);
  std::uint64_t y = 0;
  std::memcpy(&y, buf, sizeof y);
  EXPECT(waited.len == 8 && waited.version == 3 && y == x);

  // Move-only handles.
  shmlane::LatestWriter w2 = std::move(w);
  EXPECT(w.get() == nullptr && w2.get() != nullptr);
  w = std::move(w2);
  shmlane::LatestReader r2 = std::move(r);
  r = std::move(r2);
  EXPECT(r.get() != nullptr && r2.get() == nullptr);
  r.close();
  EXPECT(r.get() == nullptr);
}

static void from_rust(const std::string &name) {
  auto ch = shmlane::Channel::latest(name, 8, shmlane::How::open);
  shmlane::LatestReader r(ch);
  std::printf("waiting\n");
  std::fflush(stdout);
  std::uint64_t prev_value = 0, prev_version = 0, v = 0;
  while (v != 100) {
    const auto got = r.wait_changed(&v, sizeof v, 20s);
    if (!got) {
      std::fprintf(stderr, "FAILED: no new value in 20 s after %llu\n",
                   static_cast<unsigned long long>(prev_value));
      failures++;
      return;
    }
    EXPECT(got->len == sizeof v);
    EXPECT(v > prev_value && v <= 100);
    EXPECT(got->version > prev_version);
    prev_value = v;
    prev_version = got->version;
  }
}

int main(int argc, char **argv) {
  if (argc < 3) {
    return 2;
  }
  try {
    in_process(std::string(argv[1]) + "-l");
    from_rust(argv[2]);
  } catch (const shmlane::Error &e) {
    std::fprintf(stderr, "FAILED: unexpected shmlane::Error: %s\n", e.what());
    return 1;
  }
  if (failures != 0) {
    return 1;
  }
  std::printf("ok cpp latest\n");
  return 0;
}
