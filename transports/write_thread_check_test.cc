// In debug mode a transport's write, writelines and sendto (and a write
// pipe's) from a thread other than the loop's throw std::runtime_error with
// asyncio's message, before touching anything; with debug off nothing is
// checked (the tests make that write while the loop thread waits in join(),
// so it races with nothing).
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "futures/futures.h"
#include "gtest/gtest.h"
#include "loop/loop.h"
#include "loop/posix.h"
#include "testing/async_test_util.h"
#include "transports/transports.h"

namespace asyncio {
namespace {

constexpr const char* kMessage =
    "Non-thread-safe operation invoked on an event loop other than the current one";

// Runs `op` on another thread and waits for it: what it threw, else "".
std::string error_from_another_thread(const std::function<void()>& op) {
  std::string error;
  std::thread other([&] {
    try {
      op();
    } catch (const std::runtime_error& e) {
      error = e.what();
    }
  });
  other.join();
  return error;
}

// Each kind of write: from another thread, refused in debug mode with
// nothing sent; accepted with debug off (`peer` then receives it).
// (`writes` is built by the caller in a statement of its own: GCC 12
// destroys a temporary written inside a co_await expression twice.)
Coro<void> check_writes(EventLoop& loop, const std::vector<std::function<void()>>& writes, int peer,
                        std::string_view expected) {
  loop.set_debug(true);
  for (const auto& write : writes) EXPECT_EQ(error_from_another_thread(write), kMessage);
  loop.set_debug(false);
  for (const auto& write : writes) EXPECT_EQ(error_from_another_thread(write), "");
  std::string received;
  while (received.size() < expected.size()) {
    received += co_await sock_recv(loop, peer, 1024);
  }
  EXPECT_EQ(received, expected) << "the refused writes sent nothing";
}

// write and writelines on a Transport that `connect` (connect_accepted_socket
// or connect_write_pipe) makes over one end of a socketpair.
template <class Connect>
Coro<void> check_stream_writes(Connect connect) {
  EventLoop& loop = get_running_loop();
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  posix::UniqueFd peer(sv[1]);
  auto factory = [] { return std::make_shared<Protocol>(); };
  auto connecting = connect(loop, factory, sv[0]);
  auto [transport, protocol] = co_await std::move(connecting);
  std::vector<std::string> lines = {"b", "c"};
  const std::vector<std::function<void()>> writes = {
      [t = transport] { t->write("a"); }, [t = transport, &lines] { t->writelines(lines); }};
  co_await check_writes(loop, writes, peer.get(), "abc");
  transport->close();
}

TEST(WriteThreadCheck, StreamTransportWriteAndWritelines) {
  run(check_stream_writes([](EventLoop& loop, auto factory, int fd) {
    return connect_accepted_socket(loop, factory, fd);
  }));
}

TEST(WriteThreadCheck, WritePipeWriteAndWritelines) {
  // A socketpair is a pipe to connect_write_pipe, and sock_recv reads it.
  run(check_stream_writes(
      [](EventLoop& loop, auto factory, int fd) { return connect_write_pipe(loop, factory, fd); }));
}

TEST(WriteThreadCheck, DatagramSendto) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    testing_util::LoopbackUdp peer;
    auto factory = [] { return std::make_shared<DatagramProtocol>(); };
    DatagramOptions options;
    options.local_addr = SocketAddress("127.0.0.1", 0);
    auto [transport, protocol] = co_await create_datagram_endpoint(loop, factory, options);
    const SocketAddress to = peer.addr;
    const std::vector<std::function<void()>> writes = {[t = transport, to] { t->sendto("d", to); }};
    co_await check_writes(loop, writes, peer.fd.get(), "d");
    transport->close();
  }());
}

}  // namespace
}  // namespace asyncio
