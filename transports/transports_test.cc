// Transports and protocols over real sockets on loopback.
#include "transports/transports.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "futures/futures.h"
#include "gtest/gtest.h"
#include "testing/async_test_util.h"
#include "transports/internal/socket_transport.h"

namespace asyncio {
namespace {

using testing_util::EchoProtocol;
using testing_util::lowest_free_fd;
using testing_util::port_of;

using namespace std::chrono_literals;

// A client side that collects data and lets tests await events.
class Collector : public Protocol {
 public:
  explicit Collector(EventLoop& loop)
      : closed(create_future<void>(loop)), data_event(create_future<void>(loop)) {}
  void connection_made(std::shared_ptr<BaseTransport> t) override {
    transport = std::static_pointer_cast<Transport>(t);
  }
  void data_received(std::string_view data) override {
    received += data;
    if (!data_event.done()) data_event.set_result();
  }
  bool eof_received() override {
    got_eof = true;
    return keep_open_on_eof;
  }
  void pause_writing() override { ++pauses; }
  void resume_writing() override { ++resumes; }
  void connection_lost(std::exception_ptr exc) override {
    lost_error = exc;
    if (!closed.done()) closed.set_result();
  }
  // Waits until at least n bytes arrived.
  Coro<void> wait_for_bytes(size_t n) {
    while (received.size() < n) {
      data_event = create_future<void>(get_running_loop());
      co_await data_event;
    }
  }
  std::shared_ptr<Transport> transport;
  std::string received;
  bool got_eof = false;
  bool keep_open_on_eof = false;
  int pauses = 0, resumes = 0;
  std::exception_ptr lost_error;
  Future<void> closed;
  Future<void> data_event;
};

TEST(TransportTest, TcpEchoThroughProtocols) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    std::vector<std::shared_ptr<EchoProtocol>> server_side;
    Server server = co_await create_server(
        loop,
        [&server_side] {
          server_side.push_back(std::make_shared<EchoProtocol>());
          return server_side.back();
        },
        "127.0.0.1", 0);
    EXPECT_TRUE(server.is_serving());
    uint16_t port = port_of(server);
    EXPECT_NE(port, 0);
    auto [transport, client] = co_await create_connection(
        loop, [&loop] { return std::make_shared<Collector>(loop); }, "127.0.0.1", port);
    static_assert(std::is_same_v<decltype(client), std::shared_ptr<Collector>>);
    EXPECT_EQ(client->transport, transport);
    transport->write("hello ");
    std::vector<std::string> lines{"wor", "ld"};
    transport->writelines(lines);
    co_await client->wait_for_bytes(11);
    EXPECT_EQ(client->received, "hello world");
    auto peer = std::any_cast<SocketAddress>(transport->get_extra_info("peername"));
    EXPECT_EQ(peer.port(), port);
    EXPECT_EQ(peer.host(), "127.0.0.1");
    auto local = std::any_cast<SocketAddress>(transport->get_extra_info("sockname"));
    EXPECT_EQ(local.host(), "127.0.0.1");
    int fd = std::any_cast<int>(transport->get_extra_info("socket"));
    EXPECT_GE(fd, 0);
    int nodelay = 0;
    socklen_t optlen = sizeof(nodelay);
    EXPECT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &optlen), 0);
    EXPECT_NE(nodelay, 0) << "TCP_NODELAY is on by default, as in asyncio";
    EXPECT_FALSE(transport->get_extra_info("nonsense").has_value());
    transport->close();
    EXPECT_TRUE(transport->is_closing());
    transport->write("ignored after close");  // no crash, no effect
    co_await client->closed;
    EXPECT_EQ(client->lost_error, nullptr);
    server.close();
    co_await server.wait_closed();
    EXPECT_FALSE(server.is_serving());
    EXPECT_EQ(server_side.size(), 1u);
    EXPECT_TRUE(server_side[0]->got_eof);
    EXPECT_TRUE(server_side[0]->lost);
    EXPECT_EQ(server_side[0]->received, "hello world");
  }());
}

// Reads nothing until told to: the other side's buffer fills up.
class Stalled : public Protocol {
 public:
  void connection_made(std::shared_ptr<BaseTransport> t) override {
    transport = std::static_pointer_cast<Transport>(t);
    transport->pause_reading();
  }
  void data_received(std::string_view data) override { received += data.size(); }
  std::shared_ptr<Transport> transport;
  size_t received = 0;
};

