// StreamReader's buffer: the transport receives straight into it
// (get_buffer/buffer_updated), read(n) hands over or copies what is buffered,
// and the limit still pauses and resumes the transport.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "streams/streams.h"
#include "testing/async_test_util.h"

namespace asyncio {
namespace {

using streams_internal::StreamReaderProtocol;
using testing_util::port_of;

// Records what the reader asks of its transport.
class FakeTransport final : public Transport {
 public:
  void write(std::string_view) override {}
  void writelines(const std::vector<std::string>&) override {}
  void write_eof() override {}
  bool can_write_eof() const override { return true; }
  void abort() override {}
  void pause_reading() override {
    reading = false;
    ++pauses;
  }
  void resume_reading() override {
    reading = true;
    ++resumes;
  }
  bool is_reading() const override { return reading; }
  void set_write_buffer_limits(std::optional<size_t>, std::optional<size_t>) override {}
  std::pair<size_t, size_t> get_write_buffer_limits() const override { return {0, 0}; }
  size_t get_write_buffer_size() const override { return 0; }
  void close() override {}
  bool is_closing() const override { return false; }
  std::any get_extra_info(std::string_view) const override { return {}; }
  void set_protocol(std::shared_ptr<BaseProtocol>) override {}
  std::shared_ptr<BaseProtocol> get_protocol() const override { return nullptr; }

