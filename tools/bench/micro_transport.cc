// Micro benchmarks of a transport's read/write path, plain TCP and TLS, on
// loopback on one thread: ping-pong of 1 KiB messages between two Protocols.
// Besides round trips per second they report the allocations per round trip
// after warm-up, which must be zero: the hot path of a transport allocates
// nothing in steady state (OpenSSL's own malloc calls are not counted; they
// do not go through operator new).
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "benchmark/benchmark.h"
#include "futures/futures.h"
#include "loop/loop.h"
#include "tls/testing/certs.h"
#include "tls/tls.h"
#include "tools/bench/alloc_counter.h"
#include "transports/transports.h"

namespace asyncio::bench {
namespace {

constexpr size_t kMessage = 1024;
constexpr int64_t kWarmup = 1000;
constexpr int64_t kRoundTrips = 20000;

class EchoServer : public Protocol {
 public:
  void connection_made(std::shared_ptr<BaseTransport> t) override {
    transport_ = std::static_pointer_cast<Transport>(t);
  }
  void data_received(std::string_view data) override { transport_->write(data); }

 private:
  std::shared_ptr<Transport> transport_;
};

// Sends a message, waits for all of it to come back, sends again; counts the
// operator new calls between round trip kWarmup and the last one.
class PingClient : public Protocol {
 public:
  explicit PingClient(EventLoop& loop) : done(create_future<void>(loop)), message_(kMessage, 'x') {}
  void connection_made(std::shared_ptr<BaseTransport> t) override {
    transport_ = std::static_pointer_cast<Transport>(t);
  }
  void start() { transport_->write(message_); }
  void data_received(std::string_view data) override {
    pending_ += data.size();
    if (pending_ < kMessage) return;
    pending_ = 0;
    ++round_trips_;
    if (round_trips_ == kWarmup) calls_at_warmup_ = thread_new_calls();
    if (round_trips_ == kWarmup + kRoundTrips) {
      allocations = thread_new_calls() - calls_at_warmup_;
      done.set_result();
      return;
    }
    transport_->write(message_);
  }

  Future<void> done;
  int64_t allocations = 0;

 private:
  std::shared_ptr<Transport> transport_;
  std::string message_;
  size_t pending_ = 0;
  int64_t round_trips_ = 0;
  int64_t calls_at_warmup_ = 0;
};

Coro<int64_t> ping_pong(bool tls) {
  EventLoop& loop = get_running_loop();
  ServerOptions server_options;
  ConnectOptions connect_options;
  if (tls) {
    const tls_testing::TestCerts& certs = tls_testing::test_certs();
    server_options.ssl = tls::Context::server(certs.server.cert, certs.server.key);
    tls::Context client_ctx = tls::Context::client();
    client_ctx.load_verify_locations(certs.ca_file);
    connect_options.ssl = client_ctx;
  }
  auto echo = [] { return std::make_shared<EchoServer>(); };
  Server server = co_await create_server(loop, echo, "127.0.0.1", 0, server_options);
  const uint16_t port = server.sockets().at(0).getsockname().port();
  auto ping = [&loop] { return std::make_shared<PingClient>(loop); };
  auto [transport, client] =
      co_await create_connection(loop, ping, "127.0.0.1", port, connect_options);
  client->start();
  co_await client->done;
  transport->close();
  server.close();
  co_await server.wait_closed();
  co_return client->allocations;
}

void transport_ping_pong(benchmark::State& state) {
  const bool tls = state.range(0) != 0;
  int64_t allocations = 0;
  for (auto _ : state) {
    auto loop = new_event_loop();
    allocations += run_until_complete(*loop, ping_pong(tls));
  }
  state.SetItemsProcessed(state.iterations() * kRoundTrips);
  state.counters["allocations_per_round_trip"] =
      static_cast<double>(allocations) / static_cast<double>(state.iterations() * kRoundTrips);
}
BENCHMARK(transport_ping_pong)
    ->ArgName("tls")
    ->Arg(0)
    ->Arg(1)
    ->Iterations(3)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace asyncio::bench
