// Fault injection across packages: descriptors exhausted on the connect side,
// peers that reset mid-handshake and mid-transfer, slowloris clients, a child
// killed during communicate(), a DNS server that never answers, a process-pool
// worker killed mid-job, a signal storm during a transfer, and (in loop_test)
// epoll_pwait2 denied by seccomp. Each checks that the library fails cleanly (a clear
// exception, no descriptor leaked, no hang) and carries on afterwards.
#include <netdb.h>
#include <signal.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "dns/dns.h"
#include "executors/executors.h"
#include "futures/futures.h"
#include "gtest/gtest.h"
#include "streams/streams.h"
#include "subprocess/subprocess.h"
#include "testing/async_test_util.h"
#include "tls/testing/certs.h"
#include "tls/tls.h"
#include "transports/transports.h"

namespace asyncio {
namespace {

using testing_util::echo_lines;
using testing_util::lowest_free_fd;
using testing_util::open_fd_count;
using testing_util::port_of;
using testing_util::raise_fd_limit;
using testing_util::RestoreFileLimit;

using namespace std::chrono_literals;

// One round trip through a line echo server.
Coro<bool> echo_once(uint16_t port, StreamOptions options) {
  auto [reader, writer] = co_await open_connection("127.0.0.1", port, std::move(options));
  writer.write("still serving\n");
  co_await writer.drain();
  const bool ok = (co_await reader.readline()) == "still serving\n";
  writer.close();
  co_await writer.wait_closed();
  co_return ok;
}

class Discard : public Protocol {};

// ---------------------------------------------------------------------------
// 1. Descriptors exhausted on the connect side

TEST(FaultInjection, ConnectWithoutDescriptorsFailsWithEmfileThenRecovers) {
#ifdef __SANITIZE_ADDRESS__
  // UBSan's vptr check probes memory through a pipe; without descriptors the
  // probe fails and it reports every virtual call as "invalid vptr".
  GTEST_SKIP() << "UBSan needs file descriptors of its own";
#endif
  RestoreFileLimit limit;
  const int fds_before = open_fd_count();
  run([](const RestoreFileLimit& limit) -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Server server = co_await start_server(echo_lines, "127.0.0.1", 0);
    const uint16_t port = port_of(server);
    // Warm up whatever the loop creates lazily for a connection, so that only
    // the connection's own socket is missing below.
    EXPECT_TRUE(co_await echo_once(port, StreamOptions()));
    const int fds_at_limit = open_fd_count();
    rlimit tight = limit.original();
    tight.rlim_cur = static_cast<rlim_t>(lowest_free_fd());  // no room for a socket
    ::setrlimit(RLIMIT_NOFILE, &tight);
    for (int attempt = 0; attempt < 3; ++attempt) {
      int create_error = 0;
      try {
        auto factory = [] { return std::make_shared<Discard>(); };
        co_await create_connection(loop, factory, "127.0.0.1", port);
      } catch (const std::system_error& e) {
        create_error = e.code().value();
      }
      EXPECT_EQ(create_error, EMFILE) << "create_connection";
      int open_error = 0;
      try {
        co_await open_connection("127.0.0.1", port);
      } catch (const std::system_error& e) {
        open_error = e.code().value();
      }
      EXPECT_EQ(open_error, EMFILE) << "open_connection";
    }
    ::setrlimit(RLIMIT_NOFILE, &limit.original());
    // (Counted now: listing /proc/self/fd takes a descriptor too.)
    EXPECT_EQ(open_fd_count(), fds_at_limit) << "a failed connect left a descriptor open";
    EXPECT_TRUE(co_await echo_once(port, StreamOptions())) << "connects again";
    auto factory = [] { return std::make_shared<Discard>(); };
    auto [transport, protocol] = co_await create_connection(loop, factory, "127.0.0.1", port);
    transport->close();
    server.close();
    co_await wait_for(server.wait_closed(), 10s);
  }(limit));
  EXPECT_EQ(open_fd_count(), fds_before);
}

// ---------------------------------------------------------------------------
// 2. Peer reset mid-handshake (TLS) and mid-transfer (streams)

const tls_testing::TestCerts& certs() { return tls_testing::test_certs(); }

// Closes `fd` with a TCP RST instead of a FIN.
void close_with_reset(int fd) {
  linger lg{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  ::close(fd);
}

TEST(FaultInjection, TlsPeerResetMidHandshakeLeavesTheServerServing) {
  const int fds_before = open_fd_count();
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    std::vector<std::string> reports;
    loop.set_exception_handler(
        [&reports](EventLoop&, const ExceptionContext& ctx) { reports.push_back(ctx.message); });
    StreamOptions server_options;
    server_options.ssl = tls::Context::server(certs().server.cert, certs().server.key);
    Server server = co_await start_server(echo_lines, "127.0.0.1", 0, server_options);
    const uint16_t port = port_of(server);
    for (int i = 0; i < 20; ++i) {
      // The first bytes of a ClientHello: a handshake record announcing 512
      // bytes, of which only the start arrives.
      std::string half_hello("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
      half_hello.append(32, '\x5a');  // the client random
      int client = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      co_await sock_connect(loop, client, SocketAddress("127.0.0.1", port));
      co_await sock_sendall(loop, client, half_hello);
      close_with_reset(client);
    }
    StreamOptions client_options;
    tls::Context client_context = tls::Context::client();
    client_context.load_verify_locations(certs().ca_file);
    client_options.ssl = std::move(client_context);
    client_options.server_hostname = "localhost";
    EXPECT_TRUE(co_await echo_once(port, client_options)) << "other clients are still served";
    server.close();
    // The reset connections are gone too, or this would wait for them.
    co_await wait_for(server.wait_closed(), 10s);
    EXPECT_EQ(reports, std::vector<std::string>()) << "failed handshakes are dropped quietly";
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

// Sends `total` bytes of a known pattern; the receiver checks every byte.
uint8_t pattern(uint64_t i) { return static_cast<uint8_t>((i * 2654435761u) >> 13); }

std::string pattern_block(uint64_t offset, size_t size) {
  std::string block(size, '\0');
  for (size_t i = 0; i < size; ++i) block[i] = static_cast<char>(pattern(offset + i));
  return block;
}

TEST(FaultInjection, StreamsPeerResetMidReplyEndsThatConnectionOnly) {
  const int fds_before = open_fd_count();
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    std::vector<std::string> reports;
    loop.set_exception_handler(
        [&reports](EventLoop&, const ExceptionContext& ctx) { reports.push_back(ctx.message); });
    // "big\n" asks for 256 MiB, any other line is echoed.
    constexpr uint64_t kReply = uint64_t{256} << 20;
    int big_replies_failed = 0, big_replies_done = 0;
    Future<void> big_reply_over = create_future<void>(loop);
    auto handler = [&](StreamReader reader, StreamWriter writer) -> Coro<void> {
      std::string line = co_await reader.readline();
      if (line == "big\n") {
        try {
          const std::string block = pattern_block(0, 256 * 1024);
          for (uint64_t sent = 0; sent < kReply; sent += block.size()) {
            writer.write(block);
            co_await writer.drain();
          }
          ++big_replies_done;
        } catch (const std::system_error& e) {
          EXPECT_TRUE(e.code() == std::errc::connection_reset || e.code() == std::errc::broken_pipe)
              << e.what();
          ++big_replies_failed;
        }
        writer.close();
        big_reply_over.set_result();
        co_return;
      }
      writer.write(line);
      co_await writer.drain();
      co_await echo_lines(std::move(reader), std::move(writer));
    };
    Server server = co_await start_server(handler, "127.0.0.1", 0);
    const uint16_t port = port_of(server);
    {
      auto [reader, writer] = co_await open_connection("127.0.0.1", port);
      writer.write("big\n");
      co_await writer.drain();
      const std::string head = co_await reader.readexactly(1 << 20);
      const std::string block = pattern_block(0, 256 * 1024);
      EXPECT_TRUE(head == block + block + block + block) << "the reply's head arrived intact";
      // Reset with most of the reply still to come.
      int fd = std::any_cast<int>(writer.get_extra_info("socket"));
      linger lg{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
      writer.transport().abort();
    }
    co_await wait_for(big_reply_over, 10s);
    EXPECT_EQ(big_replies_failed + big_replies_done, 1);
    EXPECT_EQ(big_replies_failed, 1) << "drain() raises the reset";
    EXPECT_TRUE(co_await echo_once(port, StreamOptions())) << "the server carries on";
    server.close();
    co_await wait_for(server.wait_closed(), 10s);
    EXPECT_EQ(reports, std::vector<std::string>());
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

// ---------------------------------------------------------------------------
// 3. Slowloris clients beside normal ones

TEST(FaultInjection, SlowlorisClientsDoNotStarveNormalOnes) {
  RestoreFileLimit limit;
  raise_fd_limit();
  const int fds_before = open_fd_count();
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    constexpr int kSlow = 1000, kNormal = 20, kRoundTrips = 50;
    int handlers_started = 0, handlers_finished = 0, lines_echoed = 0;
    Future<void> all_slow_accepted = create_future<void>(loop);
    auto handler = [&](StreamReader reader, StreamWriter writer) -> Coro<void> {
      if (++handlers_started == kSlow) all_slow_accepted.set_result();
      try {
        while (true) {
          std::string line = co_await reader.readline();
          if (line.empty() || line.back() != '\n') break;  // EOF, or EOF mid-line
          ++lines_echoed;
          writer.write(line);
          co_await writer.drain();
        }
      } catch (const std::system_error&) {
      }
      writer.close();
      ++handlers_finished;
    };
    StreamOptions options;
    options.backlog = 1024;
    Server server = co_await start_server(handler, "127.0.0.1", 0, options);
    const uint16_t port = port_of(server);

    // Each slowloris client sends one byte of a line every 50 ms, never its end.
    bool stop_dripping = false;
    int slow_saw_eof = 0;
    auto slowloris = [&]() -> Coro<int> {
      auto [reader, writer] = co_await open_connection("127.0.0.1", port);
      int dripped = 0;
      while (!stop_dripping) {
        writer.write("z");
        ++dripped;
        co_await sleep(50ms);
      }
      slow_saw_eof += reader.at_eof();
      writer.close();
      co_await writer.wait_closed();
      co_return dripped;
    };
    TaskGroup slow_group;
    std::vector<Task<int>> slow_tasks;
    for (int i = 0; i < kSlow; ++i) slow_tasks.push_back(slow_group.create_task(slowloris()));
    co_await wait_for(all_slow_accepted, 60s);

    auto normal = [port](int client) -> Coro<int> {
      auto [reader, writer] = co_await open_connection("127.0.0.1", port);
      int ok = 0;
      for (int i = 0; i < kRoundTrips; ++i) {
        std::string msg =
            "client " + std::to_string(client) + " request " + std::to_string(i) + "\n";
        writer.write(msg);
        co_await writer.drain();
        ok += (co_await reader.readline()) == msg;
      }
      writer.close();
      co_await writer.wait_closed();
      co_return ok;
    };
    std::vector<Coro<int>> normals;
    for (int c = 0; c < kNormal; ++c) normals.push_back(normal(c));
    std::vector<int> ok = co_await wait_for(gather(std::move(normals)), 60s);
    int total = 0;
    for (int n : ok) total += n;
    EXPECT_EQ(total, kNormal * kRoundTrips);
    EXPECT_EQ(lines_echoed, kNormal * kRoundTrips) << "no slowloris line was ever completed";

    // Every slowloris client is still connected and unfinished.
    int slow_running = 0;
    for (const Task<int>& task : slow_tasks) slow_running += !task.done();
    EXPECT_EQ(slow_running, kSlow);
    EXPECT_GE(handlers_started - handlers_finished, kSlow);

    stop_dripping = true;
    co_await wait_for(slow_group.join(), 60s);
    int never_dripped = 0;
    for (Task<int>& task : slow_tasks) never_dripped += task.result() == 0;
    EXPECT_EQ(never_dripped, 0);
    EXPECT_EQ(slow_saw_eof, 0) << "the server hung up on a slowloris client";
    server.close();
    co_await wait_for(server.wait_closed(), 30s);
    EXPECT_EQ(handlers_finished, handlers_started);
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

// ---------------------------------------------------------------------------
// 4. A child killed by SIGKILL during communicate()

TEST(FaultInjection, ChildKilledDuringCommunicate) {
  const int fds_before = open_fd_count();
  run([]() -> Coro<void> {
    SubprocessOptions options;
    options.stdout_ = subprocess::PIPE;
    Process child = co_await create_subprocess_shell("echo partial; exec sleep 60", options);
    EXPECT_EQ(co_await wait_for(child.stdout_->readline(), 10s), "partial\n");
    Task<std::pair<std::string, std::string>> communicating = create_task(child.communicate());
    co_await sleep(0s);  // communicate() is now reading stdout
    EXPECT_FALSE(communicating.done());
    child.kill();
    auto [out, err] = co_await wait_for(std::move(communicating), 10s);
    EXPECT_EQ(out, "");
    EXPECT_EQ(err, "");
    EXPECT_EQ(child.returncode(), -SIGKILL);
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

// ---------------------------------------------------------------------------
// 5. A DNS server that never answers

class DropQueries : public DatagramProtocol {
 public:
  void datagram_received(std::string_view, const SocketAddress&) override { ++queries; }
  int queries = 0;
};

TEST(FaultInjection, SilentDnsServerFailsLookupsAndConnectsWithEaiAgain) {
  const int fds_before = open_fd_count();
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    DatagramOptions udp;
    udp.local_addr = SocketAddress("127.0.0.1", 0);
    auto factory = [] { return std::make_shared<DropQueries>(); };
    auto [endpoint, dropper] = co_await create_datagram_endpoint(loop, factory, udp);
    const uint16_t dns_port =
        std::any_cast<SocketAddress>(endpoint->get_extra_info("sockname")).port();
    dns::ResolverOptions options;
    options.servers = {"127.0.0.1:" + std::to_string(dns_port)};
    options.timeout = 100ms;
    options.tries = 2;
    options.lookups = "b";  // DNS only, whatever the hosts file says
    options.search_domains = std::vector<std::string>{};
    dns::install(loop, options);

    int lookup_error = 0;
    try {
      co_await wait_for(getaddrinfo(loop, "nowhere.test", "80"), 10s);
    } catch (const GaiError& e) {
      lookup_error = e.code();
    }
    EXPECT_EQ(lookup_error, EAI_AGAIN);
    EXPECT_GT(dropper->queries, 0) << "the queries reached the silent server";

    int connect_error = 0;
    try {
      auto discard = [] { return std::make_shared<Discard>(); };
      co_await wait_for(create_connection(loop, discard, "nowhere.test", 80), 10s);
    } catch (const GaiError& e) {
      connect_error = e.code();
    }
    EXPECT_EQ(connect_error, EAI_AGAIN) << "create_connection";
    int open_error = 0;
    try {
      co_await wait_for(open_connection("nowhere.test", 80), 10s);
    } catch (const GaiError& e) {
      open_error = e.code();
    }
    EXPECT_EQ(open_error, EAI_AGAIN) << "open_connection";
    endpoint->close();
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

// ---------------------------------------------------------------------------
// 6. A process-pool worker killed mid-job

// Tells the test process that the job started, then blocks.
int announce_then_block(pid_t test_process) {
  ::kill(test_process, SIGUSR2);
  ::sleep(60);
  return 0;
}

int twice(int x) { return 2 * x; }

TEST(FaultInjection, ProcessPoolWorkerKilledMidJob) {
  // SIGUSR2 is awaited with sigtimedwait: blocked in every thread of the pool.
  sigset_t usr2, previous;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &usr2, &previous), 0);
  {
    concurrent::ProcessPoolExecutor pool(1);
    concurrent::Future<int> job = pool.submit(announce_then_block, ::getpid());
    timespec bound{10, 0};
    ASSERT_EQ(::sigtimedwait(&usr2, nullptr, &bound), SIGUSR2) << "the job never started";
    const std::vector<pid_t> workers = pool.worker_pids();
    ASSERT_EQ(workers.size(), 1u);
    ASSERT_EQ(::kill(workers[0], SIGKILL), 0);
    EXPECT_THROW(job.result(10s), concurrent::BrokenProcessPool);
    EXPECT_EQ(pool.submit(twice, 21).result(10s), 42) << "the pool replaced its worker";
    // And through the loop.
    run([](concurrent::ProcessPoolExecutor& pool) -> Coro<void> {
      EXPECT_EQ(co_await run_in_executor(get_running_loop(), &pool, twice, 4), 8);
    }(pool));
  }
  ASSERT_EQ(::pthread_sigmask(SIG_SETMASK, &previous, nullptr), 0);
}

// ---------------------------------------------------------------------------
// 7. A signal storm during a transfer

TEST(FaultInjection, SignalStormDuringTransferIsHarmless) {
  const int fds_before = open_fd_count();
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    int handled = 0;
    Future<void> first_signal = create_future<void>(loop);
    loop.add_signal_handler(SIGUSR1, [&handled, &first_signal] {
      if (handled++ == 0) first_signal.set_result();
    });
    constexpr uint64_t kTotal = uint64_t{64} << 20;
    auto sender = [](StreamReader, StreamWriter writer) -> Coro<void> {
      for (uint64_t sent = 0; sent < kTotal; sent += 256 * 1024) {
        writer.write(pattern_block(sent, 256 * 1024));
        co_await writer.drain();
      }
      writer.close();
    };
    Server server = co_await start_server(sender, "127.0.0.1", 0);
    auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(server));
    std::atomic<bool> transfer_over{false};
    std::thread storm([&transfer_over] {
      for (int i = 0; i < 10000 && !transfer_over.load(); ++i) ::kill(::getpid(), SIGUSR1);
    });
    uint64_t received = 0;
    bool exact = true;
    while (true) {
      std::string chunk = co_await reader.read(64 * 1024);
      if (chunk.empty()) break;
      for (size_t i = 0; i < chunk.size() && exact; ++i) {
        exact = static_cast<uint8_t>(chunk[i]) == pattern(received + i);
      }
      received += chunk.size();
    }
    transfer_over = true;
    storm.join();
    EXPECT_EQ(received, kTotal);
    EXPECT_TRUE(exact) << "data corrupted in transit";
    co_await wait_for(first_signal, 10s);
    EXPECT_GT(handled, 0);
    loop.remove_signal_handler(SIGUSR1);
    writer.close();
    co_await writer.wait_closed();
    server.close();
    co_await wait_for(server.wait_closed(), 10s);
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

// 8. epoll_pwait2 denied by seccomp: loop/loop_test.cc
// (TimersWorkWhereEpollPwait2IsRefused) runs a loop in a forked child under
// such a filter.

}  // namespace
}  // namespace asyncio
