// Name resolution and the functions that create stream transports.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "loop/posix.h"
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
                                             UniqueFd& sock, const ConnectOptions& options,
                                             const std::string& host) {
  std::shared_ptr<BaseProtocol> protocol = factory();
  Future<void> waiter = create_future<void>(loop);
  std::shared_ptr<Transport> result;
  std::shared_ptr<SocketTransport> transport;
  if (options.ssl) {
    TlsLayer::Session session = options.ssl->new_session(
        loop, std::move(protocol), session_options(options, false, host), true, waiter);
    transport = std::make_shared<SocketTransport>(loop, sock.release(), std::move(session.wire));
    transport->start(std::nullopt);
    result = std::move(session.transport);
  } else {
    transport = std::make_shared<SocketTransport>(loop, sock.release(), std::move(protocol));
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

}  // namespace

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
                                                   ConnectOptions options) {
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
    std::vector<AddrInfo> infos = co_await resolve(loop, host, port, hints);
    if (infos.empty()) throw GaiError(EAI_NONAME, "getaddrinfo(" + host + ") returned nothing");
    // Each address in turn; the error names every one that failed.
    int first_error = 0;
    std::string failures;
    for (const AddrInfo& info : infos) {
      UniqueFd candidate(::socket(info.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      int err = 0;
      if (candidate.get() < 0) {
        err = errno;
      } else if (options.local_addr && ::bind(candidate.get(), options.local_addr->sockaddr_ptr(),
                                              options.local_addr->sockaddr_len()) != 0) {
        err = errno;
      } else {
        err = co_await connect_socket(loop, candidate.get(), info.addr);
      }
      if (err == 0) {
        sock.reset(candidate.release());
        break;
      }
      if (first_error == 0) first_error = err;
      if (!failures.empty()) failures += "; ";
      failures += info.addr.to_string() + ": " + std::strerror(err);
    }
    if (sock.get() < 0) throw_errno("Connect call failed (" + failures + ")", first_error);
  }
  set_nodelay_if_tcp(sock.get());
  co_return co_await wrap_socket(loop, factory, sock, options, host);
}

Coro<std::shared_ptr<Transport>> create_unix_connection(EventLoop& loop, ProtocolFactory factory,
                                                        std::string path, ConnectOptions options) {
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
  co_return co_await wrap_socket(loop, factory, sock, options, no_host);
}

Coro<std::shared_ptr<Transport>> connect_accepted_socket(EventLoop& loop, ProtocolFactory factory,
                                                         int sock) {
  UniqueFd guard(sock);
  set_nonblocking(sock);
  set_nodelay_if_tcp(sock);
  // Not temporaries inside co_await: GCC 12 destroys those twice (PR 99576).
  const ConnectOptions plain;
  const std::string no_host;
  co_return co_await wrap_socket(loop, factory, guard, plain, no_host);
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
