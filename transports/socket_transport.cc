#include "transports/internal/socket_transport.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <tuple>
#include <unordered_set>

#include "loop/posix.h"
#include "transports/internal/server_state.h"

namespace asyncio::transports_internal {

using posix::os_error;
using posix::throw_errno;
using posix::would_block;

namespace {

// asyncio's max_size: one recv per readiness event reads at most this much.
constexpr size_t kReadSize = 256 * 1024;

char* read_buffer() {
  thread_local std::unique_ptr<char[]> buffer(new char[kReadSize]);
  return buffer.get();
}

}  // namespace

void set_nodelay_if_tcp(int fd) {
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return;
  if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) return;
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void deliver_connection_lost(EventLoop& loop, BaseProtocol* protocol, std::exception_ptr exc) {
  if (protocol == nullptr) return;
  try {
    protocol->connection_lost(exc);
  } catch (...) {
    loop.call_exception_handler(
        {"protocol.connection_lost() failed", std::current_exception(), "", ""});
  }
}

void report_fatal_error(EventLoop& loop, const std::exception_ptr& exc, const char* message) {
  bool ordinary = false;
  try {
    std::rethrow_exception(exc);
  } catch (const std::system_error& e) {
    ordinary = e.code().category() == std::generic_category();
  } catch (...) {
  }
  if (!ordinary || loop.get_debug()) loop.call_exception_handler({message, exc, "", ""});
}

namespace {

void call_flow_control(EventLoop& loop, BaseProtocol& protocol, bool pause) {
  try {
    if (pause) {
      protocol.pause_writing();
    } else {
      protocol.resume_writing();
    }
  } catch (...) {
    loop.call_exception_handler(
        {pause ? "protocol.pause_writing() failed" : "protocol.resume_writing() failed",
         std::current_exception(), "", ""});
  }
}

}  // namespace

void WriteFlowControl::maybe_pause(EventLoop& loop, BaseProtocol* protocol, size_t buffered) {
  if (paused_ || buffered < high_ || buffered == 0 || protocol == nullptr) return;
  paused_ = true;
  call_flow_control(loop, *protocol, true);
}

void WriteFlowControl::maybe_resume(EventLoop& loop, BaseProtocol* protocol, size_t buffered) {
  if (!paused_ || buffered > low_ || protocol == nullptr) return;
  paused_ = false;
  call_flow_control(loop, *protocol, false);
}

void close_watched(EventLoop& loop, int fd, bool reading, bool writing) noexcept {
  if (fd < 0) return;
  try {
    if (reading) loop.remove_reader(fd);
    if (writing) loop.remove_writer(fd);
  } catch (...) {
  }
  ::close(fd);
}

namespace {

struct RemoveWatch {
  EventLoop& loop;
  int fd;
  bool writer;
  ~RemoveWatch() {
    try {
      if (writer) {
        loop.remove_writer(fd);
      } else {
        loop.remove_reader(fd);
      }
    } catch (...) {
      // The fd was closed behind our back: nothing left to remove.
    }
  }
};

Coro<void> wait_fd(EventLoop& loop, int fd, bool writer) {
  Future<void> ready = create_future<void>(loop);
  auto fire = [ready]() mutable {
    if (!ready.done()) ready.set_result();
  };
  if (writer) {
    loop.add_writer(fd, std::move(fire));
  } else {
    loop.add_reader(fd, std::move(fire));
  }
  RemoveWatch guard{loop, fd, writer};
  co_await ready;
}

}  // namespace

Coro<void> wait_readable(EventLoop& loop, int fd) { return wait_fd(loop, fd, false); }
Coro<void> wait_writable(EventLoop& loop, int fd) { return wait_fd(loop, fd, true); }

}  // namespace asyncio::transports_internal

namespace asyncio {

void report_unclosed(EventLoop* loop, std::string_view description,
                     const std::source_location& opened_at) {
  if (opened_at.line() == 0) return;  // its owner reports
  std::string message = "unclosed ";
  message += description;
  message += " opened at ";
  message += opened_at.file_name();
  message += ':';
  message += std::to_string(opened_at.line());
  if (loop != nullptr && EventLoop::exists(loop)) {
    // A closed loop, and one being destroyed (its extensions tear the open
    // transports down), still has its handler.
    loop->call_exception_handler({std::move(message), nullptr, "", ""});
    return;
  }
  message = "asyncio: " + message + "\n";
  std::fwrite(message.data(), 1, message.size(), stderr);
  std::fflush(stderr);
}

}  // namespace asyncio

