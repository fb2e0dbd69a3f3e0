// The stream transport over a connected, non-blocking socket (TCP or Unix),
// and the helpers the rest of //transports shares.
#pragma once

#include <sys/uio.h>

#include <any>
#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <source_location>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "futures/futures.h"
#include "loop/loop.h"
#include "loop/posix.h"
#include "transports/transports.h"

namespace asyncio::transports_internal {

// "<kind fd=N peername=...>" (or sockname), for the unclosed report.
std::string describe_socket(const char* kind, int fd);

// TCP_NODELAY on, as asyncio does, when fd is an IPv4 or IPv6 socket.
void set_nodelay_if_tcp(int fd);

// Calls protocol->connection_lost(exc); an exception it throws goes to the
// loop's exception handler.
void deliver_connection_lost(EventLoop& loop, BaseProtocol* protocol, std::exception_ptr exc);

// A transport's fatal error: reported to the loop's exception handler,
// except an errno error (a reset, a broken pipe), an ordinary event that
// asyncio reports only in debug mode.
void report_fatal_error(EventLoop& loop, const std::exception_ptr& exc, const char* message);

// Write flow control shared by the socket, datagram and pipe transports
// (asyncio's _FlowControlMixin): pause_writing() once the write buffer reaches
// the high watermark, resume_writing() once it has drained to the low one.
// A protocol's exception goes to the loop's exception handler.
class WriteFlowControl {
 public:
  // Python's set_write_buffer_limits(high, low); throws std::invalid_argument.
  void set_limits(std::optional<size_t> high, std::optional<size_t> low) {
    std::tie(low_, high_) = posix::write_buffer_limits(high, low);
  }
  std::pair<size_t, size_t> limits() const { return {low_, high_}; }
  size_t high() const { return high_; }

  void maybe_pause(EventLoop& loop, BaseProtocol* protocol, size_t buffered);
  void maybe_resume(EventLoop& loop, BaseProtocol* protocol, size_t buffered);

 private:
  size_t high_ = posix::kDefaultWriteBufferHigh;
  size_t low_ = posix::kDefaultWriteBufferHigh / 4;
  bool paused_ = false;  // pause_writing() was called
};

// For a transport's destructor: removes its watches on `fd` (a closed loop
// refuses, which is ignored) and closes it. Nothing when fd is -1 (already
// closed by connection_lost).
void close_watched(EventLoop& loop, int fd, bool reading, bool writing) noexcept;

// Suspends until fd is readable (writable); removes the watch however the
// wait ends (cancellation included).
Coro<void> wait_readable(EventLoop& loop, int fd);
Coro<void> wait_writable(EventLoop& loop, int fd);

// Resolves host:port through the loop's NameResolver, or the system
// resolver off the loop thread; IP literals answer at once.
Coro<std::vector<AddrInfo>> resolve(EventLoop& loop, std::string host, uint16_t port,
                                    AddrInfoHints hints);

struct ServerState;

// A transport that is open. When its loop is destroyed with it still open,
// on_loop_closed() tears it down: it closes the socket and delivers
// connection_lost(ECONNABORTED), which breaks the reference cycles a
// garbage collector would break in Python.
class OpenTransport {
 public:
  virtual ~OpenTransport() = default;
  virtual void on_loop_closed() = 0;
};
void register_open(EventLoop& loop, OpenTransport* transport);
void unregister_open(EventLoop& loop, OpenTransport* transport);

class SocketTransport final : public Transport, public OpenTransport {
 public:
  // Takes ownership of `fd` (connected, non-blocking). `opened_at`: the
  // site reported if the loop goes with the transport open (see
  // report_unclosed).
  SocketTransport(EventLoop& loop, int fd, std::shared_ptr<BaseProtocol> protocol,
                  std::shared_ptr<ServerState> server = nullptr,
                  std::source_location opened_at = {});
  ~SocketTransport() override;

