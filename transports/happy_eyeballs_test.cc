// create_connection over several addresses: the sequential and the
// staggered (happy eyeballs, RFC 8305) races, interleaving by family, and
// the errors when every address fails. A resolver hook hands out the
// address lists; a loopback listener whose accept queue is full stands for
// an address that never answers.
#include "transports/internal/happy_eyeballs.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cmath>
#include <memory>
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

using namespace std::chrono_literals;
using posix::UniqueFd;
using testing_util::Blackhole;
using testing_util::open_fd_count;
using testing_util::port_of;
using testing_util::Refuser;

void use_addresses(EventLoop& loop, std::vector<SocketAddress> addrs) {
  loop.set_name_resolver(std::make_shared<testing_util::FixedResolver>(loop, std::move(addrs)));
}

// A server whose accepted connections can be awaited.
struct Accepting {
  static Coro<std::unique_ptr<Accepting>> start(EventLoop& loop) {
    auto accepting = std::make_unique<Accepting>(loop);
    Accepting* self = accepting.get();
    self->server.emplace(co_await create_server(
        loop,
        [self]() -> std::shared_ptr<BaseProtocol> {
          auto protocol = std::make_shared<testing_util::EchoProtocol>();
          self->accepted.push_back(protocol);
          if (!self->first_accepted.done()) self->first_accepted.set_result();
          return protocol;
        },
        "127.0.0.1", 0));
    self->addr = SocketAddress("127.0.0.1", port_of(*self->server));
    co_return accepting;
  }
  explicit Accepting(EventLoop& loop) : first_accepted(create_future<void>(loop)) {}
  Coro<void> stop() {
    for (auto& protocol : accepted) {
      if (protocol->transport) protocol->transport->abort();
    }
    server->close();
    co_await server->wait_closed();
  }
  std::optional<Server> server;
  SocketAddress addr;
  std::vector<std::shared_ptr<testing_util::EchoProtocol>> accepted;
  Future<void> first_accepted;
};

ConnectOptions with_delay(std::chrono::duration<double> delay) {
  ConnectOptions options;
  options.happy_eyeballs_delay = delay;
  return options;
}

std::string text_of(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  }
}

// Connects through `dead` (an address that fails or never answers) to a
// server behind it; checks the connection went to the server and returns
// how long it took.
template <class Dead>
Coro<double> connect_past(EventLoop& loop, const Dead& dead, ConnectOptions options) {
  std::unique_ptr<Accepting> good = co_await Accepting::start(loop);
  use_addresses(loop, {dead.addr(), good->addr});
  const int fds_before = open_fd_count();
  const double started = loop.time();
  auto [transport, protocol] = co_await create_connection(
      loop, [] { return std::make_shared<Protocol>(); }, "example.test", 80, options);
  const double took = loop.time() - started;
  EXPECT_EQ(std::any_cast<SocketAddress>(transport->get_extra_info("peername")), good->addr);
  co_await good->first_accepted;
  // The client and the accepted socket: the other attempt is closed.
  EXPECT_EQ(open_fd_count(), fds_before + 2);
  transport->abort();
  co_await good->stop();
  co_return took;
}

TEST(HappyEyeballsTest, TheNextAddressStartsAfterTheDelayAndWins) {
  run([]() -> Coro<void> {
    Blackhole blackhole;
    const ConnectOptions options = with_delay(50ms);
    EXPECT_GE(co_await connect_past(get_running_loop(), blackhole, options), 0.045);
  }());
}

TEST(HappyEyeballsTest, AFailureStartsTheNextAddressAtOnce) {
  run([]() -> Coro<void> {
    Refuser refuser;
    const ConnectOptions delayed = with_delay(10s);
    EXPECT_LT(co_await connect_past(get_running_loop(), refuser, delayed), 5.0);
    // Without a delay, as one after the other.
    const ConnectOptions sequential;
    EXPECT_LT(co_await connect_past(get_running_loop(), refuser, sequential), 5.0);
  }());
}

