#include "streams/streams.h"

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <system_error>

#include "gtest/gtest.h"
#include "testing/async_test_util.h"

namespace asyncio {
namespace {

using testing_util::handle_echo;
using testing_util::port_of;

using namespace std::chrono_literals;

TEST(StreamsTest, DocsEchoClientAndServer) {
  run([]() -> Coro<void> {
    Server server = co_await start_server(handle_echo, "127.0.0.1", 0);
    auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(server));
    writer.write("Hello World!");
    EXPECT_EQ(co_await reader.read(100), "Hello World!");
    EXPECT_EQ(co_await reader.read(100), "") << "the server closed: EOF";
    EXPECT_TRUE(reader.at_eof());
    auto peer = std::any_cast<SocketAddress>(writer.get_extra_info("peername"));
    EXPECT_EQ(peer.port(), port_of(server));
    writer.close();
    co_await writer.wait_closed();
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(StreamsTest, ReaderMethodsOnFedData) {
  run([]() -> Coro<void> {
    StreamReader reader;
    EXPECT_EQ(reader.limit(), 64u * 1024);
    reader.feed_data("line one\nline two\nrest");
    EXPECT_EQ(co_await reader.readline(), "line one\n");
    EXPECT_EQ(co_await reader.readuntil("two"), "line two");
    EXPECT_EQ(co_await reader.readexactly(2), "\nr");
    reader.feed_eof();
    EXPECT_FALSE(reader.at_eof());
    bool incomplete = false;
    try {
      co_await reader.readexactly(10);
    } catch (const IncompleteReadError& e) {
      incomplete = true;
      EXPECT_EQ(e.partial(), "est");
      EXPECT_EQ(e.expected(), std::optional<size_t>(10));
    }
    EXPECT_TRUE(incomplete);
    EXPECT_TRUE(reader.at_eof());
    EXPECT_EQ(co_await reader.readline(), "");
    EXPECT_EQ(co_await reader.read(), "");
  }());
}

TEST(StreamsTest, ReadWaitsForDataAndReadAllUntilEof) {
  run([]() -> Coro<void> {
    StreamReader reader;
    auto feeder = [](StreamReader r) -> Coro<void> {
      for (int i = 0; i < 3; ++i) {
        co_await sleep(1ms);
        r.feed_data("chunk" + std::to_string(i) + ";");
      }
      r.feed_eof();
    };
    Task<void> t = create_task(feeder(reader));
    EXPECT_EQ(co_await reader.read(), "chunk0;chunk1;chunk2;");
    co_await t;
  }());
}

TEST(StreamsTest, TwoReadersAtOnceIsAnError) {
  run([]() -> Coro<void> {
    StreamReader reader;
    Task<std::string> first = create_task(reader.read(10));
    co_await sleep(0s);
    EXPECT_THROW(co_await reader.read(10), std::runtime_error);
    reader.feed_data("x");
    EXPECT_EQ(co_await first, "x");
  }());
}

TEST(StreamsTest, LimitOverrun) {
  run([]() -> Coro<void> {
    StreamReader reader(16);
    reader.feed_data(std::string(40, 'a') + "\nnext\n");
    bool overrun = false;
    try {
      co_await reader.readuntil("\n");
    } catch (const LimitOverrunError& e) {
      overrun = true;
      EXPECT_EQ(e.consumed(), 40u);
    }
    EXPECT_TRUE(overrun);
    // readuntil keeps the data; readline drops the overlong line.
    EXPECT_THROW(co_await reader.readline(), LimitOverrunError);
    EXPECT_EQ(co_await reader.readline(), "next\n");

    StreamReader no_newline(8);
    no_newline.feed_data(std::string(20, 'b'));
    EXPECT_THROW(co_await no_newline.readline(), std::invalid_argument);
  }());
}

TEST(StreamsTest, IncompleteReaduntil) {
  run([]() -> Coro<void> {
    StreamReader reader;
    reader.feed_data("no separator");
    reader.feed_eof();
    bool incomplete = false;
    try {
      co_await reader.readuntil("\r\n");
    } catch (const IncompleteReadError& e) {
      incomplete = true;
      EXPECT_EQ(e.partial(), "no separator");
      EXPECT_FALSE(e.expected().has_value());
    }
    EXPECT_TRUE(incomplete);
    EXPECT_THROW(co_await reader.readuntil(""), std::invalid_argument);
  }());
}

TEST(StreamsTest, ExceptionIsRaisedByReaders) {
  run([]() -> Coro<void> {
    StreamReader reader;
    Task<std::string> waiting = create_task(reader.read(5));
    co_await sleep(0s);
    reader.set_exception(std::make_exception_ptr(std::runtime_error("broken")));
    EXPECT_THROW(co_await waiting, std::runtime_error);
    EXPECT_THROW(co_await reader.readline(), std::runtime_error);
  }());
}

TEST(StreamsTest, LineProtocolServer) {
  run([]() -> Coro<void> {
    auto upper = [](StreamReader reader, StreamWriter writer) -> Coro<void> {
      while (true) {
        std::string line = co_await reader.readline();
        if (line.empty()) break;
        for (char& c : line) c = static_cast<char>(std::toupper(c));
        writer.write(line);
        co_await writer.drain();
      }
      writer.close();
    };
    Server server = co_await start_server(upper, "127.0.0.1", 0);
    auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(server));
    for (int i = 0; i < 100; ++i) {
      writer.write("line " + std::to_string(i) + "\n");
      EXPECT_EQ(co_await reader.readline(), "LINE " + std::to_string(i) + "\n");
    }
    writer.write_eof();
    EXPECT_EQ(co_await reader.read(), "");
    writer.close();
    co_await writer.wait_closed();
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(StreamsTest, DrainAppliesBackpressureAndEverythingArrives) {
  run([]() -> Coro<void> {
    constexpr size_t kTotal = 16 << 20;
    auto slow_reader = [](StreamReader reader, StreamWriter writer) -> Coro<void> {
      size_t got = 0;
      while (true) {
        std::string chunk = co_await reader.read(4096);
        if (chunk.empty()) break;
        got += chunk.size();
        if (got % (1 << 20) < 4096) co_await sleep(1ms);  // slower than the sender
      }
      writer.write(std::to_string(got));
      writer.close();
    };
    Server server = co_await start_server(slow_reader, "127.0.0.1", 0);
    auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(server));
    const std::string block(64 * 1024, 'd');
    size_t max_buffered = 0;
    for (size_t sent = 0; sent < kTotal; sent += block.size()) {
      writer.write(block);
      max_buffered = std::max(max_buffered, writer.transport().get_write_buffer_size());
      co_await writer.drain();
      EXPECT_LE(writer.transport().get_write_buffer_size(),
                writer.transport().get_write_buffer_limits().second);
    }
    EXPECT_LE(max_buffered, size_t{64 * 1024 + 64 * 1024}) << "the write buffer stayed bounded";
    writer.write_eof();
    EXPECT_EQ(co_await reader.read(), std::to_string(kTotal));
    writer.close();
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(StreamsTest, DrainRaisesTheConnectionError) {
  run([]() -> Coro<void> {
    auto reset = [](StreamReader, StreamWriter writer) -> Coro<void> {
      writer.transport().abort();
      co_return;
    };
    Server server = co_await start_server(reset, "127.0.0.1", 0);
    auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(server));
    EXPECT_EQ(co_await reader.read(), "");  // the server went away
    bool failed = false;
    try {
      const std::string block(64 * 1024, 'e');
      for (int i = 0; i < 1000; ++i) {
        writer.write(block);
        co_await writer.drain();
      }
    } catch (const std::system_error&) {
      failed = true;
    }
    EXPECT_TRUE(failed) << "drain() must raise once the connection is gone";
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(StreamsTest, HandlerExceptionIsReportedAndClosesTheConnection) {
  std::vector<std::string> reports;
  run([](std::vector<std::string>& r) -> Coro<void> {
    get_running_loop().set_exception_handler(
        [&r](EventLoop&, const ExceptionContext& ctx) { r.push_back(ctx.message); });
    auto failing = [](StreamReader reader, StreamWriter) -> Coro<void> {
      co_await reader.readline();
      throw std::runtime_error("handler failed");
    };
    Server server = co_await start_server(failing, "127.0.0.1", 0);
    auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(server));
    writer.write("go\n");
    EXPECT_EQ(co_await reader.read(), "");  // closed by the server
    writer.close();  // our half stays open after EOF until closed
    co_await writer.wait_closed();
    server.close();
    co_await server.wait_closed();
  }(reports));
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0], "Unhandled exception in client_connected_cb");
}

TEST(StreamsTest, UnixStreams) {
  run([]() -> Coro<void> {
    testing_util::TempDir dir;
    std::string path = dir.file("s.sock");
    Server server = co_await start_unix_server(handle_echo, path);
    auto [reader, writer] = co_await open_unix_connection(path);
    writer.write("unix hello");
    EXPECT_EQ(co_await reader.read(100), "unix hello");
    writer.close();
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(StreamsTest, OpenConnectionRefused) {
  run([]() -> Coro<void> {
    Server server = co_await start_server(handle_echo, "127.0.0.1", 0);
    uint16_t port = port_of(server);
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

}  // namespace
}  // namespace asyncio

namespace asyncio {
namespace {

// A handler that throws instead of returning its coroutine: the connection
// closes and the error is reported, as for a handler that fails later.
TEST(StreamsTest, HandlerThrowingBeforeItsCoroutineClosesTheConnection) {
  std::vector<std::string> reports;
  run([](std::vector<std::string>& r) -> Coro<void> {
    get_running_loop().set_exception_handler(
        [&r](EventLoop&, const ExceptionContext& ctx) { r.push_back(ctx.message); });
    ClientConnected throwing = [](StreamReader, StreamWriter) -> Coro<void> {
      throw std::runtime_error("no handler for you");
    };
    Server server = co_await start_server(throwing, "127.0.0.1", 0);
    auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(server));
    EXPECT_EQ(co_await wait_for(reader.read(), 5s), "");  // closed by the server
    writer.close();
    server.close();
    co_await wait_for(server.wait_closed(), 5s);
  }(reports));
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0], "Unhandled exception in client_connected_cb");
}

}  // namespace
}  // namespace asyncio
