// dns::install routes the loop's host names through c-ares: create_connection
// to a name that only the test's dnsmasq knows reaches a local server.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dns/dns.h"
#include "dns/testing/dnsmasq_server.h"
#include "futures/futures.h"
#include "gtest/gtest.h"
#include "loop/loop.h"
#include "transports/transports.h"

namespace asyncio {
namespace {

// Sends back what it receives.
class Echo : public Protocol {
 public:
  void connection_made(std::shared_ptr<BaseTransport> transport) override {
    transport_ = std::static_pointer_cast<Transport>(transport);
  }
  void data_received(std::string_view data) override { transport_->write(data); }

 private:
  std::shared_ptr<Transport> transport_;
};

// Collects what it receives; `done` completes after `expected` bytes.
class Collect : public Protocol {
 public:
  Collect(EventLoop& loop, size_t expected)
      : done(create_future<void>(loop)), expected_(expected) {}
  void data_received(std::string_view data) override {
    received += data;
    if (received.size() >= expected_ && !done.done()) done.set_result();
  }
  std::string received;
  Future<void> done;

 private:
  size_t expected_;
};

TEST(DnsTransportsTest, CreateConnectionResolvesThroughTheInstalledResolver) {
  dns_testing::DnsmasqConfig config;
  config.hosts = {{"127.0.0.1", "echo.test"}};
  dns_testing::DnsmasqServer dnsmasq(config);
  run([&dnsmasq]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    dns::ResolverOptions options;
    options.servers = {dnsmasq.address()};
    options.search_domains = std::vector<std::string>{};
    options.lookups = "b";  // DNS only: the name must come from dnsmasq
    dns::install(loop, options);

    Server server = co_await create_server(
        loop, [] { return std::make_shared<Echo>(); }, "127.0.0.1", 0);
    const uint16_t port = server.sockets().at(0).getsockname().port();
    auto [transport, client] = co_await create_connection(
        loop, [&loop] { return std::make_shared<Collect>(loop, 5); }, "echo.test", port);
    transport->write("hello");
    co_await client->done;
    EXPECT_EQ(client->received, "hello");
    transport->close();

    // A name dnsmasq does not know: GaiError(EAI_NONAME) from create_connection.
    int code = 0;
    try {
      co_await create_connection(
          loop, [&loop] { return std::make_shared<Collect>(loop, 1); }, "missing.test", port);
    } catch (const GaiError& e) {
      code = e.code();
    }
    EXPECT_EQ(code, EAI_NONAME);
    server.close();
    co_await server.wait_closed();
  }());
}

}  // namespace
}  // namespace asyncio