namespace asyncio::transports_internal {

std::string describe_socket(const char* kind, int fd) {
  std::string text = "<";
  text += kind;
  text += " fd=" + std::to_string(fd);
  // The peer's address, else ours (an unnamed Unix socket has neither).
  for (const char* which : {"peername", "sockname"}) {
    sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    auto* addr = reinterpret_cast<sockaddr*>(&ss);
    const bool peer = which[0] == 'p';
    if (fd < 0 || (peer ? ::getpeername(fd, addr, &len) : ::getsockname(fd, addr, &len)) != 0) {
      continue;
    }
    const std::string name = SocketAddress::from_sockaddr(addr, len).to_string();
    if (name.empty()) continue;
    text += " ";
    text += which;
    text += "=" + name;
    break;
  }
  return text + ">";
}

// ---------------------------------------------------------------------------
// Transports still open when their loop goes.

namespace {

class OpenTransports final : public LoopExtension {
 public:
  ~OpenTransports() override {
    while (!open_.empty()) {
      OpenTransport* t = *open_.begin();
      open_.erase(open_.begin());
      t->on_loop_closed();
    }
  }
  std::unordered_set<OpenTransport*> open_;
};

OpenTransports* open_transports(EventLoop& loop, bool create) {
  static const int slot = EventLoop::new_extension_slot();
  auto* ext = static_cast<OpenTransports*>(loop.extension(slot));
  if (ext == nullptr && create) {
    auto owned = std::make_unique<OpenTransports>();
    ext = owned.get();
    loop.set_extension(slot, std::move(owned));
  }
  return ext;
}

}  // namespace

void register_open(EventLoop& loop, OpenTransport* transport) {
  open_transports(loop, true)->open_.insert(transport);
}

void unregister_open(EventLoop& loop, OpenTransport* transport) {
  if (OpenTransports* ext = open_transports(loop, false)) ext->open_.erase(transport);
}

// ---------------------------------------------------------------------------

SocketTransport::SocketTransport(EventLoop& loop, int fd, std::shared_ptr<BaseProtocol> protocol,
                                 std::shared_ptr<ServerState> server,
                                 std::source_location opened_at)
    : loop_(loop), fd_(fd), server_(std::move(server)), opened_at_(opened_at) {
  set_protocol(std::move(protocol));
  if (server_) server_->attach(this);
}

SocketTransport::~SocketTransport() {
  if (server_) server_->detach(this);  // never started: still counted
  close_watched(loop_, fd_, reading_, writer_registered_);
}

void SocketTransport::set_protocol(std::shared_ptr<BaseProtocol> protocol) {
  stream_protocol_ = dynamic_cast<Protocol*>(protocol.get());
  buffered_protocol_ = dynamic_cast<BufferedProtocol*>(protocol.get());
  if (protocol && stream_protocol_ == nullptr && buffered_protocol_ == nullptr) {
    throw std::invalid_argument("a stream transport needs a Protocol or a BufferedProtocol");
  }
  protocol_ = std::move(protocol);
}

void SocketTransport::start(std::optional<Future<void>> waiter) {
  self_ = std::static_pointer_cast<SocketTransport>(shared_from_this());
  register_open(loop_, this);
  loop_.call_soon([this] {
    if (protocol_) protocol_->connection_made(self_);
  });
  loop_.call_soon([this] {
    if (!paused_ && !closing_) add_reader();
  });
  if (waiter) {
    loop_.call_soon([w = *waiter]() mutable {
      if (!w.done()) w.set_result();
    });
  }
}

std::any SocketTransport::get_extra_info(std::string_view name) const {
  if (name == "socket") return fd_;
  if (fd_ < 0) return {};
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (name == "peername") {
    if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      return SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
    }
  } else if (name == "sockname") {
    if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      return SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
    }
  }
  return {};
}

// --- reading ---------------------------------------------------------------

void SocketTransport::add_reader() {
  if (reading_ || fd_ < 0) return;
  loop_.add_reader(fd_, [this] { on_readable(); });
  reading_ = true;
}

