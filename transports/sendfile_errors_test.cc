// What sendfile and sock_sendfile do where sendfile(2) cannot be used:
// SendfileNotAvailableError without fallback, a read-and-send copy with it.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <stdexcept>
#include <string>

#include "futures/futures.h"
#include "gtest/gtest.h"
#include "loop/posix.h"
#include "testing/async_test_util.h"
#include "transports/internal/socket_transport.h"
#include "transports/transports.h"

namespace asyncio {
namespace {

using posix::UniqueFd;
using testing_util::throws;

// A connected pair of non-blocking stream sockets.
struct StreamPair {
  StreamPair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    sender.reset(fds[0]);
    receiver.reset(fds[1]);
  }
  UniqueFd sender, receiver;
};

// A pipe holding `content`, its write end closed: a file sendfile(2)
// cannot read.
struct FilledPipe {
  explicit FilledPipe(const std::string& content) {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    read_end.reset(fds[0]);
    EXPECT_EQ(::write(fds[1], content.data(), content.size()),
              static_cast<ssize_t>(content.size()));
    ::close(fds[1]);
  }
  UniqueFd read_end;
};

// Bytes waiting on a non-blocking socket, without waiting for more.
std::string pending_bytes(int fd) {
  std::array<char, 256> buf{};
  ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
  return n > 0 ? std::string(buf.data(), static_cast<size_t>(n)) : "";
}

TEST(SendfileErrorsTest, WithoutFallbackAPipeIsNotAvailable) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    StreamPair sockets;
    FilledPipe pipe("from a pipe");
    try {
      co_await sock_sendfile(loop, sockets.sender.get(), pipe.read_end.get(), 0, std::nullopt,
                             false);
      ADD_FAILURE() << "sent";
    } catch (const SendfileNotAvailableError& e) {
      EXPECT_NE(std::string(e.what()).find("sendfile"), std::string::npos);
    }
    EXPECT_EQ(pending_bytes(sockets.receiver.get()), "");
    // A RuntimeError, as in Python.
    EXPECT_TRUE(co_await throws<std::runtime_error>(
        sock_sendfile(loop, sockets.sender.get(), pipe.read_end.get(), 0, std::nullopt, false)));
  }());
}

TEST(SendfileErrorsTest, WithFallbackAPipeIsReadAndSent) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    StreamPair sockets;
    FilledPipe pipe("from a pipe");
    EXPECT_EQ(co_await sock_sendfile(loop, sockets.sender.get(), pipe.read_end.get()), 11u);
    EXPECT_EQ(co_await sock_recv(loop, sockets.receiver.get(), 100), "from a pipe");
  }());
}

TEST(SendfileErrorsTest, OnlyStreamSocketsAreAccepted) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    UniqueFd udp(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    FilledPipe pipe("x");
    EXPECT_TRUE(co_await throws<std::invalid_argument>(
        sock_sendfile(loop, udp.get(), pipe.read_end.get())));
  }());
}

TEST(SendfileErrorsTest, TransportWithoutFallbackAPipeIsNotAvailable) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    StreamPair sockets;
    auto transport = std::make_shared<transports_internal::SocketTransport>(
        loop, sockets.sender.release(), std::make_shared<Protocol>());
    transport->start(std::nullopt);
    FilledPipe pipe("through a transport");
    EXPECT_TRUE(co_await throws<SendfileNotAvailableError>(
        sendfile(loop, *transport, pipe.read_end.get(), 0, std::nullopt, false)));
    EXPECT_EQ(co_await sendfile(loop, *transport, pipe.read_end.get()), 19u);
    EXPECT_EQ(co_await sock_recv(loop, sockets.receiver.get(), 100), "through a transport");
    transport->abort();
  }());
}

}  // namespace
}  // namespace asyncio
