#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <stdexcept>

#include "loop/posix.h"
#include "transports/internal/server_state.h"
#include "transports/internal/socket_transport.h"
#include "transports/transports.h"

namespace asyncio {

using posix::os_error;
using posix::throw_errno;
using posix::UniqueFd;

namespace transports_internal {
namespace {

constexpr double kAcceptRetryDelay = 1.0;  // seconds, as asyncio's
// How long a cancelled serve_forever lets its clients flush what they have
// buffered before it aborts them.
constexpr double kClientsCloseGrace = 5.0;  // seconds

}  // namespace

ServerState::~ServerState() {
  if (handed_out && !closed) {
    // Python's listening sockets say "unclosed <socket.socket ...>".
    std::string sockets;
    for (int fd : fds) sockets += (sockets.empty() ? "" : ", ") + describe_socket("socket", fd);
    report_unclosed(&loop, "Server <Server sockets=[" + sockets + "]>", opened_at);
  }
  stop_serving();
  for (int fd : fds) ::close(fd);
}

void ServerState::start_serving() {
  if (serving || closed) return;
  serving = true;
  for (int fd : fds) {
    // The watch keeps the server alive while it serves, as the loop's
    // reference does in asyncio.
    loop.add_reader(fd, [self = shared_from_this(), fd] { self->accept_ready(fd); });
  }
}

void ServerState::stop_serving() {
  if (!serving) return;
  serving = false;
  accept_retry.cancel();
  if (loop.is_closed()) return;
  for (int fd : fds) loop.remove_reader(fd);
}

void ServerState::accept_ready(int listen_fd) {
  // Up to `backlog` connections per readiness event, as asyncio.
  for (int i = 0; i < backlog && serving; ++i) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      accept_connection(fd);
      continue;
    }
    int err = errno;
    if (posix::would_block(err) || err == ECONNABORTED) return;
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
      // Out of descriptors: stop accepting for a moment, say so, carry on.
      loop.call_exception_handler(
          {"socket.accept() out of system resource", os_error(err, "accept"), "", ""});
      auto self = shared_from_this();
      stop_serving();
      accept_retry = loop.call_later(std::chrono::duration<double>(kAcceptRetryDelay),
                                     [self] { self->start_serving(); });
      return;
    }
    loop.call_exception_handler({"accept() failed", os_error(err, "accept"), "", ""});
    return;
  }
}

void ServerState::accept_connection(int fd) {
  UniqueFd guard(fd);
  set_nodelay_if_tcp(fd);
  std::shared_ptr<BaseProtocol> protocol;
  try {
    protocol = factory();
    if (!protocol) throw std::invalid_argument("protocol factory returned null");
    if (ssl) {
      protocol = ssl->new_session(loop, std::move(protocol), tls_options, true, std::nullopt).wire;
    }
    auto transport = std::make_shared<SocketTransport>(loop, guard.release(), std::move(protocol),
                                                       shared_from_this(), opened_at);
    transport->start(std::nullopt);
  } catch (...) {
    loop.call_exception_handler(
        {"Error on transport creation for incoming connection", std::current_exception(), "", ""});
  }
}

void ServerState::close() {
  if (closed) return;
  closed = true;
  stop_serving();
  for (int fd : fds) ::close(fd);
  fds.clear();
  if (!unix_path.empty()) {
    struct stat st;
    if (::stat(unix_path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == unix_inode) {
      ::unlink(unix_path.c_str());
    }
  }
  if (serving_forever && !serving_forever->done()) serving_forever->cancel();
  if (active_connections == 0) wake_up_waiters();
}

void ServerState::detach(Transport* client) {
  --active_connections;
  clients.erase(client);
  if (active_connections == 0 && closed) wake_up_waiters();
}

void ServerState::close_clients(bool abort) {
  // A copy: closing may detach clients (and a client may be the last owner
  // of another's protocol), so keep each alive while we go.
  std::vector<std::shared_ptr<Transport>> copy;
  copy.reserve(clients.size());
  for (Transport* client : clients) {
    copy.push_back(std::static_pointer_cast<Transport>(client->shared_from_this()));
  }
  for (const std::shared_ptr<Transport>& client : copy) {
    if (abort) {
      client->abort();
    } else {
      client->close();
    }
  }
}

void ServerState::wake_up_waiters() {
  std::vector<Future<void>> waiters = std::move(closed_waiters);
  closed_waiters.clear();
  for (Future<void>& w : waiters) {
    if (!w.done()) w.set_result();
  }
}

namespace {

Coro<Server> serve(std::shared_ptr<ServerState> state, const ServerOptions& options) {
  for (int fd : state->fds) {
    if (::listen(fd, options.backlog) != 0) throw_errno("listen");
  }
  Server server(state);
  if (options.start_serving) {
    state->start_serving();
    // One loop iteration so that the accept watches are in place, as asyncio.
    co_await sleep(std::chrono::seconds(0));
  }
  state->handed_out = true;
  co_return server;
}

}  // namespace
}  // namespace transports_internal

