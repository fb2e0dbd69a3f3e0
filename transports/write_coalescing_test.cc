// The writes of one loop iteration leave together, at the end of the
// iteration, without reordering or losing a byte.
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "futures/futures.h"
#include "gtest/gtest.h"
#include "loop/posix.h"
#include "transports/transports.h"

namespace asyncio {
namespace {

class LostRecorder : public Protocol {
 public:
  void connection_lost(std::exception_ptr exc) override {
    lost = true;
    error = exc;
  }
  bool lost = false;
  std::exception_ptr error;
};

// A transport over one end of a socketpair; the test reads the other end.
struct Pair {
  std::shared_ptr<Transport> transport;
  std::shared_ptr<LostRecorder> protocol;
  int peer = -1;
  ~Pair() {
    if (peer >= 0) ::close(peer);
  }
};

Coro<std::shared_ptr<Pair>> make_pair(EventLoop& loop) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    posix::throw_errno("socketpair");
  }
  auto pair = std::make_shared<Pair>();
  pair->peer = fds[1];
  auto factory = [] { return std::make_shared<LostRecorder>(); };
  std::tie(pair->transport, pair->protocol) =
      co_await connect_accepted_socket(loop, factory, fds[0]);
  co_return pair;
}

// Reads from the peer until `n` bytes or EOF.
Coro<std::string> read_peer(EventLoop& loop, int fd, size_t n) {
  std::string all;
  while (all.size() < n) {
    std::string chunk = co_await sock_recv(loop, fd, n - all.size());
    if (chunk.empty()) break;
    all += chunk;
  }
  co_return all;
}

TEST(WriteCoalescingTest, SmallWritesOfOneIterationLeaveInOneSend) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    auto p = co_await make_pair(loop);
    p->transport->write("ab");
    p->transport->write("c");
    std::vector<std::string> more{"d", "", "ef"};
    p->transport->writelines(more);
    // Buffered until the end of the iteration, and said so.
    EXPECT_EQ(p->transport->get_write_buffer_size(), 6u);
    // One send: the peer's first read has all of it.
    EXPECT_EQ(co_await sock_recv(loop, p->peer, 100), "abcdef");
    EXPECT_EQ(p->transport->get_write_buffer_size(), 0u);
    p->transport->close();
  }());
}

TEST(WriteCoalescingTest, LargeWriteGoesAtOnceBehindWhatIsPending) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    auto p = co_await make_pair(loop);
    const std::string big(100000, 'x');
    p->transport->write("head");
    p->transport->write(big);
    // Sent now (as much as the socket took), not copied and deferred.
    EXPECT_LT(p->transport->get_write_buffer_size(), 4 + big.size());
    p->transport->write("tail");
    std::string got = co_await read_peer(loop, p->peer, 4 + big.size() + 4);
    EXPECT_EQ(got, "head" + big + "tail");
    p->transport->close();
  }());
}

TEST(WriteCoalescingTest, WritesFromSeveralTasksKeepTheirOrder) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    auto p = co_await make_pair(loop);
    std::shared_ptr<Transport> t = p->transport;
    std::vector<Task<void>> tasks;
    for (char c : std::string("12345")) {
      tasks.push_back(create_task([](std::shared_ptr<Transport> t, char c) -> Coro<void> {
        t->write(std::string(3, c));
        co_return;
      }(t, c)));
    }
    for (Task<void>& task : tasks) co_await task;
    EXPECT_EQ(co_await read_peer(loop, p->peer, 15), "111222333444555");
    t->close();
  }());
}

TEST(WriteCoalescingTest, WriteFromALaterCallbackFollowsTheFlushedOne) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    auto p = co_await make_pair(loop);
    std::shared_ptr<Transport> t = p->transport;
    t->write("first,");
    // Runs in the next iteration, after this one's flush.
    loop.call_soon([t] { t->write("second,"); });
    loop.call_soon([&loop, t] { loop.call_soon([t] { t->write("third"); }); });
    EXPECT_EQ(co_await read_peer(loop, p->peer, 18), "first,second,third");
    t->close();
  }());
}

TEST(WriteCoalescingTest, CloseAfterWriteDeliversEverythingThenEof) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    auto p = co_await make_pair(loop);
    p->transport->write("last words");
    std::vector<std::string> more{" and", " more"};
    p->transport->writelines(more);
    p->transport->close();
    EXPECT_TRUE(p->transport->is_closing());
    EXPECT_EQ(co_await read_peer(loop, p->peer, 1000), "last words and more");
    EXPECT_EQ(co_await sock_recv(loop, p->peer, 10), "") << "EOF after the data";
    EXPECT_TRUE(p->protocol->lost);
    EXPECT_EQ(p->protocol->error, nullptr);
  }());
}

TEST(WriteCoalescingTest, WriteEofAfterWriteSendsTheDataFirst) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    auto p = co_await make_pair(loop);
    p->transport->write("data");
    p->transport->write_eof();
    EXPECT_THROW(p->transport->write("more"), std::runtime_error);
    EXPECT_EQ(co_await read_peer(loop, p->peer, 1000), "data");
    EXPECT_FALSE(p->protocol->lost) << "half-closed: still open for reading";
    p->transport->close();
  }());
}

TEST(WriteCoalescingTest, AbortDiscardsWhatIsBuffered) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    auto p = co_await make_pair(loop);
    p->transport->write("never sent");
    p->transport->abort();
    EXPECT_EQ(p->transport->get_write_buffer_size(), 0u);
    EXPECT_EQ(co_await sock_recv(loop, p->peer, 100), "");
    EXPECT_TRUE(p->protocol->lost);
  }());
}

TEST(WriteCoalescingTest, ZeroHighWatermarkWritesAtOnce) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    auto p = co_await make_pair(loop);
    p->transport->set_write_buffer_limits(0);
    p->transport->write("now");
    EXPECT_EQ(p->transport->get_write_buffer_size(), 0u);
    EXPECT_EQ(co_await sock_recv(loop, p->peer, 100), "now");
    p->transport->close();
  }());
}

TEST(WriteCoalescingTest, WriteBeforeTheLoopRunsIsSentWhenItDoes) {
  auto loop = new_event_loop();
  std::shared_ptr<Pair> p = run_until_complete(*loop, make_pair(*loop));
  p->transport->write("early");
  std::string got = run_until_complete(*loop, read_peer(*loop, p->peer, 5));
  EXPECT_EQ(got, "early");
  p->transport->close();
  run_until_complete(*loop, sleep(std::chrono::seconds(0)));
  EXPECT_TRUE(p->protocol->lost);
}

}  // namespace
}  // namespace asyncio