TEST(HappyEyeballsTest, WithoutADelayEachAddressWaitsForThePrevious) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Blackhole blackhole;
    std::unique_ptr<Accepting> good = co_await Accepting::start(loop);
    use_addresses(loop, {blackhole.addr(), good->addr});
    const int fds_before = open_fd_count();
    auto connecting = create_connection(
        loop, [] { return std::make_shared<Protocol>(); }, "example.test", 80);
    EXPECT_TRUE(
        co_await testing_util::throws<TimeoutError>(wait_for(std::move(connecting), 100ms)));
    EXPECT_TRUE(good->accepted.empty());
    // The timeout cancelled the connect: its socket is closed with it.
    EXPECT_EQ(open_fd_count(), fds_before);
    co_await good->stop();
  }());
}

TEST(HappyEyeballsTest, CancellingTheConnectClosesEveryAttempt) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    const ConnectOptions delayed = with_delay(10ms);
    Blackhole blackhole;
    use_addresses(loop, {blackhole.addr(), blackhole.addr(), blackhole.addr()});
    const int fds_before = open_fd_count();
    auto connecting = create_connection(
        loop, [] { return std::make_shared<Protocol>(); }, "example.test", 80, delayed);
    Task<std::pair<std::shared_ptr<Transport>, std::shared_ptr<Protocol>>> task =
        create_task(std::move(connecting));
    // All three attempts are under way after three delays.
    co_await sleep(100ms);
    EXPECT_GE(open_fd_count(), fds_before + 3);
    task.cancel();
    EXPECT_TRUE(co_await testing_util::throws<CancelledError>(task));
    EXPECT_EQ(open_fd_count(), fds_before);
  }());
}

TEST(HappyEyeballsTest, OneFailedAddressThrowsItsOwnError) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    const ConnectOptions delayed = with_delay(10ms);
    Refuser refuser;
    use_addresses(loop, {refuser.addr()});
    try {
      co_await create_connection(
          loop, [] { return std::make_shared<Protocol>(); }, "example.test", 80, delayed);
      ADD_FAILURE() << "connected";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code().value(), ECONNREFUSED);
      EXPECT_NE(std::string(e.what()).find(refuser.addr().to_string()), std::string::npos);
      EXPECT_EQ(std::string(e.what()).find("Multiple exceptions"), std::string::npos);
    }
  }());
}

TEST(HappyEyeballsTest, IdenticalErrorsThrowTheFirst) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Refuser refuser;
    use_addresses(loop, {refuser.addr(), refuser.addr()});
    try {
      co_await create_connection(
          loop, [] { return std::make_shared<Protocol>(); }, "example.test", 80);
      ADD_FAILURE() << "connected";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code().value(), ECONNREFUSED);
      EXPECT_EQ(std::string(e.what()).find("Multiple exceptions"), std::string::npos);
    }
  }());
}

TEST(HappyEyeballsTest, DifferentErrorsAreListedTogether) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    const ConnectOptions delayed = with_delay(10ms);
    Refuser first, second;
    use_addresses(loop, {first.addr(), second.addr()});
    try {
      co_await create_connection(
          loop, [] { return std::make_shared<Protocol>(); }, "example.test", 80, delayed);
      ADD_FAILURE() << "connected";
    } catch (const std::system_error& e) {
      const std::string text = e.what();
      EXPECT_EQ(e.code().value(), ECONNREFUSED);
      EXPECT_EQ(text.rfind("Multiple exceptions: ", 0), 0u) << text;
      const size_t at_first = text.find(first.addr().to_string());
      const size_t at_second = text.find(second.addr().to_string());
      EXPECT_NE(at_first, std::string::npos) << text;
      EXPECT_NE(at_second, std::string::npos) << text;
      EXPECT_LT(at_first, at_second);
    }
  }());
}

