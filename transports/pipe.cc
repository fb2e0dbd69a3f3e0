// Pipes, FIFOs and character devices (ttys): connect_read_pipe and
// connect_write_pipe, as asyncio's _UnixReadPipeTransport and
// _UnixWritePipeTransport.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <source_location>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <tuple>
#include <utility>

#include "loop/posix.h"
#include "transports/internal/socket_transport.h"
#include "transports/transports.h"

namespace asyncio::transports_internal {

using posix::os_error;
using posix::throw_errno;
using posix::would_block;

namespace {

// asyncio's max_size: one read per readiness event reads at most this much.
constexpr size_t kPipeReadSize = 256 * 1024;

// What fstat says `fd` is; std::invalid_argument unless a pipe (FIFO), a
// socket or a character device: a regular file is always "ready", so the
// loop would spin on it.
mode_t checked_pipe_mode(int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0) throw_errno("fstat");
  if (!S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode) && !S_ISCHR(st.st_mode)) {
    throw std::invalid_argument("Pipe transport is only for pipes, sockets and character devices");
  }
  return st.st_mode;
}

// What both pipe transports share: the descriptor, the protocol, the
// connection_lost that closes the descriptor, the loop's teardown.
class PipeTransportBase : public Transport, public OpenTransport {
 public:
  explicit PipeTransportBase(EventLoop& loop) : loop_(loop) {}
  ~PipeTransportBase() override { close_watched(loop_, fd_, reading_, writing_); }

  bool is_closing() const override { return closing_; }
  std::any get_extra_info(std::string_view name) const override {
    if (name == "pipe") return fd_;
    return {};
  }
  std::shared_ptr<BaseProtocol> get_protocol() const override { return protocol_; }

  // The site reported if the loop goes with the pipe open.
  void set_opened_at(std::source_location where) { opened_at_ = where; }

  void on_loop_closed() override {
    if (!closing_) {
      report_unclosed(&loop_,
                      "transport <" + std::string(kind()) + " fd=" + std::to_string(fd_) + ">",
                      opened_at_);
    }
    reading_ = writing_ = false;
    closing_ = conn_lost_ = true;
    drop_buffer();
    call_connection_lost(os_error(ECONNABORTED, "the event loop was closed with the pipe open"));
  }

 protected:
  // Schedules connection_made, `then` (start watching), and the waiter's
  // result, in that order.
  template <class Then>
  void start(Future<void> waiter, Then then) {
    self_ = std::static_pointer_cast<PipeTransportBase>(shared_from_this());
    register_open(loop_, this);
    loop_.call_soon([this] {
      if (protocol_) protocol_->connection_made(self_);
    });
    loop_.call_soon([this, then = std::move(then)]() mutable {
      if (!closing_) then();
    });
    loop_.call_soon([waiter]() mutable {
      if (!waiter.done()) waiter.set_result();
    });
  }

  template <class F>
  void add_reader(F on_ready) {
    if (reading_ || fd_ < 0) return;
    loop_.add_reader(fd_, std::move(on_ready));
    reading_ = true;
  }
  void remove_reader() {
    if (!reading_) return;
    loop_.remove_reader(fd_);
    reading_ = false;
  }
  void remove_writer() {
    if (!writing_) return;
    loop_.remove_writer(fd_);
    writing_ = false;
  }

  // Stops everything and schedules connection_lost(exc), once.
  void close_with(std::exception_ptr exc) {
    closing_ = true;
    remove_reader();
    remove_writer();
    drop_buffer();
    if (!conn_lost_) schedule_connection_lost(exc);
  }

  void schedule_connection_lost(std::exception_ptr exc) {
    conn_lost_ = true;
    loop_.call_soon([this, exc] { call_connection_lost(exc); });
  }

  void fatal_error(std::exception_ptr exc, const char* message) {
    report_fatal_error(loop_, exc, message);
    close_with(exc);
  }

  virtual void drop_buffer() {}
  virtual const char* kind() const = 0;

  EventLoop& loop_;
  int fd_ = -1;  // set by the subclass once nothing can refuse it any more
  std::shared_ptr<BaseProtocol> protocol_;
  bool closing_ = false;
  bool conn_lost_ = false;  // connection_lost is scheduled or delivered
  bool reading_ = false;    // a reader is registered
  bool writing_ = false;    // a writer is registered

 private:
  void call_connection_lost(std::exception_ptr exc) {
    std::shared_ptr<PipeTransportBase> keep = std::move(self_);  // this may go with it
    unregister_open(loop_, this);
    deliver_connection_lost(loop_, protocol_.get(), exc);
    ::close(fd_);
    fd_ = -1;
    protocol_.reset();
    protocol_changed();
  }
  virtual void protocol_changed() {}

  std::shared_ptr<PipeTransportBase> self_;  // alive until connection_lost is delivered
  std::source_location opened_at_;
};

