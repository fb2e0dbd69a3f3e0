// connect_read_pipe and connect_write_pipe over pipe2 pairs, a FIFO, a
// socket pair and a character device; regular files refused.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <exception>
#include <memory>
#include <optional>
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
using testing_util::PipePair;

// Records what a pipe transport tells it; `lost` resolves at
// connection_lost with its error (null for a clean close).
class Recorder : public Protocol {
 public:
  Recorder() : lost(create_future<std::exception_ptr>(get_running_loop())) {}
  void connection_made(std::shared_ptr<BaseTransport> t) override {
    events.push_back("made");
    transport = std::static_pointer_cast<Transport>(t);
  }
  void data_received(std::string_view data) override {
    received.append(data);
    if (events.back() != "data") events.push_back("data");
    if (more && !more->done()) more->set_result();
  }
  bool eof_received() override {
    events.push_back("eof");
    return true;  // ignored by a read pipe
  }
  void pause_writing() override { events.push_back("pause"); }
  void resume_writing() override { events.push_back("resume"); }
  void connection_lost(std::exception_ptr exc) override {
    events.push_back("lost");
    lost.set_result(exc);
  }

  // Until `received` holds `n` bytes.
  Coro<void> received_at_least(size_t n) {
    while (received.size() < n) {
      more = create_future<void>(get_running_loop());
      co_await *more;
    }
  }

  std::shared_ptr<Transport> transport;
  std::optional<Future<void>> more;
  std::vector<std::string> events;
  std::string received;
  Future<std::exception_ptr> lost;
};

std::shared_ptr<Recorder> make_recorder() { return std::make_shared<Recorder>(); }

int error_code(const std::exception_ptr& exc) {
  try {
    std::rethrow_exception(exc);
  } catch (const std::system_error& e) {
    return e.code().value();
  } catch (...) {
  }
  return -1;
}

TEST(PipeTest, ReadPipeDeliversDataThenEofThenConnectionLost) {
  const int fds_before = open_fd_count();
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    PipePair pipe;
    const int fd = pipe.read_end.release();
    auto [transport, protocol] = co_await connect_read_pipe(loop, make_recorder, fd);
    EXPECT_EQ(protocol->transport, transport);
    EXPECT_EQ(std::any_cast<int>(transport->get_extra_info("pipe")), fd);
    EXPECT_TRUE(transport->is_reading());
    EXPECT_FALSE(transport->can_write_eof());
    EXPECT_THROW(transport->write("x"), std::logic_error);
    EXPECT_EQ(::write(pipe.write_end.get(), "hello ", 6), 6);
    EXPECT_EQ(::write(pipe.write_end.get(), "pipe", 4), 4);
    pipe.write_end.reset();
    std::exception_ptr exc = co_await protocol->lost;
    EXPECT_EQ(exc, nullptr);
    EXPECT_EQ(protocol->received, "hello pipe");
    const std::vector<std::string> expected = {"made", "data", "eof", "lost"};
    EXPECT_EQ(protocol->events, expected);
    EXPECT_TRUE(transport->is_closing());
    EXPECT_EQ(std::any_cast<int>(transport->get_extra_info("pipe")), -1);
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(PipeTest, PauseReadingHoldsTheDataBack) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    PipePair pipe;
    auto [transport, protocol] =
        co_await connect_read_pipe(loop, make_recorder, pipe.read_end.release());
    transport->pause_reading();
    EXPECT_FALSE(transport->is_reading());
    EXPECT_EQ(::write(pipe.write_end.get(), "held", 4), 4);
    co_await testing_util::settle();
    EXPECT_EQ(protocol->received, "");
    transport->resume_reading();
    EXPECT_TRUE(transport->is_reading());
    co_await protocol->received_at_least(4);
    EXPECT_EQ(protocol->received, "held");
    transport->close();
    EXPECT_EQ(co_await protocol->lost, nullptr);
  }());
}