  bool reading = true;
  int pauses = 0;
  int resumes = 0;
};

// A pattern that shows a lost, repeated or reordered byte.
std::string pattern(size_t offset, size_t n) {
  std::string out(n, '\0');
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<char>((offset + i) * 131 % 251);
  return out;
}

// Receives `data` as the socket transport does: into get_buffer()'s span,
// as many times as it takes.
void receive(StreamReaderProtocol& protocol, std::string_view data) {
  while (!data.empty()) {
    std::span<char> buf = protocol.get_buffer(256 * 1024);
    ASSERT_FALSE(buf.empty());
    const size_t n = std::min(buf.size(), data.size());
    std::copy_n(data.data(), n, buf.data());
    protocol.buffer_updated(n);
    data.remove_prefix(n);
  }
}

struct Connected {
  StreamReader reader;
  std::shared_ptr<FakeTransport> transport = std::make_shared<FakeTransport>();
  std::shared_ptr<StreamReaderProtocol> protocol;
  explicit Connected(size_t limit = kDefaultStreamLimit) : reader(limit) {
    protocol = std::make_shared<StreamReaderProtocol>(reader, get_event_loop());
    protocol->connection_made(transport);
  }
};

TEST(ReaderBufferTest, BulkMessagesThroughGetBufferArriveWhole) {
  run([]() -> Coro<void> {
    Connected c;
    size_t sent = 0;
    size_t got = 0;
    for (size_t size : {100u * 1024, 1u, 300u * 1024, 8u * 1024 - 1, 256u * 1024, 5000u}) {
      receive(*c.protocol, pattern(sent, size));
      sent += size;
      std::string data = co_await c.reader.read(256 * 1024);
      EXPECT_EQ(data, pattern(got, data.size()));
      got += data.size();
      while (got < sent) {
        std::string more = co_await c.reader.read(256 * 1024);
        EXPECT_EQ(more, pattern(got, more.size()));
        got += more.size();
      }
    }
    EXPECT_EQ(got, sent);
  }());
}

TEST(ReaderBufferTest, ReadHandsOverWhatIsBufferedAndKeepsTheRest) {
  run([]() -> Coro<void> {
    Connected c;
    receive(*c.protocol, pattern(0, 100 * 1024));
    EXPECT_EQ(co_await c.reader.read(1000), pattern(0, 1000));
    // Fed after a partial read: lands behind the unread bytes.
    receive(*c.protocol, pattern(100 * 1024, 200 * 1024));
    c.reader.feed_data(pattern(300 * 1024, 10));
    EXPECT_EQ(co_await c.reader.readexactly(300 * 1024 + 10 - 1000),
              pattern(1000, 300 * 1024 + 10 - 1000));
    // Small data, then all of it at once.
    c.reader.feed_data("abc");
    receive(*c.protocol, "def");
    EXPECT_EQ(co_await c.reader.read(100), "abcdef");
    c.reader.feed_eof();
    EXPECT_EQ(co_await c.reader.read(100), "");
    EXPECT_TRUE(c.reader.at_eof());
  }());
}

TEST(ReaderBufferTest, PausesPastTwiceTheLimitAndResumesAtTheLimit) {
  run([]() -> Coro<void> {
    Connected c(1000);
    receive(*c.protocol, pattern(0, 2000));
    EXPECT_EQ(c.transport->pauses, 0) << "2 * limit is not past it";
    receive(*c.protocol, pattern(2000, 1));
    EXPECT_EQ(c.transport->pauses, 1);
    EXPECT_FALSE(c.transport->reading);
    EXPECT_EQ(co_await c.reader.read(1000), pattern(0, 1000));
    EXPECT_EQ(c.transport->resumes, 0) << "1001 bytes left: still past the limit";
    EXPECT_EQ(co_await c.reader.readexactly(1), pattern(1000, 1));
    EXPECT_EQ(c.transport->resumes, 1);
    EXPECT_TRUE(c.transport->reading);
    EXPECT_EQ(co_await c.reader.read(5000), pattern(1001, 1000));
  }());
}

TEST(ReaderBufferTest, WaitingReaderWakesOnBufferUpdated) {
  run([]() -> Coro<void> {
    Connected c;
    Task<std::string> read = create_task(c.reader.readexactly(300 * 1024));
    co_await sleep(std::chrono::seconds(0));
    EXPECT_FALSE(read.done());
    receive(*c.protocol, pattern(0, 200 * 1024));
    co_await sleep(std::chrono::seconds(0));
    EXPECT_FALSE(read.done());
    receive(*c.protocol, pattern(200 * 1024, 100 * 1024 + 7));
    EXPECT_EQ(co_await read, pattern(0, 300 * 1024));
    c.reader.feed_eof();
    EXPECT_EQ(co_await c.reader.read(), pattern(300 * 1024, 7));
  }());
}

// Random feeds (both ways) and reads against a plain string.
TEST(ReaderBufferTest, MatchesAPlainBufferUnderRandomFeedsAndReads) {
  run([]() -> Coro<void> {
    Connected c(1 << 30);  // no pausing: this is about the bytes
    std::mt19937 random(12);
    size_t fed = 0;
    size_t read = 0;
    for (int step = 0; step < 600; ++step) {
      const size_t size = random() % 4 == 0 ? random() % (400 * 1024) : random() % 9000;
      switch (random() % 4) {
        case 0:
          c.reader.feed_data(pattern(fed, size));
          fed += size;
          break;
        case 1:
          receive(*c.protocol, pattern(fed, size));
          fed += size;
          break;
        case 2:
          if (fed > read) {
            std::string data = co_await c.reader.read(static_cast<ssize_t>(size + 1));
            EXPECT_EQ(data.size(), std::min(size + 1, fed - read));
            EXPECT_EQ(data, pattern(read, data.size()));
            read += data.size();
          }
          break;
        case 3:
          if (fed - read >= size) {
            EXPECT_EQ(co_await c.reader.readexactly(size), pattern(read, size));
            read += size;
          }
          break;
      }
    }
    c.reader.feed_eof();
    std::string rest = co_await c.reader.read();
    EXPECT_EQ(rest, pattern(read, fed - read));
  }());
}

Coro<void> echo_in_bulk(StreamReader reader, StreamWriter writer) {
  while (true) {
    std::string data = co_await reader.read(256 * 1024);
    if (data.empty()) break;
    writer.write(data);
    co_await writer.drain();
  }
  writer.close();
}

TEST(ReaderBufferTest, BulkEchoOverASocket) {
  run([]() -> Coro<void> {
    Server server = co_await start_server(echo_in_bulk, "127.0.0.1", 0);
    auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(server));
    const size_t total = 3 * 1024 * 1024 + 17;
    Task<std::string> echoed = create_task(reader.readexactly(total));
    for (size_t sent = 0; sent < total; sent += 100 * 1024) {
      writer.write(pattern(sent, std::min<size_t>(100 * 1024, total - sent)));
      co_await writer.drain();
    }
    writer.write_eof();
    EXPECT_EQ(co_await echoed, pattern(0, total));
    EXPECT_EQ(co_await reader.read(), "");
    writer.close();
    co_await writer.wait_closed();
    server.close();
    co_await server.wait_closed();
  }());
}

}  // namespace
}  // namespace asyncio