using transports_internal::ServerState;

SocketAddress SocketInfo::getsockname() const {
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    throw_errno("getsockname");
  }
  return SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

Server::Server(std::shared_ptr<ServerState> state) : state_(std::move(state)) {}

EventLoop& Server::get_loop() const { return state_->loop; }
bool Server::is_serving() const { return state_->serving; }

std::vector<SocketInfo> Server::sockets() const {
  std::vector<SocketInfo> out;
  for (int fd : state_->fds) out.push_back(SocketInfo{fd});
  return out;
}

Coro<void> Server::start_serving() {
  state_->start_serving();
  co_await sleep(std::chrono::seconds(0));
}

Coro<void> Server::serve_forever() {
  std::shared_ptr<ServerState> s = state_;
  if (s->serving_forever) {
    throw std::runtime_error("server is already being awaited on serve_forever()");
  }
  if (s->closed) throw std::runtime_error("server is closed");
  s->start_serving();
  s->serving_forever = create_future<void>(s->loop);
  std::exception_ptr cancelled;
  try {
    co_await *s->serving_forever;
  } catch (const CancelledError&) {
    cancelled = std::current_exception();
  }
  s->serving_forever.reset();
  if (cancelled) {
    // Cancelling serve_forever closes the server and its connections (else
    // an idle client would keep wait_closed, and the program, from ending):
    // first gently, then, if they cannot flush in time or the wait is
    // cancelled again, at once.
    s->close();
    s->close_clients(false);
    try {
      co_await wait_for(Server(s).wait_closed(),
                        std::chrono::duration<double>(transports_internal::kClientsCloseGrace));
    } catch (const TimeoutError&) {
    } catch (const CancelledError&) {
      s->close_clients(true);
      throw;
    }
    s->close_clients(true);
    co_await Server(s).wait_closed();
    std::rethrow_exception(cancelled);
  }
}

void Server::close() { state_->close(); }
void Server::close_clients() { state_->close_clients(false); }
void Server::abort_clients() { state_->close_clients(true); }

Coro<void> Server::wait_closed() {
  std::shared_ptr<ServerState> s = state_;
  if (s->closed && s->active_connections == 0) co_return;
  Future<void> waiter = create_future<void>(s->loop);
  s->closed_waiters.push_back(waiter);
  co_await waiter;
}

Coro<Server> create_server(EventLoop& loop, ProtocolFactory factory, std::string host,
                           uint16_t port, ServerOptions options, std::source_location where) {
  std::vector<std::string> hosts{std::move(host)};
  co_return co_await create_server(loop, std::move(factory), std::move(hosts), port,
                                   std::move(options), where);
}