// Connects to `given` (addresses that all fail) with all_errors: checks
// that the ExceptionGroup holds an error for each address, in the order
// `tried`.
Coro<void> expect_errors_for(std::vector<SocketAddress> given, std::vector<SocketAddress> tried,
                             ConnectOptions options) {
  EventLoop& loop = get_running_loop();
  use_addresses(loop, std::move(given));
  options.all_errors = true;
  try {
    co_await create_connection(
        loop, [] { return std::make_shared<Protocol>(); }, "example.test", 80, options);
    ADD_FAILURE() << "connected";
  } catch (const ExceptionGroup& group) {
    EXPECT_EQ(group.exceptions().size(), tried.size());
    for (size_t i = 0; i < tried.size() && i < group.exceptions().size(); ++i) {
      const std::string text = text_of(group.exceptions()[i]);
      EXPECT_NE(text.find(tried[i].to_string()), std::string::npos) << i << ": " << text;
    }
  }
}

TEST(HappyEyeballsTest, AllErrorsGivesAnExceptionGroup) {
  run([]() -> Coro<void> {
    Refuser first, second;
    std::vector<SocketAddress> both = {first.addr(), second.addr()};
    const ConnectOptions options;
    co_await expect_errors_for(both, both, options);
  }());
}

TEST(HappyEyeballsTest, BadOptionsAreRefusedBeforeConnecting) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Refuser refuser;
    use_addresses(loop, {refuser.addr()});
    ConnectOptions negative;
    negative.interleave = -1;
    auto factory = [] { return std::make_shared<Protocol>(); };
    EXPECT_TRUE(co_await testing_util::throws<std::invalid_argument>(
        create_connection(loop, factory, "example.test", 80, negative)));
    const ConnectOptions nan_delay = with_delay(std::chrono::duration<double>(std::nan("")));
    EXPECT_TRUE(co_await testing_util::throws<std::invalid_argument>(
        create_connection(loop, factory, "example.test", 80, nan_delay)));
  }());
}

TEST(HappyEyeballsTest, InterleaveAlternatesFamilies) {
  auto info = [](const char* ip) {
    SocketAddress addr(ip, 1);
    return AddrInfo{addr.family(), SOCK_STREAM, 0, "", addr};
  };
  const std::vector<AddrInfo> infos = {
      info("2001:db8::1"), info("2001:db8::2"), info("2001:db8::3"), info("192.0.2.1"),
      info("192.0.2.2"),   info("192.0.2.3"),   info("192.0.2.4"),   info("2001:db8::4")};
  auto order = [&](size_t first_family_count) {
    std::string hosts;
    for (const AddrInfo& i : transports_internal::interleave_addrinfos(infos, first_family_count)) {
      hosts += i.addr.host() + " ";
    }
    return hosts;
  };
  EXPECT_EQ(order(1),
            "2001:db8::1 192.0.2.1 2001:db8::2 192.0.2.2 2001:db8::3 192.0.2.3 2001:db8::4 "
            "192.0.2.4 ");
  EXPECT_EQ(order(2),
            "2001:db8::1 2001:db8::2 192.0.2.1 2001:db8::3 192.0.2.2 2001:db8::4 192.0.2.3 "
            "192.0.2.4 ");
  EXPECT_EQ(order(3),
            "2001:db8::1 2001:db8::2 2001:db8::3 192.0.2.1 2001:db8::4 192.0.2.2 192.0.2.3 "
            "192.0.2.4 ");
}

TEST(HappyEyeballsTest, ConnectTriesTheInterleavedOrder) {
  UniqueFd probe(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  SocketAddress v6_loopback("::1", 0);
  if (probe.get() < 0 ||
      ::bind(probe.get(), v6_loopback.sockaddr_ptr(), v6_loopback.sockaddr_len()) != 0) {
    GTEST_SKIP() << "no IPv6 loopback";
  }
  run([]() -> Coro<void> {
    Refuser v4a, v4b, v6("::1");
    ConnectOptions options;
    options.interleave = 1;
    std::vector<SocketAddress> given = {v4a.addr(), v4b.addr(), v6.addr()};
    std::vector<SocketAddress> tried = {v4a.addr(), v6.addr(), v4b.addr()};
    co_await expect_errors_for(given, tried, options);
    // A delay alone interleaves too.
    const ConnectOptions delayed = with_delay(10ms);
    co_await expect_errors_for(given, tried, delayed);
    // Without either, the resolver's order stays.
    const ConnectOptions sequential;
    co_await expect_errors_for(given, given, sequential);
  }());
}

}  // namespace
}  // namespace asyncio
