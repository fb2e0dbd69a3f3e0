// UDP (and other datagram sockets): create_datagram_endpoint.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <source_location>
#include <stdexcept>
#include <string>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

#include "loop/posix.h"
#include "transports/internal/socket_transport.h"
#include "transports/transports.h"

namespace asyncio::transports_internal {

using posix::os_error;
using posix::set_nonblocking;
using posix::throw_errno;
using posix::UniqueFd;
using posix::would_block;

namespace {

constexpr size_t kMaxDatagram = 256 * 1024;

class DatagramSocketTransport final : public DatagramTransport, public OpenTransport {
 public:
  DatagramSocketTransport(EventLoop& loop, int fd, std::shared_ptr<BaseProtocol> protocol,
                          std::optional<SocketAddress> remote, std::source_location opened_at)
      : loop_(loop), fd_(fd), remote_(std::move(remote)), opened_at_(opened_at) {
    set_protocol(std::move(protocol));
  }
  ~DatagramSocketTransport() override { close_watched(loop_, fd_, reading_, writing_); }

  void start(Future<void> waiter) {
    self_ = std::static_pointer_cast<DatagramSocketTransport>(shared_from_this());
    register_open(loop_, this);
    loop_.call_soon([this] {
      if (protocol_) protocol_->connection_made(self_);
    });
    loop_.call_soon([this] {
      if (!closing_) {
        loop_.add_reader(fd_, [this] { on_readable(); });
        reading_ = true;
      }
    });
    loop_.call_soon([waiter]() mutable {
      if (!waiter.done()) waiter.set_result();
    });
  }

  void close() override {
    if (closing_) return;
    closing_ = true;
    stop_reading();
    if (queue_.empty() && !conn_lost_) {
      conn_lost_ = true;
      loop_.call_soon([this] { call_connection_lost(nullptr); });
    }
  }
  bool is_closing() const override { return closing_; }
  void abort() override { force_close(nullptr); }

  std::any get_extra_info(std::string_view name) const override {
    if (name == "socket") return fd_;
    if (fd_ < 0) return {};
    sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (name == "peername" && remote_) return *remote_;
    if (name == "sockname" && ::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      return SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
    }
    return {};
  }
  void set_protocol(std::shared_ptr<BaseProtocol> protocol) override {
    datagram_protocol_ = dynamic_cast<DatagramProtocol*>(protocol.get());
    if (protocol && datagram_protocol_ == nullptr) {
      throw std::invalid_argument("a datagram transport needs a DatagramProtocol");
    }
    protocol_ = std::move(protocol);
  }
  std::shared_ptr<BaseProtocol> get_protocol() const override { return protocol_; }
  size_t get_write_buffer_size() const override { return queued_bytes_; }
  void set_write_buffer_limits(std::optional<size_t> high = {},
                               std::optional<size_t> low = {}) override {
    flow_control_.set_limits(high, low);
    maybe_pause_protocol();
  }
  std::pair<size_t, size_t> get_write_buffer_limits() const override {
    return flow_control_.limits();
  }

  void sendto(std::string_view data, std::optional<SocketAddress> addr) override {
    loop_.check_thread();
    if (remote_ && addr && !(*addr == *remote_)) {
      throw std::invalid_argument("Invalid address: must be empty or " + remote_->to_string());
    }
    if (!remote_ && !addr) throw std::invalid_argument("sendto: no address and no remote_addr");
    if (closing_ || conn_lost_) return;
    if (queue_.empty()) {
      int err = send_one(data, remote_ ? std::nullopt : addr);
      if (err == 0) return;
      if (!would_block(err)) {
        report_error(err);
        return;
      }
    }
    queue_.emplace_back(std::string(data), remote_ ? std::nullopt : addr);
    queued_bytes_ += data.size();
    if (!writing_) {
      loop_.add_writer(fd_, [this] { on_writable(); });
      writing_ = true;
    }
    maybe_pause_protocol();
  }

  void on_loop_closed() override {
    if (!closing_) {
      report_unclosed(&loop_, "transport " + describe_socket("DatagramTransport", fd_), opened_at_);
    }
    reading_ = writing_ = false;
    closing_ = conn_lost_ = true;
    queue_.clear();
    queued_bytes_ = 0;
    call_connection_lost(
        os_error(ECONNABORTED, "the event loop was closed with the endpoint open"));
  }

