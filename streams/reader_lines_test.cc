// StreamReader.readuntil with several separators (3.13) and line iteration
// (`async for line in reader`).
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "streams/streams.h"
#include "testing/async_test_util.h"

namespace asyncio {
namespace {

using testing_util::port_of;
using testing_util::settle;

using namespace std::chrono_literals;

TEST(ReaduntilSeparatorsTest, TheMatchThatEndsFirstWins) {
  run([]() -> Coro<void> {
    StreamReader reader;
    reader.feed_data("zabcd|tail");
    // Of "abc" and "bcd", "abc" ends first, though "bcd" is given first.
    EXPECT_EQ(co_await reader.readuntil("bcd", "abc"), "zabc");
    EXPECT_EQ(co_await reader.readuntil("tail", "|"), "d|");
    // A long separator that ends before a short one further on.
    reader.feed_data(";xLONG;");
    EXPECT_EQ(co_await reader.readuntil(";", "LONG"), "tail;");
    EXPECT_EQ(co_await reader.readuntil(";", "LONG"), "xLONG");
    EXPECT_EQ(co_await reader.read(1), ";");
  }());
}

TEST(ReaduntilSeparatorsTest, OverlappingSeparatorsEndingTogether) {
  run([]() -> Coro<void> {
    StreamReader reader(64, &get_running_loop());
    reader.feed_data("line\r\nnext\nlast");
    // "\r\n" and "\n" end at the same byte: the whole "\r\n" is returned.
    EXPECT_EQ(co_await reader.readuntil("\r\n", "\n"), "line\r\n");
    EXPECT_EQ(co_await reader.readuntil("\r\n", "\n"), "next\n");
    reader.feed_eof();
    bool incomplete = false;
    try {
      co_await reader.readuntil("\r\n", "\n");
    } catch (const IncompleteReadError& e) {
      incomplete = true;
      EXPECT_EQ(e.partial(), "last");
      EXPECT_FALSE(e.expected().has_value());
    }
    EXPECT_TRUE(incomplete);
    EXPECT_TRUE(reader.at_eof()) << "the partial data was taken out of the buffer";
  }());
}

TEST(ReaduntilSeparatorsTest, SeparatorSplitAcrossTwoFeeds) {
  run([]() -> Coro<void> {
    StreamReader reader;
    Task<std::string> until = create_task(reader.readuntil("END!", "\n\n"));
    reader.feed_data("headerEN");
    co_await settle();
    EXPECT_FALSE(until.done());
    reader.feed_data("D!more\n");
    EXPECT_EQ(co_await until, "headerEND!");

    Task<std::string> blank = create_task(reader.readuntil("END!", "\n\n"));
    co_await settle();
    EXPECT_FALSE(blank.done());
    reader.feed_data("\nafter");
    EXPECT_EQ(co_await blank, "more\n\n");
    EXPECT_EQ(co_await reader.read(100), "after");
  }());
}

TEST(ReaduntilSeparatorsTest, FoundBeyondTheLimit) {
  run([]() -> Coro<void> {
    StreamReader reader(2);
    reader.feed_data("ab\r\n");
    // "\r\n" (starting at 2) would fit the limit, but the shorter "\n"
    // (starting at 3) is the one that counts, as in asyncio.
    bool overrun = false;
    try {
      co_await reader.readuntil("\r\n", "\n");
    } catch (const LimitOverrunError& e) {
      overrun = true;
      EXPECT_EQ(e.consumed(), 3u);
    }
    EXPECT_TRUE(overrun);
    EXPECT_EQ(co_await reader.readuntil("\r\n"), "ab\r\n") << "the data stays";
  }());
}

TEST(ReaduntilSeparatorsTest, NotFoundWithinTheLimit) {
  run([]() -> Coro<void> {
    StreamReader reader(4);
    Task<std::string> until = create_task(reader.readuntil("\n", "END"));
    reader.feed_data("0123");
    co_await settle();
    EXPECT_FALSE(until.done()) << "the longest separator could still start at 2";
    reader.feed_data("456789");
    bool overrun = false;
    try {
      co_await until;
    } catch (const LimitOverrunError& e) {
      overrun = true;
      // Everything but the last (longest separator - 1) bytes is known not
      // to start a separator.
      EXPECT_EQ(e.consumed(), 8u);
    }
    EXPECT_TRUE(overrun);
    reader.feed_eof();
    EXPECT_EQ(co_await reader.read(), "0123456789") << "the data stays";
  }());
}

TEST(ReaduntilSeparatorsTest, RangesOfStringsAndTheirLifetime) {
  run([]() -> Coro<void> {
    StreamReader reader;
    reader.feed_data("key=value;next");
    std::optional<Coro<std::string>> pending;
    {
      std::vector<std::string> separators{";", "="};
      pending.emplace(reader.readuntil(separators));
    }  // the separators are gone before the coroutine starts
    EXPECT_EQ(co_await std::move(*pending), "key=");
    const std::vector<std::string_view> views{";"};
    EXPECT_EQ(co_await reader.readuntil(views), "value;");
  }());
}

TEST(ReaduntilSeparatorsTest, InvalidSeparatorsAndStoredException) {
  run([]() -> Coro<void> {
    StreamReader reader;
    reader.feed_data("data\n");
    EXPECT_THROW(co_await reader.readuntil(std::vector<std::string>{}), std::invalid_argument);
    EXPECT_THROW(co_await reader.readuntil("\n", ""), std::invalid_argument);
    reader.set_exception(std::make_exception_ptr(std::runtime_error("broken")));
    EXPECT_THROW(co_await reader.readuntil("\n", "\r\n"), std::runtime_error);
  }());
}

TEST(LineIterationTest, NextLineUntilEof) {
  run([]() -> Coro<void> {
    StreamReader reader;
    reader.feed_data("one\ntwo\nthree");
    reader.feed_eof();
    std::vector<std::string> lines;
    while (std::optional<std::string> line = co_await reader.next_line()) lines.push_back(*line);
    EXPECT_EQ(lines, (std::vector<std::string>{"one\n", "two\n", "three"}));
    EXPECT_EQ(co_await reader.next_line(), std::nullopt) << "stays at the end";
  }());
}

TEST(LineIterationTest, NextLineRaisesOnAnOverlongLine) {
  run([]() -> Coro<void> {
    StreamReader reader(4);
    reader.feed_data("toolong\n");
    reader.feed_data("ok\n");
    reader.feed_eof();
    EXPECT_THROW(co_await reader.next_line(), LimitOverrunError);
    EXPECT_EQ(co_await reader.next_line(), std::optional<std::string>("ok\n"));
    EXPECT_EQ(co_await reader.next_line(), std::nullopt);
  }());
}

TEST(LineIterationTest, LinesGeneratorOverAConnection) {
  run([]() -> Coro<void> {
    Server server = co_await start_server(
        [](StreamReader, StreamWriter writer) -> Coro<void> {
          for (int i = 0; i < 3; ++i) {
            writer.write("line " + std::to_string(i) + "\n");
            co_await writer.drain();
            co_await sleep(0s);
          }
          writer.write("no newline");
          writer.close();
        },
        "127.0.0.1", 0);
    auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(server));
    std::vector<std::string> got;
    AsyncGenerator<std::string> lines = reader.lines();
    while (std::optional<std::string> line = co_await lines.next()) got.push_back(*line);
    EXPECT_EQ(got, (std::vector<std::string>{"line 0\n", "line 1\n", "line 2\n", "no newline"}));
    writer.close();
    co_await writer.wait_closed();
    server.close();
    co_await server.wait_closed();
  }());
}

}  // namespace
}  // namespace asyncio
