// //transports: transports and protocols, as asyncio's.
//
// A transport moves bytes (a TCP or Unix stream socket, a UDP socket); a
// protocol decides what the bytes mean. The transport calls the protocol
// (connection_made, data_received, eof_received, connection_lost,
// pause_writing/resume_writing); the protocol calls the transport (write,
// close, pause_reading, ...). All of it runs on the loop thread.
//
// Reading uses a per-thread 256 KiB buffer that data_received sees as a
// string_view (BufferedProtocol reads straight into the protocol's memory).
// `write` tries the socket first and buffers only what the kernel did not
// take; the descriptor stays registered with epoll while it is being read.
#pragma once

#include <sys/types.h>

#include <any>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <source_location>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "futures/futures.h"
#include "loop/loop.h"

namespace asyncio {

class BaseTransport;
// The TLS layer the `ssl` options hold (transports/tls_layer.h).
class TlsLayer;

// ---------------------------------------------------------------------------
// Protocols

class BaseProtocol {
 public:
  virtual ~BaseProtocol() = default;
  virtual void connection_made(std::shared_ptr<BaseTransport> transport) { (void)transport; }
  // `exc` is null on a clean close (or abort()).
  virtual void connection_lost(std::exception_ptr exc) { (void)exc; }
  // Write flow control: the transport's buffer went over the high watermark /
  // back down to the low one.
  virtual void pause_writing() {}
  virtual void resume_writing() {}
};

class Protocol : public BaseProtocol {
 public:
  // `data` is valid during the call only.
  virtual void data_received(std::string_view data) { (void)data; }
  // The peer will send no more. Return true to keep the transport open for
  // writing (half-close); false closes it.
  virtual bool eof_received() { return false; }
};

// Reads go straight into memory the protocol provides: no copy.
class BufferedProtocol : public BaseProtocol {
 public:
  // A non-empty buffer to receive into; `sizehint` is a suggestion.
  virtual std::span<char> get_buffer(size_t sizehint) = 0;
  // `nbytes` bytes were written at the start of the last buffer.
  virtual void buffer_updated(size_t nbytes) = 0;
  virtual bool eof_received() { return false; }
};

class DatagramProtocol : public BaseProtocol {
 public:
  virtual void datagram_received(std::string_view data, const SocketAddress& addr) {
    (void)data;
    (void)addr;
  }
  // An error from a previous send or receive (e.g. ECONNREFUSED from ICMP).
  virtual void error_received(std::exception_ptr exc) { (void)exc; }
};

// ---------------------------------------------------------------------------
// Transports

class BaseTransport : public std::enable_shared_from_this<BaseTransport> {
 public:
  virtual ~BaseTransport() = default;
  virtual void close() = 0;
  virtual bool is_closing() const = 0;
  // "peername", "sockname" (SocketAddress), "socket" (int fd); a pipe's
  // "pipe" (int fd); a TLS transport's "sslcontext" (the
  // std::shared_ptr<TlsLayer> its `ssl` option held: Python's SSLContext)
  // and the keys tls/tls.h lists; an empty std::any for anything else.
  virtual std::any get_extra_info(std::string_view name) const = 0;
  virtual void set_protocol(std::shared_ptr<BaseProtocol> protocol) = 0;
  virtual std::shared_ptr<BaseProtocol> get_protocol() const = 0;
};

// A stream transport (TCP or Unix socket).
class Transport : public BaseTransport {
 public:
  // Ignored after close() or abort(); throws std::runtime_error after
  // write_eof().
  virtual void write(std::string_view data) = 0;
  virtual void writelines(const std::vector<std::string>& data) = 0;
  // Closes the write side once the buffer is flushed (half-close).
  virtual void write_eof() = 0;
  virtual bool can_write_eof() const = 0;
  // Closes at once: buffered data is dropped, connection_lost(null) follows.
  virtual void abort() = 0;
  virtual void pause_reading() = 0;
  virtual void resume_reading() = 0;
  virtual bool is_reading() const = 0;
  // Defaults: high 64 KiB, low high/4. Throws std::invalid_argument unless
  // high >= low >= 0.
  virtual void set_write_buffer_limits(std::optional<size_t> high = {},
                                       std::optional<size_t> low = {}) = 0;
  // {low, high}
  virtual std::pair<size_t, size_t> get_write_buffer_limits() const = 0;
  virtual size_t get_write_buffer_size() const = 0;
};

class DatagramTransport : public BaseTransport {
 public:
  // With a remote address set at creation, `addr` must be empty or equal to
  // it.
  virtual void sendto(std::string_view data, std::optional<SocketAddress> addr = {}) = 0;
  virtual void abort() = 0;
  // Bytes queued because the socket would have blocked.
  virtual size_t get_write_buffer_size() const = 0;
  // Write flow control over that queue, as a stream transport's: the
  // protocol's pause_writing()/resume_writing() follow it. Defaults: high
  // 64 KiB, low high/4. Throws std::invalid_argument unless high >= low.
  virtual void set_write_buffer_limits(std::optional<size_t> high = {},
                                       std::optional<size_t> low = {}) = 0;
  // {low, high}
  virtual std::pair<size_t, size_t> get_write_buffer_limits() const = 0;
};

// ---------------------------------------------------------------------------
// Options

inline constexpr std::chrono::duration<double> kDefaultSslHandshakeTimeout{60.0};
inline constexpr std::chrono::duration<double> kDefaultSslShutdownTimeout{30.0};

// The TLS options of start_tls (and of each connection made with the TLS
// fields below).
struct TlsOptions {
  bool server_side = false;
  // The name to send (SNI) and to check the certificate against; a client
  // needs one unless the context checks no host name.
  std::string server_hostname;
  // Both must be positive (not NaN): std::invalid_argument otherwise, before
  // anything is connected, listened on or sent.
  std::chrono::duration<double> ssl_handshake_timeout = kDefaultSslHandshakeTimeout;
  std::chrono::duration<double> ssl_shutdown_timeout = kDefaultSslShutdownTimeout;
};

// The TLS fields of ConnectOptions, ServerOptions and StreamOptions. With
// `ssl` (a tls::Context from //tls) a client connection is usable, and a
// server's protocol sees connection_made, once the handshake is done; a
// server drops failed handshakes quietly (reported in debug mode), as
// asyncio. The timeouts must be positive, and are for ssl only:
// std::invalid_argument otherwise, before connecting or listening.
struct TlsFields {
  std::shared_ptr<TlsLayer> ssl;
  // Clients only: defaults to the host connected to; give it with `sock` or
  // a Unix path.
  std::string server_hostname;
  std::chrono::duration<double> ssl_handshake_timeout = kDefaultSslHandshakeTimeout;
  std::chrono::duration<double> ssl_shutdown_timeout = kDefaultSslShutdownTimeout;
};

struct ConnectOptions : TlsFields {
  int family = 0;  // AF_UNSPEC: whatever the name resolves to
  std::optional<SocketAddress> local_addr;
  int sock = -1;  // an already connected socket to wrap instead
  // Happy eyeballs (RFC 8305), as loop.create_connection's keywords. Unset
  // (None): the addresses are tried one after the other, each until it
  // fails. Set: the next address is also tried once this delay has passed
  // since the previous attempt started (0.25 s is RFC 8305's advice); the
  // first connection wins and the other attempts are closed.
  std::optional<std::chrono::duration<double>> happy_eyeballs_delay;
  // Reorders the addresses by family before trying them: `interleave` - 1
  // addresses of the first family, then one of each family in turn. Unset:
  // 1 with a happy eyeballs delay, else no reordering (0 too).
  std::optional<int> interleave;
  // When every address fails: false throws the single error, or (several
  // with different texts) a std::system_error "Multiple exceptions: ..."
  // with the first one's code; true throws an ExceptionGroup of them all
  // (Python 3.12's all_errors=True).
  bool all_errors = false;
};

// server_hostname is for clients: std::invalid_argument if set.
struct ServerOptions : TlsFields {
  int family = 0;
  int backlog = 100;
  bool reuse_address = true;
  bool reuse_port = false;
  bool start_serving = true;
  int sock = -1;  // an already listening socket to serve instead
  // create_server(..., keep_alive=True) (3.13): SO_KEEPALIVE on the
  // listening sockets it creates, which the accepted connections inherit.
  bool keep_alive = false;
  // create_unix_server(..., cleanup_socket=True) (3.13): closing the server
  // removes its socket file (from a path, or a `sock` bound to one) unless
  // the file was replaced meanwhile (another inode); false leaves it.
  bool cleanup_socket = true;
};

// A host, which may be a name, and a port: Python's (host, port) address
// tuple where a name is allowed.
struct HostAndPort {
  std::string host;
  uint16_t port = 0;
};

struct DatagramOptions {
  std::optional<SocketAddress> local_addr;
  std::optional<SocketAddress> remote_addr;
  // local_addr=('localhost', 0), remote_addr=('example.com', 53): names go
  // through the loop's resolver (as create_connection's host), then, as
  // asyncio, each address family that both sides resolved to is tried in
  // turn (socket, bind, connect) until one works; when all fail, the first
  // error is thrown. A separate field rather than a variant: SocketAddress
  // takes literals only. Set the name or the address of a side, not both
  // (std::invalid_argument); no family in common: std::invalid_argument
  // "can not get address information".
  std::optional<HostAndPort> local_name;
  std::optional<HostAndPort> remote_name;
  int family = 0;
  bool reuse_port = false;
  bool allow_broadcast = false;
  int sock = -1;
};

using ProtocolFactory = std::function<std::shared_ptr<BaseProtocol>()>;

// ---------------------------------------------------------------------------
// Servers

// One of a server's listening sockets (an element of Server::sockets()).
class SocketInfo {
 public:
  SocketInfo() = default;
  explicit SocketInfo(int fd) : fd_(fd) {}
  int fd() const { return fd_; }
  SocketAddress getsockname() const;