TEST(TransportTest, WriteFlowControlPausesAndResumes) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    std::shared_ptr<Stalled> reader;
    Server server = co_await create_server(
        loop,
        [&reader] {
          reader = std::make_shared<Stalled>();
          return reader;
        },
        "127.0.0.1", 0);
    auto [transport, client] = co_await create_connection(
        loop, [&loop] { return std::make_shared<Collector>(loop); }, "127.0.0.1", port_of(server));
    transport->set_write_buffer_limits(1024 * 1024);
    EXPECT_EQ(transport->get_write_buffer_limits(),
              std::make_pair(size_t{256 * 1024}, size_t{1024 * 1024}));
    EXPECT_THROW(transport->set_write_buffer_limits(10, 20), std::invalid_argument);
    const std::string chunk(64 * 1024, 'x');
    size_t written = 0;
    while (client->pauses == 0) {
      transport->write(chunk);
      written += chunk.size();
      EXPECT_LT(written, size_t{256} * 1024 * 1024) << "never paused";
      if (written > size_t{256} * 1024 * 1024) break;
    }
    EXPECT_GE(transport->get_write_buffer_size(), size_t{1024 * 1024});
    EXPECT_EQ(client->resumes, 0);
    while (reader == nullptr) co_await sleep(0s);
    reader->transport->resume_reading();
    while (client->resumes == 0) co_await sleep(1ms);
    EXPECT_LE(transport->get_write_buffer_size(), size_t{256 * 1024});
    transport->close();
    co_await client->closed;
    while (reader->received < written) co_await sleep(1ms);
    EXPECT_EQ(reader->received, written);
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(TransportTest, WriteEofHalfClose) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    std::vector<std::shared_ptr<EchoProtocol>> server_side;
    Server server = co_await create_server(
        loop,
        [&server_side] {
          server_side.push_back(std::make_shared<EchoProtocol>());
          return server_side.back();
        },
        "127.0.0.1", 0);
    auto [transport, client] = co_await create_connection(
        loop, [&loop] { return std::make_shared<Collector>(loop); }, "127.0.0.1", port_of(server));
    EXPECT_TRUE(transport->can_write_eof());
    transport->write("last words");
    transport->write_eof();
    EXPECT_THROW(transport->write("more"), std::runtime_error);
    // The server echoes, sees EOF and closes: we still read the echo.
    co_await client->closed;
    EXPECT_EQ(client->received, "last words");
    EXPECT_TRUE(client->got_eof);
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(TransportTest, AbortDropsBufferedDataAndReportsCleanLoss) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    std::shared_ptr<Stalled> reader;
    Server server = co_await create_server(
        loop,
        [&reader] {
          reader = std::make_shared<Stalled>();
          return reader;
        },
        "127.0.0.1", 0);
    auto [transport, client] = co_await create_connection(
        loop, [&loop] { return std::make_shared<Collector>(loop); }, "127.0.0.1", port_of(server));
    const std::string chunk(1 << 20, 'y');
    while (transport->get_write_buffer_size() == 0) transport->write(chunk);
    transport->abort();
    EXPECT_EQ(transport->get_write_buffer_size(), 0u);
    co_await client->closed;
    EXPECT_EQ(client->lost_error, nullptr);
    // The server side never reads (paused), so it would never see the EOF:
    // wait_closed() waits for it, as in asyncio 3.12.
    while (reader == nullptr) co_await sleep(0s);
    reader->transport->close();
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(TransportTest, ConnectionRefusedIsASystemError) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    // A port nobody listens on: bind one, then close it.
    Server server = co_await create_server(
        loop, [] { return std::make_shared<EchoProtocol>(); }, "127.0.0.1", 0);
    uint16_t port = port_of(server);
    server.close();
    co_await server.wait_closed();
    bool refused = false;
    try {
      co_await create_connection(
          loop, [] { return std::make_shared<EchoProtocol>(); }, "127.0.0.1", port);
    } catch (const std::system_error& e) {
      refused = e.code() == std::errc::connection_refused;
      EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(port)), std::string::npos);
    }
    EXPECT_TRUE(refused);
  }());
}

