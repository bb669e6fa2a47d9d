// A broadcast subscriber written with shmlane.hpp, run by cpp_broadcast.rs next to a Rust
// subscriber on the same channel. argv[1]: the channel. It subscribes (newest), receives until
// the 3-byte message "END", and prints one line: how many messages, the first and last
// sequence numbers, the losses, whether the numbers were contiguous, and an FNV-1a hash over
// every (sequence number, length, bytes). The Rust subscriber prints the same line.
#include "shmlane.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>

using namespace std::chrono_literals;

static std::uint64_t fnv(std::uint64_t h, const unsigned char *p, std::size_t n) {
  for (std::size_t i = 0; i < n; i++) {
    h = (h ^ p[i]) * 0x100000001b3ULL;
  }
  return h;
}

static std::uint64_t fnv_u64(std::uint64_t h, std::uint64_t v) {
  unsigned char b[8];
  for (int i = 0; i < 8; i++) {
    b[i] = static_cast<unsigned char>(v >> (8 * i));
  }
  return fnv(h, b, 8);
}

int main(int argc, char **argv) try {
  if (argc < 2) {
    return 2;
  }
  auto ch = shmlane::Channel::broadcast(argv[1], shmlane::How::open);
  shmlane::Subscriber sub(ch, shmlane::Start::newest);
  std::printf("OUT:subscribed\n");
  std::fflush(stdout);
  unsigned char buf[256];
  std::uint64_t count = 0, first = 0, last = 0, lost = 0, hash = 0xcbf29ce484222325ULL;
  bool contiguous = true;
  for (;;) {
    auto r = sub.recv(buf, sizeof buf, 20s);
    if (!r) {
      std::fprintf(stderr, "bcast_sub: nothing for 20 s\n");
      return 1;
    }
    lost += r->lost;
    if (r->len == 3 && std::memcmp(buf, "END", 3) == 0) {
      break;
    }
    if (count == 0) {
      first = r->seq;
    } else if (r->seq != last + 1) {
      contiguous = false;
    }
    last = r->seq;
    count++;
    hash = fnv_u64(hash, r->seq);
    hash = fnv_u64(hash, r->len);
    hash = fnv(hash, buf, r->len);
  }
  std::printf("OUT:count=%llu first=%llu last=%llu lost=%llu contiguous=%d hash=%016llx\n",
              static_cast<unsigned long long>(count), static_cast<unsigned long long>(first),
              static_cast<unsigned long long>(last), static_cast<unsigned long long>(lost),
              contiguous ? 1 : 0, static_cast<unsigned long long>(hash));
  return 0;
} catch (const shmlane::Error &e) {
  std::fprintf(stderr, "bcast_sub: %s\n", e.what());
  return 1;
}