void SocketTransport::pause_reading() {
  if (closing_ || paused_) return;
  paused_ = true;
  if (reading_) {
    loop_.remove_reader(fd_);
    reading_ = false;
  }
}

void SocketTransport::resume_reading() {
  if (closing_ || !paused_) return;
  paused_ = false;
  add_reader();
}

void SocketTransport::on_readable() {
  if (conn_lost_) return;
  try {
    if (buffered_protocol_ != nullptr) {
      std::span<char> buf = buffered_protocol_->get_buffer(kReadSize);
      if (buf.empty()) throw std::runtime_error("get_buffer() returned an empty buffer");
      ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
      if (n > 0) {
        buffered_protocol_->buffer_updated(static_cast<size_t>(n));
      } else if (n == 0) {
        on_eof();
      } else if (!would_block(errno)) {
        fatal_error(os_error(errno, "recv"), "Fatal read error on socket transport");
      }
      return;
    }
    char* buf = read_buffer();
    ssize_t n = ::recv(fd_, buf, kReadSize, 0);
    if (n > 0) {
      stream_protocol_->data_received(std::string_view(buf, static_cast<size_t>(n)));
    } else if (n == 0) {
      on_eof();
    } else if (!would_block(errno)) {
      fatal_error(os_error(errno, "recv"), "Fatal read error on socket transport");
    }
  } catch (...) {
    // The protocol threw: as asyncio, report it and close the connection.
    fatal_error(std::current_exception(), "Fatal error: protocol.data_received() call failed.");
  }
}

void SocketTransport::on_eof() {
  if (reading_) {
    loop_.remove_reader(fd_);
    reading_ = false;
  }
  bool keep_open = stream_protocol_ != nullptr ? stream_protocol_->eof_received()
                                               : buffered_protocol_->eof_received();
  // Keeping the transport open means half-closed: we only stop reading.
  if (!keep_open) close();
}

// --- writing ---------------------------------------------------------------

namespace {

// Writes that leave the pending bytes under this size wait for the end of
// the loop iteration, so that the small writes of one iteration (a reply per
// pipelined request) leave with one syscall. Larger ones go at once, behind
// what is pending, without being copied.
constexpr size_t kCoalesceLimit = 16 * 1024;
constexpr size_t kMaxIov = 64;

}  // namespace

void SocketTransport::write(std::string_view data) {
  loop_.check_thread();
  if (eof_) throw std::runtime_error("Cannot call write() after write_eof()");
  if (sendfile_in_progress_) throw std::runtime_error("unable to write; sendfile is in progress");
  if (data.empty() || closing_ || conn_lost_) return;
  if (writer_registered_) {  // the socket is full: wait for it
    buffer_rest(data.data(), data.size());
    return;
  }
  if (get_write_buffer_size() + data.size() < std::min(kCoalesceLimit, flow_control_.high())) {
    defer(data.data(), data.size());
    return;
  }
  iovec iov{const_cast<char*>(data.data()), data.size()};
  send_now(&iov, 1);
}

void SocketTransport::writelines(const std::vector<std::string>& data) {
  loop_.check_thread();
  if (eof_) throw std::runtime_error("Cannot call writelines() after write_eof()");
  if (sendfile_in_progress_) throw std::runtime_error("unable to write; sendfile is in progress");
  if (closing_ || conn_lost_) return;
  size_t total = 0;
  for (const std::string& s : data) total += s.size();
  if (total == 0) return;
  if (writer_registered_) {
    for (const std::string& s : data) buffer_rest(s.data(), s.size());
    return;
  }
  if (get_write_buffer_size() + total < std::min(kCoalesceLimit, flow_control_.high())) {
    for (const std::string& s : data) defer(s.data(), s.size());
    return;
  }
  // One sendmsg per kMaxIov - 1 pieces (the pending buffer takes one slot);
  // once the socket is full, the rest is buffered.
  iovec iov[kMaxIov - 1];
  size_t count = 0;
  for (const std::string& s : data) {
    if (s.empty()) continue;
    if (writer_registered_ || conn_lost_) {
      if (!conn_lost_) buffer_rest(s.data(), s.size());
      continue;
    }
    iov[count++] = iovec{const_cast<char*>(s.data()), s.size()};
    if (count == kMaxIov - 1) {
      send_now(iov, count);
      count = 0;
    }
  }
  if (count > 0 && !conn_lost_) send_now(iov, count);
}

