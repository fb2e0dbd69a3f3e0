// Raw non-blocking sockets (loop.sock_*) and sendfile.
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "loop/posix.h"
#include "transports/internal/socket_transport.h"
#include "transports/transports.h"

namespace asyncio {

using posix::throw_errno;
using posix::would_block;
using transports_internal::wait_readable;
using transports_internal::wait_writable;

namespace {

constexpr size_t kSendfileChunk = 1 << 30;     // per sendfile(2) call
constexpr size_t kFallbackChunk = 256 * 1024;  // per read/write round

}  // namespace

Coro<std::string> sock_recv(EventLoop& loop, int sock, size_t nbytes) {
  std::string buf(nbytes, '\0');
  while (true) {
    ssize_t n = ::recv(sock, buf.data(), nbytes, 0);
    if (n >= 0) {
      buf.resize(static_cast<size_t>(n));
      co_return buf;
    }
    if (!would_block(errno)) throw_errno("recv");
    co_await wait_readable(loop, sock);
  }
}

Coro<size_t> sock_recv_into(EventLoop& loop, int sock, std::span<char> buf) {
  while (true) {
    ssize_t n = ::recv(sock, buf.data(), buf.size(), 0);
    if (n >= 0) co_return static_cast<size_t>(n);
    if (!would_block(errno)) throw_errno("recv");
    co_await wait_readable(loop, sock);
  }
}

namespace {

SocketAddress address_of(const sockaddr_storage& storage, socklen_t len) {
  return SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&storage), len);
}

}  // namespace

Coro<std::pair<std::string, SocketAddress>> sock_recvfrom(EventLoop& loop, int sock,
                                                          size_t bufsize) {
  std::string buf(bufsize, '\0');
  auto [n, from] = co_await sock_recvfrom_into(loop, sock, buf);
  buf.resize(n);
  co_return std::make_pair(std::move(buf), std::move(from));
}

Coro<std::pair<size_t, SocketAddress>> sock_recvfrom_into(EventLoop& loop, int sock,
                                                          std::span<char> buf, size_t nbytes) {
  if (nbytes == 0) nbytes = buf.size();
  if (nbytes > buf.size()) {
    throw std::invalid_argument(
        "sock_recvfrom_into: nbytes is greater than the length of the buffer");
  }
  while (true) {
    sockaddr_storage from{};
    socklen_t len = sizeof(from);
    ssize_t n = ::recvfrom(sock, buf.data(), nbytes, 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n >= 0) co_return std::make_pair(static_cast<size_t>(n), address_of(from, len));
    if (!would_block(errno)) throw_errno("recvfrom");
    co_await wait_readable(loop, sock);
  }
}

Coro<size_t> sock_sendto(EventLoop& loop, int sock, std::string_view data, SocketAddress address) {
  while (true) {
    ssize_t n = ::sendto(sock, data.data(), data.size(), MSG_NOSIGNAL, address.sockaddr_ptr(),
                         address.sockaddr_len());
    if (n >= 0) co_return static_cast<size_t>(n);
    if (!would_block(errno)) throw_errno("sendto " + address.to_string());
    co_await wait_writable(loop, sock);
  }
}

Coro<void> sock_sendall(EventLoop& loop, int sock, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(sock, data.data(), data.size(), MSG_NOSIGNAL);
    if (n >= 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (!would_block(errno)) throw_errno("send");
    co_await wait_writable(loop, sock);
  }
}

Coro<void> sock_connect(EventLoop& loop, int sock, const SocketAddress& addr) {
  while (true) {
    if (::connect(sock, addr.sockaddr_ptr(), addr.sockaddr_len()) == 0) co_return;
    int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN) {
      // A Unix socket's server has a full backlog (or no local port is
      // free): no readiness event says when to retry, so say so.
      throw_errno("Connect call failed (" + addr.to_string() +
                      "): the server's backlog is full or no local port is free",
                  err);
    }
    if (err != EINPROGRESS) throw_errno("Connect call failed (" + addr.to_string() + ")", err);
    co_await wait_writable(loop, sock);
    int so_error = 0;
    socklen_t len = sizeof(so_error);
    if (::getsockopt(sock, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0) so_error = errno;
    if (so_error != 0) throw_errno("Connect call failed (" + addr.to_string() + ")", so_error);
    co_return;
  }
}

