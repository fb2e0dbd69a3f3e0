// The raw datagram socket operations: sock_recvfrom, sock_recvfrom_into,
// sock_sendto, on UDP sockets over loopback.
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <stdexcept>
#include <string>
#include <system_error>

#include "futures/futures.h"
#include "gtest/gtest.h"
#include "loop/posix.h"
#include "testing/async_test_util.h"
#include "transports/transports.h"

namespace asyncio {
namespace {

using posix::UniqueFd;

using Udp = testing_util::LoopbackUdp;

TEST(SockDatagramTest, SendtoAndRecvfromExchangeDatagrams) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Udp a, b;
    EXPECT_EQ(co_await sock_sendto(loop, a.fd.get(), "ping", b.addr), 4u);
    auto [data, from] = co_await sock_recvfrom(loop, b.fd.get(), 100);
    EXPECT_EQ(data, "ping");
    EXPECT_EQ(from, a.addr);
    EXPECT_EQ(co_await sock_sendto(loop, b.fd.get(), "pong!", from), 5u);
    std::array<char, 16> buf{};
    auto [n, replier] = co_await sock_recvfrom_into(loop, a.fd.get(), buf);
    EXPECT_EQ(std::string(buf.data(), n), "pong!");
    EXPECT_EQ(replier, b.addr);
  }());
}

TEST(SockDatagramTest, RecvfromWaitsForADatagram) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Udp a, b;
    Task<std::pair<std::string, SocketAddress>> receiving =
        create_task(sock_recvfrom(loop, b.fd.get(), 100));
    co_await testing_util::settle();
    EXPECT_FALSE(receiving.done());
    co_await sock_sendto(loop, a.fd.get(), "late", b.addr);
    auto [data, from] = co_await receiving;
    EXPECT_EQ(data, "late");
    EXPECT_EQ(from, a.addr);
  }());
}

TEST(SockDatagramTest, CancellingRemovesTheWatch) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Udp b;
    std::array<char, 16> buf{};
    Task<std::pair<size_t, SocketAddress>> receiving =
        create_task(sock_recvfrom_into(loop, b.fd.get(), buf));
    co_await testing_util::settle();
    EXPECT_FALSE(receiving.done());
    receiving.cancel();
    EXPECT_TRUE(co_await testing_util::throws<CancelledError>(receiving));
    EXPECT_FALSE(loop.remove_reader(b.fd.get())) << "the watch outlived the call";
  }());
}

TEST(SockDatagramTest, ShortBuffersTruncateTheDatagram) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Udp a, b;
    co_await sock_sendto(loop, a.fd.get(), "hello", b.addr);
    auto [data, from] = co_await sock_recvfrom(loop, b.fd.get(), 2);
    EXPECT_EQ(data, "he");
    // nbytes below the buffer's size reads that many.
    co_await sock_sendto(loop, a.fd.get(), "abcdef", b.addr);
    std::array<char, 10> buf{};
    auto [n, sender] = co_await sock_recvfrom_into(loop, b.fd.get(), buf, 3);
    EXPECT_EQ(std::string(buf.data(), n), "abc");
    EXPECT_TRUE(co_await testing_util::throws<std::invalid_argument>(
        sock_recvfrom_into(loop, b.fd.get(), buf, buf.size() + 1)));
  }());
}

TEST(SockDatagramTest, SendtoErrorsAreSystemErrors) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Udp a;
    // An IPv6 address on an IPv4 socket.
    EXPECT_TRUE(co_await testing_util::throws<std::system_error>(
        sock_sendto(loop, a.fd.get(), "x", SocketAddress("::1", 9))));
  }());
}

}  // namespace
}  // namespace asyncio