 private:
  // Returns 0 or errno.
  int send_one(std::string_view data, const std::optional<SocketAddress>& addr) {
    ssize_t n = addr ? ::sendto(fd_, data.data(), data.size(), MSG_NOSIGNAL, addr->sockaddr_ptr(),
                                addr->sockaddr_len())
                     : ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    return n < 0 ? errno : 0;
  }

  void report_error(int err) {
    try {
      datagram_protocol_->error_received(os_error(err, "sendto"));
    } catch (...) {
      loop_.call_exception_handler(
          {"protocol.error_received() failed", std::current_exception(), "", ""});
    }
  }

  void on_readable() {
    if (conn_lost_) return;
    thread_local std::unique_ptr<char[]> buffer(new char[kMaxDatagram]);
    sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    ssize_t n =
        ::recvfrom(fd_, buffer.get(), kMaxDatagram, 0, reinterpret_cast<sockaddr*>(&ss), &len);
    try {
      if (n >= 0) {
        SocketAddress from =
            len > 0 ? SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len)
                    : (remote_ ? *remote_ : SocketAddress());
        datagram_protocol_->datagram_received(std::string_view(buffer.get(), n), from);
      } else if (!would_block(errno)) {
        datagram_protocol_->error_received(os_error(errno, "recvfrom"));
      }
    } catch (...) {
      loop_.call_exception_handler({"Fatal error: protocol.datagram_received() call failed.",
                                    std::current_exception(), "", ""});
      force_close(std::current_exception());
    }
  }

  void on_writable() {
    while (!queue_.empty() && !conn_lost_) {
      auto& [data, addr] = queue_.front();
      int err = send_one(data, addr);
      if (err != 0 && would_block(err)) break;
      queued_bytes_ -= data.size();
      queue_.pop_front();
      if (err != 0) report_error(err);
    }
    if (conn_lost_) return;  // the protocol aborted
    maybe_resume_protocol();
    if (!queue_.empty()) return;
    if (writing_) {
      loop_.remove_writer(fd_);
      writing_ = false;
    }
    if (closing_ && !conn_lost_) {
      conn_lost_ = true;
      loop_.call_soon([this] { call_connection_lost(nullptr); });
    }
  }

  void maybe_pause_protocol() {
    flow_control_.maybe_pause(loop_, datagram_protocol_, queued_bytes_);
  }
  void maybe_resume_protocol() {
    flow_control_.maybe_resume(loop_, datagram_protocol_, queued_bytes_);
  }

  void stop_reading() {
    if (reading_) {
      loop_.remove_reader(fd_);
      reading_ = false;
    }
  }

  void force_close(std::exception_ptr exc) {
    if (conn_lost_) return;
    queue_.clear();
    queued_bytes_ = 0;
    if (writing_) {
      loop_.remove_writer(fd_);
      writing_ = false;
    }
    closing_ = true;
    stop_reading();
    conn_lost_ = true;
    loop_.call_soon([this, exc] { call_connection_lost(exc); });
  }

  void call_connection_lost(std::exception_ptr exc) {
    std::shared_ptr<DatagramSocketTransport> keep = std::move(self_);
    unregister_open(loop_, this);
    deliver_connection_lost(loop_, protocol_.get(), exc);
    ::close(fd_);
    fd_ = -1;
    protocol_.reset();
    datagram_protocol_ = nullptr;
  }

  EventLoop& loop_;
  int fd_;
  std::optional<SocketAddress> remote_;
  std::shared_ptr<BaseProtocol> protocol_;
  DatagramProtocol* datagram_protocol_ = nullptr;
  std::shared_ptr<DatagramSocketTransport> self_;
  std::source_location opened_at_;
  std::deque<std::pair<std::string, std::optional<SocketAddress>>> queue_;
  size_t queued_bytes_ = 0;
  WriteFlowControl flow_control_;
  bool closing_ = false;
  bool conn_lost_ = false;
  bool reading_ = false;
  bool writing_ = false;
};

}  // namespace