 private:
  int fd_ = -1;
};

namespace transports_internal {
struct ServerState;
}

// A listening server (asyncio.Server). A copyable handle.
class Server {
 public:
  explicit Server(std::shared_ptr<transports_internal::ServerState> state);
  EventLoop& get_loop() const;
  bool is_serving() const;
  std::vector<SocketInfo> sockets() const;
  // Starts accepting (idempotent).
  Coro<void> start_serving();
  // Accepts until cancelled. The cancellation closes the server and its
  // connections: close_clients(), then, after 5 s or a second cancellation,
  // abort_clients(); it ends when they are all gone.
  Coro<void> serve_forever();
  // Stops listening and closes the listening sockets; connections that are
  // open stay open (see close_clients).
  void close();
  // Closes every connection the server accepted that is still open
  // (asyncio 3.13): each sends what it has buffered, then connection_lost
  // follows.
  void close_clients();
  // Aborts them: buffered data is dropped, connection_lost follows at once.
  void abort_clients();
  // Waits until the server is closed and its connections are gone: an idle
  // connection keeps it waiting until it closes (close_clients).
  Coro<void> wait_closed();

 private:
  std::shared_ptr<transports_internal::ServerState> state_;
};

// ---------------------------------------------------------------------------
// Unclosed transports and servers (Python's ResourceWarning)
//
// A transport or Server still open when it goes is closed all the same (its
// descriptors never leak) and reported, as Python's
//   ResourceWarning: unclosed transport <_SelectorSocketTransport fd=7 ...>
// with the site of the call that opened it:
//   unclosed transport <SocketTransport fd=7 peername=127.0.0.1:8080>
//     opened at app/client.cc:42
// "Goes" is when its last owner drops it: the Server handles (a serving
// server is also held by its accept watch, until the loop closes), a
// subprocess transport's holders; or, for a connection, a datagram endpoint
// or a pipe, which the loop holds while they are open (as Python's selector
// does), when the loop is destroyed with it open: connection_lost then gets
// ECONNABORTED and what was buffered is dropped. close() and abort() (and a
// connection the peer or an error ended) count as closed. Each function that
// opens one (create_connection, create_server, connect_read_pipe,
// open_connection, start_server, create_subprocess_exec, ...) takes the
// site as a defaulted last argument, std::source_location::current(); a
// server's connections are reported with the server's site, a TLS
// connection as the socket transport under it.
//
// The report goes to the loop's exception handler (message only, no
// exception) while the loop object exists, closed or not; to stderr
// ("asyncio: unclosed ...") once it is gone. It is always on, not only in
// debug mode, unlike Python, which hides ResourceWarning unless asked (-X
// dev, -W default): there it comes whenever a garbage collector happens to
// run, so it is often late and noisy; here it comes at a fixed point, only
// for a resource the program forgot, and always means a peer saw an abort or
// a listening socket outlived its program's intent. The opening site is a
// word per transport and nothing is checked on the read and write paths.
//
// Reports `description` ("transport <...>", "Server <...>") as unclosed,
// opened at `opened_at`, as described above; for layers that own such
// resources (//subprocess). A default std::source_location (line 0) means
// "owned by another resource that reports itself" (a subprocess's pipes):
// nothing is reported.
void report_unclosed(EventLoop* loop, std::string_view description,
                     const std::source_location& opened_at);

// ---------------------------------------------------------------------------
// Creating transports

namespace transports_internal {

// The factory's protocol type.
template <class F>
using ProtocolOf = typename std::invoke_result_t<F&>::element_type;

// Wraps a typed factory; remembers the last protocol it made.
template <class F>
struct TypedFactory {
  using P = ProtocolOf<F>;
  F factory;
  std::shared_ptr<std::shared_ptr<P>> last = std::make_shared<std::shared_ptr<P>>();
  ProtocolFactory erased() {
    return [f = factory, last = last]() mutable -> std::shared_ptr<BaseProtocol> {
      std::shared_ptr<P> p = f();
      if (!p) throw std::invalid_argument("protocol factory returned null");
      *last = p;
      return p;
    };
  }
};

// `where`: the opening call's site, for the unclosed-transport report.
Coro<std::shared_ptr<Transport>> create_connection(EventLoop& loop, ProtocolFactory factory,
                                                   std::string host, uint16_t port,
                                                   ConnectOptions options,
                                                   std::source_location where);
Coro<std::shared_ptr<Transport>> create_unix_connection(EventLoop& loop, ProtocolFactory factory,
                                                        std::string path, ConnectOptions options,
                                                        std::source_location where);
Coro<std::shared_ptr<Transport>> connect_accepted_socket(EventLoop& loop, ProtocolFactory factory,
                                                         int sock, TlsFields tls,
                                                         std::source_location where);
Coro<std::shared_ptr<DatagramTransport>> create_datagram_endpoint(EventLoop& loop,
                                                                  ProtocolFactory factory,
                                                                  DatagramOptions options,
                                                                  std::source_location where);
Coro<std::shared_ptr<Transport>> connect_read_pipe(EventLoop& loop, ProtocolFactory factory, int fd,
                                                   std::source_location where);
Coro<std::shared_ptr<Transport>> connect_write_pipe(EventLoop& loop, ProtocolFactory factory,
                                                    int fd, std::source_location where);

template <class T, class F>
Coro<std::pair<std::shared_ptr<T>, std::shared_ptr<ProtocolOf<F>>>> with_protocol(
    Coro<std::shared_ptr<T>> create, TypedFactory<F> typed) {
  std::shared_ptr<T> transport = co_await std::move(create);
  co_return std::make_pair(std::move(transport), *typed.last);
}

}  // namespace transports_internal

// Connects to host:port (a name goes through the loop's resolver; each
// address is tried in turn, or raced with options.happy_eyeballs_delay) and
// wraps the socket in a transport driving a
// protocol from `factory`. TCP_NODELAY is on, as in asyncio.
//
// The functions taking options come in two overloads rather than with a
// default argument: GCC 12 destroys a default argument with a non-trivial
// destructor twice when the call sits in a co_await expression.
template <class F>
auto create_connection(EventLoop& loop, F factory, std::string host, uint16_t port,
                       ConnectOptions options,
                       std::source_location where = std::source_location::current()) {
  transports_internal::TypedFactory<F> typed{std::move(factory)};
  return transports_internal::with_protocol(
      transports_internal::create_connection(loop, typed.erased(), std::move(host), port,
                                             std::move(options), where),
      typed);
}
template <class F>
auto create_connection(EventLoop& loop, F factory, std::string host, uint16_t port,
                       std::source_location where = std::source_location::current()) {
  return create_connection(loop, std::move(factory), std::move(host), port, ConnectOptions(),
                           where);
}

// `options`: only ssl, server_hostname and the TLS timeouts apply.
template <class F>
auto create_unix_connection(EventLoop& loop, F factory, std::string path, ConnectOptions options,
                            std::source_location where = std::source_location::current()) {
  transports_internal::TypedFactory<F> typed{std::move(factory)};
  return transports_internal::with_protocol(
      transports_internal::create_unix_connection(loop, typed.erased(), std::move(path),
                                                  std::move(options), where),
      typed);
}
template <class F>
auto create_unix_connection(EventLoop& loop, F factory, std::string path,
                            std::source_location where = std::source_location::current()) {
  return create_unix_connection(loop, std::move(factory), std::move(path), ConnectOptions(), where);
}

// Wraps a socket accepted elsewhere; the transport owns it from the call
// on (closed on failure too).
//   await loop.connect_accepted_socket(f, sock, ssl=ctx, ssl_handshake_timeout=5)
//     -> TlsFields tls; tls.ssl = ctx; tls.ssl_handshake_timeout = 5s;
//        co_await connect_accepted_socket(loop, f, sock, tls);
// With `tls.ssl` (a server context: this side accepted, so it is the TLS
// server) the transport is returned, and the protocol sees connection_made,
// once the handshake is done; a handshake over its timeout throws
// std::system_error ECONNABORTED. server_hostname is a client's:
// std::invalid_argument, as are timeouts that are not positive or are set
// without ssl (checked before anything is sent).
template <class F>
auto connect_accepted_socket(EventLoop& loop, F factory, int sock, TlsFields tls,
                             std::source_location where = std::source_location::current()) {
  transports_internal::TypedFactory<F> typed{std::move(factory)};
  return transports_internal::with_protocol(transports_internal::connect_accepted_socket(
                                                loop, typed.erased(), sock, std::move(tls), where),
                                            typed);
}
template <class F>
auto connect_accepted_socket(EventLoop& loop, F factory, int sock,
                             std::source_location where = std::source_location::current()) {
  return connect_accepted_socket(loop, std::move(factory), sock, TlsFields(), where);
}

template <class F>
auto create_datagram_endpoint(EventLoop& loop, F factory, DatagramOptions options,
                              std::source_location where = std::source_location::current()) {
  transports_internal::TypedFactory<F> typed{std::move(factory)};
  return transports_internal::with_protocol(transports_internal::create_datagram_endpoint(
                                                loop, typed.erased(), std::move(options), where),
                                            typed);
}

// Pipes, FIFOs and character devices such as ttys (standard input and
// output):
//   transport, protocol = await loop.connect_read_pipe(factory, pipe)
//     -> auto [transport, protocol] = co_await connect_read_pipe(loop, factory, fd);
//   transport, protocol = await loop.connect_write_pipe(factory, pipe)
//     -> auto [transport, protocol] = co_await connect_write_pipe(loop, factory, fd);
// Python passes a file object; here a descriptor, which the transport owns
// once the call succeeds: it is made non-blocking and closed after
// connection_lost (as Python closes the file). Pass dup(0) to keep standard
// input open afterwards. A descriptor that is not a pipe, socket or character
// device (a regular file) throws std::invalid_argument (Python's ValueError)
// and stays the caller's.
//
// The transport is a Transport, since C++ has no duck typing (Python's
// ReadTransport and WriteTransport are its two halves): the half a pipe does
// not have refuses. A read pipe's write(), writelines(), write_eof() and
// set_write_buffer_limits() throw std::logic_error (Python: AttributeError);
// a write pipe's pause_reading()/resume_reading() do nothing.
// get_extra_info("pipe") is the descriptor (-1 once closed).
//
// Read pipe: a Protocol gets data_received for each read (a BufferedProtocol,
// get_buffer/buffer_updated, as a socket transport gives them),
// then at EOF eof_received() (its answer is ignored: a pipe cannot stay half
// open) and connection_lost(null). pause_reading()/resume_reading() stop and
// restart reading.
// Write pipe: write() writes at once and buffers what the pipe did not
// take, with the usual watermarks (pause_writing/resume_writing);
// close() and write_eof() are the same (asyncio: a pipe has no half-close):
// the buffer is flushed, then connection_lost(null). When the reader closes
// its end (a pipe, FIFO or socket), connection_lost follows: with null if
// nothing was waiting to be written, else a std::system_error EPIPE
// (BrokenPipeError); a write after that fails with EPIPE the same way.
template <class F>
auto connect_read_pipe(EventLoop& loop, F factory, int fd,
                       std::source_location where = std::source_location::current()) {
  transports_internal::TypedFactory<F> typed{std::move(factory)};
  return transports_internal::with_protocol(
      transports_internal::connect_read_pipe(loop, typed.erased(), fd, where), typed);
}
template <class F>
auto connect_write_pipe(EventLoop& loop, F factory, int fd,
                        std::source_location where = std::source_location::current()) {
  transports_internal::TypedFactory<F> typed{std::move(factory)};
  return transports_internal::with_protocol(
      transports_internal::connect_write_pipe(loop, typed.erased(), fd, where), typed);
}

// Listens on host:port (port 0: any free port; an empty host: every
// interface; a name resolving to several addresses: a socket for each).
Coro<Server> create_server(EventLoop& loop, ProtocolFactory factory, std::string host,
                           uint16_t port, ServerOptions options,
                           std::source_location where = std::source_location::current());
inline Coro<Server> create_server(EventLoop& loop, ProtocolFactory factory, std::string host,
                                  uint16_t port,
                                  std::source_location where = std::source_location::current()) {
  return create_server(loop, std::move(factory), std::move(host), port, ServerOptions(), where);
}
// Listens on every address of every host (Python: `host` a sequence of
// hosts); an empty string among them: every interface; an address that
// several hosts share gets one socket. No host at all: std::runtime_error.
// The hosts are resolved one after the other; the first failure throws and
// nothing listens. A separate overload, not a variant: Python tells a str
// from a sequence at run time, C++ by type. Build the vector in a statement
// of its own: a braced list of strings is ambiguous with std::string's
// iterator-pair constructor (and GCC 12 rejects it inside co_await).
Coro<Server> create_server(EventLoop& loop, ProtocolFactory factory, std::vector<std::string> hosts,
                           uint16_t port, ServerOptions options,
                           std::source_location where = std::source_location::current());
inline Coro<Server> create_server(EventLoop& loop, ProtocolFactory factory,
                                  std::vector<std::string> hosts, uint16_t port,
                                  std::source_location where = std::source_location::current()) {
  return create_server(loop, std::move(factory), std::move(hosts), port, ServerOptions(), where);
}
// Listens on a Unix socket path; a stale socket file is replaced, and the
// file is removed when the server closes (see ServerOptions::cleanup_socket).
Coro<Server> create_unix_server(EventLoop& loop, ProtocolFactory factory, std::string path,
                                ServerOptions options,
                                std::source_location where = std::source_location::current());
inline Coro<Server> create_unix_server(
    EventLoop& loop, ProtocolFactory factory, std::string path,
    std::source_location where = std::source_location::current()) {
  return create_unix_server(loop, std::move(factory), std::move(path), ServerOptions(), where);
}

// Upgrades a live connection to TLS (loop.start_tls), e.g. after a
// plaintext STARTTLS exchange: runs the handshake over `transport` and
// returns the TLS transport that now drives `protocol` (whose
// connection_made is not called again). Use only the returned transport
// afterwards. On failure `transport` is closed and the error thrown.
// Only bytes read from the socket after the call go through TLS; plaintext
// the protocol already holds (received behind the STARTTLS command or answer)
// is not authenticated: the protocol must drop it or refuse to upgrade, as
// StreamWriter::start_tls refuses (CVE-2011-0411).
Coro<std::shared_ptr<Transport>> start_tls(EventLoop& loop, std::shared_ptr<Transport> transport,
                                           std::shared_ptr<BaseProtocol> protocol,
                                           std::shared_ptr<TlsLayer> context, TlsOptions options);
inline Coro<std::shared_ptr<Transport>> start_tls(EventLoop& loop,
                                                  std::shared_ptr<Transport> transport,
                                                  std::shared_ptr<BaseProtocol> protocol,
                                                  std::shared_ptr<TlsLayer> context) {
  return start_tls(loop, std::move(transport), std::move(protocol), std::move(context),
                   TlsOptions());
}

// asyncio.SendfileNotAvailableError: sendfile(2) cannot be used here (the
// file is not a regular, mappable file; the transport has no socket of its
// own, as under TLS), and `fallback` is false. A std::runtime_error, as the
// Python class is a RuntimeError. (Python raises a plain RuntimeError for a
// TLS transport with fallback=False; this is its subclass, so either catch
// works.)
class SendfileNotAvailableError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Sends a file over a transport with sendfile(2) (or read/write with
// fallback); returns the bytes sent. Without fallback, where sendfile(2)
// cannot be used: SendfileNotAvailableError, nothing sent.
Coro<size_t> sendfile(EventLoop& loop, Transport& transport, int file_fd, off_t offset = 0,
                      std::optional<size_t> count = {}, bool fallback = true);

// ---------------------------------------------------------------------------
// Raw non-blocking sockets

Coro<std::string> sock_recv(EventLoop& loop, int sock, size_t nbytes);
Coro<size_t> sock_recv_into(EventLoop& loop, int sock, std::span<char> buf);
Coro<void> sock_sendall(EventLoop& loop, int sock, std::string_view data);
// Datagram sockets (3.11):
//   data, addr = await loop.sock_recvfrom(sock, bufsize)
//     -> auto [data, addr] = co_await sock_recvfrom(loop, sock, bufsize);
//   nbytes, addr = await loop.sock_recvfrom_into(sock, buf, nbytes=0)
//     -> auto [n, addr] = co_await sock_recvfrom_into(loop, sock, buf, nbytes);
//   n = await loop.sock_sendto(sock, data, address)
//     -> size_t n = co_await sock_sendto(loop, sock, data, address);
// Each waits until the socket is ready, as sock_recv; cancelling removes the
// watch. sock_recvfrom_into reads at most `nbytes` (0: the whole buffer;
// more than the buffer: std::invalid_argument). `data` and `buf` must stay
// valid until the call is done; `address` is taken by value.
Coro<std::pair<std::string, SocketAddress>> sock_recvfrom(EventLoop& loop, int sock,
                                                          size_t bufsize);
Coro<std::pair<size_t, SocketAddress>> sock_recvfrom_into(EventLoop& loop, int sock,
                                                          std::span<char> buf, size_t nbytes = 0);
Coro<size_t> sock_sendto(EventLoop& loop, int sock, std::string_view data, SocketAddress address);
Coro<void> sock_connect(EventLoop& loop, int sock, const SocketAddress& addr);
Coro<std::pair<int, SocketAddress>> sock_accept(EventLoop& loop, int sock);
// loop.sock_sendfile: `sock` must be a stream socket (else
// std::invalid_argument, Python's ValueError); without fallback, a file
// sendfile(2) cannot send throws SendfileNotAvailableError. With fallback
// the file is read and sent (a pipe too, from where it stands, when offset
// is 0).
Coro<size_t> sock_sendfile(EventLoop& loop, int sock, int file_fd, off_t offset = 0,
                           std::optional<size_t> count = {}, bool fallback = true);

}  // namespace asyncio
