// The connection options open_connection and start_server forward to
// //transports: happy eyeballs, several hosts.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "futures/futures.h"
#include "gtest/gtest.h"
#include "streams/streams.h"
#include "testing/async_test_util.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;

TEST(OpenConnectionTest, HappyEyeballsDelayRacesPastADeadAddress) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    testing_util::Blackhole blackhole;
    Server server = co_await start_server(testing_util::handle_echo, "127.0.0.1", 0);
    const SocketAddress good("127.0.0.1", testing_util::port_of(server));
    loop.set_name_resolver(std::make_shared<testing_util::FixedResolver>(
        loop, std::vector<SocketAddress>{blackhole.addr(), good}));
    StreamOptions options;
    options.happy_eyeballs_delay = 20ms;
    auto [reader, writer] = co_await open_connection("example.test", 80, options);
    EXPECT_EQ(std::any_cast<SocketAddress>(writer.get_extra_info("peername")), good);
    writer.write("ping");
    EXPECT_EQ(co_await reader.read(100), "ping");
    writer.close();
    co_await writer.wait_closed();
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(StartServerTest, SeveralHostsEachAccept) {
  run([]() -> Coro<void> {
    std::vector<std::string> hosts = {"127.0.0.1", "127.0.0.2"};
    Server server = co_await start_server(testing_util::handle_echo, hosts, 0);
    EXPECT_EQ(server.sockets().size(), 2u);
    for (const SocketInfo& socket : server.sockets()) {
      const SocketAddress addr = socket.getsockname();
      auto [reader, writer] = co_await open_connection(addr.host(), addr.port());
      writer.write(addr.host());
      EXPECT_EQ(co_await reader.read(100), addr.host());
      writer.close();
      co_await writer.wait_closed();
    }
    server.close();
    co_await server.wait_closed();
  }());
}

}  // namespace
}  // namespace asyncio