void SocketTransport::send_now(const iovec* data, size_t count) {
  iovec iov[kMaxIov];
  size_t used = 0;
  const size_t pending = get_write_buffer_size();
  if (pending > 0) iov[used++] = iovec{buffer_.data() + buffer_offset_, pending};
  for (size_t i = 0; i < count && used < kMaxIov; ++i) iov[used++] = data[i];
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = used;
  ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
  if (n < 0) {
    if (!would_block(errno)) {
      fatal_error(os_error(errno, "send"), "Fatal write error on socket transport");
      return;
    }
    n = 0;
  }
  size_t sent = static_cast<size_t>(n);
  const size_t from_buffer = std::min(sent, pending);
  buffer_offset_ += from_buffer;
  sent -= from_buffer;
  for (size_t i = 0; i < count; ++i) {
    const size_t skip = std::min(sent, data[i].iov_len);
    sent -= skip;
    buffer_rest(static_cast<const char*>(data[i].iov_base) + skip, data[i].iov_len - skip);
  }
  if (get_write_buffer_size() == 0) {
    flushed();
  } else {
    if (!writer_registered_) {
      loop_.add_writer(fd_, [this] { on_writable(); });
      writer_registered_ = true;
    }
    maybe_resume_protocol();
  }
}

void SocketTransport::buffer_rest(const char* data, size_t size) {
  if (size == 0) return;
  if (buffer_offset_ > 0 && buffer_offset_ * 2 >= buffer_.size()) {
    buffer_.erase(0, buffer_offset_);
    buffer_offset_ = 0;
  }
  buffer_.append(data, size);
  if (!writer_registered_) {
    loop_.add_writer(fd_, [this] { on_writable(); });
    writer_registered_ = true;
  }
  maybe_pause_protocol();
}

void SocketTransport::defer(const char* data, size_t size) {
  if (size == 0) return;
  if (get_write_buffer_size() == 0) {
    buffer_.clear();
    buffer_offset_ = 0;
  }
  buffer_.append(data, size);
  if (!flush_scheduled_) {
    flush_scheduled_ = true;
    flush_node_.transport = this;
    loop_.schedule_at_end_of_iteration(flush_node_);
  }
  maybe_pause_protocol();
}

void SocketTransport::run_flush(Runnable* node, bool discard) {
  SocketTransport* self = static_cast<FlushNode*>(node)->transport;
  self->flush_scheduled_ = false;
  if (!discard) self->flush_deferred();
}

void SocketTransport::flush_deferred() {
  // Sent already by a larger write, or waiting for the socket.
  if (conn_lost_ || writer_registered_ || get_write_buffer_size() == 0) return;
  send_now(nullptr, 0);
}

void SocketTransport::on_writable() {
  if (conn_lost_) return;
  size_t pending = get_write_buffer_size();
  if (pending > 0) {
    ssize_t n = ::send(fd_, buffer_.data() + buffer_offset_, pending, MSG_NOSIGNAL);
    if (n < 0) {
      if (would_block(errno)) return;
      fatal_error(os_error(errno, "send"), "Fatal write error on socket transport");
      return;
    }
    buffer_offset_ += static_cast<size_t>(n);
    maybe_resume_protocol();
    if (get_write_buffer_size() > 0) return;
  }
  flushed();
}

void SocketTransport::flushed() {
  buffer_.clear();
  buffer_offset_ = 0;
  if (writer_registered_) {
    loop_.remove_writer(fd_);
    writer_registered_ = false;
  }
  for (Future<void>& w : flush_waiters_) {
    if (!w.done()) w.set_result();
  }
  flush_waiters_.clear();
  if (closing_) {
    conn_lost_ = true;
    loop_.call_soon([this] { call_connection_lost(nullptr); });
  } else if (eof_) {
    ::shutdown(fd_, SHUT_WR);
  }
}

Coro<void> SocketTransport::wait_until_flushed() {
  if (get_write_buffer_size() == 0) co_return;
  Future<void> waiter = create_future<void>(loop_);
  flush_waiters_.push_back(waiter);
  co_await waiter;
}

int SocketTransport::sendfile_socket() const {
  if (closing_ || conn_lost_ || fd_ < 0) {
    throw_errno("sendfile: the transport was closed", ECONNABORTED);
  }
  return fd_;
}

