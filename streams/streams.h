// //streams: StreamReader and StreamWriter over transports, as asyncio's.
//
//   auto [reader, writer] = co_await asyncio::open_connection("127.0.0.1", 8888);
//   writer.write("Hello World!");
//   std::string data = co_await reader.read(100);
//   writer.close();
//   co_await writer.wait_closed();
#pragma once

#include <sys/types.h>

#include <any>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <ranges>
#include <source_location>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "futures/futures.h"
#include "loop/loop.h"
#include "transports/transports.h"

namespace asyncio {

inline constexpr size_t kDefaultStreamLimit = 64 * 1024;

// EOF came before the expected number of bytes (or the separator).
class IncompleteReadError : public std::runtime_error {
 public:
  IncompleteReadError(std::string partial, std::optional<size_t> expected);
  const std::string& partial() const noexcept { return *partial_; }
  // nullopt: "until EOF" (readuntil).
  std::optional<size_t> expected() const noexcept { return expected_; }

 private:
  std::shared_ptr<const std::string> partial_;
  std::optional<size_t> expected_;
};

// The separator was not found within the limit. An invalid_argument, as
// readline() raises ValueError for it in Python.
class LimitOverrunError : public std::invalid_argument {
 public:
  LimitOverrunError(const std::string& message, size_t consumed)
      : std::invalid_argument(message), consumed_(consumed) {}
  // How many bytes to consume to get past the overrun.
  size_t consumed() const noexcept { return consumed_; }

 private:
  size_t consumed_;
};

namespace streams_internal {
struct ReaderState;
class StreamReaderProtocol;
}  // namespace streams_internal

// The reading half: a copyable handle.
class StreamReader {
 public:
  // Standalone, limit 64 KiB, on the running loop (or this thread's loop).
  StreamReader();
  explicit StreamReader(size_t limit, EventLoop* loop = nullptr);

  // Up to n bytes; n < 0: everything until EOF. Empty at EOF.
  Coro<std::string> read(ssize_t n = -1);
  // Exactly n bytes, or IncompleteReadError with what there was.
  Coro<std::string> readexactly(size_t n);
  // One line with its '\n'; at EOF, what is left (possibly empty). A line
  // longer than the limit throws LimitOverrunError (the data is dropped).
  Coro<std::string> readline();
  // Up to and including `separator`; LimitOverrunError past the limit (the
  // data stays), IncompleteReadError at EOF.
  Coro<std::string> readuntil(std::string_view separator = "\n");

  // readuntil((b"\r\n", b"\n")), 3.13: several separators. Returns the
  // shortest data that ends with any of them (the match that ends first; of
  // two ending at the same byte, the shorter separator). LimitOverrunError
  // and IncompleteReadError as above, the limit applying to the data before
  // the matched separator. invalid_argument for no separator or an empty one.
  // Python passes a tuple; here the separators are the arguments, or any
  // range of strings when they are known only at run time:
  //   co_await reader.readuntil("\r\n", "\n");
  //   co_await reader.readuntil(separators);  // e.g. a std::vector<std::string>
  // (Not a braced list: GCC 12 rejects a std::initializer_list temporary in
  // a coroutine.) The separators are copied: they need not outlive the call.
  template <class... Separators>
  requires(sizeof...(Separators) >= 2 &&
           (std::convertible_to<const Separators&, std::string_view> &&
            ...)) Coro<std::string> readuntil(const Separators&... separators) {
    return readuntil_any(std::vector<std::string>{std::string(std::string_view(separators))...});
  }
  template <std::ranges::input_range R>
  requires std::convertible_to<std::ranges::range_reference_t<const R>, std::string_view>
      Coro<std::string> readuntil(const R& separators) {
    std::vector<std::string> copies;
    for (auto&& separator : separators) copies.emplace_back(std::string_view(separator));
    return readuntil_any(std::move(copies));
  }

  // `async for line in reader:` reads lines (readline()) until EOF. C++ has
  // no `async for`; as with as_completed, the step is awaited explicitly:
  //   while (std::optional<std::string> line = co_await reader.next_line())
  // next_line() is __anext__: readline(), but nullopt at EOF where readline
  // gives "" (a LimitOverrunError propagates, as in Python).
  Coro<std::optional<std::string>> next_line();
  // The same lines as an AsyncGenerator, for code written against
  // generators: `auto lines = reader.lines(); while (auto l = co_await
  // lines.next())`. The generator holds a copy of this handle.
  AsyncGenerator<std::string> lines() const { return lines_of(*this); }