TEST(TransportTest, PeerResetReachesConnectionLost) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    std::vector<std::shared_ptr<EchoProtocol>> server_side;
    Server server = co_await create_server(
        loop,
        [&server_side] {
          server_side.push_back(std::make_shared<EchoProtocol>());
          return server_side.back();
        },
        "127.0.0.1", 0);
    auto [transport, client] = co_await create_connection(
        loop, [&loop] { return std::make_shared<Collector>(loop); }, "127.0.0.1", port_of(server));
    transport->write("x");
    co_await client->wait_for_bytes(1);
    // Reset from the server side: SO_LINGER 0 then close sends RST.
    int fd = std::any_cast<int>(server_side.at(0)->transport->get_extra_info("socket"));
    linger lg{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    server_side[0]->transport->abort();
    co_await client->closed;
    // Either a reset error or a clean EOF-close, depending on timing; never a
    // crash, and writes afterwards are ignored.
    transport->write("after reset");
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(TransportTest, NameResolutionThroughTheSystemResolver) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Server server = co_await create_server(
        loop, [] { return std::make_shared<EchoProtocol>(); }, "127.0.0.1", 0);
    ConnectOptions options;
    options.family = AF_INET;
    auto [transport, client] = co_await create_connection(
        loop, [&loop] { return std::make_shared<Collector>(loop); }, "localhost", port_of(server),
        options);
    transport->write("via name");
    co_await client->wait_for_bytes(8);
    EXPECT_EQ(client->received, "via name");
    transport->close();
    co_await client->closed;
    bool failed = false;
    try {
      co_await create_connection(
          loop, [] { return std::make_shared<EchoProtocol>(); }, "no-such-host.invalid", 80);
    } catch (const GaiError& e) {
      failed = true;
      EXPECT_NE(e.code(), 0);
    }
    EXPECT_TRUE(failed);
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(TransportTest, UnixSocketServerRemovesItsFileOnClose) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    // Bazel's TEST_TMPDIR is longer than sun_path allows.
    testing_util::TempDir dir;
    std::string path = dir.file("echo.sock");
    Server server = co_await create_unix_server(
        loop, [] { return std::make_shared<EchoProtocol>(); }, path);
    struct stat st;
    EXPECT_EQ(::stat(path.c_str(), &st), 0);
    auto [transport, client] = co_await create_unix_connection(
        loop, [&loop] { return std::make_shared<Collector>(loop); }, path);
    transport->write("over unix");
    co_await client->wait_for_bytes(9);
    EXPECT_EQ(client->received, "over unix");
    transport->close();
    co_await client->closed;
    server.close();
    co_await server.wait_closed();
    EXPECT_NE(::stat(path.c_str(), &st), 0) << "socket file left behind";
    bool refused = false;
    try {
      co_await create_unix_connection(
          loop, [] { return std::make_shared<EchoProtocol>(); }, path);
    } catch (const std::system_error& e) {
      refused = e.code() == std::errc::no_such_file_or_directory;
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

class UdpClient : public DatagramProtocol {
 public:
  explicit UdpClient(EventLoop& loop) : got(create_future<std::string>(loop)) {}
  void datagram_received(std::string_view data, const SocketAddress&) override {
    if (!got.done()) got.set_result(std::string(data));
  }
  Future<std::string> got;
};

TEST(TransportTest, UdpEcho) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    DatagramOptions server_options;
    server_options.local_addr = SocketAddress("127.0.0.1", 0);
    auto [server_transport, server_protocol] = co_await create_datagram_endpoint(
        loop, [] { return std::make_shared<UdpEcho>(); }, server_options);
    auto server_addr = std::any_cast<SocketAddress>(server_transport->get_extra_info("sockname"));
    DatagramOptions client_options;
    client_options.remote_addr = server_addr;
    auto [client_transport, client] = co_await create_datagram_endpoint(
        loop, [&loop] { return std::make_shared<UdpClient>(loop); }, client_options);
    client_transport->sendto("ping");
    EXPECT_EQ(co_await wait_for(client->got, 5s), "ping");
    EXPECT_THROW(client_transport->sendto("x", SocketAddress("127.0.0.1", 9)),
                 std::invalid_argument);
    client_transport->close();
    server_transport->close();
  }());
}

TEST(SockTest, RawSocketOperations) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    SocketAddress any("127.0.0.1", 0);
    EXPECT_EQ(::bind(listener, any.sockaddr_ptr(), any.sockaddr_len()), 0);
    EXPECT_EQ(::listen(listener, 8), 0);
    sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    ::getsockname(listener, reinterpret_cast<sockaddr*>(&ss), &len);
    SocketAddress bound = SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);

    int client = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    Task<std::pair<int, SocketAddress>> accepting = create_task(sock_accept(loop, listener));
    co_await sock_connect(loop, client, bound);
    auto [conn, peer] = co_await accepting;
    EXPECT_EQ(peer.host(), "127.0.0.1");

    std::string big(3 << 20, 'z');  // more than the socket buffers hold
    Task<void> sending = create_task(sock_sendall(loop, client, big));
    size_t got = 0;
    std::string buf(1 << 16, '\0');
    while (got < big.size()) got += co_await sock_recv_into(loop, conn, std::span<char>(buf));
    co_await sending;
    EXPECT_EQ(got, big.size());
    co_await sock_sendall(loop, conn, "bye");
    EXPECT_EQ(co_await sock_recv(loop, client, 100), "bye");

    // sendfile from a temporary file, kernel path.
    char name[] = "/tmp/asyncio-sendfile-XXXXXX";
    int file = ::mkstemp(name);
    ::unlink(name);
    std::string content(100000, 'q');
    EXPECT_EQ(::write(file, content.data(), content.size()), static_cast<ssize_t>(content.size()));
    size_t sent = co_await sock_sendfile(loop, client, file, 10, 5000);
    EXPECT_EQ(sent, 5000u);
    EXPECT_EQ(::lseek(file, 0, SEEK_CUR), 5010);
    got = 0;
    while (got < sent) got += co_await sock_recv_into(loop, conn, std::span<char>(buf));
    EXPECT_EQ(got, sent);

    // Cancelling a pending receive leaves the socket usable.
    Task<std::string> pending = create_task(sock_recv(loop, conn, 10));
    co_await sleep(1ms);
    pending.cancel();
    EXPECT_THROW(co_await pending, CancelledError);
    co_await sock_sendall(loop, client, "again");
    EXPECT_EQ(co_await sock_recv(loop, conn, 10), "again");

    ::close(file);
    ::close(client);
    ::close(conn);
    ::close(listener);
  }());
}

