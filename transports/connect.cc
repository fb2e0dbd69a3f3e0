// Name resolution and the functions that create stream transports.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>

#include "loop/posix.h"
#include "transports/internal/happy_eyeballs.h"
#include "transports/internal/socket_transport.h"
#include "transports/internal/tls_fields.h"
#include "transports/tls_layer.h"
#include "transports/transports.h"

namespace asyncio::transports_internal {

using posix::set_nonblocking;
using posix::throw_errno;
using posix::UniqueFd;

namespace {

// Lets lookups running on other threads know whether their loop still
// exists: the loop's extension slot owns it and clears it on teardown.
struct LoopAnchor {
  std::mutex mu;
  EventLoop* loop;  // null once the loop is gone
};

class AnchorExtension final : public LoopExtension {
 public:
  explicit AnchorExtension(EventLoop& loop) : anchor_(std::make_shared<LoopAnchor>()) {
    anchor_->loop = &loop;
  }
  ~AnchorExtension() override {
    std::lock_guard<std::mutex> lock(anchor_->mu);
    anchor_->loop = nullptr;
  }
  const std::shared_ptr<LoopAnchor>& anchor() const { return anchor_; }

 private:
  std::shared_ptr<LoopAnchor> anchor_;
};

std::shared_ptr<LoopAnchor> anchor_of(EventLoop& loop) {
  static const int slot = EventLoop::new_extension_slot();
  auto* ext = static_cast<AnchorExtension*>(loop.extension(slot));
  if (ext == nullptr) {
    auto owned = std::make_unique<AnchorExtension>(loop);
    ext = owned.get();
    loop.set_extension(slot, std::move(owned));
  }
  return ext->anchor();
}

// One system getaddrinfo call, off the loop thread. Shared between the
// awaiting coroutine and the thread that runs the call; `done` is touched on
// the loop thread only.
struct SystemLookup {
  std::vector<AddrInfo> results;
  std::exception_ptr error;
  std::optional<Future<void>> done;
  std::atomic<bool> abandoned{false};  // nobody awaits it any more
};

// The threads that run system lookups when the loop has no executor: a few,
// process-wide, started on demand; lookups beyond them wait in a queue.
class LookupThreads {
 public:
  static constexpr int kMaxThreads = 4;

  static LookupThreads& instance() {
    // Never destroyed: its detached threads may outlive main.
    static LookupThreads* threads = new LookupThreads;
    return *threads;
  }

  void submit(std::function<void()> job) {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(job));
    // A new thread only when the idle ones cannot take every queued lookup.
    if (queue_.size() > static_cast<size_t>(idle_) && started_ < kMaxThreads) {
      try {
        std::thread([this] { work(); }).detach();
        ++started_;
      } catch (const std::system_error&) {
        // No thread to be had: a running one takes it later, or, with none,
        // the lookup fails now.
        if (started_ == 0) {
          queue_.pop_back();
          throw;
        }
      }
    } else {
      wake_.notify_one();
    }
  }

 private:
  void work() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      ++idle_;
      wake_.wait(lock, [this] { return !queue_.empty(); });
      --idle_;
      std::function<void()> job = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      job();
      job = nullptr;  // its captures go before the next wait
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;
  int started_ = 0;
  int idle_ = 0;
};

void system_getaddrinfo(const std::string& host, const std::string& port, AddrInfoHints hints,
                        std::vector<AddrInfo>& out, std::exception_ptr& error) {
  addrinfo h{};
  h.ai_family = hints.family;
  h.ai_socktype = hints.socktype;
  h.ai_protocol = hints.protocol;
  h.ai_flags = hints.flags;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &h, &res);
  if (rc != 0) {
    error =
        std::make_exception_ptr(GaiError(rc, "getaddrinfo(" + host + "): " + ::gai_strerror(rc)));
    return;
  }
  for (addrinfo* p = res; p != nullptr; p = p->ai_next) {
    out.push_back(AddrInfo{p->ai_family, p->ai_socktype, p->ai_protocol,
                           p->ai_canonname ? p->ai_canonname : "",
                           SocketAddress::from_sockaddr(p->ai_addr, p->ai_addrlen)});
  }
  ::freeaddrinfo(res);
}

struct ResetDone {
  SystemLookup& lookup;
  ~ResetDone() {
    lookup.done.reset();
    // A cancelled lookup that has not started is dropped.
    lookup.abandoned.store(true, std::memory_order_release);
  }
};

