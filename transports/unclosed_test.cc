// Transports and servers that go unclosed are reported (Python's
// "ResourceWarning: unclosed transport <...>") with the site of the call that
// opened them, once each, and their descriptors are closed all the same;
// closed and aborted ones are not reported.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <any>
#include <cerrno>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "futures/futures.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "loop/loop.h"
#include "testing/async_test_util.h"
#include "transports/transports.h"

namespace asyncio {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// What the loop's exception handler is told.
struct Reports {
  std::vector<std::string> messages;
  void install(EventLoop& loop) {
    loop.set_exception_handler([this](EventLoop&, const ExceptionContext& context) {
      messages.push_back(context.message);
    });
  }
  // The reports that mention `text`.
  size_t count(const std::string& text) const {
    return static_cast<size_t>(std::count_if(messages.begin(), messages.end(), [&](const auto& m) {
      return m.find(text) != std::string::npos;
    }));
  }
};

// The end of a report of a resource opened at `line` of this file.
std::string opened_at(int line) {
  return std::string(" opened at ") + __FILE__ + ":" + std::to_string(line);
}

bool fd_closed(int fd) { return ::fcntl(fd, F_GETFD) == -1 && errno == EBADF; }

int socket_of(const std::shared_ptr<BaseTransport>& transport) {
  return std::any_cast<int>(transport->get_extra_info("socket"));
}

// Completes `made` on connection_made.
class Made : public Protocol {
 public:
  explicit Made(Future<void> made) : made_(std::move(made)) {}
  void connection_made(std::shared_ptr<BaseTransport>) override {
    if (!made_.done()) made_.set_result();
  }