Coro<std::pair<int, SocketAddress>> sock_accept(EventLoop& loop, int sock) {
  while (true) {
    sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd = ::accept4(sock, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      co_return std::make_pair(fd, address_of(ss, len));
    }
    if (!would_block(errno) && errno != ECONNABORTED) throw_errno("accept");
    co_await wait_readable(loop, sock);
  }
}

namespace {

// Reads the file in chunks and awaits `send` with each: sendfile's fallback.
template <class Send>
Coro<size_t> copy_file(int file_fd, off_t offset, std::optional<size_t> count, Send send) {
  std::string chunk;
  size_t total = 0;
  bool seekable = true;
  while (!count || total < *count) {
    size_t want = count ? std::min(kFallbackChunk, *count - total) : kFallbackChunk;
    chunk.resize(want);
    ssize_t n = seekable ? ::pread(file_fd, chunk.data(), want, offset + static_cast<off_t>(total))
                         : ::read(file_fd, chunk.data(), want);
    if (n < 0) {
      if (errno == EINTR) continue;
      // A pipe or a FIFO: read it from where it stands, as Python's
      // file.readinto does (an offset cannot be honoured).
      if (errno == ESPIPE && seekable && offset == 0) {
        seekable = false;
        continue;
      }
      throw_errno(seekable ? "pread" : "read");
    }
    if (n == 0) break;
    co_await send(std::string_view(chunk.data(), static_cast<size_t>(n)));
    total += static_cast<size_t>(n);
  }
  co_return total;
}

// Where sendfile writes: a raw socket the caller owns, or a transport's
// socket, which the transport's close() can take away during any wait (its
// number may be reused by then, so it is asked for again after each wait).
struct RawSocket {
  EventLoop& loop;
  int sock;
  int fd() const { return sock; }
  Coro<void> writable() const { return wait_writable(loop, sock); }
};

struct TransportSocket {
  transports_internal::SocketTransport& transport;
  int fd() const { return transport.sendfile_socket(); }
  Coro<void> writable() const { return transport.wait_writable_for_sendfile(); }
};

template <class Socket>
Coro<void> send_all(Socket socket, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(socket.fd(), data.data(), data.size(), MSG_NOSIGNAL);
    if (n >= 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (!would_block(errno)) throw_errno("send");
    co_await socket.writable();
  }
}

template <class Socket>
Coro<size_t> sendfile_on(Socket socket, int file_fd, off_t offset, std::optional<size_t> count,
                         bool fallback) {
  size_t total = 0;
  off_t position = offset;
  while (!count || total < *count) {
    size_t want = count ? std::min(kSendfileChunk, *count - total) : kSendfileChunk;
    ssize_t n = ::sendfile(socket.fd(), file_fd, &position, want);
    if (n > 0) {
      total += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) break;  // end of file
    int err = errno;
    if (would_block(err)) {
      co_await socket.writable();
      continue;
    }
    if ((err == EINVAL || err == ENOSYS || err == EOVERFLOW || err == ESPIPE) && total == 0) {
      // This pair of descriptors cannot use sendfile(2) (ESPIPE: the file
      // is a pipe, which has no offset to read from).
      if (!fallback) {
        throw SendfileNotAvailableError(std::string("sendfile(2) cannot send this file: ") +
                                        std::strerror(err));
      }
      auto send = [socket](std::string_view data) { return send_all(socket, data); };
      total = co_await copy_file(file_fd, offset, count, send);
      position = offset + static_cast<off_t>(total);
      break;
    }
    throw_errno("sendfile", err);
  }
  // Leave the file position after what was sent, as socket.sendfile does.
  ::lseek(file_fd, offset + static_cast<off_t>(total), SEEK_SET);
  co_return total;
}

// Stands in for a transport's protocol while a file is written through it
// (asyncio's _SendfileFallbackProtocol): reading is paused, and write flow
// control is followed so that the file never sits whole in the buffer.
class SendfileFallbackProtocol final : public Protocol {
 public:
  SendfileFallbackProtocol(EventLoop& loop, Transport& transport)
      : loop_(loop),
        transport_(transport),
        original_(transport.get_protocol()),
        was_reading_(transport.is_reading()),
        was_paused_(transport.get_write_buffer_size() >=
                    transport.get_write_buffer_limits().second),
        paused_(was_paused_) {}