// The reading end: a Transport whose write half refuses (Python's
// ReadTransport has no write methods at all).
class ReadPipeTransport final : public PipeTransportBase {
 public:
  ReadPipeTransport(EventLoop& loop, int fd, std::shared_ptr<BaseProtocol> protocol, mode_t)
      : PipeTransportBase(loop) {
    set_protocol(std::move(protocol));
    fd_ = fd;
  }

  void start(Future<void> waiter) {
    PipeTransportBase::start(std::move(waiter), [this] {
      if (!paused_) add_reader([this] { on_readable(); });
    });
  }

  void set_protocol(std::shared_ptr<BaseProtocol> protocol) override {
    stream_protocol_ = dynamic_cast<Protocol*>(protocol.get());
    buffered_protocol_ = dynamic_cast<BufferedProtocol*>(protocol.get());
    if (protocol && stream_protocol_ == nullptr && buffered_protocol_ == nullptr) {
      throw std::invalid_argument("a read pipe transport needs a Protocol or a BufferedProtocol");
    }
    protocol_ = std::move(protocol);
  }

  void close() override {
    if (!closing_) close_with(nullptr);
  }
  void abort() override { close(); }

  void pause_reading() override {
    if (closing_ || paused_) return;
    paused_ = true;
    remove_reader();
  }
  void resume_reading() override {
    if (closing_ || !paused_) return;
    paused_ = false;
    add_reader([this] { on_readable(); });
  }
  bool is_reading() const override { return !paused_ && !closing_; }

  void write(std::string_view) override { refuse("write"); }
  void writelines(const std::vector<std::string>&) override { refuse("writelines"); }
  void write_eof() override { refuse("write_eof"); }
  bool can_write_eof() const override { return false; }
  void set_write_buffer_limits(std::optional<size_t>, std::optional<size_t>) override {
    refuse("set_write_buffer_limits");
  }
  std::pair<size_t, size_t> get_write_buffer_limits() const override { return {0, 0}; }
  size_t get_write_buffer_size() const override { return 0; }

 private:
  const char* kind() const override { return "ReadPipeTransport"; }

  [[noreturn]] static void refuse(const char* what) {
    throw std::logic_error(std::string(what) + ": a read pipe transport cannot be written");
  }

  void protocol_changed() override {
    stream_protocol_ = nullptr;
    buffered_protocol_ = nullptr;
  }

  void on_readable() {
    if (conn_lost_) return;
    ssize_t n;
    try {
      if (buffered_protocol_ != nullptr) {
        // Straight into the protocol's buffer (a StreamReader's, say).
        std::span<char> buf = buffered_protocol_->get_buffer(kPipeReadSize);
        if (buf.empty()) throw std::runtime_error("get_buffer() returned an empty buffer");
        n = ::read(fd_, buf.data(), buf.size());
        if (n > 0) buffered_protocol_->buffer_updated(static_cast<size_t>(n));
      } else {
        thread_local std::unique_ptr<char[]> buffer(new char[kPipeReadSize]);
        n = ::read(fd_, buffer.get(), kPipeReadSize);
        if (n > 0) {
          stream_protocol_->data_received(std::string_view(buffer.get(), static_cast<size_t>(n)));
        }
      }
    } catch (...) {
      fatal_error(std::current_exception(), "Fatal error: protocol.data_received() call failed.");
      return;
    }
    if (n < 0) {
      if (!would_block(errno)) {
        fatal_error(os_error(errno, "read"), "Fatal read error on pipe transport");
      }
      return;
    }
    if (n > 0) return;
    // EOF: eof_received, then connection_lost; a pipe cannot stay half open,
    // so what eof_received returns does not matter.
    closing_ = true;
    remove_reader();
    loop_.call_soon([this] {
      try {
        if (stream_protocol_ != nullptr) {
          stream_protocol_->eof_received();
        } else if (buffered_protocol_ != nullptr) {
          buffered_protocol_->eof_received();
        }
      } catch (...) {
        loop_.call_exception_handler(
            {"protocol.eof_received() failed", std::current_exception(), "", ""});
      }
    });
    schedule_connection_lost(nullptr);
  }

  Protocol* stream_protocol_ = nullptr;
  BufferedProtocol* buffered_protocol_ = nullptr;
  bool paused_ = false;
};

// The writing end: a Transport whose read half does nothing.
class WritePipeTransport final : public PipeTransportBase {
 public:
  WritePipeTransport(EventLoop& loop, int fd, std::shared_ptr<BaseProtocol> protocol, mode_t mode)
      : PipeTransportBase(loop), watch_for_reader_closing_(S_ISFIFO(mode) || S_ISSOCK(mode)) {
    set_protocol(std::move(protocol));
    fd_ = fd;
  }

