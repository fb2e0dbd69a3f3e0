// Helpers shared by the tests of every package (as CPython's
// test_asyncio/utils.py): descriptor and memory accounting, the port a
// server listens on, echo servers, a temporary directory, awaiting helpers.
// Test-only.
#pragma once

#include <sys/resource.h>

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "futures/futures.h"
#include "loop/posix.h"
#include "streams/streams.h"
#include "transports/transports.h"

namespace asyncio::testing_util {

// Descriptors open in this process (entries of /proc/self/fd).
int open_fd_count();

// The number the next descriptor would get.
int lowest_free_fd();

// Raises the soft RLIMIT_NOFILE to `wanted` (and the hard limit with it, when
// allowed), else as far as the hard limit goes; true if it now reaches
// `wanted`. Without `wanted`: up to the hard limit.
bool raise_fd_limit(rlim_t wanted = RLIM_INFINITY);

// Puts RLIMIT_NOFILE back as it was at construction, whatever happens.
class RestoreFileLimit {
 public:
  RestoreFileLimit();
  ~RestoreFileLimit();
  RestoreFileLimit(const RestoreFileLimit&) = delete;
  RestoreFileLimit& operator=(const RestoreFileLimit&) = delete;
  const rlimit& original() const { return original_; }

 private:
  rlimit original_;
};

// Resident memory of this process, in KiB (/proc/self/statm).
long rss_kib();

// The port of the server's first listening socket.
uint16_t port_of(const Server& server);

// A pipe (pipe2 with O_CLOEXEC); each end is closed on destruction unless
// released. Throws std::system_error if no pipe can be made.
struct PipePair {
  PipePair();
  posix::UniqueFd read_end;
  posix::UniqueFd write_end;
};

// A non-blocking UDP socket bound to a free loopback port (127.0.0.1).
struct LoopbackUdp {
  LoopbackUdp();
  posix::UniqueFd fd;
  SocketAddress addr;  // where it is bound
};

// A fresh directory under $TEST_TMPDIR (else /tmp), removed with everything
// in it on destruction. Short paths: a Unix socket's sun_path holds 108 bytes.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  // path()/name.
  std::string file(std::string_view name) const;

 private:
  std::string path_;
};

// Lets every task that is ready run a few steps.
Coro<void> settle();

// True if awaiting `aw` throws E.
template <class E, class A>
Coro<bool> throws(A aw) {
  try {
    co_await std::move(aw);
  } catch (const E&) {
    co_return true;
  }
  co_return false;
}

// The echo server handler of the asyncio docs (Streams): one read of up to
// 100 bytes, echoed, then close.
Coro<void> handle_echo(StreamReader reader, StreamWriter writer);

// A stream handler that echoes line by line until EOF; a peer that resets
// ends only its own connection.
Coro<void> echo_lines(StreamReader reader, StreamWriter writer);

// A protocol that echoes everything back and records what happened.
class EchoProtocol : public Protocol {
 public:
  void connection_made(std::shared_ptr<BaseTransport> t) override;
  void data_received(std::string_view data) override;
  bool eof_received() override;
  void connection_lost(std::exception_ptr exc) override;

  std::shared_ptr<Transport> transport;
  std::string received;
  bool got_eof = false;
  bool lost = false;
  std::exception_ptr lost_error;
};

// A NameResolver (EventLoop::set_name_resolver) that answers every lookup
// with the same addresses, in that order, as stream sockets.
class FixedResolver final : public NameResolver {
 public:
  FixedResolver(EventLoop& loop, std::vector<SocketAddress> addrs);
  LookupId getaddrinfo(std::string host, std::string port, AddrInfoHints hints, Done done) override;
  void cancel(LookupId id) override;

 private:
  EventLoop& loop_;
  std::vector<AddrInfo> answer_;
  LookupId last_id_ = 0;
};

// A loopback TCP address that never answers a connect: a listener whose
// accept queue is full drops the SYNs, so the connect neither succeeds nor
// fails.
class Blackhole {
 public:
  Blackhole();
  ~Blackhole();
  Blackhole(const Blackhole&) = delete;
  Blackhole& operator=(const Blackhole&) = delete;
  const SocketAddress& addr() const { return addr_; }

 private:
  int listener_ = -1;
  int filler_ = -1;
  SocketAddress addr_;
};

// A TCP address that refuses connections: a bound socket (nobody else takes
// the port) that does not listen. `ip` is a loopback literal.
class Refuser {
 public:
  explicit Refuser(const char* ip = "127.0.0.1");
  ~Refuser();
  Refuser(const Refuser&) = delete;
  Refuser& operator=(const Refuser&) = delete;
  const SocketAddress& addr() const { return addr_; }

 private:
  int fd_ = -1;
  SocketAddress addr_;
};

}  // namespace asyncio::testing_util