  bool at_eof() const;
  void feed_data(std::string_view data);
  void feed_eof();
  std::exception_ptr exception() const;
  void set_exception(std::exception_ptr exc);
  void set_transport(std::shared_ptr<Transport> transport);
  size_t limit() const;

 private:
  friend class streams_internal::StreamReaderProtocol;
  explicit StreamReader(std::shared_ptr<streams_internal::ReaderState> state)
      : state_(std::move(state)) {}
  // The coroutine behind the readuntil overloads that take several
  // separators: owns them, since a coroutine outlives its arguments' views.
  Coro<std::string> readuntil_any(std::vector<std::string> separators);
  static AsyncGenerator<std::string> lines_of(StreamReader reader);
  std::shared_ptr<streams_internal::ReaderState> state_;
};

// The writing half: a copyable handle (copies share the transport, so a
// start_tls through one is seen by all).
class StreamWriter {
 public:
  StreamWriter(std::shared_ptr<Transport> transport,
               std::shared_ptr<streams_internal::StreamReaderProtocol> protocol,
               std::optional<StreamReader> reader);

  void write(std::string_view data) { transport().write(data); }
  void writelines(const std::vector<std::string>& data) { transport().writelines(data); }
  // Waits until the transport's buffer is below the low watermark; throws the
  // reader's or the connection's error.
  Coro<void> drain();
  bool can_write_eof() const { return transport().can_write_eof(); }
  void write_eof() { transport().write_eof(); }
  void close() { transport().close(); }
  bool is_closing() const { return transport().is_closing(); }
  // Waits until the connection is closed; throws its error, if any.
  Coro<void> wait_closed();
  std::any get_extra_info(std::string_view name) const { return transport().get_extra_info(name); }
  Transport& transport() const;
  // Upgrades the connection to TLS (needs //tls), e.g. after a STARTTLS
  // exchange: drains, runs the handshake (as the server when this writer
  // came from start_server), then reads and writes go through TLS.
  // `options.server_side` is ignored. Throws std::runtime_error, leaving the
  // connection as it was, if the reader holds unread plaintext: bytes the
  // peer sent behind the STARTTLS command or answer would otherwise be read
  // afterwards as if they had come through TLS (CVE-2011-0411; asyncio keeps
  // them). Also throws what asyncio::start_tls does. (Two overloads, not a
  // default argument: see create_connection.)
  Coro<void> start_tls(std::shared_ptr<TlsLayer> context, TlsOptions options);
  Coro<void> start_tls(std::shared_ptr<TlsLayer> context) {
    return start_tls(std::move(context), TlsOptions());
  }