TEST(PipeTest, WritePipeBuffersFlowControlsAndFlushesOnClose) {
  const int fds_before = open_fd_count();
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    PipePair pipe;
    auto [reader, reading] =
        co_await connect_read_pipe(loop, make_recorder, pipe.read_end.release());
    auto [writer, writing] =
        co_await connect_write_pipe(loop, make_recorder, pipe.write_end.release());
    EXPECT_TRUE(writer->can_write_eof());
    EXPECT_FALSE(writer->is_reading());
    const std::string big(1 << 20, 'p');
    writer->write(big);
    // The pipe takes 64 KiB at most: the rest waits, over the high watermark.
    EXPECT_GT(writer->get_write_buffer_size(), 0u);
    const std::vector<std::string> paused = {"made", "pause"};
    EXPECT_EQ(writing->events, paused);
    writer->writelines(std::vector<std::string>{"a", "b"});
    writer->close();
    EXPECT_TRUE(writer->is_closing());
    writer->write("dropped after close");
    EXPECT_EQ(co_await writing->lost, nullptr);
    const std::vector<std::string> flushed = {"made", "pause", "resume", "lost"};
    EXPECT_EQ(writing->events, flushed);
    EXPECT_EQ(writer->get_write_buffer_size(), 0u);
    EXPECT_EQ(co_await reading->lost, nullptr);
    EXPECT_EQ(reading->received, big + "ab");
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

// Writes `data` to a write pipe, closes the reading end, and returns what
// connection_lost then says (its errno, 0 for a clean close).
int error_after_the_reader_closes(std::string data) {
  const int fds_before = open_fd_count();
  int code = -1;
  run([](std::string data, int& code) -> Coro<void> {
    EventLoop& loop = get_running_loop();
    PipePair pipe;
    auto [writer, writing] =
        co_await connect_write_pipe(loop, make_recorder, pipe.write_end.release());
    writer->write(data);
    // A pipe takes 64 KiB: what is over waits in the transport.
    EXPECT_EQ(writer->get_write_buffer_size() > 0, data.size() > 65536);
    pipe.read_end.reset();
    std::exception_ptr exc = co_await writing->lost;
    code = exc ? error_code(exc) : 0;
    EXPECT_EQ(writer->get_write_buffer_size(), 0u);
    EXPECT_TRUE(writer->is_closing());
  }(std::move(data), code));
  EXPECT_EQ(open_fd_count(), fds_before);
  return code;
}

TEST(PipeTest, ReaderClosingWithDataQueuedIsABrokenPipe) {
  EXPECT_EQ(error_after_the_reader_closes(std::string(1 << 20, 'x')), EPIPE);
}

TEST(PipeTest, ReaderClosingWithNothingQueuedIsACleanClose) {
  EXPECT_EQ(error_after_the_reader_closes("taken at once"), 0);
}

TEST(PipeTest, WriteLimitsAndAbort) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    PipePair pipe;
    auto [writer, writing] =
        co_await connect_write_pipe(loop, make_recorder, pipe.write_end.release());
    writer->set_write_buffer_limits(1000);
    EXPECT_EQ(writer->get_write_buffer_limits(), std::make_pair(size_t{250}, size_t{1000}));
    EXPECT_THROW(writer->set_write_buffer_limits(10, 20), std::invalid_argument);
    writer->write(std::string(100000, 'y'));
    EXPECT_GT(writer->get_write_buffer_size(), 0u);
    writer->abort();
    EXPECT_EQ(writer->get_write_buffer_size(), 0u);
    EXPECT_EQ(co_await writing->lost, nullptr);
  }());
}

TEST(PipeTest, FifoCarriesDataBothWays) {
  const int fds_before = open_fd_count();
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    testing_util::TempDir dir;
    const std::string path = dir.file("fifo");
    EXPECT_EQ(::mkfifo(path.c_str(), 0600), 0);
    // Read end first: opening the write end of a FIFO without a reader fails.
    const int read_fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    const int write_fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    EXPECT_GE(read_fd, 0);
    EXPECT_GE(write_fd, 0);
    auto [reader, reading] = co_await connect_read_pipe(loop, make_recorder, read_fd);
    auto [writer, writing] = co_await connect_write_pipe(loop, make_recorder, write_fd);
    writer->write("through the fifo");
    writer->close();
    EXPECT_EQ(co_await writing->lost, nullptr);
    EXPECT_EQ(co_await reading->lost, nullptr);
    EXPECT_EQ(reading->received, "through the fifo");
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(PipeTest, SocketPairServesAsAPipe) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    auto [reader, reading] = co_await connect_read_pipe(loop, make_recorder, sv[0]);
    auto [writer, writing] = co_await connect_write_pipe(loop, make_recorder, sv[1]);
    writer->write("over a socket");
    writer->close();
    EXPECT_EQ(co_await reading->lost, nullptr);
    EXPECT_EQ(reading->received, "over a socket");
    EXPECT_EQ(co_await writing->lost, nullptr);
  }());
}

TEST(PipeTest, CharacterDeviceIsAccepted) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    const int fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0);
    auto [writer, writing] = co_await connect_write_pipe(loop, make_recorder, fd);
    writer->write("into the void");
    EXPECT_EQ(writer->get_write_buffer_size(), 0u);
    writer->close();
    EXPECT_EQ(co_await writing->lost, nullptr);
  }());
}

