// Streams left open are reported as unclosed (Python's ResourceWarning) with
// the site of open_connection, start_server, open_read_pipe or
// open_write_pipe; closed ones are not.
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "futures/futures.h"
#include "gtest/gtest.h"
#include "loop/loop.h"
#include "streams/streams.h"
#include "testing/async_test_util.h"

namespace asyncio {
namespace {

// What the running loop's exception handler is told, from now on.
void collect_reports(std::vector<std::string>& reports) {
  get_running_loop().set_exception_handler([&reports](EventLoop&, const ExceptionContext& context) {
    reports.push_back(context.message);
  });
}

// Exactly one report starts with `what` and names `line` of this file as
// its site.
void expect_one(const std::vector<std::string>& reports, const std::string& what, int line) {
  const std::string at = std::string(" opened at ") + __FILE__ + ":" + std::to_string(line);
  EXPECT_EQ(
      std::count_if(reports.begin(), reports.end(),
                    [&](const std::string& m) { return m.starts_with(what) && m.ends_with(at); }),
      1)
      << what << "..." << at;
}

TEST(UnclosedStreams, ConnectionAndServerLeftOpen) {
  std::vector<std::string> reports;
  int server_line = 0, client_line = 0;
  const int fds_before = testing_util::open_fd_count();
  run([](std::vector<std::string>& reports, int& server_line, int& client_line) -> Coro<void> {
    collect_reports(reports);
    Future<void> served = create_future<void>(get_running_loop());
    // Its connection is closed when it returns.
    ClientConnected serve = [served](StreamReader, StreamWriter) mutable -> Coro<void> {
      served.set_result();
      co_return;
    };
    Server server = co_await start_server(serve, "127.0.0.1", 0);
    server_line = __LINE__ - 1;
    auto connecting = open_connection("127.0.0.1", testing_util::port_of(server));
    client_line = __LINE__ - 1;
    auto [reader, writer] = co_await std::move(connecting);
    co_await served;
  }(reports, server_line, client_line));
  // The client's connection and the server.
  ASSERT_EQ(reports.size(), 2u) << ::testing::PrintToString(reports);
  expect_one(reports, "unclosed transport <SocketTransport fd=", client_line);
  expect_one(reports, "unclosed Server <Server sockets=[<socket fd=", server_line);
  EXPECT_EQ(testing_util::open_fd_count(), fds_before);
}

TEST(UnclosedStreams, ClosedConnectionAndServerAreNotReported) {
  std::vector<std::string> reports;
  run([](std::vector<std::string>& reports) -> Coro<void> {
    collect_reports(reports);
    Server server = co_await start_server(testing_util::echo_lines, "127.0.0.1", 0);
    auto [reader, writer] = co_await open_connection("127.0.0.1", testing_util::port_of(server));
    writer.write("ping\n");
    EXPECT_EQ(co_await reader.readline(), "ping\n");
    writer.close();
    co_await writer.wait_closed();
    server.close();
    co_await server.wait_closed();
  }(reports));
  EXPECT_EQ(reports, std::vector<std::string>{});
}

TEST(UnclosedStreams, Pipes) {
  std::vector<std::string> reports;
  int read_line = 0, write_line = 0;
  const int fds_before = testing_util::open_fd_count();
  testing_util::PipePair left_open, closed;
  run([](std::vector<std::string>& reports, testing_util::PipePair& left_open,
         testing_util::PipePair& closed, int& read_line, int& write_line) -> Coro<void> {
    collect_reports(reports);
    auto reading = open_read_pipe(left_open.read_end.release());
    read_line = __LINE__ - 1;
    auto writing = open_write_pipe(left_open.write_end.release());
    write_line = __LINE__ - 1;
    StreamReader open_reader = co_await std::move(reading);
    StreamWriter open_writer = co_await std::move(writing);
    // Closed: a reader by its EOF, a writer by close().
    StreamReader reader = co_await open_read_pipe(closed.read_end.release());
    StreamWriter writer = co_await open_write_pipe(closed.write_end.release());
    writer.close();
    co_await writer.wait_closed();
    EXPECT_EQ(co_await reader.read(), "");  // EOF: the reader's transport closes
  }(reports, left_open, closed, read_line, write_line));
  ASSERT_EQ(reports.size(), 2u) << ::testing::PrintToString(reports);
  expect_one(reports, "unclosed transport <ReadPipeTransport fd=", read_line);
  expect_one(reports, "unclosed transport <WritePipeTransport fd=", write_line);
  EXPECT_EQ(testing_util::open_fd_count(), fds_before);
}

}  // namespace
}  // namespace asyncio
