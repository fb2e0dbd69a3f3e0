#include "streams/streams.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <system_error>

namespace asyncio {

IncompleteReadError::IncompleteReadError(std::string partial, std::optional<size_t> expected)
    : std::runtime_error(std::to_string(partial.size()) + " bytes read on a total of " +
                         (expected ? std::to_string(*expected) : std::string("undefined")) +
                         " expected bytes"),
      partial_(std::make_shared<const std::string>(std::move(partial))),
      expected_(expected) {}

namespace streams_internal {

namespace {

// Bulk reads land in blocks of the socket transport's read size, recycled
// through a per-thread pool: a reader gives its block back as soon as it has
// no unread bytes, so idle connections hold none and busy ones reuse pages
// already mapped (no page fault and no allocation per message).
constexpr size_t kBlockSize = 256 * 1024;
constexpr size_t kPooledBlocks = 16;
// Fewer unread bytes than this after a read from the transport leave the
// block for a small string of their own: a connection that waits with a
// partial message does not pin a block.
constexpr size_t kSmallData = 8 * 1024;

thread_local bool block_pool_gone = false;

struct BlockPool {
  std::vector<std::string> blocks;
  ~BlockPool() { block_pool_gone = true; }
};

BlockPool& block_pool() {
  thread_local BlockPool pool;
  return pool;
}

std::string acquire_block() {
  if (!block_pool_gone) {
    BlockPool& pool = block_pool();
    if (!pool.blocks.empty()) {
      std::string block = std::move(pool.blocks.back());
      pool.blocks.pop_back();
      return block;
    }
  }
  std::string block;
  block.resize(kBlockSize);
  return block;
}

void release_block(std::string&& block) {
  if (block_pool_gone) return;
  BlockPool& pool = block_pool();
  if (pool.blocks.size() < kPooledBlocks) pool.blocks.push_back(std::move(block));
}

}  // namespace

// The state of a StreamReader (asyncio's StreamReader attributes).
struct ReaderState {
  ReaderState(size_t l, EventLoop& lp) : limit(l), loop(lp) {}
  ~ReaderState() {
    if (holds_block()) release_block(std::move(storage));
  }

  size_t size() const { return end - begin; }
  std::string_view view() const { return std::string_view(storage.data() + begin, size()); }
  // Removes and returns the first n buffered bytes: the storage itself when
  // it is all of it and not a pooled block, a copy otherwise.
  std::string take(size_t n) {
    if (n == size() && n > 0 && !holds_block()) {
      storage.resize(end);
      if (begin > 0) storage.erase(0, begin);
      begin = end = 0;
      return std::exchange(storage, std::string());
    }
    std::string out(storage.data() + begin, n);
    consume(n);
    return out;
  }
  // Unread data is moved to the front only when more arrives (see
  // ensure_space), so a partial read does not shift the rest.
  void consume(size_t n) {
    begin += n;
    if (begin == end) clear();
  }
  void append(std::string_view data) {
    ensure_space(data.size());
    std::memcpy(storage.data() + end, data.data(), data.size());
    end += data.size();
  }
  // Room for the transport to receive into (BufferedProtocol::get_buffer).
  // With unread bytes in a block, the room left in it will do (down to
  // kSmallData): asking for a whole block more would grow the buffer past it.
  std::span<char> get_buffer(size_t sizehint) {
    const size_t room_in_block = size() < kBlockSize ? kBlockSize - size() : 0;
    ensure_space(std::clamp<size_t>(sizehint, 1, std::max(room_in_block, kSmallData)));
    return std::span<char>(storage.data() + end, storage.size() - end);
  }
  // `n` bytes were received at the start of get_buffer()'s span.
  void buffer_updated(size_t n) {
    end += n;
    if (holds_block() && size() < kSmallData) {
      std::string small(view());
      release_block(std::move(storage));
      storage = std::move(small);
      begin = 0;
      end = storage.size();
    }
  }
  void clear() {
    begin = end = 0;
    if (holds_block()) {
      release_block(std::move(storage));
      storage = std::string();
    } else if (storage.size() > kSmallData) {
      storage = std::string();  // one large message does not pin its memory
    }
  }
  void wake_waiter() {
    if (waiter && !waiter->done()) waiter->set_result();
  }
  void maybe_resume_transport() {
    if (paused && size() <= limit) {
      paused = false;
      if (auto t = transport.lock()) t->resume_reading();
    }
  }
  // After feed_data or buffer_updated: wakes the reader, pauses the
  // transport past twice the limit.
  void data_added();
  Coro<void> wait_for_data(const char* func_name);