Coro<std::vector<AddrInfo>> resolve_with_system(EventLoop& loop, std::string host, std::string port,
                                                AddrInfoHints hints) {
  auto lookup = std::make_shared<SystemLookup>();
  lookup->done = create_future<void>(loop);
  ResetDone reset{*lookup};
  auto job = [lookup, anchor = anchor_of(loop), host, port, hints]() mutable {
    if (lookup->abandoned.load(std::memory_order_acquire)) return;
    std::vector<AddrInfo> results;
    std::exception_ptr error;
    system_getaddrinfo(host, port, hints, results, error);
    std::lock_guard<std::mutex> lock(anchor->mu);
    if (anchor->loop == nullptr) return;
    try {
      // Everything moves to the loop thread: this thread keeps no reference
      // to the lookup or the error, so the last release (and the free of the
      // exception) happens where they are used.
      anchor->loop->call_soon_threadsafe([lookup = std::move(lookup), results = std::move(results),
                                          error = std::move(error)]() mutable {
        lookup->results = std::move(results);
        lookup->error = std::move(error);
        if (lookup->done && !lookup->done->done()) lookup->done->set_result();
      });
    } catch (const std::runtime_error&) {
      // The loop closed meanwhile: nobody waits for the answer.
    }
  };
  if (const std::shared_ptr<Executor>& executor = loop.default_executor()) {
    executor->execute(std::move(job));
  } else {
    LookupThreads::instance().submit(std::move(job));
  }
  co_await *lookup->done;
  if (lookup->error) std::rethrow_exception(lookup->error);
  co_return std::move(lookup->results);
}

struct CancelLookup {
  std::shared_ptr<NameResolver> resolver;
  NameResolver::LookupId id;
  Future<std::vector<AddrInfo>>& result;
  ~CancelLookup() {
    if (!result.done()) resolver->cancel(id);
  }
};

Coro<std::vector<AddrInfo>> resolve_with(EventLoop& loop, std::shared_ptr<NameResolver> resolver,
                                         std::string host, std::string port, AddrInfoHints hints) {
  Future<std::vector<AddrInfo>> result = create_future<std::vector<AddrInfo>>(loop);
  NameResolver::LookupId id = resolver->getaddrinfo(
      std::move(host), std::move(port), hints,
      [result](std::vector<AddrInfo> found, std::exception_ptr error) mutable {
        if (result.done()) return;
        if (error) {
          result.set_exception(error);
        } else {
          result.set_result(std::move(found));
        }
      });
  CancelLookup cancel{resolver, id, result};
  co_return co_await result;
}

// Connects a non-blocking socket; returns 0 or the errno of the failure.
Coro<int> connect_socket(EventLoop& loop, int fd, const SocketAddress& addr) {
  while (true) {
    if (::connect(fd, addr.sockaddr_ptr(), addr.sockaddr_len()) == 0) co_return 0;
    int err = errno;
    if (err == EINTR) continue;
    // EAGAIN too: a Unix socket's server has a full backlog, and no
    // readiness event would say when it has room (the socket is writable
    // all along: waiting for that would spin).
    if (err != EINPROGRESS) co_return err;
    co_await wait_writable(loop, fd);
    int so_error = 0;
    socklen_t len = sizeof(so_error);
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0) co_return errno;
    co_return so_error;
  }
}

// Wraps a connected socket in a transport driving a protocol from `factory`;
// with `ssl`, a TLS session sits in between and the transport returned is the
// TLS one, after its handshake.
Coro<std::shared_ptr<Transport>> wrap_socket(EventLoop& loop, ProtocolFactory& factory,
                                             UniqueFd& sock, const TlsFields& options,
                                             const std::string& host, std::source_location where,
                                             bool server_side = false) {
  std::shared_ptr<BaseProtocol> protocol = factory();
  Future<void> waiter = create_future<void>(loop);
  std::shared_ptr<Transport> result;
  std::shared_ptr<SocketTransport> transport;
  if (options.ssl) {
    TlsLayer::Session session = options.ssl->new_session(
        loop, std::move(protocol), session_options(options, server_side, host), true, waiter);
    transport = std::make_shared<SocketTransport>(loop, sock.release(), std::move(session.wire),
                                                  nullptr, where);
    transport->start(std::nullopt);
    result = std::move(session.transport);
  } else {
    transport = std::make_shared<SocketTransport>(loop, sock.release(), std::move(protocol),
                                                  nullptr, where);
    transport->start(waiter);
    result = transport;
  }
  try {
    co_await waiter;
  } catch (...) {
    transport->close();
    throw;
  }
  co_return result;
}