namespace {

// The addresses one side (local or remote) of an endpoint may have: the
// given one, or what its name resolves to; none if the side is unset.
Coro<std::vector<SocketAddress>> side_addresses(EventLoop& loop,
                                                const std::optional<SocketAddress>& addr,
                                                const std::optional<HostAndPort>& name, int family,
                                                const char* side) {
  std::vector<SocketAddress> out;
  if (addr && name) {
    throw std::invalid_argument(std::string("create_datagram_endpoint: ") + side + "_addr and " +
                                side + "_name are both set");
  }
  if (addr) {
    if (family == 0 || addr->family() == family) out.push_back(*addr);
  } else if (name) {
    AddrInfoHints hints;
    hints.family = family;
    hints.socktype = SOCK_DGRAM;
    std::vector<AddrInfo> found = co_await resolve(loop, name->host, name->port, hints);
    for (AddrInfo& info : found) out.push_back(std::move(info.addr));
  }
  co_return out;
}

// One way to make the endpoint: a family and the first local and remote
// address of that family (asyncio's addr_pairs_info).
struct Candidate {
  int family;
  std::optional<SocketAddress> local;
  std::optional<SocketAddress> remote;
};

std::vector<Candidate> candidates(const std::vector<SocketAddress>& locals,
                                  const std::vector<SocketAddress>& remotes, bool want_local,
                                  bool want_remote) {
  std::vector<Candidate> all;
  auto slot = [&all](int family) -> Candidate& {
    for (Candidate& c : all) {
      if (c.family == family) return c;
    }
    return all.emplace_back(Candidate{family, std::nullopt, std::nullopt});
  };
  for (const SocketAddress& a : locals) {
    Candidate& c = slot(a.family());
    if (!c.local) c.local = a;
  }
  for (const SocketAddress& a : remotes) {
    Candidate& c = slot(a.family());
    if (!c.remote) c.remote = a;
  }
  // Each side that was asked for needs an address of the family.
  std::erase_if(all, [&](const Candidate& c) {
    return (want_local && !c.local) || (want_remote && !c.remote);
  });
  return all;
}

UniqueFd open_endpoint_socket(const Candidate& c, const DatagramOptions& options) {
  UniqueFd sock(::socket(c.family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (sock.get() < 0) throw_errno("socket");
  int one = 1;
  if (options.reuse_port &&
      ::setsockopt(sock.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    throw_errno("setsockopt(SO_REUSEPORT)");
  }
  if (options.allow_broadcast &&
      ::setsockopt(sock.get(), SOL_SOCKET, SO_BROADCAST, &one, sizeof(one)) != 0) {
    throw_errno("setsockopt(SO_BROADCAST)");
  }
  if (c.local && ::bind(sock.get(), c.local->sockaddr_ptr(), c.local->sockaddr_len()) != 0) {
    throw_errno("error while attempting to bind on address " + c.local->to_string());
  }
  if (c.remote && ::connect(sock.get(), c.remote->sockaddr_ptr(), c.remote->sockaddr_len()) != 0) {
    throw_errno("connect to " + c.remote->to_string());
  }
  return sock;
}

}  // namespace

Coro<std::shared_ptr<DatagramTransport>> create_datagram_endpoint(EventLoop& loop,
                                                                  ProtocolFactory factory,
                                                                  DatagramOptions options,
                                                                  std::source_location where) {
  UniqueFd sock;
  std::optional<SocketAddress> remote;
  if (options.sock >= 0) {
    sock.reset(options.sock);
    set_nonblocking(sock.get());
    remote = options.remote_addr;
  } else {
    const bool want_local = options.local_addr || options.local_name;
    const bool want_remote = options.remote_addr || options.remote_name;
    std::vector<Candidate> tries;
    if (!want_local && !want_remote) {
      tries.push_back(Candidate{options.family != 0 ? options.family : AF_INET, {}, {}});
    } else {
      std::vector<SocketAddress> locals = co_await side_addresses(
          loop, options.local_addr, options.local_name, options.family, "local");
      std::vector<SocketAddress> remotes = co_await side_addresses(
          loop, options.remote_addr, options.remote_name, options.family, "remote");
      tries = candidates(locals, remotes, want_local, want_remote);
      if (tries.empty()) throw std::invalid_argument("can not get address information");
    }
    std::exception_ptr first_error;
    for (const Candidate& c : tries) {
      try {
        sock = open_endpoint_socket(c, options);
        remote = c.remote;
        break;
      } catch (const std::system_error&) {
        if (!first_error) first_error = std::current_exception();
      }
    }
    if (!sock) std::rethrow_exception(first_error);
  }
  std::shared_ptr<BaseProtocol> protocol = factory();
  auto transport = std::make_shared<DatagramSocketTransport>(loop, sock.release(),
                                                             std::move(protocol), remote, where);
  Future<void> waiter = create_future<void>(loop);
  transport->start(waiter);
  try {
    co_await waiter;
  } catch (...) {
    transport->close();
    throw;
  }
  co_return transport;
}

}  // namespace asyncio::transports_internal
