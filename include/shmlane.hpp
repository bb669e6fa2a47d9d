/*
 * shmlane.hpp: a header-only C++17 wrapper over the shmlane C ABI (include/shmlane.h).
 *
 * - Move-only RAII handles: Channel, ByteSender / ByteReceiver (+ ByteClaim), Publisher /
 *   Subscriber, typed Sender<T> / Receiver<T> (T trivially copyable), LatestWriter /
 *   LatestReader (latest-value channels), Options.
 * - Errors are exceptions: shmlane::Error (a std::runtime_error) carrying status() (the C
 *   status, SHMLANE_E_...) and detail() (the thread's shmlane_last_error() at the failure).
 * - For real-time code every endpoint has try_ calls that never throw and never allocate:
 *   they return the C status (or a std::optional) and cost one C call.
 * - Timeouts are std::chrono durations (a negative one counts as zero: one attempt); the
 *   overloads without a timeout wait without limit. A blocking call whose timeout passes
 *   returns false / std::nullopt rather than throwing: a timeout is an outcome, not an error.
 * - Threading as in the C API: a Channel may be used from any thread; an endpoint by one
 *   thread at a time. Destructors close handles and never throw.
 *
 * The typed Sender<T> / Receiver<T> and Channel::spsc<T> / Channel::mpmc<T> call the typed C
 * functions (shmlane_spsc_open, shmlane_try_send, ...). Their calls are dependent on T, so
 * this header compiles whether or not include/shmlane.h declares them yet; using them needs a
 * shmlane.h that does.
 */
#ifndef SHMLANE_HPP
#define SHMLANE_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "shmlane.h"

/* The typed handles of the C ABI (declared again by shmlane.h once it has the typed calls;
 * a repeated declaration of a struct is harmless). */
struct shmlane_sender;
struct shmlane_receiver;

