// create_server over a list of hosts (Python: `host` a sequence).
#include <netinet/in.h>
#include <sys/socket.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "futures/futures.h"
#include "gtest/gtest.h"
#include "loop/posix.h"
#include "testing/async_test_util.h"
#include "transports/transports.h"

namespace asyncio {
namespace {

using testing_util::EchoProtocol;
using testing_util::open_fd_count;

// A second loopback address: ::1 where IPv6 loopback works, else
// 127.0.0.2 (all of 127/8 is loopback on Linux).
std::string second_loopback() {
  posix::UniqueFd probe(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  SocketAddress v6("::1", 0);
  const bool v6_works =
      probe.get() >= 0 && ::bind(probe.get(), v6.sockaddr_ptr(), v6.sockaddr_len()) == 0;
  return v6_works ? "::1" : "127.0.0.2";
}

ProtocolFactory echo_factory(std::vector<std::shared_ptr<EchoProtocol>>& made) {
  return [&made]() -> std::shared_ptr<BaseProtocol> {
    made.push_back(std::make_shared<EchoProtocol>());
    return made.back();
  };
}

// A protocol that keeps what it receives and says when it arrived.
class Receiver : public Protocol {
 public:
  explicit Receiver(EventLoop& loop) : got_data(create_future<void>(loop)) {}
  void data_received(std::string_view data) override {
    received += data;
    if (!got_data.done()) got_data.set_result();
  }
  std::string received;
  Future<void> got_data;
};

TEST(ServerHostsTest, EveryHostGetsAListeningSocketThatAccepts) {
  const std::string second = second_loopback();
  run([](std::string second) -> Coro<void> {
    EventLoop& loop = get_running_loop();
    std::vector<std::shared_ptr<EchoProtocol>> accepted;
    std::vector<std::string> hosts = {"127.0.0.1", second};
    Server server = co_await create_server(loop, echo_factory(accepted), hosts, 0);
    std::vector<SocketInfo> sockets = server.sockets();
    EXPECT_EQ(sockets.size(), 2u);
    std::vector<std::string> listening;
    for (const SocketInfo& socket : sockets) listening.push_back(socket.getsockname().host());
    EXPECT_EQ(listening, hosts);
    for (const SocketInfo& socket : sockets) {
      SocketAddress addr = socket.getsockname();
      auto factory = [&loop] { return std::make_shared<Receiver>(loop); };
      auto [transport, client] =
          co_await create_connection(loop, factory, addr.host(), addr.port());
      transport->write("hello " + addr.host());
      co_await client->got_data;
      EXPECT_EQ(client->received, "hello " + addr.host());
      transport->close();
    }
    EXPECT_EQ(accepted.size(), 2u);
    server.close();
    server.close_clients();
    co_await server.wait_closed();
  }(second));
}

TEST(ServerHostsTest, AnAddressSharedByHostsIsListenedOnOnce) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    std::vector<std::shared_ptr<EchoProtocol>> accepted;
    std::vector<std::string> hosts = {"127.0.0.1", "127.0.0.1"};
    Server server = co_await create_server(loop, echo_factory(accepted), hosts, 0);
    EXPECT_EQ(server.sockets().size(), 1u);
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(ServerHostsTest, OneHostFailingClosesTheOthers) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    std::vector<std::shared_ptr<EchoProtocol>> accepted;
    const int fds_before = open_fd_count();
    // 192.0.2.1 (TEST-NET-1) is no address of this machine.
    std::vector<std::string> hosts = {"127.0.0.1", "192.0.2.1"};
    EXPECT_TRUE(co_await testing_util::throws<std::system_error>(
        create_server(loop, echo_factory(accepted), hosts, 0)));
    EXPECT_EQ(open_fd_count(), fds_before);
    std::vector<std::string> none;
    EXPECT_TRUE(co_await testing_util::throws<std::runtime_error>(
        create_server(loop, echo_factory(accepted), none, 0)));
  }());
}

}  // namespace
}  // namespace asyncio