Coro<void> SocketTransport::wait_writable_for_sendfile() {
  int fd = sendfile_socket();
  Future<void> ready = create_future<void>(loop_);
  sendfile_waiter_ = ready;
  loop_.add_writer(fd, [this] { stop_sendfile_wait(false); });
  writer_registered_ = true;
  struct Unwatch {
    SocketTransport& t;
    ~Unwatch() { t.stop_sendfile_wait(false); }  // cancelled: the watch goes
  } unwatch{*this};
  co_await ready;
  sendfile_socket();  // closed after the socket became writable
}

void SocketTransport::stop_sendfile_wait(bool closed) {
  if (!sendfile_waiter_) return;
  Future<void> waiter = std::move(*sendfile_waiter_);
  sendfile_waiter_.reset();
  if (writer_registered_) {
    loop_.remove_writer(fd_);
    writer_registered_ = false;
  }
  if (waiter.done()) return;
  if (closed) {
    waiter.set_exception(os_error(ECONNABORTED, "sendfile: the transport was closed"));
  } else {
    waiter.set_result();
  }
}

void SocketTransport::write_eof() {
  if (closing_ || eof_) return;
  eof_ = true;
  if (get_write_buffer_size() == 0) ::shutdown(fd_, SHUT_WR);
}

void SocketTransport::set_write_buffer_limits(std::optional<size_t> high,
                                              std::optional<size_t> low) {
  flow_control_.set_limits(high, low);
  maybe_pause_protocol();
}

void SocketTransport::maybe_pause_protocol() {
  flow_control_.maybe_pause(loop_, protocol_.get(), get_write_buffer_size());
}

void SocketTransport::maybe_resume_protocol() {
  flow_control_.maybe_resume(loop_, protocol_.get(), get_write_buffer_size());
}

// --- closing ---------------------------------------------------------------

void SocketTransport::close() {
  if (closing_) return;
  closing_ = true;
  stop_sendfile_wait(true);
  if (reading_) {
    loop_.remove_reader(fd_);
    reading_ = false;
  }
  if (get_write_buffer_size() == 0 && !conn_lost_) {
    conn_lost_ = true;
    loop_.call_soon([this] { call_connection_lost(nullptr); });
  }
}

void SocketTransport::on_loop_closed() {
  // Never closed: Python's "unclosed transport" ResourceWarning.
  if (!closing_)
    report_unclosed(&loop_, "transport " + describe_socket("SocketTransport", fd_), opened_at_);
  // The loop is closed: nothing can be scheduled, so the teardown is
  // immediate. Its watches are gone with the loop's.
  reading_ = writer_registered_ = false;
  closing_ = conn_lost_ = true;
  sendfile_waiter_.reset();
  buffer_.clear();
  buffer_offset_ = 0;
  flush_waiters_.clear();
  call_connection_lost(
      os_error(ECONNABORTED, "the event loop was closed with the connection open"));
}

void SocketTransport::fatal_error(std::exception_ptr exc, const char* message) {
  report_fatal_error(loop_, exc, message);
  force_close(exc);
}

void SocketTransport::force_close(std::exception_ptr exc) {
  if (conn_lost_) return;
  stop_sendfile_wait(true);
  buffer_.clear();
  buffer_offset_ = 0;
  if (writer_registered_) {
    loop_.remove_writer(fd_);
    writer_registered_ = false;
  }
  if (!closing_) {
    closing_ = true;
    if (reading_) {
      loop_.remove_reader(fd_);
      reading_ = false;
    }
  }
  for (Future<void>& w : flush_waiters_) {
    if (!w.done()) w.set_exception(exc ? exc : os_error(ECONNABORTED, "transport aborted"));
  }
  flush_waiters_.clear();
  conn_lost_ = true;
  loop_.call_soon([this, exc] { call_connection_lost(exc); });
}

void SocketTransport::call_connection_lost(std::exception_ptr exc) {
  std::shared_ptr<SocketTransport> keep = std::move(self_);  // this may go with it
  unregister_open(loop_, this);
  deliver_connection_lost(loop_, protocol_.get(), exc);
  ::close(fd_);
  fd_ = -1;
  protocol_.reset();
  stream_protocol_ = nullptr;
  buffered_protocol_ = nullptr;
  if (server_) {
    server_->detach(this);
    server_.reset();
  }
}

}  // namespace asyncio::transports_internal