namespace shmlane {

/** A C status: SHMLANE_OK (0) or a negative SHMLANE_E_... constant. */
using Status = std::int32_t;
/** One side's statistics (plain data). */
using Stats = shmlane_stats;

/** The static description of a status ("ok", "the ring is full", ...). */
inline const char *strerror(Status s) noexcept { return shmlane_strerror(s); }

/** What a throwing call throws: the status and the C library's message for it. */
class Error : public std::runtime_error {
public:
  Error(Status status, const std::string &what, std::string detail)
      : std::runtime_error(what), status_(status), detail_(std::move(detail)) {}
  /** The C status (SHMLANE_E_...). */
  Status status() const noexcept { return status_; }
  /** shmlane_last_error() at the failure: names the channel, the sizes, what to do. */
  const std::string &detail() const noexcept { return detail_; }

private:
  Status status_;
  std::string detail_;
};

namespace detail {

[[noreturn]] inline void raise(Status s, const char *call) {
  const char *last = shmlane_last_error();
  std::string detail = last != nullptr ? last : "";
  std::string what = call;
  what += ": ";
  what += shmlane_strerror(s);
  if (!detail.empty()) {
    what += ": ";
    what += detail;
  }
  throw Error(s, what, std::move(detail));
}

inline void check(Status s, const char *call) {
  if (s != SHMLANE_OK) {
    raise(s, call);
  }
}

/** A duration as the C API's timeout_ns: negative counts as zero, saturating at INT64_MAX. */
template <class Rep, class Period>
constexpr std::int64_t timeout_ns(std::chrono::duration<Rep, Period> d) noexcept {
  using ns = std::chrono::duration<long double, std::nano>;
  const long double v = std::chrono::duration_cast<ns>(d).count();
  if (!(v > 0)) {
    return 0;
  }
  if (v >= 9.2e18L) {
    return INT64_MAX;
  }
  return static_cast<std::int64_t>(v);
}

/** Until a steady_clock time point, as a timeout. */
template <class Duration>
std::int64_t timeout_ns(std::chrono::time_point<std::chrono::steady_clock, Duration> t) noexcept {
  return timeout_ns(t - std::chrono::steady_clock::now());
}

inline constexpr std::int64_t no_limit = -1;

/** U, spelled so that it depends on T (keeps the typed C calls out of the definition-time
 *  lookup of templates: see the header comment). */
template <class T, class U> struct dependent {
  using type = U;
};
template <class T, class U> using dependent_t = typename dependent<T, U>::type;

/** Owns one C handle; move-only; closes it with Close. */
template <class H, Status (*Close)(H *)> class Handle {
public:
  Handle() noexcept = default;
  explicit Handle(H *h) noexcept : h_(h) {}
  Handle(Handle &&o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  Handle &operator=(Handle &&o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  Handle(const Handle &) = delete;
  Handle &operator=(const Handle &) = delete;
  ~Handle() { reset(); }
  void reset() noexcept {
    if (h_ != nullptr) {
      (void)Close(std::exchange(h_, nullptr));
    }
  }
  H *get() const noexcept { return h_; }
  H *release() noexcept { return std::exchange(h_, nullptr); }

private:
  H *h_ = nullptr;
};

} // namespace detail

/** How a channel is opened. */
enum class How : std::int32_t {
  create = SHMLANE_CREATE,
  open = SHMLANE_OPEN,
  open_or_create = SHMLANE_OPEN_OR_CREATE,
};

enum class Kind : std::int32_t {
  spsc = SHMLANE_KIND_SPSC,
  mpmc = SHMLANE_KIND_MPMC,
  bytes = SHMLANE_KIND_BYTES,
  broadcast = SHMLANE_KIND_BROADCAST,
  latest = SHMLANE_KIND_LATEST,
};

enum class Backend : std::int32_t {
  posix = SHMLANE_BACKEND_POSIX,
  memfd = SHMLANE_BACKEND_MEMFD,
  file = SHMLANE_BACKEND_FILE,
  hugetlbfs = SHMLANE_BACKEND_HUGETLBFS,
};

enum class Wait : std::int32_t {
  busy_spin = SHMLANE_WAIT_BUSY_SPIN,
  spin_yield = SHMLANE_WAIT_SPIN_YIELD,
  spin_then_park = SHMLANE_WAIT_SPIN_THEN_PARK,
  park = SHMLANE_WAIT_PARK,
};

enum class PeersLeave : std::int32_t {
  wait = SHMLANE_PEERS_WAIT,
  disconnect = SHMLANE_PEERS_DISCONNECT,
};

enum class Unlink : std::int32_t {
  never = SHMLANE_UNLINK_NEVER,
  last_detach = SHMLANE_UNLINK_LAST_DETACH,
  creator_drop = SHMLANE_UNLINK_CREATOR_DROP,
};

/** Where a new subscriber starts. */
enum class Start : std::int32_t {
  newest = SHMLANE_START_NEWEST,
  oldest = SHMLANE_START_OLDEST,
  seq = SHMLANE_START_SEQ,
};

/** Options for opening a channel (a builder: every setter returns *this). Allocates. */
class Options {
public:
  Options() {
    shmlane_options *o = nullptr;
    detail::check(shmlane_options_new(&o), "shmlane_options_new");
    h_ = Raw(o);
  }
  Options &capacity(std::uint64_t n) { return set(shmlane_options_capacity(get(), n), "capacity"); }
  Options &msg_size(std::uint64_t bytes) {
    return set(shmlane_options_msg_size(get(), bytes), "msg_size");
  }
  Options &backend(Backend b, const char *path = nullptr) {
    return set(shmlane_options_backend(get(), static_cast<std::int32_t>(b), path), "backend");
  }
  Options &wait(Wait w, std::uint32_t spins = 2000, std::uint32_t yields = 10) {
    return set(shmlane_options_wait(get(), static_cast<std::int32_t>(w), spins, yields), "wait");
  }
  Options &mode(std::uint32_t mode) { return set(shmlane_options_mode(get(), mode), "mode"); }
  Options &group(std::uint32_t gid) { return set(shmlane_options_group(get(), gid), "group"); }
  Options &peers_leave(PeersLeave p) {
    return set(shmlane_options_peers_leave(get(), static_cast<std::int32_t>(p)), "peers_leave");
  }
  Options &unlink(Unlink u) {
    return set(shmlane_options_unlink(get(), static_cast<std::int32_t>(u)), "unlink");
  }
  Options &checksum(bool yes = true) {
    return set(shmlane_options_checksum(get(), yes ? 1 : 0), "checksum");
  }
  Options &resume(bool yes = true) { return set(shmlane_options_resume(get(), yes ? 1 : 0), "resume"); }
  Options &populate(bool yes = true) {
    return set(shmlane_options_populate(get(), yes ? 1 : 0), "populate");
  }
  Options &mlock(bool yes = true) { return set(shmlane_options_mlock(get(), yes ? 1 : 0), "mlock"); }
  /// Never-waking endpoints (`SHMLANE_WAKES_NEVER`): no system call on their hot path; their
  /// peers' blocking calls park at most 1 ms at a time instead of being woken.
  Options &wakes_never(bool yes = true) {
    return set(shmlane_options_wakes(get(), yes ? SHMLANE_WAKES_NEVER : SHMLANE_WAKES_PEERS),
               "wakes");
  }

  shmlane_options *get() const noexcept { return h_.get(); }

private:
  using Raw = detail::Handle<shmlane_options, shmlane_options_close>;
  Options &set(Status s, const char *what) {
    detail::check(s, what);
    return *this;
  }
  Raw h_;
};

/** A named channel (any kind). Any thread may use it; endpoints keep the segment alive after
 *  it is gone. */
class Channel {
public:
  Channel() noexcept = default;
  explicit Channel(shmlane_channel *raw) noexcept : h_(raw) {}

  /** A byte channel (variable-length messages, any number of senders, one receiver). */
  static Channel bytes(const std::string &name, How how = How::open_or_create) {
    return open_with(shmlane_bytes_open, name, how, nullptr, "shmlane_bytes_open");
  }
  static Channel bytes(const std::string &name, How how, const Options &o) {
    return open_with(shmlane_bytes_open, name, how, o.get(), "shmlane_bytes_open");
  }
  /** A broadcast channel (one publisher, any number of subscribers). */
  static Channel broadcast(const std::string &name, How how = How::open_or_create) {
    return open_with(shmlane_broadcast_open, name, how, nullptr, "shmlane_broadcast_open");
  }
  static Channel broadcast(const std::string &name, How how, const Options &o) {
    return open_with(shmlane_broadcast_open, name, how, o.get(), "shmlane_broadcast_open");
  }
  /** An SPSC channel of T (size, alignment and type_name checked against the channel's;
   *  type_name nullptr: the C API's default for the element size). */
  template <class T>
  static Channel spsc(const std::string &name, How how = How::open_or_create,
                      const Options *o = nullptr, const char *type_name = nullptr) {
    static_assert(std::is_trivially_copyable_v<T>, "shmlane channels carry trivially copyable T");
    detail::dependent_t<T, shmlane_channel> *out = nullptr;
    detail::check(shmlane_spsc_open(name.c_str(), static_cast<std::int32_t>(how), sizeof(T),
                                    alignof(T), type_name, o != nullptr ? o->get() : nullptr, &out),
                  "shmlane_spsc_open");
    return Channel(out);
  }
  /** An MPMC channel of T (as spsc). */
  template <class T>
  static Channel mpmc(const std::string &name, How how = How::open_or_create,
                      const Options *o = nullptr, const char *type_name = nullptr) {
    static_assert(std::is_trivially_copyable_v<T>, "shmlane channels carry trivially copyable T");
    detail::dependent_t<T, shmlane_channel> *out = nullptr;
    detail::check(shmlane_mpmc_open(name.c_str(), static_cast<std::int32_t>(how), sizeof(T),
                                    alignof(T), type_name, o != nullptr ? o->get() : nullptr, &out),
                  "shmlane_mpmc_open");
    return Channel(out);
  }

  /** A typed broadcast channel of T: every message is one T (shmlane_broadcast_typed_open; a
   *  Rust broadcast_of::<T> with the same size, alignment and type name shares it). */
  template <class T>
  static Channel broadcast_of(const std::string &name, How how = How::open_or_create,
                              const Options *o = nullptr, const char *type_name = nullptr) {
    static_assert(std::is_trivially_copyable_v<T>, "shmlane channels carry trivially copyable T");
    shmlane_channel *out = nullptr;
    detail::check(shmlane_broadcast_typed_open(name.c_str(), static_cast<std::int32_t>(how),
                                               sizeof(T), alignof(T), type_name,
                                               o != nullptr ? o->get() : nullptr, &out),
                  "shmlane_broadcast_typed_open");
    return Channel(out);
  }

  /** A latest-value channel: values of 0 to `value_size` bytes (1 to 1 MiB), any number of
   *  writers and readers; Options::capacity is its slot count (a Rust raw_latest(name,
   *  value_size) shares it). */
  static Channel latest(const std::string &name, std::size_t value_size,
                        How how = How::open_or_create) {
    return latest_with(name, value_size, how, nullptr);
  }
  static Channel latest(const std::string &name, std::size_t value_size, How how,
                        const Options &o) {
    return latest_with(name, value_size, how, o.get());
  }

  Kind kind() const {
    std::int32_t k = 0;
    detail::check(shmlane_channel_kind(get(), &k), "shmlane_channel_kind");
    return static_cast<Kind>(k);
  }
  /** Whether this open created the channel. */
  bool created() const {
    std::int32_t c = 0;
    detail::check(shmlane_channel_created(get(), &c), "shmlane_channel_created");
    return c != 0;
  }
  void close() noexcept { h_.reset(); }
  shmlane_channel *get() const noexcept { return h_.get(); }
  explicit operator bool() const noexcept { return get() != nullptr; }

private:
  using OpenFn = Status (*)(const char *, std::int32_t, const shmlane_options *, shmlane_channel **);
  static Channel open_with(OpenFn f, const std::string &name, How how, const shmlane_options *o,
                           const char *call) {
    shmlane_channel *out = nullptr;
    detail::check(f(name.c_str(), static_cast<std::int32_t>(how), o, &out), call);
    return Channel(out);
  }
  static Channel latest_with(const std::string &name, std::size_t value_size, How how,
                             const shmlane_options *o) {
    shmlane_channel *out = nullptr;
    detail::check(shmlane_latest_open(name.c_str(), static_cast<std::int32_t>(how), value_size, o,
                                      &out),
                  "shmlane_latest_open");
    return Channel(out);
  }
  detail::Handle<shmlane_channel, shmlane_channel_close> h_;
};

/** Removes a channel by name (as `shmlane rm`); throws on failure. */
inline void remove(const std::string &name) {
  detail::check(shmlane_remove(name.c_str()), "shmlane_remove");
}
/** As remove, returning the status. */
inline Status try_remove(const char *name) noexcept { return shmlane_remove(name); }

class ByteSender;

/** Room claimed in a byte channel (zero copy): write size() bytes at data(), then commit().
 *  Destroyed without commit: aborted (the receiver skips it). Move-only; one per sender. */
class ByteClaim {
public:
  ByteClaim() noexcept = default;
  ByteClaim(ByteClaim &&o) noexcept
      : tx_(std::exchange(o.tx_, nullptr)), data_(o.data_), len_(o.len_) {}
  ByteClaim &operator=(ByteClaim &&o) noexcept {
    if (this != &o) {
      (void)try_abort();
      tx_ = std::exchange(o.tx_, nullptr);
      data_ = o.data_;
      len_ = o.len_;
    }
    return *this;
  }
  ByteClaim(const ByteClaim &) = delete;
  ByteClaim &operator=(const ByteClaim &) = delete;
  ~ByteClaim() { (void)try_abort(); }

  /** Where to write (never read through it). */
  void *data() const noexcept { return data_; }
  std::size_t size() const noexcept { return len_; }
  bool active() const noexcept { return tx_ != nullptr; }

  /** Publishes the message; throws on failure. */
  void commit() { detail::check(try_commit(), "shmlane_bytes_commit"); }
  Status try_commit() noexcept {
    if (tx_ == nullptr) {
      return SHMLANE_E_CLAIM;
    }
    return shmlane_bytes_commit(std::exchange(tx_, nullptr));
  }
  /** Gives the room up (the receiver skips it). */
  Status try_abort() noexcept {
    if (tx_ == nullptr) {
      return SHMLANE_OK;
    }
    return shmlane_bytes_abort(std::exchange(tx_, nullptr));
  }

private:
  friend class ByteSender;
  ByteClaim(shmlane_byte_sender *tx, void *data, std::size_t len) noexcept
      : tx_(tx), data_(data), len_(len) {}
  shmlane_byte_sender *tx_ = nullptr;
  void *data_ = nullptr;
  std::size_t len_ = 0;
};

/** A sender on a byte channel (any number per channel). One thread at a time. */
class ByteSender {
public:
  ByteSender() noexcept = default;
  explicit ByteSender(const Channel &ch) {
    shmlane_byte_sender *out = nullptr;
    detail::check(shmlane_byte_sender_open(ch.get(), &out), "shmlane_byte_sender_open");
    h_ = Raw(out);
  }

  /** Non-blocking: SHMLANE_OK, SHMLANE_E_FULL, or an error status. Never throws. */
  Status try_send(const void *msg, std::size_t len) noexcept {
    return shmlane_bytes_try_send(get(), msg, len);
  }
  Status try_send(std::string_view msg) noexcept { return try_send(msg.data(), msg.size()); }
  /** Waits without limit for room; throws on failure. */
  void send(const void *msg, std::size_t len) {
    detail::check(shmlane_bytes_send(get(), msg, len, detail::no_limit), "shmlane_bytes_send");
  }
  void send(std::string_view msg) { send(msg.data(), msg.size()); }
  /** Waits up to `timeout`: false if it passed; throws on other failures. */
  template <class Rep, class Period>
  bool send(const void *msg, std::size_t len, std::chrono::duration<Rep, Period> timeout) {
    const Status s = shmlane_bytes_send(get(), msg, len, detail::timeout_ns(timeout));
    if (s == SHMLANE_E_TIMEOUT) {
      return false;
    }
    detail::check(s, "shmlane_bytes_send");
    return true;
  }
  /** Claims room for `len` bytes (never blocks); throws on failure (SHMLANE_E_FULL too). */
  ByteClaim claim(std::size_t len) {
    ByteClaim c;
    detail::check(try_claim(len, c), "shmlane_bytes_claim");
    return c;
  }
  /** As claim, never throwing: on SHMLANE_OK `out` holds the claim. */
  Status try_claim(std::size_t len, ByteClaim &out) noexcept {
    void *data = nullptr;
    const Status s = shmlane_bytes_claim(get(), len, &data);
    if (s == SHMLANE_OK) {
      out = ByteClaim(get(), data, len);
    }
    return s;
  }
  std::size_t max_message() const {
    std::size_t m = 0;
    detail::check(shmlane_byte_sender_max_message(get(), &m), "shmlane_byte_sender_max_message");
    return m;
  }
  Stats stats() {
    Stats st{};
    detail::check(shmlane_byte_sender_stats(get(), &st), "shmlane_byte_sender_stats");
    return st;
  }
  void close() noexcept { h_.reset(); }
  shmlane_byte_sender *get() const noexcept { return h_.get(); }

private:
  using Raw = detail::Handle<shmlane_byte_sender, shmlane_byte_sender_close>;
  Raw h_;
};

/** The receiver of a byte channel (one per channel). One thread at a time. */
class ByteReceiver {
public:
  ByteReceiver() noexcept = default;
  explicit ByteReceiver(const Channel &ch) {
    shmlane_byte_receiver *out = nullptr;
    detail::check(shmlane_byte_receiver_open(ch.get(), &out), "shmlane_byte_receiver_open");
    h_ = Raw(out);
  }

  /** Non-blocking: SHMLANE_OK (`len` = the message's length), SHMLANE_E_EMPTY,
   *  SHMLANE_E_BUFFER_TOO_SMALL (`len` = the length needed, nothing consumed), or an error. */
  Status try_recv(void *buf, std::size_t cap, std::size_t &len) noexcept {
    return shmlane_bytes_try_recv(get(), buf, cap, &len);
  }
  /** Non-blocking: the length, or nullopt on any status but SHMLANE_OK (use the Status
   *  overload to tell EMPTY from an error). */
  std::optional<std::size_t> try_recv(void *buf, std::size_t cap) noexcept {
    std::size_t len = 0;
    if (try_recv(buf, cap, len) != SHMLANE_OK) {
      return std::nullopt;
    }
    return len;
  }
  /** Waits without limit; the message's length; throws on failure. */
  std::size_t recv(void *buf, std::size_t cap) {
    std::size_t len = 0;
    detail::check(shmlane_bytes_recv(get(), buf, cap, &len, detail::no_limit), "shmlane_bytes_recv");
    return len;
  }
  /** Waits up to `timeout`: nullopt if it passed; throws on other failures. */
  template <class Rep, class Period>
  std::optional<std::size_t> recv(void *buf, std::size_t cap,
                                  std::chrono::duration<Rep, Period> timeout) {
    std::size_t len = 0;
    const Status s = shmlane_bytes_recv(get(), buf, cap, &len, detail::timeout_ns(timeout));
    if (s == SHMLANE_E_TIMEOUT) {
      return std::nullopt;
    }
    detail::check(s, "shmlane_bytes_recv");
    return len;
  }
  /** Allocating convenience: the next message as a std::string (waits without limit). */
  std::string recv_string() {
    std::string s(max_message(), '\0');
    s.resize(recv(s.data(), s.size()));
    return s;
  }
  std::size_t max_message() const {
    std::size_t m = 0;
    detail::check(shmlane_byte_receiver_max_message(get(), &m),
                  "shmlane_byte_receiver_max_message");
    return m;
  }
  Stats stats() {
    Stats st{};
    detail::check(shmlane_byte_receiver_stats(get(), &st), "shmlane_byte_receiver_stats");
    return st;
  }
  /** The pollable descriptor (made on the first call, owned and closed by this receiver; never
   *  read or close it). Loop: rearm(); poll(fd, POLLIN); try_recv until SHMLANE_E_EMPTY;
   *  rearm() again. Throws on failure. */
  int fd() {
    int f = -1;
    detail::check(shmlane_byte_receiver_fd(get(), &f), "shmlane_byte_receiver_fd");
    return f;
  }
  /** Re-arms the descriptor after a drain: SHMLANE_OK (0, armed), SHMLANE_READY (1, something
   *  arrived meanwhile: drain again), or a negative status (SHMLANE_E_PEER_DIED,
   *  SHMLANE_E_DISCONNECTED, SHMLANE_E_CORRUPT: not armed). Never throws. */
  Status try_rearm() noexcept { return shmlane_byte_receiver_rearm(get()); }
  /** As try_rearm: true when armed, false when SHMLANE_READY (drain again); throws on a
   *  negative status. */
  bool rearm() {
    const Status s = shmlane_byte_receiver_rearm(get());
    detail::check(s < 0 ? s : SHMLANE_OK, "shmlane_byte_receiver_rearm");
    return s == SHMLANE_OK;
  }
  void close() noexcept { h_.reset(); }
  shmlane_byte_receiver *get() const noexcept { return h_.get(); }

private:
  using Raw = detail::Handle<shmlane_byte_receiver, shmlane_byte_receiver_close>;
  Raw h_;
};

/** The publisher of a broadcast channel (one per channel; never waits). */
class Publisher {
public:
  Publisher() noexcept = default;
  explicit Publisher(const Channel &ch) {
    shmlane_publisher *out = nullptr;
    detail::check(shmlane_publisher_open(ch.get(), &out), "shmlane_publisher_open");
    h_ = Raw(out);
  }
  /** Publishes; `seq` (if not null) receives its sequence number. Never throws. */
  Status try_publish(const void *msg, std::size_t len, std::uint64_t *seq = nullptr) noexcept {
    return shmlane_publish(get(), msg, len, seq);
  }
  /** Publishes; returns the sequence number; throws on failure. */
  std::uint64_t publish(const void *msg, std::size_t len) {
    std::uint64_t seq = 0;
    detail::check(try_publish(msg, len, &seq), "shmlane_publish");
    return seq;
  }
  std::uint64_t publish(std::string_view msg) { return publish(msg.data(), msg.size()); }
  /** Publishes the bytes of a trivially copyable value. */
  template <class T> std::uint64_t publish_value(const T &v) {
    static_assert(std::is_trivially_copyable_v<T>, "publish_value needs a trivially copyable T");
    return publish(&v, sizeof(T));
  }
  /** Live subscribers (at most 64 are counted). */
  std::uint64_t subscribers() const {
    std::uint64_t n = 0;
    detail::check(shmlane_publisher_subscribers(get(), &n), "shmlane_publisher_subscribers");
    return n;
  }
  std::uint64_t next_seq() const {
    std::uint64_t s = 0;
    detail::check(shmlane_publisher_next_seq(get(), &s), "shmlane_publisher_next_seq");
    return s;
  }
  std::size_t max_message() const {
    std::size_t m = 0;
    detail::check(shmlane_publisher_max_message(get(), &m), "shmlane_publisher_max_message");
    return m;
  }
  Stats stats() {
    Stats st{};
    detail::check(shmlane_publisher_stats(get(), &st), "shmlane_publisher_stats");
    return st;
  }
  void close() noexcept { h_.reset(); }
  shmlane_publisher *get() const noexcept { return h_.get(); }

private:
  using Raw = detail::Handle<shmlane_publisher, shmlane_publisher_close>;
  Raw h_;
};

/** What a subscriber's throwing receive returns. */
struct Received {
  /** The message's length. */
  std::size_t len;
  /** Its sequence number. */
  std::uint64_t seq;
  /** Messages lost to a lap just before it (0 normally). */
  std::uint64_t lost;
};

/** A subscriber of a broadcast channel (any number per channel). One thread at a time. */
class Subscriber {
public:
  Subscriber() noexcept = default;
  explicit Subscriber(const Channel &ch, Start start = Start::newest, std::uint64_t seq = 0) {
    shmlane_subscriber *out = nullptr;
    detail::check(shmlane_subscriber_open(ch.get(), static_cast<std::int32_t>(start), seq, &out),
                  "shmlane_subscriber_open");
    h_ = Raw(out);
  }
  /** Non-blocking: SHMLANE_OK, SHMLANE_E_EMPTY, SHMLANE_E_LAPPED (messages lost: see
   *  lost(); the next call goes on with the newest), SHMLANE_E_BUFFER_TOO_SMALL (`len` =
   *  the length needed), or an error. Never throws. */
  Status try_recv(void *buf, std::size_t cap, std::size_t &len,
                  std::uint64_t *seq = nullptr) noexcept {
    return shmlane_subscriber_try_recv(get(), buf, cap, &len, seq);
  }
  /** Waits without limit for the next message; a lap is not an error here: it is counted in
   *  the result's `lost` and the receive goes on. Throws on failure. */
  Received recv(void *buf, std::size_t cap) {
    return *recv_ns(buf, cap, detail::no_limit);
  }
  /** As recv, waiting up to `timeout`: nullopt if it passed. */
  template <class Rep, class Period>
  std::optional<Received> recv(void *buf, std::size_t cap,
                               std::chrono::duration<Rep, Period> timeout) {
    return recv_ns(buf, cap, detail::timeout_ns(timeout));
  }
  /** Messages lost to laps so far. */
  std::uint64_t lost() const {
    std::uint64_t n = 0;
    detail::check(shmlane_subscriber_lost(get(), &n), "shmlane_subscriber_lost");
    return n;
  }
  std::uint64_t next_seq() const {
    std::uint64_t s = 0;
    detail::check(shmlane_subscriber_next_seq(get(), &s), "shmlane_subscriber_next_seq");
    return s;
  }
  std::size_t max_message() const {
    std::size_t m = 0;
    detail::check(shmlane_subscriber_max_message(get(), &m), "shmlane_subscriber_max_message");
    return m;
  }
  Stats stats() {
    Stats st{};
    detail::check(shmlane_subscriber_stats(get(), &st), "shmlane_subscriber_stats");
    return st;
  }
  /** The pollable descriptor (made on the first call, owned and closed by this subscriber; never
   *  read or close it). Loop: rearm(); poll(fd, POLLIN); try_recv until SHMLANE_E_EMPTY;
   *  rearm() again. Throws on failure. */
  int fd() {
    int f = -1;
    detail::check(shmlane_subscriber_fd(get(), &f), "shmlane_subscriber_fd");
    return f;
  }
  /** Re-arms the descriptor after a drain: SHMLANE_OK (0, armed), SHMLANE_READY (1, something
   *  arrived meanwhile: drain again), or a negative status (SHMLANE_E_PEER_DIED,
   *  SHMLANE_E_DISCONNECTED, SHMLANE_E_CORRUPT: not armed). Never throws. */
  Status try_rearm() noexcept { return shmlane_subscriber_rearm(get()); }
  /** As try_rearm: true when armed, false when SHMLANE_READY (drain again); throws on a
   *  negative status. */
  bool rearm() {
    const Status s = shmlane_subscriber_rearm(get());
    detail::check(s < 0 ? s : SHMLANE_OK, "shmlane_subscriber_rearm");
    return s == SHMLANE_OK;
  }
  void close() noexcept { h_.reset(); }
  shmlane_subscriber *get() const noexcept { return h_.get(); }

private:
  std::optional<Received> recv_ns(void *buf, std::size_t cap, std::int64_t timeout) {
    const std::uint64_t before = lost();
    for (;;) {
      Received r{0, 0, 0};
      const Status s = shmlane_subscriber_recv(get(), buf, cap, &r.len, &r.seq, timeout);
      if (s == SHMLANE_E_LAPPED) {
        continue;
      }
      if (s == SHMLANE_E_TIMEOUT) {
        return std::nullopt;
      }
      detail::check(s, "shmlane_subscriber_recv");
      r.lost = lost() - before;
      return r;
    }
  }
  using Raw = detail::Handle<shmlane_subscriber, shmlane_subscriber_close>;
  Raw h_;
};

template <class T> class TypedPublisher;

/** The slot of the next message, lent by TypedPublisher<T>::loan() (zero copy): write the
 *  value in place (write(), or through get() when alignof(T) <= 8), then publish(). Destroyed
 *  unpublished: abandoned (the slot stays the next message's; subscribers wait for it). Valid
 *  while its publisher lives; move-only; one open loan per publisher. */
template <class T> class TypedLoan {
  static_assert(std::is_trivially_copyable_v<T>, "TypedLoan<T> needs a trivially copyable T");

public:
  TypedLoan(TypedLoan &&o) noexcept
      : p_(std::exchange(o.p_, nullptr)), data_(std::exchange(o.data_, nullptr)) {}
  TypedLoan &operator=(TypedLoan &&o) noexcept {
    if (this != &o) {
      abandon();
      p_ = std::exchange(o.p_, nullptr);
      data_ = std::exchange(o.data_, nullptr);
    }
    return *this;
  }
  TypedLoan(const TypedLoan &) = delete;
  TypedLoan &operator=(const TypedLoan &) = delete;
  ~TypedLoan() { abandon(); }

  /** The slot's sizeof(T) bytes (8-byte aligned; subscribers may read them while they are
   *  written, and drop that copy: nothing is delivered before publish()). */
  void *data() const noexcept { return data_; }
  /** The slot as a T (the slot is 8-byte aligned: only for alignof(T) <= 8; else write()). */
  T *get() const noexcept {
    static_assert(alignof(T) <= 8, "the slot is 8-byte aligned: use write() for this T");
    return static_cast<T *>(data_);
  }
  T *operator->() const noexcept { return get(); }
  /** Copies the whole value into the slot. */
  void write(const T &v) noexcept { std::memcpy(data_, &v, sizeof(T)); }
  /** Publishes; returns the sequence number; throws on failure. The loan is over after it. */
  std::uint64_t publish() {
    if (p_ == nullptr) {
      // Not through the C call: shmlane_last_error() would be another call's message.
      const std::string d = "this loan was published, abandoned or moved from: take a new one";
      throw Error(SHMLANE_E_CLAIM,
                  std::string("shmlane_publisher_loan_publish: ") +
                      shmlane_strerror(SHMLANE_E_CLAIM) + ": " + d,
                  d);
    }
    std::uint64_t seq = 0;
    detail::check(try_publish(&seq), "shmlane_publisher_loan_publish");
    return seq;
  }
  /** As publish, returning the status (SHMLANE_E_CLAIM once over). Never throws. */
  Status try_publish(std::uint64_t *seq = nullptr) noexcept {
    shmlane_publisher *p = std::exchange(p_, nullptr);
    data_ = nullptr;
    if (p == nullptr) {
      // Published, abandoned or moved from: no loan (not SHMLANE_E_NULL from a NULL handle).
      return SHMLANE_E_CLAIM;
    }
    return shmlane_publisher_loan_publish(p, seq);
  }
  /** Gives the loan up unpublished (also done by the destructor). */
  void abandon() noexcept {
    if (p_ != nullptr) {
      (void)shmlane_publisher_loan_abandon(std::exchange(p_, nullptr));
      data_ = nullptr;
    }
  }
  /** Whether the loan is still open. */
  explicit operator bool() const noexcept { return p_ != nullptr; }

private:
  friend class TypedPublisher<T>;
  TypedLoan(shmlane_publisher *p, void *d) noexcept : p_(p), data_(d) {}
  shmlane_publisher *p_ = nullptr;
  void *data_ = nullptr;
};

/** The publisher of a typed broadcast channel of T (Channel::broadcast_of<T>): one per
 *  channel, never waits. One thread at a time. */
template <class T> class TypedPublisher {
  static_assert(std::is_trivially_copyable_v<T>, "TypedPublisher<T> needs a trivially copyable T");

public:
  TypedPublisher() noexcept = default;
  explicit TypedPublisher(const Channel &ch) : p_(ch) {}
  /** Lends the next message's slot (zero copy); throws on failure (SHMLANE_E_CLAIM while
   *  another loan of this publisher is open). */
  TypedLoan<T> loan() {
    void *d = nullptr;
    detail::check(shmlane_publisher_loan(p_.get(), &d), "shmlane_publisher_loan");
    return TypedLoan<T>(p_.get(), d);
  }
  /** Publishes a copy of `v`; returns its sequence number; throws on failure. */
  std::uint64_t publish(const T &v) { return p_.publish(&v, sizeof(T)); }
  /** As publish, returning the status. Never throws. */
  Status try_publish(const T &v, std::uint64_t *seq = nullptr) noexcept {
    return p_.try_publish(&v, sizeof(T), seq);
  }
  std::uint64_t subscribers() const { return p_.subscribers(); }
  std::uint64_t next_seq() const { return p_.next_seq(); }
  Stats stats() { return p_.stats(); }
  void close() noexcept { p_.close(); }
  shmlane_publisher *get() const noexcept { return p_.get(); }

private:
  Publisher p_;
};

/** What TypedSubscriber<T>'s throwing receive returns. */
template <class T> struct TypedReceived {
  T value;
  /** Its sequence number. */
  std::uint64_t seq;
  /** Messages lost to a lap just before it (0 normally). */
  std::uint64_t lost;
};

/** A subscriber of a typed broadcast channel of T (any number per channel). One thread at a
 *  time. */
template <class T> class TypedSubscriber {
  static_assert(std::is_trivially_copyable_v<T>, "TypedSubscriber<T> needs a trivially copyable T");

public:
  TypedSubscriber() noexcept = default;
  explicit TypedSubscriber(const Channel &ch, Start start = Start::newest, std::uint64_t seq = 0)
      : s_(ch, start, seq) {}
  /** Non-blocking: SHMLANE_OK (`out` written, `*seq` its sequence number), SHMLANE_E_EMPTY,
   *  SHMLANE_E_LAPPED (see lost(); the next call goes on with the newest), or an error. Never
   *  throws. */
  Status try_recv(T &out, std::uint64_t *seq = nullptr) noexcept {
    std::size_t len = 0;
    return s_.try_recv(&out, sizeof(T), len, seq);
  }
  /** Waits without limit; a lap is counted in the result's `lost`, not thrown. */
  TypedReceived<T> recv() {
    T v;
    const Received r = s_.recv(&v, sizeof(T));
    return TypedReceived<T>{v, r.seq, r.lost};
  }
  /** As recv, waiting up to `timeout`: nullopt if it passed. */
  template <class Rep, class Period>
  std::optional<TypedReceived<T>> recv(std::chrono::duration<Rep, Period> timeout) {
    T v;
    const std::optional<Received> r = s_.recv(&v, sizeof(T), timeout);
    if (!r) {
      return std::nullopt;
    }
    return TypedReceived<T>{v, r->seq, r->lost};
  }
  std::uint64_t lost() const { return s_.lost(); }
  std::uint64_t next_seq() const { return s_.next_seq(); }
  Stats stats() { return s_.stats(); }
  /** The pollable descriptor: as Subscriber::fd. */
  int fd() { return s_.fd(); }
  Status try_rearm() noexcept { return s_.try_rearm(); }
  bool rearm() { return s_.rearm(); }
  void close() noexcept { s_.close(); }
  shmlane_subscriber *get() const noexcept { return s_.get(); }

private:
  Subscriber s_;
};

/** A sender of T on an SPSC (the producer role) or MPMC channel. One thread at a time.
 *  Needs the typed C ABI (shmlane_sender_open, shmlane_try_send, ...). */
template <class T> class Sender {
  static_assert(std::is_trivially_copyable_v<T>, "Sender<T> needs a trivially copyable T");
  using Raw = detail::dependent_t<T, shmlane_sender>;

public:
  Sender() noexcept = default;
  explicit Sender(const Channel &ch) {
    Raw *out = nullptr;
    detail::check(shmlane_sender_open(ch.get(), &out), "shmlane_sender_open");
    h_ = out;
  }
  Sender(Sender &&o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  Sender &operator=(Sender &&o) noexcept {
    if (this != &o) {
      close();
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  Sender(const Sender &) = delete;
  Sender &operator=(const Sender &) = delete;
  ~Sender() { close(); }

  /** Non-blocking: SHMLANE_OK, SHMLANE_E_FULL or an error. Never throws. */
  Status try_send(const T &v) noexcept { return shmlane_try_send(h_, &v, sizeof(T)); }
  /** Sends up to `n` values; `sent` receives how many went. Never throws. */
  Status try_send_many(const T *v, std::size_t n, std::size_t &sent) noexcept {
    return shmlane_try_send_many(h_, v, n, sizeof(T), &sent);
  }
  /** Waits without limit for room; throws on failure. */
  void send(const T &v) {
    detail::check(shmlane_send(h_, &v, sizeof(T), detail::no_limit), "shmlane_send");
  }
  /** Waits up to `timeout`: false if it passed; throws on other failures. */
  template <class Rep, class Period> bool send(const T &v, std::chrono::duration<Rep, Period> timeout) {
    const Status s = shmlane_send(h_, &v, sizeof(T), detail::timeout_ns(timeout));
    if (s == SHMLANE_E_TIMEOUT) {
      return false;
    }
    detail::check(s, "shmlane_send");
    return true;
  }
  void close() noexcept {
    if (h_ != nullptr) {
      (void)shmlane_sender_close(std::exchange(h_, nullptr));
    }
  }
  Raw *get() const noexcept { return h_; }

private:
  Raw *h_ = nullptr;
};

/** A receiver of T on an SPSC (the consumer role) or MPMC channel. One thread at a time.
 *  Needs the typed C ABI (shmlane_receiver_open, shmlane_try_recv, ...). */
template <class T> class Receiver {
  static_assert(std::is_trivially_copyable_v<T>, "Receiver<T> needs a trivially copyable T");
  using Raw = detail::dependent_t<T, shmlane_receiver>;

public:
  Receiver() noexcept = default;
  explicit Receiver(const Channel &ch) {
    Raw *out = nullptr;
    detail::check(shmlane_receiver_open(ch.get(), &out), "shmlane_receiver_open");
    h_ = out;
  }
  Receiver(Receiver &&o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  Receiver &operator=(Receiver &&o) noexcept {
    if (this != &o) {
      close();
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  Receiver(const Receiver &) = delete;
  Receiver &operator=(const Receiver &) = delete;
  ~Receiver() { close(); }

  /** Non-blocking: SHMLANE_OK (`out` written), SHMLANE_E_EMPTY or an error. Never throws. */
  Status try_recv(T &out) noexcept { return shmlane_try_recv(h_, &out, sizeof(T)); }
  /** Non-blocking: the value, or nullopt on any status but SHMLANE_OK. */
  std::optional<T> try_recv() noexcept {
    T v;
    if (try_recv(v) != SHMLANE_OK) {
      return std::nullopt;
    }
    return v;
  }
  /** Receives up to `n` values into `out`; `received` receives how many. Never throws. */
  Status try_recv_many(T *out, std::size_t n, std::size_t &received) noexcept {
    return shmlane_try_recv_many(h_, out, n, sizeof(T), &received);
  }
  /** Waits without limit; throws on failure. */
  T recv() {
    T v;
    detail::check(shmlane_recv(h_, &v, sizeof(T), detail::no_limit), "shmlane_recv");
    return v;
  }
  /** Waits up to `timeout`: nullopt if it passed; throws on other failures. */
  template <class Rep, class Period> std::optional<T> recv(std::chrono::duration<Rep, Period> timeout) {
    T v;
    const Status s = shmlane_recv(h_, &v, sizeof(T), detail::timeout_ns(timeout));
    if (s == SHMLANE_E_TIMEOUT) {
      return std::nullopt;
    }
    detail::check(s, "shmlane_recv");
    return v;
  }
  /** The pollable descriptor (made on the first call, owned and closed by this receiver; never
   *  read or close it). Loop: rearm(); poll(fd, POLLIN); try_recv until SHMLANE_E_EMPTY;
   *  rearm() again. Throws on failure. */
  int fd() {
    int f = -1;
    detail::check(shmlane_receiver_fd(h_, &f), "shmlane_receiver_fd");
    return f;
  }
  /** Re-arms the descriptor after a drain: SHMLANE_OK (0, armed), SHMLANE_READY (1, something
   *  arrived meanwhile: drain again), or a negative status (SHMLANE_E_PEER_DIED,
   *  SHMLANE_E_DISCONNECTED, SHMLANE_E_CORRUPT: not armed). Never throws. */
  Status try_rearm() noexcept { return shmlane_receiver_rearm(h_); }
  /** As try_rearm: true when armed, false when SHMLANE_READY (drain again); throws on a
   *  negative status. */
  bool rearm() {
    const Status s = shmlane_receiver_rearm(h_);
    detail::check(s < 0 ? s : SHMLANE_OK, "shmlane_receiver_rearm");
    return s == SHMLANE_OK;
  }
  void close() noexcept {
    if (h_ != nullptr) {
      (void)shmlane_receiver_close(std::exchange(h_, nullptr));
    }
  }
  Raw *get() const noexcept { return h_; }

private:
  Raw *h_ = nullptr;
};

/** A writer of a latest-value channel (Channel::latest; any number per channel). One thread
 *  at a time. */
class LatestWriter {
public:
  LatestWriter() noexcept = default;
  explicit LatestWriter(const Channel &ch) {
    shmlane_latest_writer *out = nullptr;
    detail::check(shmlane_latest_writer_open(ch.get(), &out), "shmlane_latest_writer_open");
    h_ = Raw(out);
  }
  /** Non-blocking: SHMLANE_OK (`*version`, if not null, its version), SHMLANE_E_TOO_LONG,
   *  SHMLANE_E_BUSY (try again) or an error. Never throws, never allocates. */
  Status try_write(const void *value, std::size_t len, std::uint64_t *version = nullptr) noexcept {
    return shmlane_latest_write(get(), value, len, version);
  }
  /** Publishes the value; returns its version; throws on failure (SHMLANE_E_BUSY too). */
  std::uint64_t write(const void *value, std::size_t len) {
    std::uint64_t v = 0;
    detail::check(try_write(value, len, &v), "shmlane_latest_write");
    return v;
  }
  std::uint64_t write(std::string_view value) { return write(value.data(), value.size()); }
  /** Publishes the bytes of a trivially copyable value. */
  template <class T> std::uint64_t write_value(const T &v) {
    static_assert(std::is_trivially_copyable_v<T>, "write_value needs a trivially copyable T");
    return write(&v, sizeof(T));
  }
  /** The newest published version (0: never written). */
  std::uint64_t version() const {
    std::uint64_t v = 0;
    detail::check(shmlane_latest_writer_version(get(), &v), "shmlane_latest_writer_version");
    return v;
  }
  /** The longest value. */
  std::size_t value_size() const {
    std::size_t n = 0;
    detail::check(shmlane_latest_writer_value_size(get(), &n), "shmlane_latest_writer_value_size");
    return n;
  }
  void close() noexcept { h_.reset(); }
  shmlane_latest_writer *get() const noexcept { return h_.get(); }

private:
  using Raw = detail::Handle<shmlane_latest_writer, shmlane_latest_writer_close>;
  Raw h_;
};

/** What LatestReader's throwing reads return. */
struct LatestRead {
  /** The value's length. */
  std::size_t len;
  /** Its version. */
  std::uint64_t version;
};

/** A reader of a latest-value channel (Channel::latest; any number per channel): the newest
 *  value, never a queue. One thread at a time. */
class LatestReader {
public:
  LatestReader() noexcept = default;
  explicit LatestReader(const Channel &ch) {
    shmlane_latest_reader *out = nullptr;
    detail::check(shmlane_latest_reader_open(ch.get(), &out), "shmlane_latest_reader_open");
    h_ = Raw(out);
  }
  /** Non-blocking: SHMLANE_OK (`len` = the value's length, `*version` its version),
   *  SHMLANE_E_EMPTY (never written), SHMLANE_E_BUFFER_TOO_SMALL (`len` = the length needed,
   *  nothing lost), SHMLANE_E_BUSY (try again) or an error. Never throws or allocates. */
  Status try_read(void *buf, std::size_t cap, std::size_t &len,
                  std::uint64_t *version = nullptr) noexcept {
    return shmlane_latest_read(get(), buf, cap, &len, version);
  }
  /** As try_read, but SHMLANE_E_UNCHANGED when the version is the one last returned (nothing
   *  copied). Never throws or allocates. */
  Status try_read_if_changed(void *buf, std::size_t cap, std::size_t &len,
                             std::uint64_t *version = nullptr) noexcept {
    return shmlane_latest_read_if_changed(get(), buf, cap, &len, version);
  }
  /** The newest value: nullopt if never written; throws on failure (SHMLANE_E_BUSY,
   *  SHMLANE_E_BUFFER_TOO_SMALL, ...). */
  std::optional<LatestRead> read(void *buf, std::size_t cap) {
    return outcome(shmlane_latest_read, buf, cap, "shmlane_latest_read");
  }
  /** As read, nullopt also when unchanged since the last value returned. */
  std::optional<LatestRead> read_if_changed(void *buf, std::size_t cap) {
    return outcome(shmlane_latest_read_if_changed, buf, cap, "shmlane_latest_read_if_changed");
  }
  /** Waits without limit for a version other than the last returned; throws on failure. */
  LatestRead wait_changed(void *buf, std::size_t cap) {
    return *wait_ns(buf, cap, detail::no_limit);
  }
  /** As wait_changed, waiting up to `timeout`: nullopt if it passed. */
  template <class Rep, class Period>
  std::optional<LatestRead> wait_changed(void *buf, std::size_t cap,
                                         std::chrono::duration<Rep, Period> timeout) {
    return wait_ns(buf, cap, detail::timeout_ns(timeout));
  }
  /** The newest published version, one load (0: never written). Never throws. */
  Status try_version(std::uint64_t &version) const noexcept {
    return shmlane_latest_version(get(), &version);
  }
  std::uint64_t version() const {
    std::uint64_t v = 0;
    detail::check(try_version(v), "shmlane_latest_version");
    return v;
  }
  /** The longest value (a buffer of this size is always enough). */
  std::size_t value_size() const {
    std::size_t n = 0;
    detail::check(shmlane_latest_reader_value_size(get(), &n), "shmlane_latest_reader_value_size");
    return n;
  }
  void close() noexcept { h_.reset(); }
  shmlane_latest_reader *get() const noexcept { return h_.get(); }

private:
  using ReadFn = Status (*)(shmlane_latest_reader *, void *, std::size_t, std::size_t *,
                            std::uint64_t *);
  std::optional<LatestRead> outcome(ReadFn f, void *buf, std::size_t cap, const char *call) {
    LatestRead r{0, 0};
    const Status s = f(get(), buf, cap, &r.len, &r.version);
    if (s == SHMLANE_E_EMPTY || s == SHMLANE_E_UNCHANGED) {
      return std::nullopt;
    }
    detail::check(s, call);
    return r;
  }
  std::optional<LatestRead> wait_ns(void *buf, std::size_t cap, std::int64_t timeout) {
    LatestRead r{0, 0};
    const Status s = shmlane_latest_wait_changed(get(), buf, cap, &r.len, &r.version, timeout);
    if (s == SHMLANE_E_TIMEOUT) {
      return std::nullopt;
    }
    detail::check(s, "shmlane_latest_wait_changed");
    return r;
  }
  using Raw = detail::Handle<shmlane_latest_reader, shmlane_latest_reader_close>;
  Raw h_;
};

} // namespace shmlane

#endif /* SHMLANE_HPP */