// A pseudo-terminal: its slave written as a tty (a character device, so the
// write transport watches for no reader closing), its master read.
TEST(PipeTest, TerminalCarriesData) {
  UniqueFd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (master.get() < 0 || ::grantpt(master.get()) != 0 || ::unlockpt(master.get()) != 0) {
    GTEST_SKIP() << "no pseudo-terminals here";
  }
  const int fds_before = open_fd_count();
  run([](int master_fd) -> Coro<void> {
    EventLoop& loop = get_running_loop();
    const int slave = ::open(::ptsname(master_fd), O_RDWR | O_NOCTTY | O_CLOEXEC);
    EXPECT_GE(slave, 0);
    termios raw{};
    EXPECT_EQ(::tcgetattr(slave, &raw), 0);
    ::cfmakeraw(&raw);
    EXPECT_EQ(::tcsetattr(slave, TCSANOW, &raw), 0);
    auto [reader, reading] = co_await connect_read_pipe(loop, make_recorder, ::dup(master_fd));
    auto [writer, writing] = co_await connect_write_pipe(loop, make_recorder, slave);
    writer->write("typed at a tty");
    co_await reading->received_at_least(14);
    EXPECT_EQ(reading->received, "typed at a tty");
    writer->close();
    EXPECT_EQ(co_await writing->lost, nullptr);
    reader->close();
    EXPECT_EQ(co_await reading->lost, nullptr);
  }(master.get()));
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(PipeTest, RegularFileIsRefusedAndLeftOpen) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    testing_util::TempDir dir;
    UniqueFd file(::open(dir.file("plain").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    EXPECT_GE(file.get(), 0);
    bool refused = false;
    try {
      co_await connect_read_pipe(loop, make_recorder, file.get());
    } catch (const std::invalid_argument& e) {
      refused = true;
      EXPECT_STREQ(e.what(), "Pipe transport is only for pipes, sockets and character devices");
    }
    EXPECT_TRUE(refused);
    EXPECT_TRUE(co_await testing_util::throws<std::invalid_argument>(
        connect_write_pipe(loop, make_recorder, file.get())));
    EXPECT_EQ(::fcntl(file.get(), F_GETFD), FD_CLOEXEC) << "the caller's descriptor was closed";
  }());
}

TEST(PipeTest, ReadPipeNeedsAStreamProtocol) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    PipePair pipe;
    auto datagram = [] { return std::make_shared<DatagramProtocol>(); };
    EXPECT_TRUE(co_await testing_util::throws<std::invalid_argument>(
        connect_read_pipe(loop, datagram, pipe.read_end.get())));
    EXPECT_EQ(::fcntl(pipe.read_end.get(), F_GETFD), FD_CLOEXEC);
  }());
}

// A protocol that outlives its loop: records connection_lost's error code.
class LossCounter : public Protocol {
 public:
  explicit LossCounter(std::shared_ptr<std::vector<int>> lost) : lost_(std::move(lost)) {}
  void connection_lost(std::exception_ptr exc) override { lost_->push_back(error_code(exc)); }

 private:
  std::shared_ptr<std::vector<int>> lost_;
};

TEST(PipeTest, LoopClosedWithPipesOpenTearsThemDown) {
  const int fds_before = open_fd_count();
  auto lost = std::make_shared<std::vector<int>>();
  std::vector<std::string> reports;
  {
    auto loop = new_event_loop();
    loop->set_exception_handler(
        [&reports](EventLoop&, const ExceptionContext& ctx) { reports.push_back(ctx.message); });
    run_until_complete(*loop,
                       [](EventLoop& l, std::shared_ptr<std::vector<int>> rec) -> Coro<void> {
                         auto factory = [rec] { return std::make_shared<LossCounter>(rec); };
                         PipePair pipe;
                         co_await connect_read_pipe(l, factory, pipe.read_end.release());
                         co_await connect_write_pipe(l, factory, pipe.write_end.release());
                       }(*loop, lost));
  }  // the loop goes with both ends open: both told, nothing leaked
  EXPECT_EQ(*lost, (std::vector<int>{ECONNABORTED, ECONNABORTED}));
  // ... and reported as unclosed (unclosed_test.cc has the details).
  ASSERT_EQ(reports.size(), 2u);
  for (const std::string& r : reports) EXPECT_EQ(r.rfind("unclosed transport <", 0), 0u) << r;
  EXPECT_EQ(open_fd_count(), fds_before);
}

}  // namespace
}  // namespace asyncio