TEST(TransportTest, SendfileOverATransport) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    std::vector<std::shared_ptr<EchoProtocol>> server_side;
    Server server = co_await create_server(
        loop,
        [&server_side] {
          server_side.push_back(std::make_shared<EchoProtocol>());
          return server_side.back();
        },
        "127.0.0.1", 0);
    auto [transport, client] = co_await create_connection(
        loop, [&loop] { return std::make_shared<Collector>(loop); }, "127.0.0.1", port_of(server));
    char name[] = "/tmp/asyncio-sendfile-XXXXXX";
    int file = ::mkstemp(name);
    ::unlink(name);
    std::string content;
    for (int i = 0; i < 50000; ++i) content += static_cast<char>('a' + i % 26);
    EXPECT_EQ(::write(file, content.data(), content.size()), static_cast<ssize_t>(content.size()));
    transport->write("head:");
    size_t sent = co_await sendfile(loop, *transport, file);
    EXPECT_EQ(sent, content.size());
    co_await client->wait_for_bytes(5 + content.size());
    EXPECT_EQ(client->received, "head:" + content);
    ::close(file);
    transport->close();
    co_await client->closed;
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(ServerTest, ServeForeverCancelledClosesTheServer) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    ServerOptions options;
    options.start_serving = false;
    Server server = co_await create_server(
        loop, [] { return std::make_shared<EchoProtocol>(); }, "127.0.0.1", 0, options);
    EXPECT_FALSE(server.is_serving());
    auto serve = [](Server s) -> Coro<void> { co_await s.serve_forever(); };
    Task<void> serving = create_task(serve(server));
    co_await sleep(1ms);
    EXPECT_TRUE(server.is_serving());
    EXPECT_THROW(co_await server.serve_forever(), std::runtime_error);
    serving.cancel();
    EXPECT_THROW(co_await serving, CancelledError);
    EXPECT_FALSE(server.is_serving());
    EXPECT_TRUE(server.sockets().empty());
  }());
}

TEST(ServerTest, EveryInterfaceAndReusePort) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Server all = co_await create_server(
        loop, [] { return std::make_shared<EchoProtocol>(); }, "", 0);
    EXPECT_GE(all.sockets().size(), 1u);
    all.close();
    co_await all.wait_closed();
    ServerOptions options;
    options.reuse_port = true;
    Server a = co_await create_server(
        loop, [] { return std::make_shared<EchoProtocol>(); }, "127.0.0.1", 0, options);
    Server b = co_await create_server(
        loop, [] { return std::make_shared<EchoProtocol>(); }, "127.0.0.1", port_of(a), options);
    EXPECT_EQ(port_of(a), port_of(b));
    a.close();
    b.close();
    co_await a.wait_closed();
    co_await b.wait_closed();
    bool in_use = false;
    Server c = co_await create_server(
        loop, [] { return std::make_shared<EchoProtocol>(); }, "127.0.0.1", 0);
    try {
      co_await create_server(
          loop, [] { return std::make_shared<EchoProtocol>(); }, "127.0.0.1", port_of(c));
    } catch (const std::system_error& e) {
      in_use = e.code() == std::errc::address_in_use;
    }
    EXPECT_TRUE(in_use);
    c.close();
    co_await c.wait_closed();
  }());
}

// Reads into its own memory.
class BufferedCollector : public BufferedProtocol {
 public:
  explicit BufferedCollector(EventLoop& loop) : closed(create_future<void>(loop)) {}
  std::span<char> get_buffer(size_t) override { return std::span<char>(buf, sizeof(buf)); }
  void buffer_updated(size_t n) override { received.append(buf, n); }
  void connection_lost(std::exception_ptr) override { closed.set_result(); }
  char buf[7];
  std::string received;
  Future<void> closed;
};

TEST(TransportTest, BufferedProtocolReadsIntoItsBuffer) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    std::shared_ptr<BufferedCollector> collector;
    Server server = co_await create_server(
        loop,
        [&] {
          collector = std::make_shared<BufferedCollector>(loop);
          return collector;
        },
        "127.0.0.1", 0);
    auto [transport, client] = co_await create_connection(
        loop, [&loop] { return std::make_shared<Collector>(loop); }, "127.0.0.1", port_of(server));
    transport->write("a message longer than seven bytes");
    transport->close();
    co_await client->closed;
    while (collector == nullptr) co_await sleep(0s);
    co_await collector->closed;
    EXPECT_EQ(collector->received, "a message longer than seven bytes");
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(TransportTest, ConnectAcceptedSocket) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    auto [transport, protocol] = co_await connect_accepted_socket(
        loop, [&loop] { return std::make_shared<Collector>(loop); }, fds[0]);
    EXPECT_EQ(::write(fds[1], "pair", 4), 4);
    co_await protocol->wait_for_bytes(4);
    EXPECT_EQ(protocol->received, "pair");
    ::close(fds[1]);
    co_await protocol->closed;
    EXPECT_TRUE(protocol->got_eof);
  }());
}

}  // namespace
}  // namespace asyncio