  void pause_writing() override { paused_ = true; }
  void resume_writing() override {
    paused_ = false;
    if (waiter_ && !waiter_->done()) waiter_->set_result();
  }
  void connection_lost(std::exception_ptr exc) override {
    lost_ = exc ? exc : posix::os_error(ECONNRESET, "Connection is closed by peer");
    if (waiter_ && !waiter_->done()) waiter_->set_exception(lost_);
    if (original_) original_->connection_lost(exc);
    original_.reset();
  }

  Coro<void> send(std::string_view data) {
    if (lost_) std::rethrow_exception(lost_);
    if (paused_) {
      waiter_ = create_future<void>(loop_);
      co_await *waiter_;
    }
    transport_.write(data);
  }

  void restore() {
    if (lost_) return;
    transport_.set_protocol(original_);
    if (was_reading_) transport_.resume_reading();
    if (was_paused_ && !paused_ && original_) original_->resume_writing();
  }

 private:
  EventLoop& loop_;
  Transport& transport_;
  std::shared_ptr<BaseProtocol> original_;
  const bool was_reading_;
  const bool was_paused_;
  bool paused_;
  std::exception_ptr lost_;
  std::optional<Future<void>> waiter_;
};

// sendfile over a transport with no socket of its own (TLS): read and write.
Coro<size_t> sendfile_through_writes(EventLoop& loop, Transport& transport, int file_fd,
                                     off_t offset, std::optional<size_t> count) {
  auto protocol = std::make_shared<SendfileFallbackProtocol>(loop, transport);
  transport.pause_reading();
  transport.set_protocol(protocol);
  struct Restore {
    SendfileFallbackProtocol& p;
    ~Restore() { p.restore(); }
  } restore{*protocol};
  auto send = [&protocol](std::string_view data) { return protocol->send(data); };
  co_return co_await copy_file(file_fd, offset, count, send);
}

}  // namespace

Coro<size_t> sock_sendfile(EventLoop& loop, int sock, int file_fd, off_t offset,
                           std::optional<size_t> count, bool fallback) {
  int type = 0;
  socklen_t len = sizeof(type);
  if (::getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &len) != 0) throw_errno("sock_sendfile");
  if (type != SOCK_STREAM) {
    throw std::invalid_argument("sock_sendfile: only SOCK_STREAM type sockets are supported");
  }
  co_return co_await sendfile_on(RawSocket{loop, sock}, file_fd, offset, count, fallback);
}

Coro<size_t> sendfile(EventLoop& loop, Transport& transport, int file_fd, off_t offset,
                      std::optional<size_t> count, bool fallback) {
  auto* socket_transport = dynamic_cast<transports_internal::SocketTransport*>(&transport);
  if (transport.is_closing()) throw std::runtime_error("sendfile: the transport is closing");
  if (socket_transport == nullptr) {
    if (!fallback) {
      throw SendfileNotAvailableError(
          "sendfile: fallback is disabled and this transport has no socket to send a file on");
    }
    co_return co_await sendfile_through_writes(loop, transport, file_fd, offset, count);
  }
  // The transfer keeps the transport alive, whatever the caller drops.
  auto keep = std::static_pointer_cast<transports_internal::SocketTransport>(
      socket_transport->shared_from_this());
  const bool was_reading = transport.is_reading();
  transport.pause_reading();
  struct Resume {
    Transport& t;
    bool reading;
    ~Resume() {
      if (reading && !t.is_closing()) t.resume_reading();
    }
  } resume{transport, was_reading};
  co_await socket_transport->wait_until_flushed();
  socket_transport->sendfile_socket();  // throws if it was closed meanwhile
  socket_transport->set_sendfile_in_progress(true);
  struct Done {
    transports_internal::SocketTransport* t;
    ~Done() { t->set_sendfile_in_progress(false); }
  } done{socket_transport};
  co_return co_await sendfile_on(TransportSocket{*socket_transport}, file_fd, offset, count,
                                 fallback);
}

}  // namespace asyncio