 private:
  std::shared_ptr<streams_internal::StreamReaderProtocol> protocol_;
  std::optional<StreamReader> reader_;
};

// The options of the stream functions: the limit, and those of the
// connection or the server underneath.
struct StreamOptions : TlsFields {
  size_t limit = kDefaultStreamLimit;
  int family = 0;
  std::optional<SocketAddress> local_addr;  // open_connection
  // open_connection: happy eyeballs, as ConnectOptions.
  std::optional<std::chrono::duration<double>> happy_eyeballs_delay;
  std::optional<int> interleave;
  bool all_errors = false;
  int sock = -1;
  int backlog = 100;  // start_server
  bool reuse_address = true;
  bool reuse_port = false;
  bool start_serving = true;
  bool keep_alive = false;     // start_server, as ServerOptions
  bool cleanup_socket = true;  // start_unix_server, as ServerOptions
  // TLS: ssl, server_hostname (open_connection only: start_server ignores
  // it), ssl_handshake_timeout and ssl_shutdown_timeout, as in ConnectOptions
  // and ServerOptions.
};

using ClientConnected = std::function<Coro<void>(StreamReader, StreamWriter)>;

//
// Each function that opens a connection, a server or a pipe takes the site
// of its call as a defaulted last argument: a transport or Server that goes
// unclosed is reported with it (Python's ResourceWarning; see
// report_unclosed in transports/transports.h).
Coro<std::pair<StreamReader, StreamWriter>> open_connection(
    std::string host, uint16_t port, StreamOptions options,
    std::source_location where = std::source_location::current());
// (Overloads rather than a default argument: see create_connection.)
inline Coro<std::pair<StreamReader, StreamWriter>> open_connection(
    std::string host, uint16_t port, std::source_location where = std::source_location::current()) {
  return open_connection(std::move(host), port, StreamOptions(), where);
}
// `cb` runs as a task for each client; an exception it throws is reported
// and closes that connection.
Coro<Server> start_server(ClientConnected cb, std::string host, uint16_t port,
                          StreamOptions options,
                          std::source_location where = std::source_location::current());
inline Coro<Server> start_server(ClientConnected cb, std::string host, uint16_t port,
                                 std::source_location where = std::source_location::current()) {
  return start_server(std::move(cb), std::move(host), port, StreamOptions(), where);
}
// Listens on every address of every host, as create_server with a list of
// hosts (Python: `host` a sequence).
Coro<Server> start_server(ClientConnected cb, std::vector<std::string> hosts, uint16_t port,
                          StreamOptions options,
                          std::source_location where = std::source_location::current());
inline Coro<Server> start_server(ClientConnected cb, std::vector<std::string> hosts, uint16_t port,
                                 std::source_location where = std::source_location::current()) {
  return start_server(std::move(cb), std::move(hosts), port, StreamOptions(), where);
}
Coro<std::pair<StreamReader, StreamWriter>> open_unix_connection(
    std::string path, StreamOptions options,
    std::source_location where = std::source_location::current());
inline Coro<std::pair<StreamReader, StreamWriter>> open_unix_connection(
    std::string path, std::source_location where = std::source_location::current()) {
  return open_unix_connection(std::move(path), StreamOptions(), where);
}
Coro<Server> start_unix_server(ClientConnected cb, std::string path, StreamOptions options,
                               std::source_location where = std::source_location::current());
inline Coro<Server> start_unix_server(
    ClientConnected cb, std::string path,
    std::source_location where = std::source_location::current()) {
  return start_unix_server(std::move(cb), std::move(path), StreamOptions(), where);
}

// Pipes as streams: standard input and output, FIFOs, a child's pipes.
// Python has no helper; its recipe is
//   reader = asyncio.StreamReader()
//   await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
//   transport, protocol = await loop.connect_write_pipe(FlowControlMixin, sys.stdout)
//   writer = asyncio.StreamWriter(transport, protocol, None, loop)
// and here it is one call each, on the running loop:
//   StreamReader in = co_await asyncio::open_read_pipe(::dup(0));
//   StreamWriter out = co_await asyncio::open_write_pipe(::dup(1));
// The descriptor is taken as connect_read_pipe/connect_write_pipe take it
// (closed with the stream; std::invalid_argument, and left open, if it is
// not a pipe, socket or character device). The reader sees EOF when the
// writing end closes; the writer's drain() waits under the watermarks and
// wait_closed() until the pipe is closed (close() flushes first), with the
// EPIPE error if the reader went away with data unsent.
Coro<StreamReader> open_read_pipe(int fd, size_t limit = kDefaultStreamLimit,
                                  std::source_location where = std::source_location::current());
Coro<StreamWriter> open_write_pipe(int fd,
                                   std::source_location where = std::source_location::current());

namespace streams_internal {

// Feeds a StreamReader from a transport and gives StreamWriter its flow
// control (asyncio's StreamReaderProtocol with FlowControlMixin). A
// BufferedProtocol: the transport receives straight into the reader's buffer.
class StreamReaderProtocol final : public BufferedProtocol,
                                   public std::enable_shared_from_this<StreamReaderProtocol> {
 public:
  StreamReaderProtocol(StreamReader reader, EventLoop& loop, ClientConnected cb = nullptr);

  void connection_made(std::shared_ptr<BaseTransport> transport) override;
  void connection_lost(std::exception_ptr exc) override;
  // As Protocol's: feeds a copy of `data` to the reader.
  void data_received(std::string_view data);
  std::span<char> get_buffer(size_t sizehint) override;
  void buffer_updated(size_t nbytes) override;
  bool eof_received() override;
  void pause_writing() override { paused_ = true; }
  void resume_writing() override;

  Coro<void> drain_helper();
  Future<void>& closed() { return closed_; }
  // The transport the writer writes to (replaced by start_tls).
  const std::shared_ptr<Transport>& transport() const { return transport_; }
  void set_transport(std::shared_ptr<Transport> transport) { transport_ = std::move(transport); }
  bool server_side() const { return client_connected_ != nullptr; }
  // Bytes received and not yet read from the reader.
  size_t unread_bytes() const;

 private:
  std::optional<StreamReader> reader_;
  std::shared_ptr<Transport> transport_;
  EventLoop& loop_;
  ClientConnected client_connected_;
  std::optional<Task<void>> task_;  // the client_connected_cb task
  Future<void> closed_;
  std::vector<Future<void>> drain_waiters_;
  bool paused_ = false;
  bool connection_lost_ = false;
};

}  // namespace streams_internal

// Inline: every write goes through it.
inline Transport& StreamWriter::transport() const {
  if (!protocol_->transport()) throw std::logic_error("StreamWriter has no transport");
  return *protocol_->transport();
}

}  // namespace asyncio
