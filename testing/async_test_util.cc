#include "testing/async_test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <system_error>

namespace asyncio::testing_util {

int open_fd_count() {
  int count = 0;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (dirent* entry = ::readdir(dir)) count += entry->d_name[0] != '.';
    ::closedir(dir);
  }
  return count - 1;  // the directory stream's own descriptor
}

int lowest_free_fd() {
  int fd = ::dup(0);
  ::close(fd);
  return fd;
}

bool raise_fd_limit(rlim_t wanted) {
  rlimit lim;
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return false;
  if (lim.rlim_cur >= wanted) return true;
  rlimit raised{wanted, std::max(lim.rlim_max, wanted)};
  if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) return true;
  lim.rlim_cur = lim.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &lim);
  return lim.rlim_cur >= wanted;
}

RestoreFileLimit::RestoreFileLimit() { ::getrlimit(RLIMIT_NOFILE, &original_); }
RestoreFileLimit::~RestoreFileLimit() { ::setrlimit(RLIMIT_NOFILE, &original_); }

long rss_kib() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

uint16_t port_of(const Server& server) { return server.sockets().at(0).getsockname().port(); }

TempDir::TempDir() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string templ = std::string(tmp != nullptr ? tmp : "/tmp") + "/asyncio.XXXXXX";
  // TEST_TMPDIR can be too deep for a socket path: /tmp then.
  if (templ.size() > 60) templ = "/tmp/asyncio.XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(), "mkdtemp " + templ);
  }
  path_ = templ;
}

PipePair::PipePair() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) posix::throw_errno("pipe2");
  read_end.reset(fds[0]);
  write_end.reset(fds[1]);
}

LoopbackUdp::LoopbackUdp() : fd(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) {
  SocketAddress any("127.0.0.1", 0);
  if (fd.get() < 0 || ::bind(fd.get(), any.sockaddr_ptr(), any.sockaddr_len()) != 0) {
    posix::throw_errno("bind 127.0.0.1");
  }
  addr = SocketInfo(fd.get()).getsockname();
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string TempDir::file(std::string_view name) const { return path_ + "/" + std::string(name); }

Coro<void> settle() {
  for (int i = 0; i < 5; ++i) co_await sleep(std::chrono::seconds(0));
}

Coro<void> handle_echo(StreamReader reader, StreamWriter writer) {
  std::string data = co_await reader.read(100);
  writer.write(data);
  co_await writer.drain();
  writer.close();
  co_await writer.wait_closed();
}

Coro<void> echo_lines(StreamReader reader, StreamWriter writer) {
  try {
    while (true) {
      std::string line = co_await reader.readline();
      if (line.empty()) break;
      writer.write(line);
      co_await writer.drain();
    }
  } catch (const std::system_error&) {
    // The peer reset: that connection is over, the server is not.
  }
  writer.close();
}

void EchoProtocol::connection_made(std::shared_ptr<BaseTransport> t) {
  transport = std::static_pointer_cast<Transport>(t);
}

void EchoProtocol::data_received(std::string_view data) {
  received += data;
  transport->write(data);
}

bool EchoProtocol::eof_received() {
  got_eof = true;
  return false;
}

void EchoProtocol::connection_lost(std::exception_ptr exc) {
  lost = true;
  lost_error = exc;
}

FixedResolver::FixedResolver(EventLoop& loop, std::vector<SocketAddress> addrs) : loop_(loop) {
  for (SocketAddress& addr : addrs) {
    answer_.push_back(AddrInfo{addr.family(), SOCK_STREAM, 0, "", std::move(addr)});
  }
}

NameResolver::LookupId FixedResolver::getaddrinfo(std::string, std::string, AddrInfoHints,
                                                  Done done) {
  loop_.call_soon(
      [done = std::move(done), answer = answer_]() mutable { done(std::move(answer), nullptr); });
  return ++last_id_;
}

void FixedResolver::cancel(LookupId) {}

namespace {

SocketAddress bound_address(int fd) {
  sockaddr_storage storage{};
  socklen_t len = sizeof(storage);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &len) != 0) {
    throw std::system_error(errno, std::generic_category(), "getsockname");
  }
  return SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&storage), len);
}

// A TCP socket bound to ip, port 0.
int bound_socket(const char* ip) {
  SocketAddress any(ip, 0);
  const int fd = ::socket(any.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::bind(fd, any.sockaddr_ptr(), any.sockaddr_len()) != 0) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    throw std::system_error(err, std::generic_category(), std::string("bind ") + ip);
  }
  return fd;
}

}  // namespace

Blackhole::Blackhole() {
  listener_ = bound_socket("127.0.0.1");
  addr_ = bound_address(listener_);
  // A backlog of 0 holds one connection: the filler takes it.
  filler_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::listen(listener_, 0) != 0 ||
      ::connect(filler_, addr_.sockaddr_ptr(), addr_.sockaddr_len()) != 0) {
    const int err = errno;
    ::close(listener_);
    ::close(filler_);
    throw std::system_error(err, std::generic_category(), "Blackhole");
  }
}

Blackhole::~Blackhole() {
  ::close(filler_);
  ::close(listener_);
}

Refuser::Refuser(const char* ip) : fd_(bound_socket(ip)), addr_(bound_address(fd_)) {}

Refuser::~Refuser() { ::close(fd_); }

}  // namespace asyncio::testing_util