  void start(Future<void> waiter) {
    PipeTransportBase::start(std::move(waiter), [this] {
      // The write end of a pipe or socket turns "readable" (EPOLLERR or
      // EPOLLHUP) when the reader closes: that is how asyncio notices.
      if (watch_for_reader_closing_) {
        add_reader([this] { on_reader_closed(); });
      }
    });
  }

  void set_protocol(std::shared_ptr<BaseProtocol> protocol) override {
    protocol_ = std::move(protocol);
  }

  // As asyncio: close() is write_eof(), a pipe having no half-close.
  void close() override { write_eof(); }
  void abort() override { close_with(nullptr); }

  void write(std::string_view data) override {
    loop_.check_thread();
    if (data.empty() || closing_ || conn_lost_) return;
    if (pending() == 0) {
      ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0) {
        if (!would_block(errno)) {
          fatal_error(os_error(errno, "write"), "Fatal write error on pipe transport");
          return;
        }
        n = 0;
      }
      data.remove_prefix(static_cast<size_t>(n));
      if (data.empty()) return;
      loop_.add_writer(fd_, [this] { on_writable(); });
      writing_ = true;
    }
    if (buffer_offset_ > 0 && buffer_offset_ * 2 >= buffer_.size()) {
      buffer_.erase(0, buffer_offset_);
      buffer_offset_ = 0;
    }
    buffer_.append(data);
    maybe_pause_protocol();
  }
  void writelines(const std::vector<std::string>& data) override {
    for (const std::string& piece : data) write(piece);
  }
  void write_eof() override {
    if (closing_) return;
    closing_ = true;
    if (pending() == 0) close_with(nullptr);
  }
  bool can_write_eof() const override { return true; }

  void set_write_buffer_limits(std::optional<size_t> high, std::optional<size_t> low) override {
    flow_control_.set_limits(high, low);
    maybe_pause_protocol();
  }
  std::pair<size_t, size_t> get_write_buffer_limits() const override {
    return flow_control_.limits();
  }
  size_t get_write_buffer_size() const override { return pending(); }

  void pause_reading() override {}
  void resume_reading() override {}
  bool is_reading() const override { return false; }

 private:
  size_t pending() const { return buffer_.size() - buffer_offset_; }
  void drop_buffer() override {
    buffer_.clear();
    buffer_offset_ = 0;
  }

  void on_writable() {
    if (conn_lost_) return;
    ssize_t n = ::write(fd_, buffer_.data() + buffer_offset_, pending());
    if (n < 0) {
      if (would_block(errno)) return;
      fatal_error(os_error(errno, "write"), "Fatal write error on pipe transport");
      return;
    }
    buffer_offset_ += static_cast<size_t>(n);
    if (pending() > 0) {
      maybe_resume_protocol();
      return;
    }
    drop_buffer();
    remove_writer();
    maybe_resume_protocol();
    if (closing_) close_with(nullptr);  // write_eof() was waiting for this
  }

  // The reader went away: with data still queued, nothing will ever take
  // it (BrokenPipeError); with none, an ordinary close.
  void on_reader_closed() {
    if (conn_lost_) return;
    close_with(pending() > 0 ? os_error(EPIPE, "the pipe was closed by its reader") : nullptr);
  }

  const char* kind() const override { return "WritePipeTransport"; }

  void maybe_pause_protocol() { flow_control_.maybe_pause(loop_, protocol_.get(), pending()); }
  void maybe_resume_protocol() { flow_control_.maybe_resume(loop_, protocol_.get(), pending()); }

  const bool watch_for_reader_closing_;
  std::string buffer_;  // unsent bytes start at buffer_offset_
  size_t buffer_offset_ = 0;
  WriteFlowControl flow_control_;
};

template <class T>
Coro<std::shared_ptr<Transport>> connect_pipe(EventLoop& loop, ProtocolFactory factory, int fd,
                                              std::source_location where) {
  // Until the transport holds `fd`, it stays the caller's (as Python leaves
  // the file object open when the transport refuses it).
  const mode_t mode = checked_pipe_mode(fd);
  std::shared_ptr<BaseProtocol> protocol = factory();
  posix::set_nonblocking(fd);
  auto transport = std::make_shared<T>(loop, fd, std::move(protocol), mode);
  transport->set_opened_at(where);
  Future<void> waiter = create_future<void>(loop);
  transport->start(waiter);
  try {
    co_await waiter;
  } catch (...) {
    transport->abort();
    throw;
  }
  co_return transport;
}

}  // namespace

Coro<std::shared_ptr<Transport>> connect_read_pipe(EventLoop& loop, ProtocolFactory factory, int fd,
                                                   std::source_location where) {
  return connect_pipe<ReadPipeTransport>(loop, std::move(factory), fd, where);
}

Coro<std::shared_ptr<Transport>> connect_write_pipe(EventLoop& loop, ProtocolFactory factory,
                                                    int fd, std::source_location where) {
  return connect_pipe<WritePipeTransport>(loop, std::move(factory), fd, where);
}

}  // namespace asyncio::transports_internal
