// Network scenarios across //transports and //streams: many clients, a large
// transfer with backpressure, resets, refusals, overlong lines, UDP, Unix
// sockets, and no descriptor leaked by any of it.
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <system_error>
#include <vector>

#include "futures/futures.h"
#include "gtest/gtest.h"
#include "streams/streams.h"
#include "testing/async_test_util.h"
#include "transports/transports.h"

namespace asyncio {
namespace {

using testing_util::echo_lines;
using testing_util::open_fd_count;
using testing_util::port_of;
using testing_util::raise_fd_limit;

using namespace std::chrono_literals;

// Counts descriptors before the first test and after the last one.
class NoFdLeak : public testing::Environment {
 public:
  void SetUp() override {
    // 1,000 clients and their server ends need more than the usual 1,024.
    raise_fd_limit();
    before_ = open_fd_count();
  }
  void TearDown() override { EXPECT_EQ(open_fd_count(), before_) << "file descriptors leaked"; }

 private:
  int before_ = 0;
};
const auto* const kNoFdLeak = testing::AddGlobalTestEnvironment(new NoFdLeak);

Coro<int> echo_client(uint16_t port, int client, int messages) {
  auto [reader, writer] = co_await open_connection("127.0.0.1", port);
  int ok = 0;
  for (int i = 0; i < messages; ++i) {
    std::string msg = "client " + std::to_string(client) + " message " + std::to_string(i) + "\n";
    writer.write(msg);
    co_await writer.drain();
    ok += (co_await reader.readline()) == msg;
  }
  writer.close();
  co_await writer.wait_closed();
  co_return ok;
}

TEST(NetworkScenario, ThousandClientsEachEchoHundredMessages) {
  run([]() -> Coro<void> {
    StreamOptions options;
    options.backlog = 1024;
    Server server = co_await start_server(echo_lines, "127.0.0.1", 0, options);
    constexpr int kClients = 1000, kMessages = 100;
    std::vector<Coro<int>> clients;
    for (int c = 0; c < kClients; ++c)
      clients.push_back(echo_client(port_of(server), c, kMessages));
    std::vector<int> ok = co_await gather(std::move(clients));
    int total = 0;
    for (int n : ok) total += n;
    EXPECT_EQ(total, kClients * kMessages);
    server.close();
    co_await server.wait_closed();
  }());
}

// Sends `total` bytes of a known pattern; the receiver checks every byte.
uint8_t pattern(uint64_t i) { return static_cast<uint8_t>((i * 2654435761u) >> 13); }

TEST(NetworkScenario, LargeTransferToASlowReaderKeepsTheBufferBounded) {
  run([]() -> Coro<void> {
    constexpr uint64_t kTotal = uint64_t{256} << 20;
    size_t max_server_buffer = 0;
    bool sender_done = false;
    auto sender = [&max_server_buffer, &sender_done](StreamReader,
                                                     StreamWriter writer) -> Coro<void> {
      std::string block(256 * 1024, '\0');
      for (uint64_t sent = 0; sent < kTotal; sent += block.size()) {
        for (size_t i = 0; i < block.size(); ++i) block[i] = static_cast<char>(pattern(sent + i));
        writer.write(block);
        max_server_buffer = std::max(max_server_buffer, writer.transport().get_write_buffer_size());
        co_await writer.drain();
      }
      writer.close();
      sender_done = true;
    };
    Server server = co_await start_server(sender, "127.0.0.1", 0);
    auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(server));
    uint64_t received = 0;
    bool exact = true;
    int rounds = 0;
    while (true) {
      std::string chunk = co_await reader.read(64 * 1024);
      if (chunk.empty()) break;
      for (size_t i = 0; i < chunk.size() && exact; ++i) {
        exact = static_cast<uint8_t>(chunk[i]) == pattern(received + i);
      }
      received += chunk.size();
      // A slow reader: give the sender time to fill its buffer now and then.
      if (++rounds % 512 == 0) co_await sleep(1ms);
    }
    EXPECT_EQ(received, kTotal);
    EXPECT_TRUE(exact) << "data corrupted in transit";
    EXPECT_TRUE(sender_done);
    // One write of 256 KiB on top of a buffer drained below the high mark.
    EXPECT_LE(max_server_buffer, size_t{64 * 1024 + 256 * 1024});
    writer.close();
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(NetworkScenario, PeerResetMidTransferReachesDrainReaderAndConnectionLost) {
  run([]() -> Coro<void> {
    Future<void> reset_done = create_future<void>(get_running_loop());
    auto resetter = [&reset_done](StreamReader reader, StreamWriter writer) -> Coro<void> {
      co_await reader.readexactly(1 << 20);  // take some, then reset
      int fd = std::any_cast<int>(writer.get_extra_info("socket"));
      linger lg{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
      writer.transport().abort();
      reset_done.set_result();
    };
    Server server = co_await start_server(resetter, "127.0.0.1", 0);
    auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(server));
    bool drain_failed = false;
    try {
      const std::string block(64 * 1024, 'r');
      for (int i = 0; i < 100000; ++i) {
        writer.write(block);
        co_await writer.drain();
      }
    } catch (const std::system_error& e) {
      drain_failed = e.code() == std::errc::connection_reset || e.code() == std::errc::broken_pipe;
    }
    EXPECT_TRUE(drain_failed) << "drain() must raise the reset";
    co_await reset_done;
    bool read_failed = false;
    try {
      co_await reader.read();
    } catch (const std::system_error&) {
      read_failed = true;
    }
    EXPECT_TRUE(read_failed) << "the reader sees the connection's error";
    bool closed_with_error = false;
    try {
      co_await writer.wait_closed();
    } catch (const std::system_error&) {
      closed_with_error = true;
    }
    EXPECT_TRUE(closed_with_error) << "connection_lost got the error";
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(NetworkScenario, ConnectionRefusedAndOverlongLine) {
  run([]() -> Coro<void> {
    Server server = co_await start_server(echo_lines, "127.0.0.1", 0);
    uint16_t port = port_of(server);
    // A line longer than the server's limit: its readline throws, the
    // handler fails, the connection closes; the server carries on.
    std::vector<std::string> reports;
    get_running_loop().set_exception_handler(
        [&reports](EventLoop&, const ExceptionContext& ctx) { reports.push_back(ctx.message); });
    {
      auto [reader, writer] = co_await open_connection("127.0.0.1", port);
      writer.write(std::string(100 * 1024, 'L') + "\n");
      EXPECT_EQ(co_await reader.read(), "");
      writer.close();
    }
    EXPECT_EQ(reports.size(), 1u);
    EXPECT_EQ(co_await echo_client(port, 0, 3), 3) << "the server still serves";
    server.close();
    co_await server.wait_closed();
    bool refused = false;
    try {
      co_await open_connection("127.0.0.1", port);
    } catch (const std::system_error& e) {
      refused = e.code() == std::errc::connection_refused;
    }
    EXPECT_TRUE(refused);
  }());
}

class UdpEcho : public DatagramProtocol {
 public:
  void connection_made(std::shared_ptr<BaseTransport> t) override {
    transport = std::static_pointer_cast<DatagramTransport>(t);
  }
  void datagram_received(std::string_view data, const SocketAddress& from) override {
    transport->sendto(data, from);
  }
  std::shared_ptr<DatagramTransport> transport;
};

class UdpCollector : public DatagramProtocol {
 public:
  explicit UdpCollector(EventLoop& loop) : all(create_future<void>(loop)) {}
  void datagram_received(std::string_view data, const SocketAddress&) override {
    got.emplace_back(data);
    if (got.size() == expected && !all.done()) all.set_result();
  }
  std::vector<std::string> got;
  size_t expected = 0;
  Future<void> all;
};

TEST(NetworkScenario, UdpEchoOfManyDatagrams) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    DatagramOptions server_options;
    server_options.local_addr = SocketAddress("127.0.0.1", 0);
    auto echo_factory = [] { return std::make_shared<UdpEcho>(); };
    auto [server, echo] = co_await create_datagram_endpoint(loop, echo_factory, server_options);
    DatagramOptions client_options;
    client_options.remote_addr = std::any_cast<SocketAddress>(server->get_extra_info("sockname"));
    auto collector_factory = [&loop] { return std::make_shared<UdpCollector>(loop); };
    auto [client, collector] =
        co_await create_datagram_endpoint(loop, collector_factory, client_options);
    collector->expected = 200;
    for (int i = 0; i < 200; ++i) client->sendto("datagram " + std::to_string(i));
    co_await wait_for(collector->all, 5s);
    EXPECT_EQ(collector->got.size(), 200u);
    client->close();
    server->close();
  }());
}

TEST(NetworkScenario, UnixServerRemovesItsSocketFile) {
  run([]() -> Coro<void> {
    testing_util::TempDir dir;
    std::string path = dir.file("echo.sock");
    Server server = co_await start_unix_server(echo_lines, path);
    auto [reader, writer] = co_await open_unix_connection(path);
    writer.write("over a unix socket\n");
    EXPECT_EQ(co_await reader.readline(), "over a unix socket\n");
    writer.close();
    co_await writer.wait_closed();
    server.close();
    co_await server.wait_closed();
    struct stat st;
    EXPECT_NE(::stat(path.c_str(), &st), 0);
  }());
}

}  // namespace
}  // namespace asyncio