namespace asyncio {
namespace {

TEST(TransportTest, ConnectionsOpenWhenTheLoopGoesAreTornDown) {
  auto lost = std::make_shared<std::vector<int>>();
  class Recorder : public Protocol {
   public:
    explicit Recorder(std::shared_ptr<std::vector<int>> l) : lost_(std::move(l)) {}
    void connection_lost(std::exception_ptr exc) override {
      int code = 0;
      try {
        if (exc) std::rethrow_exception(exc);
      } catch (const std::system_error& e) {
        code = e.code().value();
      }
      lost_->push_back(code);
    }
    std::shared_ptr<std::vector<int>> lost_;
  };
  std::vector<std::string> reports;
  {
    auto loop = new_event_loop();
    loop->set_exception_handler(
        [&reports](EventLoop&, const ExceptionContext& ctx) { reports.push_back(ctx.message); });
    run_until_complete(
        *loop, [](EventLoop& l, std::shared_ptr<std::vector<int>> rec) -> Coro<void> {
          auto factory = [rec] { return std::make_shared<Recorder>(rec); };
          Server server = co_await create_server(l, factory, "127.0.0.1", 0);
          auto connecting = create_connection(l, factory, "127.0.0.1", port_of(server));
          co_await std::move(connecting);
          co_await sleep(1ms);  // the server side is connected too
        }(*loop, lost));
  }  // the loop goes with both ends open: no leak (ASan), both told
  EXPECT_EQ(*lost, (std::vector<int>{ECONNABORTED, ECONNABORTED}));
  // ... and reported, as Python's ResourceWarning (unclosed_test.cc has the
  // details): both connections and the server.
  ASSERT_EQ(reports.size(), 3u);
  for (const std::string& r : reports) EXPECT_EQ(r.rfind("unclosed ", 0), 0u) << r;
}

}  // namespace
}  // namespace asyncio

#include <sys/resource.h>

namespace asyncio {
namespace {

TEST(ServerTest, OutOfDescriptorsPausesAcceptingThenCarriesOn) {
  testing_util::RestoreFileLimit limit;
  std::vector<std::string> reports;
  run([](rlimit original, std::vector<std::string>& reports) -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Future<void> reported = create_future<void>(loop);
    loop.set_exception_handler([&](EventLoop&, const ExceptionContext& ctx) {
      reports.push_back(ctx.message);
      ::setrlimit(RLIMIT_NOFILE, &original);  // descriptors are available again
      if (!reported.done()) reported.set_result();
    });
    auto echo = [] { return std::make_shared<EchoProtocol>(); };
    ServerOptions options;
    options.start_serving = false;  // the client waits in the backlog
    Server server = co_await create_server(loop, echo, "127.0.0.1", 0, options);
    // A client socket, connected by the kernel before the server accepts.
    int client = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    SocketAddress addr("127.0.0.1", port_of(server));
    co_await sock_connect(loop, client, addr);
    rlimit tight = original;
    tight.rlim_cur = static_cast<rlim_t>(lowest_free_fd());  // no room for accept
    ::setrlimit(RLIMIT_NOFILE, &tight);
    co_await server.start_serving();
    co_await wait_for(reported, 5s);
    EXPECT_FALSE(server.is_serving()) << "accepting pauses for a moment";
    // After the pause the server accepts the waiting client and echoes.
    co_await sock_sendall(loop, client, "still there?");
    EXPECT_EQ(co_await wait_for(sock_recv(loop, client, 100), 5s), "still there?");
    EXPECT_TRUE(server.is_serving());
    ::close(client);
    server.close();
    co_await server.wait_closed();
  }(limit.original(), reports));
  ASSERT_FALSE(reports.empty());
  EXPECT_EQ(reports[0], "socket.accept() out of system resource");
}

}  // namespace
}  // namespace asyncio

namespace asyncio {
namespace {

bool is_nonblocking(int fd) { return (::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0; }

// A caller's socket is made non-blocking (socket.setblocking(False) in
// asyncio): a blocking one would stall the whole loop in accept4/recvfrom.
TEST(ServerTest, CallerProvidedSocketsAreMadeNonBlocking) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    auto echo = [] { return std::make_shared<EchoProtocol>(); };

    int tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);  // blocking
    SocketAddress any("127.0.0.1", 0);
    EXPECT_EQ(::bind(tcp, any.sockaddr_ptr(), any.sockaddr_len()), 0);
    ServerOptions tcp_options;
    tcp_options.sock = tcp;
    Server tcp_server = co_await create_server(loop, echo, "", 0, tcp_options);
    EXPECT_TRUE(is_nonblocking(tcp));
    // The accept loop drains the queue and returns to the loop.
    auto [transport, client] = co_await create_connection(
        loop, [&loop] { return std::make_shared<Collector>(loop); }, "127.0.0.1",
        port_of(tcp_server));
    transport->write("ping");
    co_await wait_for(client->wait_for_bytes(4), 5s);
    EXPECT_EQ(client->received, "ping");
    transport->close();
    co_await client->closed;
    tcp_server.close();
    co_await tcp_server.wait_closed();

