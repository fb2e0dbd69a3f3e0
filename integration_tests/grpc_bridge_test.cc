// The gRPC bridge end to end, on loopback: a gRPC server whose handlers are
// asyncio coroutines (run_coroutine_threadsafe onto a loop thread) and asyncio
// clients awaiting it (wrap_future of gRPC's completion callbacks).
//
// 200 concurrent calls through both bridges with every answer checked;
// cancellation (a cancelled task cancels its RPC and the server's handler
// task); deadlines and wait_for; handler exceptions as statuses; a plain
// synchronous gRPC client against the asyncio server; a server shut down
// with calls in flight.
#include <grpc/grpc.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "examples/grpc/greeter.h"
#include "futures/futures.h"
#include "gtest/gtest.h"

namespace {

using namespace std::chrono_literals;

// gRPC stays initialized for the whole run and is shut down (blocking) at
// its end: each test's server and channels going away must not start gRPC's
// asynchronous library shutdown under the next test, or under exit.
class GrpcEnvironment : public testing::Environment {
 public:
  void SetUp() override { grpc_init(); }
  void TearDown() override { grpc_shutdown_blocking(); }
};
const testing::Environment* const kGrpcEnvironment =
    testing::AddGlobalTestEnvironment(new GrpcEnvironment);
using asyncio_grpc_demo::DemoServer;
using asyncio_grpc_demo::GreeterClient;

// Waits on the loop until the server has started `n` SayHello handlers.
asyncio::Coro<bool> server_started(DemoServer* server, int n) {
  for (int i = 0; i < 1000 && server->stats().started.load() < n; ++i) {
    co_await asyncio::sleep(5ms);
  }
  co_return server->stats().started.load() >= n;
}

// Waits on the loop until the server has counted `n` cancelled handlers.
asyncio::Coro<bool> server_cancelled(DemoServer* server, int n) {
  for (int i = 0; i < 1000 && server->stats().cancelled.load() < n; ++i) {
    co_await asyncio::sleep(5ms);
  }
  co_return server->stats().cancelled.load() >= n;
}

asyncio::Coro<bool> unary_ok(GreeterClient* client, int i) {
  std::string name = "client-" + std::to_string(i);
  std::string answer = co_await client->say_hello(name, i % 20);
  co_return answer == "Hello, " + name + "!";
}

asyncio::Coro<bool> stream_ok(GreeterClient* client, int i) {
  int count = 1 + i % 7;
  auto stream = client->count_down(count, 1);
  int expected = count;
  bool ok = true;
  while (std::optional<asyncio_demo::CountReply> reply = co_await stream.read()) {
    ok = ok && reply->value() == expected;
    --expected;
  }
  co_return ok&& expected == 0;
}

asyncio::Coro<void> two_hundred_calls(DemoServer* server) {
  GreeterClient client(server->address());
  std::vector<asyncio::Task<bool>> calls;
  for (int i = 0; i < 200; ++i) {
    if (i % 4 == 3) {
      calls.push_back(asyncio::create_task(stream_ok(&client, i)));
    } else {
      calls.push_back(asyncio::create_task(unary_ok(&client, i)));
    }
  }
  std::vector<bool> results = co_await asyncio::gather(std::move(calls));
  int good = 0;
  for (bool r : results) good += r ? 1 : 0;
  EXPECT_EQ(good, 200);
}

TEST(GrpcBridgeTest, TwoHundredConcurrentCallsThroughBothBridges) {
  DemoServer server;
  asyncio::run(two_hundred_calls(&server));
  EXPECT_EQ(server.stats().hellos.load(), 150);
  EXPECT_EQ(server.stats().streams.load(), 50);
  EXPECT_EQ(server.stats().cancelled.load(), 0);
}

asyncio::Coro<void> cancellation(DemoServer* server) {
  GreeterClient client(server->address());
  // A task awaiting a unary call is cancelled: the RPC is cancelled, and so
  // is the handler's task on the server.
  asyncio::Task<std::string> call = asyncio::create_task(client.say_hello("slow", 30'000));
  EXPECT_TRUE(co_await server_started(server, 1));
  call.cancel();
  bool cancelled = false;
  try {
    co_await call;
  } catch (const asyncio::CancelledError&) {
    cancelled = true;
  }
  EXPECT_TRUE(cancelled);
  EXPECT_TRUE(co_await server_cancelled(server, 1));

  // The same for a task reading a stream.
  std::atomic<int> values{0};
  auto read_all = [](GreeterClient* c, std::atomic<int>* n) -> asyncio::Coro<void> {
    auto stream = c->count_down(1000, 5);
    while (co_await stream.read()) n->fetch_add(1);
  };
  asyncio::Task<void> reader = asyncio::create_task(read_all(&client, &values));
  while (values.load() < 3) co_await asyncio::sleep(1ms);
  reader.cancel();
  try {
    co_await reader;
  } catch (const asyncio::CancelledError&) {
  }
  EXPECT_TRUE(reader.cancelled());
  EXPECT_TRUE(co_await server_cancelled(server, 2));

  // Many at once.
  std::vector<asyncio::Task<std::string>> many;
  for (int i = 0; i < 20; ++i) many.push_back(asyncio::create_task(client.say_hello("x", 30'000)));
  EXPECT_TRUE(co_await server_started(server, 21));
  for (auto& t : many) t.cancel();
  std::vector<asyncio::Task<std::string>> copy = many;
  co_await asyncio::wait(std::move(copy));
  for (auto& t : many) EXPECT_TRUE(t.cancelled());
  EXPECT_TRUE(co_await server_cancelled(server, 22));

  // The server still answers.
  EXPECT_EQ(co_await client.say_hello("after"), "Hello, after!");
}

TEST(GrpcBridgeTest, CancelledTasksCancelTheirRpcsAndTheServerHandlers) {
  DemoServer server;
  asyncio::run(cancellation(&server));
}

asyncio::Coro<void> deadlines(DemoServer* server) {
  GreeterClient client(server->address());
  auto start = std::chrono::steady_clock::now();
  bool timed_out = false;
  try {
    co_await client.say_hello("slow", 30'000, {.timeout = 200ms});
  } catch (const asyncio::TimeoutError&) {
    timed_out = true;
  }
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(timed_out);
  EXPECT_GE(took, 190ms);
  EXPECT_LT(took, 5s);
  EXPECT_TRUE(co_await server_cancelled(server, 1));

  // wait_for maps onto cancelling the RPC after the timeout.
  timed_out = false;
  start = std::chrono::steady_clock::now();
  try {
    co_await asyncio::wait_for(client.say_hello("slow", 30'000), 100ms);
  } catch (const asyncio::TimeoutError&) {
    timed_out = true;
  }
  EXPECT_TRUE(timed_out);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_TRUE(co_await server_cancelled(server, 2));

  // A deadline that is long enough changes nothing.
  EXPECT_EQ(co_await client.say_hello("quick", 1, {.timeout = 10s}), "Hello, quick!");

  // A stream with a deadline.
  timed_out = false;
  auto stream = client.count_down(1000, 10, {.timeout = 300ms});
  int values = 0;
  try {
    while (co_await stream.read()) ++values;
  } catch (const asyncio::TimeoutError&) {
    timed_out = true;
  }
  EXPECT_TRUE(timed_out);
  EXPECT_LT(values, 1000);
  // (On a loaded machine the deadline can pass before the handler starts;
  // then there is no handler to cancel.)
  if (values > 0) {
    EXPECT_TRUE(co_await server_cancelled(server, 3));
  }
}

TEST(GrpcBridgeTest, DeadlinesAndWaitFor) {
  DemoServer server;
  asyncio::run(deadlines(&server));
}

asyncio::Coro<void> errors(DemoServer* server) {
  GreeterClient client(server->address());
  try {
    co_await client.say_hello("");
    ADD_FAILURE() << "no error";
  } catch (const asyncio_grpc::RpcError& e) {
    EXPECT_EQ(e.code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(e.details(), "name must not be empty");
  }
  // Nothing listens there.
  GreeterClient nobody("127.0.0.1:1");
  try {
    co_await nobody.say_hello("x", 0, {.timeout = 5s});
    ADD_FAILURE() << "no error";
  } catch (const asyncio_grpc::RpcError& e) {
    EXPECT_EQ(e.code(), grpc::StatusCode::UNAVAILABLE);
  }
}

TEST(GrpcBridgeTest, ErrorsCrossTheBridgeAsStatuses) {
  DemoServer server;
  asyncio::run(errors(&server));
}

TEST(GrpcBridgeTest, PlainSynchronousClientsAgainstTheAsyncioServer) {
  DemoServer server;
  GreeterClient client(server.address());
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        grpc::ClientContext context;
        asyncio_demo::HelloRequest request;
        request.set_name("sync-" + std::to_string(t * 25 + i));
        asyncio_demo::HelloReply reply;
        grpc::Status status = client.stub().SayHello(&context, request, &reply);
        if (status.ok() && reply.message() == "Hello, " + request.name() + "!") good.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(good.load(), 100);
}

asyncio::Coro<void> call_during_shutdown(GreeterClient* client, std::atomic<bool>* started,
                                         grpc::StatusCode* code) {
  started->store(true);
  try {
    co_await client->say_hello("slow", 30'000);
  } catch (const asyncio_grpc::RpcError& e) {
    *code = e.code();
  }
}

TEST(GrpcBridgeTest, ServerShutDownWithCallsInFlight) {
  DemoServer server;
  GreeterClient client(server.address());
  std::atomic<bool> started{false};
  grpc::StatusCode code = grpc::StatusCode::OK;
  std::thread stopper([&] {
    while (!started.load()) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(100ms);
    server.shutdown(50ms);
  });
  asyncio::run(call_during_shutdown(&client, &started, &code));
  stopper.join();
  EXPECT_NE(code, grpc::StatusCode::OK);
  EXPECT_EQ(server.stats().cancelled.load(), 1);
}

}  // namespace
