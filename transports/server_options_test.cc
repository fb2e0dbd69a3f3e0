// ServerOptions from 3.13: keep_alive on create_server, cleanup_socket on
// create_unix_server.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <any>
#include <memory>
#include <string>

#include "futures/futures.h"
#include "gtest/gtest.h"
#include "loop/posix.h"
#include "testing/async_test_util.h"
#include "transports/transports.h"

namespace asyncio {
namespace {

using testing_util::open_fd_count;
using testing_util::port_of;

// Resolves with the server side's socket when a connection is accepted.
class Accepted : public Protocol {
 public:
  explicit Accepted(Future<int> socket) : socket_(std::move(socket)) {}
  void connection_made(std::shared_ptr<BaseTransport> transport) override {
    if (!socket_.done())
      socket_.set_result(std::any_cast<int>(transport->get_extra_info("socket")));
  }

 private:
  Future<int> socket_;
};

int option(int fd, int name) {
  int value = -1;
  socklen_t len = sizeof(value);
  EXPECT_EQ(::getsockopt(fd, SOL_SOCKET, name, &value, &len), 0);
  return value;
}

// SO_KEEPALIVE on the accepted socket of a server made with `keep_alive`.
Coro<int> accepted_keepalive(bool keep_alive) {
  EventLoop& loop = get_running_loop();
  Future<int> accepted = create_future<int>(loop);
  ProtocolFactory factory = [accepted] { return std::make_shared<Accepted>(accepted); };
  ServerOptions options;
  options.keep_alive = keep_alive;
  Server server = co_await create_server(loop, factory, "127.0.0.1", 0, options);
  EXPECT_EQ(option(server.sockets().at(0).fd(), SO_KEEPALIVE) != 0, keep_alive);
  auto client_factory = [] { return std::make_shared<Protocol>(); };
  auto connecting = create_connection(loop, client_factory, "127.0.0.1", port_of(server));
  auto [client, protocol] = co_await std::move(connecting);
  const int fd = co_await accepted;
  const int value = option(fd, SO_KEEPALIVE);
  client->close();
  server.close();
  server.close_clients();
  co_await server.wait_closed();
  co_return value;
}

TEST(ServerOptionsTest, KeepAliveReachesTheAcceptedSockets) {
  const int fds_before = open_fd_count();
  run([]() -> Coro<void> {
    EXPECT_NE(co_await accepted_keepalive(true), 0);
    EXPECT_EQ(co_await accepted_keepalive(false), 0);
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

ProtocolFactory plain_factory() {
  return [] { return std::make_shared<Protocol>(); };
}

TEST(ServerOptionsTest, UnixServerRemovesItsSocketFileOnClose) {
  const int fds_before = open_fd_count();
  run([]() -> Coro<void> {
    testing_util::TempDir dir;
    const std::string path = dir.file("s.sock");
    Server server = co_await create_unix_server(get_running_loop(), plain_factory(), path);
    EXPECT_TRUE(exists(path));
    server.close();
    EXPECT_FALSE(exists(path));
    co_await server.wait_closed();
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(ServerOptionsTest, CleanupSocketFalseLeavesTheFile) {
  run([]() -> Coro<void> {
    testing_util::TempDir dir;
    const std::string path = dir.file("s.sock");
    ServerOptions options;
    options.cleanup_socket = false;
    Server server = co_await create_unix_server(get_running_loop(), plain_factory(), path, options);
    server.close();
    co_await server.wait_closed();
    EXPECT_TRUE(exists(path));
  }());
}

TEST(ServerOptionsTest, AReplacedSocketFileIsLeftAlone) {
  run([]() -> Coro<void> {
    testing_util::TempDir dir;
    const std::string path = dir.file("s.sock");
    Server server = co_await create_unix_server(get_running_loop(), plain_factory(), path);
    // Somebody else's file now stands at the path: not ours to remove.
    EXPECT_EQ(::unlink(path.c_str()), 0);
    posix::UniqueFd other(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    EXPECT_GE(other.get(), 0);
    server.close();
    co_await server.wait_closed();
    EXPECT_TRUE(exists(path));
  }());
}

TEST(ServerOptionsTest, AGivenSocketBoundToAPathIsCleanedUpToo) {
  const int fds_before = open_fd_count();
  run([]() -> Coro<void> {
    testing_util::TempDir dir;
    const std::string path = dir.file("given.sock");
    posix::UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    SocketAddress addr = SocketAddress::unix_path(path);
    EXPECT_EQ(::bind(sock.get(), addr.sockaddr_ptr(), addr.sockaddr_len()), 0);
    ServerOptions options;
    options.sock = sock.release();
    Server server = co_await create_unix_server(get_running_loop(), plain_factory(), "", options);
    EXPECT_TRUE(exists(path));
    server.close();
    co_await server.wait_closed();
    EXPECT_FALSE(exists(path));
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

}  // namespace
}  // namespace asyncio