    int unix_sock = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    SocketAddress abstract = SocketAddress::unix_path(std::string("\0asyncio-nonblocking-", 21) +
                                                      std::to_string(::getpid()));
    EXPECT_EQ(::bind(unix_sock, abstract.sockaddr_ptr(), abstract.sockaddr_len()), 0);
    ServerOptions unix_options;
    unix_options.sock = unix_sock;
    Server unix_server = co_await create_unix_server(loop, echo, "", unix_options);
    EXPECT_TRUE(is_nonblocking(unix_sock));
    unix_server.close();
    co_await unix_server.wait_closed();

    int udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    EXPECT_EQ(::bind(udp, any.sockaddr_ptr(), any.sockaddr_len()), 0);
    DatagramOptions udp_options;
    udp_options.sock = udp;
    auto [udp_transport, udp_protocol] = co_await create_datagram_endpoint(
        loop, [] { return std::make_shared<DatagramProtocol>(); }, udp_options);
    EXPECT_TRUE(is_nonblocking(udp));
    udp_transport->close();

    int pair[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    ConnectOptions connect_options;
    connect_options.sock = pair[0];
    auto [wrapped, wrapped_protocol] = co_await create_connection(
        loop, [&loop] { return std::make_shared<Collector>(loop); }, "", 0, connect_options);
    EXPECT_TRUE(is_nonblocking(pair[0]));
    ::close(pair[1]);
    co_await wrapped_protocol->closed;
  }());
}

}  // namespace
}  // namespace asyncio

namespace asyncio {
namespace {

// Reads nothing: whatever is sent to it stays in the socket buffers.
class NeverReads : public Protocol {
 public:
  void connection_made(std::shared_ptr<BaseTransport> t) override {
    transport = std::static_pointer_cast<Transport>(t);
    transport->pause_reading();
  }
  std::shared_ptr<Transport> transport;
};

// A file far larger than the socket buffers (sparse: no disk used).
int big_sparse_file() {
  char name[] = "/tmp/asyncio-sendfile-XXXXXX";
  int file = ::mkstemp(name);
  ::unlink(name);
  EXPECT_EQ(::ftruncate(file, 256 << 20), 0);
  return file;
}

// Closing (or aborting) a transport while sendfile waits for the socket to
// drain ends the transfer with an error; the descriptor number, reused by the
// next socket, is never written to.
void close_during_sendfile(bool abort) {
  run([](bool abort) -> Coro<void> {
    EventLoop& loop = get_running_loop();
    std::vector<std::shared_ptr<NeverReads>> server_side;
    Server server = co_await create_server(
        loop,
        [&server_side] {
          server_side.push_back(std::make_shared<NeverReads>());
          return server_side.back();
        },
        "127.0.0.1", 0);
    auto [transport, client] = co_await create_connection(
        loop, [&loop] { return std::make_shared<Collector>(loop); }, "127.0.0.1", port_of(server));
    int file = big_sparse_file();
    Task<size_t> sending = create_task(sendfile(loop, *transport, file));
    while (server_side.empty()) co_await sleep(0s);  // accepted
    co_await sleep(0s);                              // sendfile filled the socket buffers and waits
    EXPECT_FALSE(sending.done());
    EXPECT_THROW(transport->write("x"), std::runtime_error);
    std::vector<std::string> lines{"x"};
    EXPECT_THROW(transport->writelines(lines), std::runtime_error);
    int old_fd = std::any_cast<int>(transport->get_extra_info("socket"));
    if (abort) {
      transport->abort();
    } else {
      transport->close();
    }
    co_await client->closed;
    // The number comes back with the next socket.
    int pair[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair), 0);
    EXPECT_EQ(pair[0], old_fd);
    auto [reused, reused_protocol] = co_await connect_accepted_socket(
        loop, [&loop] { return std::make_shared<Collector>(loop); }, pair[0]);
    EXPECT_THROW(co_await wait_for(std::move(sending), 5s), std::system_error);
    reused->write("mine");
    EXPECT_EQ(co_await wait_for(sock_recv(loop, pair[1], 100), 5s), "mine")
        << "nothing of the file reached the new socket";
    reused->close();
    co_await reused_protocol->closed;
    ::close(pair[1]);
    ::close(file);
    server_side[0]->transport->abort();
    server.close();
    co_await server.wait_closed();
  }(abort));
}

TEST(TransportTest, CloseDuringSendfileEndsItWithAnError) { close_during_sendfile(false); }
TEST(TransportTest, AbortDuringSendfileEndsItWithAnError) { close_during_sendfile(true); }

}  // namespace
}  // namespace asyncio