  size_t limit;
  EventLoop& loop;
  // Unread data is storage[begin, end); the rest of storage is room to
  // receive into. storage is a pooled block when its size is kBlockSize.
  std::string storage;
  size_t begin = 0;
  size_t end = 0;
  bool eof = false;
  bool paused = false;
  std::optional<Future<void>> waiter;
  std::exception_ptr exception;
  std::weak_ptr<Transport> transport;

 private:
  bool holds_block() const { return storage.size() == kBlockSize; }
  // Makes room for `n` more bytes after `end`.
  void ensure_space(size_t n) {
    if (storage.size() - end >= n) return;
    const size_t unread = size();
    const size_t needed = unread + n;
    if (needed <= storage.size()) {  // moving the unread bytes to the front will do
      std::memmove(storage.data(), storage.data() + begin, unread);
    } else {
      std::string larger;
      if (needed > kSmallData && needed <= kBlockSize) {
        larger = acquire_block();
      } else {  // small data in a string of its own; past a block, doubling
        larger.resize(std::max(needed, 2 * storage.size()));
      }
      std::memcpy(larger.data(), storage.data() + begin, unread);
      if (holds_block()) release_block(std::move(storage));
      storage = std::move(larger);
    }
    begin = 0;
    end = unread;
  }
};

namespace {
struct ClearWaiter {
  ReaderState& s;
  ~ClearWaiter() { s.waiter.reset(); }
};
}  // namespace

Coro<void> ReaderState::wait_for_data(const char* func_name) {
  if (waiter) {
    throw std::runtime_error(std::string(func_name) +
                             "() called while another coroutine is already waiting for "
                             "incoming data");
  }
  if (paused) {
    paused = false;
    if (auto t = transport.lock()) t->resume_reading();
  }
  waiter = create_future<void>(loop);
  ClearWaiter clear{*this};
  co_await *waiter;
}

}  // namespace streams_internal

using streams_internal::ReaderState;

// ---------------------------------------------------------------------------
// StreamReader

StreamReader::StreamReader() : StreamReader(kDefaultStreamLimit) {}

StreamReader::StreamReader(size_t limit, EventLoop* loop)
    : state_(std::make_shared<ReaderState>(limit, loop != nullptr ? *loop : get_event_loop())) {
  if (limit == 0) throw std::invalid_argument("Limit cannot be <= 0");
}

bool StreamReader::at_eof() const { return state_->eof && state_->size() == 0; }
std::exception_ptr StreamReader::exception() const { return state_->exception; }
size_t StreamReader::limit() const { return state_->limit; }

void StreamReader::set_exception(std::exception_ptr exc) {
  state_->exception = exc;
  if (state_->waiter && !state_->waiter->done()) state_->waiter->set_exception(exc);
}

void StreamReader::set_transport(std::shared_ptr<Transport> transport) {
  state_->transport = transport;
}

namespace streams_internal {

void ReaderState::data_added() {
  wake_waiter();
  if (!paused && size() > 2 * limit) {
    if (auto t = transport.lock()) {
      t->pause_reading();
      paused = true;
    }
  }
}

}  // namespace streams_internal

void StreamReader::feed_data(std::string_view data) {
  ReaderState& s = *state_;
  if (data.empty()) return;
  s.append(data);
  s.data_added();
}

void StreamReader::feed_eof() {
  state_->eof = true;
  state_->wake_waiter();
}

Coro<std::string> StreamReader::read(ssize_t n) {
  std::shared_ptr<ReaderState> s = state_;
  if (s->exception) std::rethrow_exception(s->exception);
  if (n == 0) co_return std::string();
  if (n < 0) {
    std::string all;
    while (true) {
      std::string block = co_await read(static_cast<ssize_t>(s->limit));
      if (block.empty()) break;
      all += block;
    }
    co_return all;
  }
  if (s->size() == 0 && !s->eof) co_await s->wait_for_data("read");
  std::string data = s->take(std::min(static_cast<size_t>(n), s->size()));
  s->maybe_resume_transport();
  co_return data;
}

Coro<std::string> StreamReader::readexactly(size_t n) {
  std::shared_ptr<ReaderState> s = state_;
  if (s->exception) std::rethrow_exception(s->exception);
  if (n == 0) co_return std::string();
  while (s->size() < n) {
    if (s->eof) {
      std::string partial = s->take(s->size());
      throw IncompleteReadError(std::move(partial), n);
    }
    co_await s->wait_for_data("readexactly");
  }
  std::string data = s->take(n);
  s->maybe_resume_transport();
  co_return data;
}

namespace streams_internal {
namespace {

// Where a separator was found: [start, end) in the unread data.
struct Match {
  size_t start;
  size_t end;
};

// asyncio's readuntil loop, for one separator or several. `find(data,
// offset)` gives the match ending first at or after `offset`. Bytes before
// `offset` start no separator, so each wait rescans only the tail where the
// longest one could still begin. `invalid`: why the separators are not
// valid, raised on await as asyncio does; empty if they are.
template <class Find>
Coro<std::string> read_until_match(std::shared_ptr<ReaderState> s, std::string_view invalid,
                                   size_t min_seplen, size_t max_seplen, Find find) {
  if (!invalid.empty()) throw std::invalid_argument(std::string(invalid));
  if (s->exception) std::rethrow_exception(s->exception);
  size_t offset = 0;
  std::optional<Match> match;
  while (true) {
    const size_t buflen = s->size();
    if (buflen - offset >= min_seplen) {
      match = find(s->view(), offset);
      if (match) break;
      offset = buflen + 1 > max_seplen ? buflen + 1 - max_seplen : 0;
      if (offset > s->limit) {
        throw LimitOverrunError("Separator is not found, and chunk exceed the limit", offset);
      }
    }
    if (s->eof) {
      std::string chunk = s->take(s->size());
      throw IncompleteReadError(std::move(chunk), std::nullopt);
    }
    co_await s->wait_for_data("readuntil");
  }
  if (match->start > s->limit) {
    throw LimitOverrunError("Separator is found, but chunk is longer than limit", match->start);
  }
  std::string chunk = s->take(match->end);
  s->maybe_resume_transport();
  co_return chunk;
}

constexpr std::string_view kEmptySeparator = "Separator should be at least one-byte string";

}  // namespace
}  // namespace streams_internal

Coro<std::string> StreamReader::readuntil(std::string_view separator) {
  const size_t seplen = separator.size();
  // The separator is copied now: the caller's view may not outlive a
  // suspension.
  return streams_internal::read_until_match(
      state_, seplen == 0 ? streams_internal::kEmptySeparator : std::string_view(), seplen, seplen,
      [sep = std::string(separator)](std::string_view data,
                                     size_t offset) -> std::optional<streams_internal::Match> {
        const size_t at = data.find(sep, offset);
        if (at == std::string_view::npos) return std::nullopt;
        return streams_internal::Match{at, at + sep.size()};
      });
}

Coro<std::string> StreamReader::readuntil_any(std::vector<std::string> separators) {
  // Shortest first, so that of two matches ending at the same byte the
  // shorter separator wins (it is the one the limit applies to). Equal
  // lengths need no stable order: two of them ending at one byte are the
  // same string. (Not std::stable_sort: with libstdc++ 12 it instantiates
  // the deprecated get_temporary_buffer, an error under Clang's -Werror.)
  std::sort(separators.begin(), separators.end(),
            [](const std::string& a, const std::string& b) { return a.size() < b.size(); });
  const size_t min_seplen = separators.empty() ? 0 : separators.front().size();
  const size_t max_seplen = separators.empty() ? 0 : separators.back().size();
  std::string_view invalid;
  if (separators.empty()) {
    invalid = "Separator should contain at least one element";
  } else if (min_seplen == 0) {
    invalid = streams_internal::kEmptySeparator;
  }
  return streams_internal::read_until_match(
      state_, invalid, min_seplen, max_seplen,
      [seps = std::move(separators)](std::string_view data,
                                     size_t offset) -> std::optional<streams_internal::Match> {
        std::optional<streams_internal::Match> first;
        for (const std::string& sep : seps) {
          const size_t at = data.find(sep, offset);
          if (at != std::string_view::npos && (!first || at + sep.size() < first->end)) {
            first = streams_internal::Match{at, at + sep.size()};
          }
        }
        return first;
      });
}

Coro<std::optional<std::string>> StreamReader::next_line() {
  std::string line = co_await readline();
  if (line.empty()) co_return std::nullopt;
  co_return line;
}

AsyncGenerator<std::string> StreamReader::lines_of(StreamReader reader) {
  while (std::optional<std::string> line = co_await reader.next_line()) co_yield std::move(*line);
}

Coro<std::string> StreamReader::readline() {
  std::shared_ptr<ReaderState> s = state_;
  std::optional<std::string> partial;
  std::optional<LimitOverrunError> overrun;
  try {
    co_return co_await readuntil("\n");
  } catch (const IncompleteReadError& e) {
    partial = e.partial();
  } catch (const LimitOverrunError& e) {
    overrun = e;
  }
  if (partial) co_return std::move(*partial);
  // Drop the overlong line (through its '\n' if it is there), as asyncio.
  if (s->view().substr(overrun->consumed()).starts_with('\n')) {
    s->consume(overrun->consumed() + 1);
  } else {
    s->clear();
  }
  s->maybe_resume_transport();
  throw *overrun;
}

// ---------------------------------------------------------------------------
// StreamReaderProtocol

namespace streams_internal {

StreamReaderProtocol::StreamReaderProtocol(StreamReader reader, EventLoop& loop, ClientConnected cb)
    : reader_(std::move(reader)),
      loop_(loop),
      client_connected_(std::move(cb)),
      closed_(create_future<void>(loop)) {}

void StreamReaderProtocol::connection_made(std::shared_ptr<BaseTransport> transport) {
  auto stream = std::static_pointer_cast<Transport>(transport);
  transport_ = stream;
  if (reader_) reader_->set_transport(stream);
  if (!client_connected_) return;
  StreamWriter writer(stream, shared_from_this(), reader_);
  std::optional<Coro<void>> handler;
  try {
    handler.emplace(client_connected_(*reader_, writer));
  } catch (...) {
    // The callable threw instead of returning its coroutine: as a handler
    // that fails.
    loop_.call_exception_handler(
        {"Unhandled exception in client_connected_cb", std::current_exception(), "", ""});
    stream->close();
    return;
  }
  Task<void> task = create_task(loop_, std::move(*handler));
  // A handler that fails (or is cancelled) closes its connection; a failure
  // is reported, as asyncio does.
  task.add_done_callback([stream, &loop = loop_](Future<void>& t) {
    if (!t.cancelled()) {
      if (std::exception_ptr exc = t.exception()) {
        loop.call_exception_handler({"Unhandled exception in client_connected_cb", exc, "", ""});
      }
    }
    stream->close();
  });
  task_ = task;
}

void StreamReaderProtocol::connection_lost(std::exception_ptr exc) {
  if (reader_) {
    if (exc) {
      reader_->set_exception(exc);
    } else {
      reader_->feed_eof();
    }
  }
  if (!closed_.done()) {
    if (exc) {
      closed_.set_exception(exc);
      (void)closed_.exception();  // nobody has to await wait_closed()
    } else {
      closed_.set_result();
    }
  }
  connection_lost_ = true;
  // Wake drain() waiters: with the error, or to find the connection lost.
  for (Future<void>& w : drain_waiters_) {
    if (w.done()) continue;
    if (exc) {
      w.set_exception(exc);
    } else {
      w.set_result();
    }
  }
  drain_waiters_.clear();
  task_.reset();
}

void StreamReaderProtocol::data_received(std::string_view data) {
  if (reader_) reader_->feed_data(data);
}

std::span<char> StreamReaderProtocol::get_buffer(size_t sizehint) {
  if (!reader_) {  // nobody reads: the bytes are dropped, as asyncio does
    thread_local char discard[16 * 1024];
    return std::span<char>(discard, sizeof(discard));
  }
  return reader_->state_->get_buffer(sizehint);
}

void StreamReaderProtocol::buffer_updated(size_t nbytes) {
  if (!reader_ || nbytes == 0) return;
  ReaderState& s = *reader_->state_;
  s.buffer_updated(nbytes);
  s.data_added();
}

bool StreamReaderProtocol::eof_received() {
  if (reader_) reader_->feed_eof();
  return true;  // keep the write side open: the handler may still answer
}

void StreamReaderProtocol::resume_writing() {
  paused_ = false;
  for (Future<void>& w : drain_waiters_) {
    if (!w.done()) w.set_result();
  }
  drain_waiters_.clear();
}

size_t StreamReaderProtocol::unread_bytes() const { return reader_ ? reader_->state_->size() : 0; }

Coro<void> StreamReaderProtocol::drain_helper() {
  if (connection_lost_)
    throw std::system_error(ECONNRESET, std::generic_category(), "Connection lost");
  if (!paused_) co_return;
  Future<void> waiter = create_future<void>(loop_);
  drain_waiters_.push_back(waiter);
  co_await waiter;
}

}  // namespace streams_internal

// ---------------------------------------------------------------------------
// StreamWriter

StreamWriter::StreamWriter(std::shared_ptr<Transport> transport,
                           std::shared_ptr<streams_internal::StreamReaderProtocol> protocol,
                           std::optional<StreamReader> reader)
    : protocol_(std::move(protocol)), reader_(std::move(reader)) {
  if (!protocol_) throw std::invalid_argument("StreamWriter needs a StreamReaderProtocol");
  if (transport) protocol_->set_transport(std::move(transport));
}

Coro<void> StreamWriter::start_tls(std::shared_ptr<TlsLayer> context, TlsOptions options) {
  std::shared_ptr<streams_internal::StreamReaderProtocol> protocol = protocol_;
  std::optional<StreamReader> reader = reader_;
  co_await drain();
  // Checked after the last suspension: from here on the socket feeds TLS.
  if (size_t unread = protocol->unread_bytes(); unread > 0) {
    throw std::runtime_error("start_tls: " + std::to_string(unread) +
                             " bytes of plaintext received before the upgrade are unread; "
                             "refusing to pass them off as TLS data");
  }
  options.server_side = protocol->server_side();
  EventLoop& loop = get_running_loop();
  std::shared_ptr<Transport> tls_transport = co_await asyncio::start_tls(
      loop, protocol->transport(), protocol, std::move(context), std::move(options));
  protocol->set_transport(tls_transport);
  if (reader) reader->set_transport(tls_transport);
}

Coro<void> StreamWriter::drain() {
  if (reader_) {
    if (std::exception_ptr exc = reader_->exception()) std::rethrow_exception(exc);
  }
  if (transport().is_closing()) {
    // Let connection_lost() run, so that a write-drain loop on a closed
    // connection sees the error instead of spinning.
    co_await sleep(std::chrono::seconds(0));
  }
  co_await protocol_->drain_helper();
}

Coro<void> StreamWriter::wait_closed() {
  std::shared_ptr<streams_internal::StreamReaderProtocol> protocol = protocol_;
  Future<void> closed = protocol->closed();
  co_await closed;
}

// ---------------------------------------------------------------------------
// Opening connections and servers

namespace {

using streams_internal::StreamReaderProtocol;

Coro<std::pair<StreamReader, StreamWriter>> wrap(
    StreamReader reader, std::shared_ptr<StreamReaderProtocol> protocol,
    Coro<std::pair<std::shared_ptr<Transport>, std::shared_ptr<StreamReaderProtocol>>> connect) {
  auto [transport, p] = co_await std::move(connect);
  StreamWriter writer(transport, protocol, reader);
  co_return std::make_pair(reader, writer);
}

ProtocolFactory stream_factory(EventLoop& loop, ClientConnected cb, size_t limit) {
  return [&loop, cb = std::move(cb), limit]() -> std::shared_ptr<BaseProtocol> {
    return std::make_shared<StreamReaderProtocol>(StreamReader(limit, &loop), loop, cb);
  };
}

ServerOptions server_options(const StreamOptions& options) {
  ServerOptions s;
  s.family = options.family;
  s.backlog = options.backlog;
  s.reuse_address = options.reuse_address;
  s.reuse_port = options.reuse_port;
  s.start_serving = options.start_serving;
  s.sock = options.sock;
  s.keep_alive = options.keep_alive;
  s.cleanup_socket = options.cleanup_socket;
  static_cast<TlsFields&>(s) = options;
  s.server_hostname.clear();  // for open_connection
  return s;
}

}  // namespace

Coro<StreamReader> open_read_pipe(int fd, size_t limit, std::source_location where) {
  EventLoop& loop = get_running_loop();
  StreamReader reader(limit, &loop);
  auto protocol = std::make_shared<StreamReaderProtocol>(reader, loop);
  auto factory = [protocol] { return protocol; };  // not inside co_await: see open_connection
  auto connecting = connect_read_pipe(loop, factory, fd, where);
  co_await std::move(connecting);
  co_return reader;
}

Coro<StreamWriter> open_write_pipe(int fd, std::source_location where) {
  EventLoop& loop = get_running_loop();
  // The protocol gives the writer its flow control and wait_closed(); its
  // reader is never fed (a write pipe receives nothing), and the writer has
  // none.
  auto protocol =
      std::make_shared<StreamReaderProtocol>(StreamReader(kDefaultStreamLimit, &loop), loop);
  auto factory = [protocol] { return protocol; };
  auto connecting = connect_write_pipe(loop, factory, fd, where);
  auto [transport, p] = co_await std::move(connecting);
  co_return StreamWriter(transport, protocol, std::nullopt);
}

Coro<std::pair<StreamReader, StreamWriter>> open_connection(std::string host, uint16_t port,
                                                            StreamOptions options,
                                                            std::source_location where) {
  EventLoop& loop = get_running_loop();
  StreamReader reader(options.limit, &loop);
  auto protocol = std::make_shared<StreamReaderProtocol>(reader, loop);
  ConnectOptions connect;
  connect.family = options.family;
  connect.local_addr = options.local_addr;
  connect.happy_eyeballs_delay = options.happy_eyeballs_delay;
  connect.interleave = options.interleave;
  connect.all_errors = options.all_errors;
  connect.sock = options.sock;
  static_cast<TlsFields&>(connect) = options;
  // The factory and the connecting Coro are built in statements of their own:
  // GCC 12 destroys a capturing lambda (or any aggregate temporary) written
  // inside a co_await expression twice (GCC PR 99576).
  auto factory = [protocol] { return protocol; };
  auto connecting =
      create_connection(loop, factory, std::move(host), port, std::move(connect), where);
  co_return co_await wrap(reader, protocol, std::move(connecting));
}

Coro<std::pair<StreamReader, StreamWriter>> open_unix_connection(std::string path,
                                                                 StreamOptions options,
                                                                 std::source_location where) {
  EventLoop& loop = get_running_loop();
  StreamReader reader(options.limit, &loop);
  auto protocol = std::make_shared<StreamReaderProtocol>(reader, loop);
  auto factory = [protocol] { return protocol; };  // not inside co_await: see above
  ConnectOptions connect;
  static_cast<TlsFields&>(connect) = options;
  auto connecting =
      create_unix_connection(loop, factory, std::move(path), std::move(connect), where);
  co_return co_await wrap(reader, protocol, std::move(connecting));
}

Coro<Server> start_server(ClientConnected cb, std::string host, uint16_t port,
                          StreamOptions options, std::source_location where) {
  std::vector<std::string> hosts{std::move(host)};
  co_return co_await start_server(std::move(cb), std::move(hosts), port, std::move(options), where);
}

Coro<Server> start_server(ClientConnected cb, std::vector<std::string> hosts, uint16_t port,
                          StreamOptions options, std::source_location where) {
  EventLoop& loop = get_running_loop();
  ProtocolFactory factory = stream_factory(loop, std::move(cb), options.limit);
  co_return co_await create_server(loop, std::move(factory), std::move(hosts), port,
                                   server_options(options), where);
}

Coro<Server> start_unix_server(ClientConnected cb, std::string path, StreamOptions options,
                               std::source_location where) {
  EventLoop& loop = get_running_loop();
  ProtocolFactory factory = stream_factory(loop, std::move(cb), options.limit);
  co_return co_await create_unix_server(loop, std::move(factory), std::move(path),
                                        server_options(options), where);
}

}  // namespace asyncio