// The connection attempts of one create_connection, as asyncio's
// staggered_race over _connect_sock: attempt i+1 starts when attempt i
// fails or, with a happy eyeballs delay, when the delay has passed since
// attempt i started; the first connected socket wins. The attempts are raw
// socket watches, not tasks: when the race ends (won, lost or cancelled)
// its destructor removes every watch and closes every losing socket at once.
struct ConnectRace {
  struct Attempt {
    UniqueFd fd;
    size_t index;  // into the address list
  };

  explicit ConnectRace(EventLoop& loop) : loop(loop) {}
  ConnectRace(const ConnectRace&) = delete;
  ConnectRace& operator=(const ConnectRace&) = delete;
  ~ConnectRace() {
    timer.cancel();
    for (Attempt& attempt : in_flight) close_watched(loop, attempt.fd.release(), false, true);
  }

  void wake_up() {
    if (wake && !wake->done()) wake->set_result();
  }

  EventLoop& loop;
  std::vector<Attempt> in_flight;
  std::vector<int> finished;  // in-flight sockets whose connect completed
  std::optional<Future<void>> wake;
  TimerHandle timer;
  bool delay_passed = false;
};

// Opens a socket for `info` and starts connecting it: 0 when connected at
// once, EINPROGRESS when under way, else the error (stored in `error`).
int begin_connect(const AddrInfo& info, const ConnectOptions& options, UniqueFd& fd,
                  std::exception_ptr& error) {
  fd.reset(::socket(info.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    const int err = errno;
    error = posix::os_error(err, "socket");
    return err;
  }
  if (options.local_addr && ::bind(fd.get(), options.local_addr->sockaddr_ptr(),
                                   options.local_addr->sockaddr_len()) != 0) {
    const int err = errno;
    error = posix::os_error(
        err, "error while attempting to bind on address " + options.local_addr->to_string());
    return err;
  }
  if (::connect(fd.get(), info.addr.sockaddr_ptr(), info.addr.sockaddr_len()) == 0) return 0;
  const int err = errno;
  // EINTR: the connection goes on asynchronously, as for EINPROGRESS.
  if (err == EINPROGRESS || err == EINTR) return EINPROGRESS;
  error = posix::os_error(err, "Connect call failed (" + info.addr.to_string() + ")");
  return err;
}

// Runs the race over `infos`; returns the connected socket, or none with
// `errors[i]` set for each address that failed.
Coro<UniqueFd> race_connect(EventLoop& loop, const std::vector<AddrInfo>& infos,
                            const ConnectOptions& options,
                            std::vector<std::exception_ptr>& errors) {
  ConnectRace race(loop);
  size_t next = 0;
  bool start_next = true;
  while (true) {
    if (start_next && next < infos.size()) {
      start_next = false;
      const size_t index = next++;
      race.timer.cancel();
      race.delay_passed = false;
      UniqueFd fd;
      const int err = begin_connect(infos[index], options, fd, errors[index]);
      if (err == 0) co_return fd;
      if (err != EINPROGRESS) {
        start_next = true;  // failed at once: the next starts at once
        continue;
      }
      const int raw = fd.get();
      loop.add_writer(raw, [&race, raw] {
        race.loop.remove_writer(raw);
        race.finished.push_back(raw);
        race.wake_up();
      });
      race.in_flight.push_back({std::move(fd), index});
      if (options.happy_eyeballs_delay && next < infos.size()) {
        race.timer = loop.call_later(*options.happy_eyeballs_delay, [&race] {
          race.delay_passed = true;
          race.wake_up();
        });
      }
      continue;
    }
    if (race.in_flight.empty()) {
      if (next >= infos.size()) co_return UniqueFd();
      start_next = true;
      continue;
    }
    race.wake = create_future<void>(loop);
    co_await *race.wake;
    race.wake.reset();
    if (std::exchange(race.delay_passed, false)) start_next = true;
    for (int raw : std::exchange(race.finished, {})) {
      auto it = std::find_if(race.in_flight.begin(), race.in_flight.end(),
                             [raw](const ConnectRace::Attempt& a) { return a.fd.get() == raw; });
      int so_error = 0;
      socklen_t len = sizeof(so_error);
      if (::getsockopt(raw, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0) so_error = errno;
      if (so_error == 0) {
        UniqueFd won = std::move(it->fd);
        race.in_flight.erase(it);
        co_return won;
      }
      errors[it->index] = posix::os_error(
          so_error, "Connect call failed (" + infos[it->index].addr.to_string() + ")");
      // Only the latest attempt's failure starts the next one early.
      if (it->index + 1 == next) start_next = true;
      race.in_flight.erase(it);
    }
  }
}

std::string what_of(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

// The error of several failed attempts (Python's OSError('Multiple
// exceptions: ...')): a std::system_error whose code is the first
// attempt's, and whose text lists every attempt's error.
class MultipleConnectErrors final : public std::system_error {
 public:
  MultipleConnectErrors(std::error_code code, std::string text)
      : std::system_error(code), text_(std::move(text)) {}
  const char* what() const noexcept override { return text_.c_str(); }

 private:
  std::string text_;
};

// What create_connection throws when every address failed, as asyncio:
// with all_errors an ExceptionGroup of them all; else a single error as
// is, several with the same text the first, otherwise one listing them.
[[noreturn]] void throw_connect_errors(std::vector<std::exception_ptr> errors, bool all_errors) {
  std::erase(errors, nullptr);
  if (all_errors) throw ExceptionGroup("create_connection failed", std::move(errors));
  const std::string first = what_of(errors.front());
  std::string joined = first;
  bool all_same = true;
  for (size_t i = 1; i < errors.size(); ++i) {
    const std::string text = what_of(errors[i]);
    all_same = all_same && text == first;
    joined += ", " + text;
  }
  if (errors.size() == 1 || all_same) std::rethrow_exception(errors.front());
  std::error_code code;
  try {
    std::rethrow_exception(errors.front());
  } catch (const std::system_error& e) {
    code = e.code();
  } catch (...) {
  }
  throw MultipleConnectErrors(code, "Multiple exceptions: " + joined);
}

}  // namespace

std::vector<AddrInfo> interleave_addrinfos(const std::vector<AddrInfo>& infos,
                                           size_t first_family_count) {
  std::vector<std::vector<const AddrInfo*>> by_family;
  std::vector<int> families;
  for (const AddrInfo& info : infos) {
    auto it = std::find(families.begin(), families.end(), info.family);
    if (it == families.end()) {
      families.push_back(info.family);
      by_family.emplace_back();
      it = families.end() - 1;
    }
    by_family[static_cast<size_t>(it - families.begin())].push_back(&info);
  }
  std::vector<AddrInfo> reordered;
  reordered.reserve(infos.size());
  std::vector<size_t> taken(by_family.size(), 0);
  if (first_family_count > 1 && !by_family.empty()) {
    const size_t head = std::min(first_family_count - 1, by_family[0].size());
    for (; taken[0] < head; ++taken[0]) reordered.push_back(*by_family[0][taken[0]]);
  }
  while (reordered.size() < infos.size()) {
    for (size_t f = 0; f < by_family.size(); ++f) {
      if (taken[f] < by_family[f].size()) reordered.push_back(*by_family[f][taken[f]++]);
    }
  }
  return reordered;
}

Coro<std::vector<AddrInfo>> resolve(EventLoop& loop, std::string host, uint16_t port,
                                    AddrInfoHints hints) {
  // IP literals never reach a resolver.
  std::optional<SocketAddress> literal;
  try {
    literal.emplace(host, port);
  } catch (const std::invalid_argument&) {
  }
  if (literal) {
    if (hints.family != 0 && hints.family != literal->family()) {
      throw GaiError(EAI_ADDRFAMILY, "address family mismatch for " + host);
    }
    std::vector<AddrInfo> one{
        AddrInfo{literal->family(), hints.socktype, hints.protocol, "", *literal}};
    co_return one;
  }
  if (std::shared_ptr<NameResolver> resolver = loop.name_resolver()) {
    co_return co_await resolve_with(loop, std::move(resolver), std::move(host),
                                    std::to_string(port), hints);
  }
  co_return co_await resolve_with_system(loop, std::move(host), std::to_string(port), hints);
}

Coro<std::shared_ptr<Transport>> create_connection(EventLoop& loop, ProtocolFactory factory,
                                                   std::string host, uint16_t port,
                                                   ConnectOptions options,
                                                   std::source_location where) {
  check_tls_fields(options, false, host);
  UniqueFd sock;
  if (options.sock >= 0) {
    sock.reset(options.sock);
    set_nonblocking(sock.get());
  } else {
    if (host.empty()) throw std::invalid_argument("host and port must be given (or a sock)");
    AddrInfoHints hints;
    hints.family = options.family;
    hints.socktype = SOCK_STREAM;
    // As asyncio: a delay without interleave interleaves one address of the
    // first family, then alternates.
    const int interleave = options.interleave.value_or(options.happy_eyeballs_delay ? 1 : 0);
    if (interleave < 0) throw std::invalid_argument("interleave must not be negative");
    if (options.happy_eyeballs_delay && std::isnan(options.happy_eyeballs_delay->count())) {
      throw std::invalid_argument("happy_eyeballs_delay is NaN");
    }
    std::vector<AddrInfo> infos = co_await resolve(loop, host, port, hints);
    if (infos.empty()) throw GaiError(EAI_NONAME, "getaddrinfo(" + host + ") returned nothing");
    if (interleave > 0) infos = interleave_addrinfos(infos, static_cast<size_t>(interleave));
    std::vector<std::exception_ptr> errors(infos.size());
    sock = co_await race_connect(loop, infos, options, errors);
    if (sock.get() < 0) throw_connect_errors(std::move(errors), options.all_errors);
  }
  set_nodelay_if_tcp(sock.get());
  co_return co_await wrap_socket(loop, factory, sock, options, host, where);
}

Coro<std::shared_ptr<Transport>> create_unix_connection(EventLoop& loop, ProtocolFactory factory,
                                                        std::string path, ConnectOptions options,
                                                        std::source_location where) {
  check_tls_fields(options, false, "");
  SocketAddress addr = SocketAddress::unix_path(path);
  UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (sock.get() < 0) throw_errno("socket");
  int err = co_await connect_socket(loop, sock.get(), addr);
  if (err == EAGAIN) {
    throw_errno("Connect call failed (" + path + "): the server's backlog is full", err);
  }
  if (err != 0) throw_errno("Connect call failed (" + path + ")", err);
  const std::string no_host;
  co_return co_await wrap_socket(loop, factory, sock, options, no_host, where);
}

Coro<std::shared_ptr<Transport>> connect_accepted_socket(EventLoop& loop, ProtocolFactory factory,
                                                         int sock, TlsFields tls,
                                                         std::source_location where) {
  UniqueFd guard(sock);
  // As asyncio: the accepting side is the TLS server.
  check_tls_fields(tls, true, "");
  set_nonblocking(sock);
  set_nodelay_if_tcp(sock);
  // Not a temporary inside co_await: GCC 12 destroys those twice (PR 99576).
  const std::string no_host;
  co_return co_await wrap_socket(loop, factory, guard, tls, no_host, where, true);
}

}  // namespace asyncio::transports_internal

namespace asyncio {

Coro<std::shared_ptr<Transport>> start_tls(EventLoop& loop, std::shared_ptr<Transport> transport,
                                           std::shared_ptr<BaseProtocol> protocol,
                                           std::shared_ptr<TlsLayer> context, TlsOptions options) {
  if (!transport || transport->is_closing()) {
    throw std::invalid_argument("start_tls needs an open transport");
  }
  if (!context) throw std::invalid_argument("start_tls needs a TLS context");
  transports_internal::check_tls_timeouts(options.ssl_handshake_timeout,
                                          options.ssl_shutdown_timeout);
  Future<void> waiter = create_future<void>(loop);
  TlsLayer::Session session =
      context->new_session(loop, std::move(protocol), options, false, waiter);
  // As asyncio: nothing is read until the TLS layer is in place.
  transport->pause_reading();
  transport->set_protocol(session.wire);
  Handle connection_made =
      loop.call_soon([wire = session.wire, transport] { wire->connection_made(transport); });
  Handle resume_reading = loop.call_soon([transport] { transport->resume_reading(); });
  try {
    co_await waiter;
  } catch (...) {
    transport->close();
    connection_made.cancel();
    resume_reading.cancel();
    throw;
  }
  co_return std::move(session.transport);
}

}  // namespace asyncio