namespace asyncio {
namespace {

// Writes a lot on connect to a peer that reads nothing: it stays buffered.
class Flooder : public Protocol {
 public:
  void connection_made(std::shared_ptr<BaseTransport> t) override {
    transport = std::static_pointer_cast<Transport>(t);
    transport->write(std::string(32 << 20, 'f'));
  }
  std::shared_ptr<Transport> transport;
};

TEST(ServerTest, WaitClosedWaitsForClientsUntilCloseClients) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    std::vector<std::shared_ptr<EchoProtocol>> server_side;
    Server server = co_await create_server(
        loop,
        [&server_side] {
          server_side.push_back(std::make_shared<EchoProtocol>());
          return server_side.back();
        },
        "127.0.0.1", 0);
    auto [transport, client] = co_await create_connection(
        loop, [&loop] { return std::make_shared<Collector>(loop); }, "127.0.0.1", port_of(server));
    transport->write("x");
    co_await client->wait_for_bytes(1);  // the server has the connection
    server.close();
    Task<void> closing = create_task(server.wait_closed());
    co_await sleep(0s);
    EXPECT_FALSE(closing.done()) << "an idle client keeps the server open";
    server.close_clients();
    co_await wait_for(std::move(closing), 5s);
    co_await wait_for(client->closed, 5s);
    EXPECT_TRUE(client->got_eof);
    EXPECT_TRUE(server_side.at(0)->lost);
  }());
}

TEST(ServerTest, AbortClientsDropsWhatTheyHaveBuffered) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    std::vector<std::shared_ptr<Flooder>> server_side;
    Server server = co_await create_server(
        loop,
        [&server_side] {
          server_side.push_back(std::make_shared<Flooder>());
          return server_side.back();
        },
        "127.0.0.1", 0);
    auto [transport, client] = co_await create_connection(
        loop, [] { return std::make_shared<NeverReads>(); }, "127.0.0.1", port_of(server));
    while (server_side.empty() || !server_side[0]->transport) co_await sleep(0s);
    EXPECT_GT(server_side[0]->transport->get_write_buffer_size(), 0u);
    server.close();
    server.close_clients();  // waits for a flush that never comes
    co_await sleep(0s);
    EXPECT_TRUE(server_side[0]->transport->is_closing());
    server.abort_clients();
    co_await wait_for(server.wait_closed(), 5s);
    EXPECT_EQ(server_side[0]->transport->get_write_buffer_size(), 0u);
    transport->close();
  }());
}

// asyncio::run cancels serve_forever on its way out: an idle connection
// must not keep the program from ending.
TEST(ServerTest, CancellingServeForeverClosesIdleClients) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Server server = co_await create_server(
        loop, [] { return std::make_shared<EchoProtocol>(); }, "127.0.0.1", 0);
    auto serve = [](Server s) -> Coro<void> { co_await s.serve_forever(); };
    Task<void> serving = create_task(serve(server));
    auto [transport, client] = co_await create_connection(
        loop, [&loop] { return std::make_shared<Collector>(loop); }, "127.0.0.1", port_of(server));
    transport->write("x");
    co_await client->wait_for_bytes(1);
    serving.cancel();
    EXPECT_THROW(co_await wait_for(std::move(serving), 5s), CancelledError);
    co_await wait_for(client->closed, 5s);
  }());
}

}  // namespace
}  // namespace asyncio

#include <dlfcn.h>
#include <pthread.h>

#include <atomic>

// Counts the threads the process starts.
std::atomic<int> threads_started{0};
extern "C" int pthread_create(pthread_t* thread, const pthread_attr_t* attr, void* (*start)(void*),
                              void* arg) {
  using Real = int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
  static const Real real = reinterpret_cast<Real>(::dlsym(RTLD_NEXT, "pthread_create"));
  threads_started.fetch_add(1);
  return real(thread, attr, start, arg);
}

namespace asyncio {
namespace {

// Name lookups without a resolver or an executor share a few threads
// instead of starting one each.
TEST(TransportTest, SystemLookupsShareAFewThreads) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    const int before = threads_started.load();
    std::vector<Task<std::vector<AddrInfo>>> lookups;
    for (int i = 0; i < 64; ++i) {
      lookups.push_back(
          create_task(transports_internal::resolve(loop, "localhost", 80, AddrInfoHints())));
    }
    for (auto& lookup : lookups) EXPECT_FALSE((co_await wait_for(lookup, 5s)).empty());
    EXPECT_LE(threads_started.load() - before, 4) << "threads started for 64 lookups";
    // A cancelled lookup that has not started is dropped: the rest go on.
    std::vector<Task<std::vector<AddrInfo>>> cancelled;
    for (int i = 0; i < 16; ++i) {
      cancelled.push_back(
          create_task(transports_internal::resolve(loop, "localhost", 80, AddrInfoHints())));
    }
    co_await sleep(0s);
    for (auto& lookup : cancelled) lookup.cancel();
    EXPECT_FALSE((co_await wait_for(
                      transports_internal::resolve(loop, "localhost", 80, AddrInfoHints()), 5s))
                     .empty());
    EXPECT_LE(threads_started.load() - before, 4);
  }());
}

}  // namespace
}  // namespace asyncio