 private:
  Future<void> made_;
};

TEST(Unclosed, ConnectionsAndServerLeftOpenAreReportedOnceWithTheirSites) {
  Reports reports;
  int client_fd = -1, server_line = 0, client_line = 0;
  const int fds_before = testing_util::open_fd_count();
  {
    auto loop = new_event_loop();
    reports.install(*loop);
    run_until_complete(
        *loop, [](EventLoop& l, int& fd, int& server_line, int& client_line) -> Coro<void> {
          Future<void> accepted = create_future<void>(l);
          auto on_server = [accepted] { return std::make_shared<Made>(accepted); };
          Server server = co_await create_server(l, on_server, "127.0.0.1", 0);
          server_line = __LINE__ - 1;
          auto factory = [] { return std::make_shared<Protocol>(); };
          auto connecting =
              create_connection(l, factory, "127.0.0.1", testing_util::port_of(server));
          client_line = __LINE__ - 1;
          auto [transport, protocol] = co_await std::move(connecting);
          fd = socket_of(transport);
          co_await accepted;
        }(*loop, client_fd, server_line, client_line));
    EXPECT_EQ(reports.messages.size(), 0u) << "nothing is reported while the loop lives";
  }  // the loop goes with the server and both ends open
  ASSERT_EQ(reports.messages.size(), 3u);
  EXPECT_EQ(reports.count("unclosed transport <SocketTransport fd=" + std::to_string(client_fd)),
            1u);
  EXPECT_EQ(reports.count("unclosed transport <SocketTransport fd="), 2u);
  EXPECT_EQ(reports.count(opened_at(client_line)), 1u);
  EXPECT_EQ(reports.count("unclosed Server <Server sockets=[<socket fd="), 1u);
  // The server's connection is reported with the server's site.
  EXPECT_EQ(reports.count(opened_at(server_line)), 2u);
  for (const std::string& m : reports.messages) EXPECT_THAT(m, StartsWith("unclosed "));
  EXPECT_TRUE(fd_closed(client_fd));
  EXPECT_EQ(testing_util::open_fd_count(), fds_before);
}

TEST(Unclosed, ClosedAndAbortedConnectionsAreNotReported) {
  Reports reports;
  int closed_fd = -1, aborted_fd = -1;
  const int fds_before = testing_util::open_fd_count();
  {
    auto loop = new_event_loop();
    reports.install(*loop);
    run_until_complete(*loop, [](EventLoop& l, int& closed_fd, int& aborted_fd) -> Coro<void> {
      auto factory = [] { return std::make_shared<Protocol>(); };
      Server server = co_await create_server(l, factory, "127.0.0.1", 0);
      const uint16_t port = testing_util::port_of(server);
      auto first = create_connection(l, factory, "127.0.0.1", port);
      auto [closed, p1] = co_await std::move(first);
      auto second = create_connection(l, factory, "127.0.0.1", port);
      auto [aborted, p2] = co_await std::move(second);
      closed_fd = socket_of(closed);
      aborted_fd = socket_of(aborted);
      server.close();
      server.close_clients();
      co_await server.wait_closed();
      // The loop goes before connection_lost is delivered: closed all the same.
      closed->close();
      aborted->abort();
    }(*loop, closed_fd, aborted_fd));
  }
  EXPECT_EQ(reports.messages, std::vector<std::string>{});
  EXPECT_TRUE(fd_closed(closed_fd));
  EXPECT_TRUE(fd_closed(aborted_fd));
  EXPECT_EQ(testing_util::open_fd_count(), fds_before);
}

TEST(Unclosed, DatagramEndpoints) {
  Reports reports;
  int open_fd = -1, closed_fd = -1, aborted_fd = -1, line = 0;
  {
    auto loop = new_event_loop();
    reports.install(*loop);
    run_until_complete(
        *loop,
        [](EventLoop& l, int& open_fd, int& closed_fd, int& aborted_fd, int& line) -> Coro<void> {
          auto factory = [] { return std::make_shared<DatagramProtocol>(); };
          DatagramOptions options;
          options.local_addr = SocketAddress("127.0.0.1", 0);
          auto opening = create_datagram_endpoint(l, factory, options);
          line = __LINE__ - 1;
          auto [left_open, p1] = co_await std::move(opening);
          auto [closed, p2] = co_await create_datagram_endpoint(l, factory, options);
          auto [aborted, p3] = co_await create_datagram_endpoint(l, factory, options);
          open_fd = socket_of(left_open);
          closed_fd = socket_of(closed);
          aborted_fd = socket_of(aborted);
          closed->close();
          aborted->abort();
        }(*loop, open_fd, closed_fd, aborted_fd, line));
  }
  ASSERT_EQ(reports.messages.size(), 1u);
  EXPECT_THAT(reports.messages[0], StartsWith("unclosed transport <DatagramTransport fd=" +
                                              std::to_string(open_fd) + " sockname=127.0.0.1:"));
  EXPECT_THAT(reports.messages[0], HasSubstr(opened_at(line)));
  for (int fd : {open_fd, closed_fd, aborted_fd}) EXPECT_TRUE(fd_closed(fd)) << fd;
}

TEST(Unclosed, Pipes) {
  Reports reports;
  int read_fd = -1, write_fd = -1, read_line = 0, write_line = 0;
  const int fds_before = testing_util::open_fd_count();
  {
    auto loop = new_event_loop();
    reports.install(*loop);
    run_until_complete(
        *loop,
        [](EventLoop& l, int& read_fd, int& write_fd, int& read_line,
           int& write_line) -> Coro<void> {
          auto factory = [] { return std::make_shared<Protocol>(); };
          testing_util::PipePair left_open, closed, aborted;
          read_fd = left_open.read_end.get();
          write_fd = left_open.write_end.get();
          auto reading = connect_read_pipe(l, factory, left_open.read_end.release());
          read_line = __LINE__ - 1;
          auto writing = connect_write_pipe(l, factory, left_open.write_end.release());
          write_line = __LINE__ - 1;
          co_await std::move(reading);
          co_await std::move(writing);
          auto [r1, p1] = co_await connect_read_pipe(l, factory, closed.read_end.release());
          auto [w1, p2] = co_await connect_write_pipe(l, factory, closed.write_end.release());
          auto [r2, p3] = co_await connect_read_pipe(l, factory, aborted.read_end.release());
          auto [w2, p4] = co_await connect_write_pipe(l, factory, aborted.write_end.release());
          r1->close();
          w1->close();
          r2->abort();
          w2->abort();
        }(*loop, read_fd, write_fd, read_line, write_line));
  }
  ASSERT_EQ(reports.messages.size(), 2u);
  EXPECT_EQ(reports.count("unclosed transport <ReadPipeTransport fd=" + std::to_string(read_fd) +
                          ">" + opened_at(read_line)),
            1u);
  EXPECT_EQ(reports.count("unclosed transport <WritePipeTransport fd=" + std::to_string(write_fd) +
                          ">" + opened_at(write_line)),
            1u);
  EXPECT_TRUE(fd_closed(read_fd));
  EXPECT_TRUE(fd_closed(write_fd));
  EXPECT_EQ(testing_util::open_fd_count(), fds_before);
}

TEST(Unclosed, ServerHandleDroppedIsReportedAtOnce) {
  Reports reports;
  int line = 0, listen_fd = -1;
  auto loop = new_event_loop();
  reports.install(*loop);
  run_until_complete(
      *loop, [](EventLoop& l, Reports& reports, int& line, int& listen_fd) -> Coro<void> {
        ServerOptions options;
        options.start_serving = false;  // else the accept watch keeps it until the loop closes
        auto factory = [] { return std::make_shared<Protocol>(); };
        {
          Server dropped = co_await create_server(l, factory, "127.0.0.1", 0, options);
          line = __LINE__ - 1;
          listen_fd = dropped.sockets().at(0).fd();
        }
        EXPECT_EQ(reports.messages.size(), 1u) << "reported when the last handle goes";
        Server closed = co_await create_server(l, factory, "127.0.0.1", 0, options);
        closed.close();
      }(*loop, reports, line, listen_fd));
  loop.reset();
  ASSERT_EQ(reports.messages.size(), 1u);
  EXPECT_THAT(reports.messages[0], StartsWith("unclosed Server <Server sockets=[<socket fd=" +
                                              std::to_string(listen_fd) + " sockname=127.0.0.1:"));
  EXPECT_THAT(reports.messages[0], HasSubstr(opened_at(line)));
  EXPECT_TRUE(fd_closed(listen_fd));
}

TEST(Unclosed, WithoutItsLoopTheReportGoesToStderr) {
  std::optional<Server> kept;
  int line = 0;
  {
    auto loop = new_event_loop();
    run_until_complete(*loop,
                       [](EventLoop& l, std::optional<Server>& kept, int& line) -> Coro<void> {
                         ServerOptions options;
                         options.start_serving = false;
                         auto factory = [] { return std::make_shared<Protocol>(); };
                         kept = co_await create_server(l, factory, "127.0.0.1", 0, options);
                         line = __LINE__ - 1;
                       }(*loop, kept, line));
  }
  const int listen_fd = kept->sockets().at(0).fd();
  ::testing::internal::CaptureStderr();
  kept.reset();
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(err, StartsWith("asyncio: unclosed Server <Server sockets=[<socket fd="));
  EXPECT_THAT(err, HasSubstr(opened_at(line) + "\n"));
  EXPECT_TRUE(fd_closed(listen_fd));
}

TEST(Unclosed, AcceptedSocketAndUnixConnections) {
  Reports reports;
  int pair_line = 0, server_line = 0, client_line = 0;
  testing_util::TempDir dir;
  const int fds_before = testing_util::open_fd_count();
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  {
    auto loop = new_event_loop();
    reports.install(*loop);
    run_until_complete(*loop,
                       [](EventLoop& l, const std::string& path, int* sv, int& pair_line,
                          int& server_line, int& client_line) -> Coro<void> {
                         auto factory = [] { return std::make_shared<Protocol>(); };
                         auto wrapping = connect_accepted_socket(l, factory, sv[0]);
                         pair_line = __LINE__ - 1;
                         co_await std::move(wrapping);
                         Future<void> accepted = create_future<void>(l);
                         auto on_server = [accepted] { return std::make_shared<Made>(accepted); };
                         Server server = co_await create_unix_server(l, on_server, path);
                         server_line = __LINE__ - 1;
                         auto connecting = create_unix_connection(l, factory, path);
                         client_line = __LINE__ - 1;
                         co_await std::move(connecting);
                         co_await accepted;
                       }(*loop, dir.file("s.sock"), sv, pair_line, server_line, client_line));
  }
  ::close(sv[1]);
  EXPECT_EQ(reports.count("unclosed transport <SocketTransport fd=" + std::to_string(sv[0]) + ">" +
                          opened_at(pair_line)),
            1u);
  EXPECT_EQ(reports.count("unclosed transport <SocketTransport fd="), 3u);
  EXPECT_EQ(reports.count(opened_at(client_line)), 1u);
  EXPECT_EQ(reports.count("unclosed Server <Server sockets=[<socket fd="), 1u);
  EXPECT_EQ(reports.count(opened_at(server_line)), 2u);
  EXPECT_EQ(reports.messages.size(), 4u);
  EXPECT_TRUE(fd_closed(sv[0]));
  EXPECT_EQ(testing_util::open_fd_count(), fds_before);
}

}  // namespace
}  // namespace asyncio
