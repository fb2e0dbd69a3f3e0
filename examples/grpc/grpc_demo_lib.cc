// The gRPC bridge demo: a gRPC server whose handlers are asyncio coroutines
// (on a loop thread of their own) and an asyncio client awaiting it, on
// loopback, in one process:
//   * a unary call and a server-streaming call;
//   * ten concurrent calls with gather;
//   * a handler's exception, as the RPC's status;
//   * wait_for around a slow call: the task is cancelled, so is the RPC, and
//     the server's handler task sees CancelledError;
//   * a deadline (CallOptions::timeout): TimeoutError, handler cancelled;
//   * a task reading a stream, cancelled half-way.
#include <grpc/grpc.h>

#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include "examples/grpc/greeter.h"
#include "futures/futures.h"

namespace asyncio_examples {
namespace {

using namespace std::chrono_literals;
using asyncio_grpc_demo::DemoServer;
using asyncio_grpc_demo::GreeterClient;

// Waits (on the loop) until the server has counted `n` cancelled handlers.
asyncio::Coro<bool> server_saw_cancellations(DemoServer* server, int n) {
  for (int i = 0; i < 500 && server->stats().cancelled.load() < n; ++i) {
    co_await asyncio::sleep(10ms);
  }
  co_return server->stats().cancelled.load() >= n;
}

asyncio::Coro<void> read_stream(GreeterClient* client, std::vector<int>* seen) {
  auto stream = client->count_down(100, 10);
  while (std::optional<asyncio_demo::CountReply> reply = co_await stream.read()) {
    seen->push_back(reply->value());
  }
}

asyncio::Coro<void> client_main(DemoServer* server) {
  GreeterClient client(server->address());

  std::string hello = co_await client.say_hello("asyncio");
  std::cout << "SayHello(\"asyncio\") -> " << hello << "\n";

  auto stream = client.count_down(3, 10);
  std::cout << "CountDown(3):";
  while (std::optional<asyncio_demo::CountReply> reply = co_await stream.read()) {
    std::cout << " " << reply->value();
  }
  std::cout << "\n";

  std::vector<asyncio::Coro<std::string>> calls;
  for (int i = 0; i < 10; ++i) calls.push_back(client.say_hello("caller " + std::to_string(i), 20));
  std::vector<std::string> answers = co_await asyncio::gather(std::move(calls));
  int correct = 0;
  for (int i = 0; i < 10; ++i) correct += answers[i] == "Hello, caller " + std::to_string(i) + "!";
  std::cout << "10 concurrent SayHello calls: " << correct << " correct answers\n";

  try {
    co_await client.say_hello("");
  } catch (const asyncio_grpc::RpcError& e) {
    std::cout << "SayHello(\"\") -> RpcError INVALID_ARGUMENT: " << e.details() << "\n";
  }

  int cancelled = server->stats().cancelled.load();
  bool timed_out = false;
  try {
    co_await asyncio::wait_for(client.say_hello("slow", 10'000), 100ms);
  } catch (const asyncio::TimeoutError&) {
    timed_out = true;
  }
  // Incremented in a statement of its own: clang's -Wunsequenced flags a
  // side effect in the operand of co_await.
  ++cancelled;
  bool seen = co_await server_saw_cancellations(server, cancelled);
  std::cout << "wait_for(SayHello(delay 10 s), 0.1 s) -> "
            << (timed_out ? "TimeoutError" : "no timeout?")
            << "; handler cancelled: " << (seen ? "True" : "False") << "\n";

  timed_out = false;
  try {
    co_await client.say_hello("slow", 10'000, {.timeout = 100ms});
  } catch (const asyncio::TimeoutError&) {
    timed_out = true;
  }
  ++cancelled;
  seen = co_await server_saw_cancellations(server, cancelled);
  std::cout << "SayHello(delay 10 s) with a 0.1 s deadline -> "
            << (timed_out ? "TimeoutError" : "no timeout?")
            << "; handler cancelled: " << (seen ? "True" : "False") << "\n";

  std::vector<int> seen_values;
  asyncio::Task<void> reader = asyncio::create_task(read_stream(&client, &seen_values));
  while (seen_values.size() < 2) co_await asyncio::sleep(1ms);
  reader.cancel();
  try {
    co_await reader;
  } catch (const asyncio::CancelledError&) {
  }
  ++cancelled;
  seen = co_await server_saw_cancellations(server, cancelled);
  std::cout << "a task reading CountDown(100) cancelled after reading " << seen_values[0] << ", "
            << seen_values[1] << ", ...; handler cancelled: " << (seen ? "True" : "False") << "\n";
}

void run_demo() {
  DemoServer server;
  std::cout << "server: Greeter on 127.0.0.1 (a port the OS picked), handlers on an asyncio "
               "loop thread\n";
  asyncio::run(client_main(&server));
  server.shutdown();
  std::cout << "server: " << server.stats().hellos.load() << " greetings, "
            << server.stats().streams.load() << " complete stream, "
            << server.stats().cancelled.load() << " handlers cancelled\n";
  std::cout.flush();
}

}  // namespace

void run_grpc_demo() {
  // gRPC is shut down (blocking) before returning, not asynchronously by the
  // last channel or server to go, which could still be running at exit.
  grpc_init();
  run_demo();
  grpc_shutdown_blocking();
}

}  // namespace asyncio_examples