namespace asyncio {
namespace {

// A Unix server whose backlog is full: connecting fails at once with EAGAIN
// instead of spinning on a socket that is always writable.
TEST(TransportTest, UnixConnectToAFullBacklogFails) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    std::string path = std::string("\0asyncio-backlog-", 17) + std::to_string(::getpid());
    ServerOptions options;
    options.start_serving = false;  // nobody accepts
    options.backlog = 1;
    Server server = co_await create_unix_server(
        loop, [] { return std::make_shared<EchoProtocol>(); }, path, options);
    SocketAddress addr = SocketAddress::unix_path(path);
    std::vector<int> waiting;
    for (int i = 0; i < 100; ++i) {
      int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      waiting.push_back(fd);
      if (::connect(fd, addr.sockaddr_ptr(), addr.sockaddr_len()) != 0) {
        EXPECT_EQ(errno, EAGAIN);
        break;
      }
    }
    int code = 0;
    try {
      co_await wait_for(create_unix_connection(
                            loop, [] { return std::make_shared<EchoProtocol>(); }, path),
                        5s);
    } catch (const std::system_error& e) {
      code = e.code().value();
    }
    EXPECT_EQ(code, EAGAIN);
    int raw = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    code = 0;
    try {
      co_await wait_for(sock_connect(loop, raw, addr), 5s);
    } catch (const std::system_error& e) {
      code = e.code().value();
    }
    EXPECT_EQ(code, EAGAIN);
    ::close(raw);
    for (int fd : waiting) ::close(fd);
    server.close();
    co_await server.wait_closed();
  }());
}

}  // namespace
}  // namespace asyncio

namespace asyncio {
namespace {

class CountsPauses : public DatagramProtocol {
 public:
  explicit CountsPauses(EventLoop& loop) : resumed(create_future<void>(loop)) {}
  void pause_writing() override { ++pauses; }
  void resume_writing() override {
    ++resumes;
    if (!resumed.done()) resumed.set_result();
  }
  int pauses = 0, resumes = 0;
  Future<void> resumed;
};

// The send queue of a datagram transport has write flow control, as a
// stream transport's buffer (asyncio's _SelectorDatagramTransport).
TEST(TransportTest, DatagramSendQueueHasFlowControl) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    // A Unix datagram receiver that reads nothing: once its queue is full,
    // sends would block and the transport queues them.
    std::string suffix = std::to_string(::getpid());
    SocketAddress receiver_addr =
        SocketAddress::unix_path(std::string("\0asyncio-dgram-recv-", 20) + suffix);
    int receiver = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    EXPECT_EQ(::bind(receiver, receiver_addr.sockaddr_ptr(), receiver_addr.sockaddr_len()), 0);
    DatagramOptions options;
    options.local_addr =
        SocketAddress::unix_path(std::string("\0asyncio-dgram-send-", 20) + suffix);
    auto [transport, protocol] = co_await create_datagram_endpoint(
        loop, [&loop] { return std::make_shared<CountsPauses>(loop); }, options);
    const std::string datagram(1000, 'd');
    for (int i = 0; i < 400; ++i) transport->sendto(datagram, receiver_addr);
    EXPECT_GT(transport->get_write_buffer_size(), 64u * 1024);
    EXPECT_EQ(protocol->pauses, 1) << "over the default 64 KiB high-water mark";
    EXPECT_EQ(protocol->resumes, 0);
    size_t received = 0;
    while (!protocol->resumed.done()) {
      received += (co_await wait_for(sock_recv(loop, receiver, 2000), 5s)).size();
    }
    EXPECT_GE(received, datagram.size()) << "resumed only once the receiver read";
    EXPECT_EQ(protocol->resumes, 1);
    EXPECT_LE(transport->get_write_buffer_size(), 16u * 1024);
    EXPECT_EQ(transport->get_write_buffer_limits(),
              std::make_pair(size_t{16 * 1024}, size_t{64 * 1024}));
    EXPECT_THROW(transport->set_write_buffer_limits(10, 20), std::invalid_argument);
    // Lower limits than what is queued pause at once.
    transport->set_write_buffer_limits(100);
    EXPECT_EQ(transport->get_write_buffer_limits(), std::make_pair(size_t{25}, size_t{100}));
    EXPECT_EQ(protocol->pauses, transport->get_write_buffer_size() >= 100 ? 2 : 1);
    transport->abort();
    ::close(receiver);
  }());
}

}  // namespace
}  // namespace asyncio