Coro<Server> create_server(EventLoop& loop, ProtocolFactory factory, std::vector<std::string> hosts,
                           uint16_t port, ServerOptions options, std::source_location where) {
  auto state = std::make_shared<ServerState>(loop, std::move(factory), options.backlog);
  state->opened_at = where;
  state->set_tls(options);
  if (options.sock >= 0) {
    posix::set_nonblocking(options.sock);
    state->fds.push_back(options.sock);
    co_return co_await transports_internal::serve(state, options);
  }
  // Every address of every host (as asyncio, the same address once).
  std::vector<AddrInfo> infos;
  bool any_interface = false;
  for (const std::string& host : hosts) {
    if (host.empty()) {
      // Every interface: both families (each socket gets its own port when
      // port is 0, as in asyncio).
      any_interface = true;
      for (const char* wildcard : {"0.0.0.0", "::"}) {
        SocketAddress addr(wildcard, port);
        if (options.family == 0 || options.family == addr.family()) {
          infos.push_back(AddrInfo{addr.family(), SOCK_STREAM, 0, "", addr});
        }
      }
    } else {
      AddrInfoHints hints;
      hints.family = options.family;
      hints.socktype = SOCK_STREAM;
      hints.flags = AI_PASSIVE;
      std::vector<AddrInfo> found = co_await transports_internal::resolve(loop, host, port, hints);
      infos.insert(infos.end(), found.begin(), found.end());
    }
  }
  std::vector<SocketAddress> bound;
  for (const AddrInfo& info : infos) {
    bool seen = false;
    for (const SocketAddress& b : bound) seen = seen || b == info.addr;
    if (seen) continue;
    bound.push_back(info.addr);
    UniqueFd sock(::socket(info.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (sock.get() < 0) {
      // A host without IPv6 still serves IPv4 on "every interface".
      if (any_interface && errno == EAFNOSUPPORT) continue;
      throw_errno("socket");
    }
    int one = 1;
    if (options.reuse_address) {
      ::setsockopt(sock.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    }
    if (options.reuse_port &&
        ::setsockopt(sock.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
      throw_errno("setsockopt(SO_REUSEPORT)");
    }
    if (options.keep_alive &&
        ::setsockopt(sock.get(), SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) != 0) {
      throw_errno("setsockopt(SO_KEEPALIVE)");
    }
    if (info.family == AF_INET6) {
      // Otherwise "::" would also take the IPv4 port.
      ::setsockopt(sock.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (::bind(sock.get(), info.addr.sockaddr_ptr(), info.addr.sockaddr_len()) != 0) {
      throw_errno("error while attempting to bind on address " + info.addr.to_string());
    }
    state->fds.push_back(sock.release());
  }
  if (state->fds.empty()) throw std::runtime_error("create_server: no address to listen on");
  co_return co_await transports_internal::serve(state, options);
}

Coro<Server> create_unix_server(EventLoop& loop, ProtocolFactory factory, std::string path,
                                ServerOptions options, std::source_location where) {
  auto state = std::make_shared<ServerState>(loop, std::move(factory), options.backlog);
  state->opened_at = where;
  state->set_tls(options);
  UniqueFd sock;
  if (options.sock >= 0) {
    posix::set_nonblocking(options.sock);
    sock.reset(options.sock);
  } else {
    SocketAddress addr = SocketAddress::unix_path(path);
    // A socket file left by a previous run: replace it (asyncio does too).
    struct stat st;
    if (!path.empty() && path[0] != '\0' && ::stat(path.c_str(), &st) == 0 &&
        S_ISSOCK(st.st_mode)) {
      ::unlink(path.c_str());
    }
    sock.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (sock.get() < 0) throw_errno("socket");
    if (::bind(sock.get(), addr.sockaddr_ptr(), addr.sockaddr_len()) != 0) {
      throw_errno("error while attempting to bind on address " + path);
    }
  }
  if (options.cleanup_socket) {
    // The file the socket is bound to (not an abstract name), and its inode:
    // close() removes it only if it is still this socket's.
    sockaddr_un bound{};
    socklen_t len = sizeof(bound);
    struct stat st;
    if (::getsockname(sock.get(), reinterpret_cast<sockaddr*>(&bound), &len) == 0 &&
        bound.sun_family == AF_UNIX && len > offsetof(sockaddr_un, sun_path) &&
        bound.sun_path[0] != '\0') {
      std::string file(bound.sun_path,
                       strnlen(bound.sun_path, len - offsetof(sockaddr_un, sun_path)));
      if (::stat(file.c_str(), &st) == 0) {
        state->unix_path = std::move(file);
        state->unix_inode = st.st_ino;
      }
    }
  }
  state->fds.push_back(sock.release());
  co_return co_await transports_internal::serve(state, options);
}

}  // namespace asyncio