  // Schedules connection_made, then reading, then `waiter`'s result (as
  // asyncio's _SelectorSocketTransport.__init__).
  void start(std::optional<Future<void>> waiter);

  // BaseTransport
  void close() override;
  bool is_closing() const override { return closing_; }
  std::any get_extra_info(std::string_view name) const override;
  void set_protocol(std::shared_ptr<BaseProtocol> protocol) override;
  std::shared_ptr<BaseProtocol> get_protocol() const override { return protocol_; }

  // Transport
  void write(std::string_view data) override;
  void writelines(const std::vector<std::string>& data) override;
  void write_eof() override;
  bool can_write_eof() const override { return true; }
  void abort() override { force_close(nullptr); }
  void pause_reading() override;
  void resume_reading() override;
  bool is_reading() const override { return !paused_ && !closing_; }
  void set_write_buffer_limits(std::optional<size_t> high = {},
                               std::optional<size_t> low = {}) override;
  std::pair<size_t, size_t> get_write_buffer_limits() const override {
    return flow_control_.limits();
  }
  size_t get_write_buffer_size() const override { return buffer_.size() - buffer_offset_; }

  void on_loop_closed() override;

  // For sendfile: waiting until the write buffer is empty; the socket, which
  // is asked for again after every wait because close() and abort() take it
  // away (its number may belong to another connection by then): both throw
  // std::system_error(ECONNABORTED) once the transport is closing.
  Coro<void> wait_until_flushed();
  int sendfile_socket() const;
  Coro<void> wait_writable_for_sendfile();
  // While sendfile owns the socket, write() and writelines() throw.
  void set_sendfile_in_progress(bool on) { sendfile_in_progress_ = on; }

 private:
  void on_readable();
  void on_writable();
  void on_eof();
  void add_reader();
  void fatal_error(std::exception_ptr exc, const char* message);
  void force_close(std::exception_ptr exc);
  void call_connection_lost(std::exception_ptr exc);
  void maybe_pause_protocol();
  void maybe_resume_protocol();
  // Sends the pending buffer followed by `data` with one sendmsg; buffers
  // what the socket did not take and waits for writability then.
  void send_now(const iovec* data, size_t count);
  void buffer_rest(const char* data, size_t size);
  void defer(const char* data, size_t size);
  static void run_flush(Runnable* node, bool discard);
  void flush_deferred();
  void flushed();
  // Ends sendfile's wait for writability, with an error when `closed`.
  void stop_sendfile_wait(bool closed);

  EventLoop& loop_;
  int fd_;
  std::shared_ptr<BaseProtocol> protocol_;
  Protocol* stream_protocol_ = nullptr;  // one of these two is set
  BufferedProtocol* buffered_protocol_ = nullptr;
  std::shared_ptr<ServerState> server_;
  std::shared_ptr<SocketTransport> self_;  // alive until connection_lost is delivered
  std::string buffer_;                     // unsent bytes start at buffer_offset_
  size_t buffer_offset_ = 0;
  WriteFlowControl flow_control_;
  std::vector<Future<void>> flush_waiters_;
  // Small writes wait in buffer_ until the end of the loop iteration, then
  // leave with one syscall (uvloop's queued writes).
  struct FlushNode : Runnable {
    FlushNode() : Runnable(&SocketTransport::run_flush) {}
    SocketTransport* transport = nullptr;
  } flush_node_;
  bool flush_scheduled_ = false;
  std::optional<Future<void>> sendfile_waiter_;  // its writer watch is ours
  std::source_location opened_at_;
  bool closing_ = false;
  bool conn_lost_ = false;
  bool paused_ = false;   // pause_reading()
  bool reading_ = false;  // a reader is registered
  bool eof_ = false;      // write_eof() called
  bool writer_registered_ = false;
  bool sendfile_in_progress_ = false;
};

}  // namespace asyncio::transports_internal
