// Load held: 10,000 TCP connections open at once on one loop, each echoing,
// then all closed: no error, no descriptor left, memory given back.
#include <malloc.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "futures/futures.h"
#include "gtest/gtest.h"
#include "streams/streams.h"
#include "sync/sync.h"
#include "testing/async_test_util.h"
#include "transports/transports.h"

namespace asyncio {
namespace {

using testing_util::echo_lines;
using testing_util::open_fd_count;
using testing_util::raise_fd_limit;
using testing_util::rss_kib;

constexpr int kConnections = 10000;

struct Tally {
  int connected = 0;
  int echoed = 0;
  int failed = 0;
  std::string first_error;
};

// Connects, sends one line, reads it back (the server answers only once it
// has accepted every client), closes. The client speaks first on purpose:
// when the accept queue overflows, the kernel drops the handshake's last
// ACK and the server learns of the connection only from the client's data.
Coro<void> client(uint16_t port, int id, Tally& tally, Semaphore& connecting) {
  try {
    std::optional<std::pair<StreamReader, StreamWriter>> conn;
    {
      co_await connecting.acquire();
      try {
        conn.emplace(co_await open_connection("127.0.0.1", port));
      } catch (...) {
        connecting.release();
        throw;
      }
      connecting.release();
    }
    auto& [reader, writer] = *conn;
    ++tally.connected;
    const std::string line = "client " + std::to_string(id) + "\n";
    writer.write(line);
    // Bounded so that a lost connection fails the test instead of hanging it.
    std::string back = co_await wait_for(reader.readline(), std::chrono::seconds(150));
    if (back == line) ++tally.echoed;
    writer.close();
    co_await writer.wait_closed();
  } catch (const std::exception& e) {
    if (tally.failed++ == 0) tally.first_error = e.what();
  }
}

// The clients run in a child process (each side then needs ~10,000
// descriptors, which fits the usual hard limit of 20,000 where both ends in
// one process would not); the server side, which is what is under test,
// runs here.
int run_clients(uint16_t port) {
  Tally tally;
  run([&tally, port]() -> Coro<void> {
    // Connecting in waves keeps the listen queue from overflowing (a
    // dropped SYN is retried by the kernel a second later).
    Semaphore connecting(512);
    TaskGroup group;
    for (int i = 0; i < kConnections; ++i) {
      group.create_task(client(port, i, tally, connecting));
    }
    co_await group.join();
  }());
  if (tally.failed != 0) std::fprintf(stderr, "client failed: %s\n", tally.first_error.c_str());
  return tally.failed == 0 && tally.connected == kConnections && tally.echoed == kConnections ? 0
                                                                                              : 1;
}

TEST(LoadTest, TenThousandConnectionsHeldEchoedAndClosed) {
  if (!raise_fd_limit(kConnections + 256)) {
    GTEST_SKIP() << "RLIMIT_NOFILE cannot be raised to " << kConnections + 256;
  }
  const int fds_before = open_fd_count();
  malloc_trim(0);
  const long rss_before = rss_kib();

  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 4096), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const uint16_t port = ntohs(addr.sin_port);

  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(listener);
    ::_exit(run_clients(port));
  }
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, child, 0));
  ASSERT_GE(pidfd, 0);

  int peak_connections = 0;
  run([listener, pidfd, &peak_connections]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    StreamOptions options;
    options.sock = listener;  // the server owns it from here
    options.backlog = 4096;
    int open_now = 0;
    // A client's connect completes in the kernel before we accept it, so
    // no client is answered until every one has been accepted here.
    Event all_accepted;
    ClientConnected handler = [&open_now, &peak_connections, &all_accepted](
                                  StreamReader reader, StreamWriter writer) -> Coro<void> {
      peak_connections = std::max(peak_connections, ++open_now);
      if (open_now == kConnections) all_accepted.set();
      try {
        co_await wait_for(all_accepted.wait(), std::chrono::seconds(120));
      } catch (const TimeoutError&) {  // a client failed: go on, the test reports it
      }
      co_await echo_lines(std::move(reader), std::move(writer));
      --open_now;
    };
    Server server = co_await start_server(handler, "", 0, options);
    // Until the client process exits.
    Future<void> exited = create_future<void>(loop);
    loop.add_reader(pidfd, [exited]() mutable {
      if (!exited.done()) exited.set_result();
    });
    co_await exited;
    loop.remove_reader(pidfd);
    server.close();
    co_await server.wait_closed();
  }());
  ::close(pidfd);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the clients failed (see stderr), status " << status;
  EXPECT_EQ(peak_connections, kConnections) << "connections held at once";
  EXPECT_EQ(open_fd_count(), fds_before) << "file descriptors leaked";
  malloc_trim(0);
  const long rss_after = rss_kib();
  std::printf("%d connections held at once; RSS before %ld KiB, after %ld KiB\n", peak_connections,
              rss_before, rss_after);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  // Sanitizers keep freed memory in quarantine; without them it goes back.
  EXPECT_LT(rss_after - rss_before, 32 * 1024) << "memory held after every connection closed";
#endif
}

}  // namespace
}  // namespace asyncio
