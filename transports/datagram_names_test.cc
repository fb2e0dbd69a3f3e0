// create_datagram_endpoint with names for its local and remote addresses
// (Python: local_addr=('localhost', 0)), resolved through the loop's
// resolver, each family tried in turn.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <any>
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

using posix::UniqueFd;
using testing_util::open_fd_count;

using Udp = testing_util::LoopbackUdp;

ProtocolFactory datagram_factory() {
  return [] { return std::make_shared<DatagramProtocol>(); };
}

// The endpoint the options make, or the exception they throw.
Coro<std::shared_ptr<DatagramTransport>> endpoint(DatagramOptions options) {
  EventLoop& loop = get_running_loop();
  ProtocolFactory factory = datagram_factory();
  auto creating = create_datagram_endpoint(loop, factory, std::move(options));
  auto [transport, protocol] = co_await std::move(creating);
  co_return transport;
}

TEST(DatagramNamesTest, RemoteNameIsResolvedThroughTheLoopsResolver) {
  const int fds_before = open_fd_count();
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Udp receiver;
    std::vector<SocketAddress> answer = {receiver.addr};
    loop.set_name_resolver(std::make_shared<testing_util::FixedResolver>(loop, answer));
    DatagramOptions options;
    options.remote_name = HostAndPort{"receiver.test", receiver.addr.port()};
    std::shared_ptr<DatagramTransport> transport = co_await endpoint(options);
    EXPECT_EQ(std::any_cast<SocketAddress>(transport->get_extra_info("peername")), receiver.addr);
    transport->sendto("to a name");
    auto [data, from] = co_await sock_recvfrom(loop, receiver.fd.get(), 100);
    EXPECT_EQ(data, "to a name");
    EXPECT_EQ(from, std::any_cast<SocketAddress>(transport->get_extra_info("sockname")));
    transport->close();
    co_await testing_util::settle();
    loop.set_name_resolver(nullptr);
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(DatagramNamesTest, LocalNameOfALiteralBindsThere) {
  run([]() -> Coro<void> {
    DatagramOptions options;
    options.local_name = HostAndPort{"127.0.0.1", 0};
    std::shared_ptr<DatagramTransport> transport = co_await endpoint(options);
    SocketAddress bound = std::any_cast<SocketAddress>(transport->get_extra_info("sockname"));
    EXPECT_EQ(bound.host(), "127.0.0.1");
    EXPECT_NE(bound.port(), 0);
    transport->close();
    co_await testing_util::settle();
  }());
}

// The resolver answers a Unix path (whose bind fails: the file exists) and
// then an IPv4 address: the second family is tried after the first fails.
TEST(DatagramNamesTest, EachFamilyIsTriedUntilOneWorks) {
  const int fds_before = open_fd_count();
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    testing_util::TempDir dir;
    const std::string taken = dir.file("taken");
    UniqueFd holder(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    SocketAddress taken_addr = SocketAddress::unix_path(taken);
    EXPECT_EQ(::bind(holder.get(), taken_addr.sockaddr_ptr(), taken_addr.sockaddr_len()), 0);
    std::vector<SocketAddress> answer = {taken_addr, SocketAddress("127.0.0.1", 0)};
    loop.set_name_resolver(std::make_shared<testing_util::FixedResolver>(loop, answer));
    DatagramOptions options;
    options.local_name = HostAndPort{"two-families.test", 0};
    std::shared_ptr<DatagramTransport> transport = co_await endpoint(options);
    SocketAddress bound = std::any_cast<SocketAddress>(transport->get_extra_info("sockname"));
    EXPECT_EQ(bound.family(), AF_INET);
    transport->close();
    co_await testing_util::settle();

    // Every family failing: the first error.
    Udp busy;
    answer = {taken_addr, busy.addr};
    loop.set_name_resolver(std::make_shared<testing_util::FixedResolver>(loop, answer));
    std::string message;
    try {
      co_await endpoint(options);
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code().value(), EADDRINUSE);
      message = e.what();
    }
    EXPECT_NE(message.find(taken), std::string::npos) << message;
    loop.set_name_resolver(nullptr);
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(DatagramNamesTest, ContradictoryOrUnmatchableAddressesAreRefused) {
  run([]() -> Coro<void> {
    DatagramOptions both;
    both.local_addr = SocketAddress("127.0.0.1", 0);
    both.local_name = HostAndPort{"127.0.0.1", 0};
    EXPECT_TRUE(co_await testing_util::throws<std::invalid_argument>(endpoint(both)));
    // No family that both sides have.
    DatagramOptions apart;
    apart.local_addr = SocketAddress("127.0.0.1", 0);
    apart.remote_name = HostAndPort{"::1", 9};
    std::string message;
    try {
      co_await endpoint(apart);
    } catch (const std::invalid_argument& e) {
      message = e.what();
    }
    EXPECT_EQ(message, "can not get address information");
  }());
}

}  // namespace
}  // namespace asyncio
