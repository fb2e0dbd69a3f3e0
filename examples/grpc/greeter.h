// The demo's Greeter service on both sides of the gRPC bridge.
//
// DemoServer: a gRPC server on loopback whose handlers are asyncio
// coroutines running on an event loop thread (asyncio::run in a thread of
// its own). SayHello sleeps delay_ms with asyncio::sleep; CountDown gets its
// values from an asyncio::Queue fed by a producer task.
//
// GreeterClient: awaits the same methods from an asyncio loop.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "examples/grpc/demo.grpc.pb.h"
#include "examples/grpc/grpc_bridge.h"
#include "futures/futures.h"
#include "loop/loop.h"

namespace asyncio_grpc_demo {

// What the server's handlers did (read by tests and the demo).
struct ServerStats {
  std::atomic<int> started{0};    // SayHello handlers started
  std::atomic<int> hellos{0};     // SayHello answered
  std::atomic<int> streams{0};    // CountDown streams completed
  std::atomic<int> cancelled{0};  // handlers that saw CancelledError
};

// asyncio::run(...) in a thread of its own, until stop().
class ServerLoop {
 public:
  ServerLoop();
  ~ServerLoop();
  ServerLoop(const ServerLoop&) = delete;
  ServerLoop& operator=(const ServerLoop&) = delete;
  asyncio::EventLoop& loop() { return *loop_; }
  // Stops the loop (asyncio::run cancels what is left) and joins the thread.
  void stop();

 private:
  asyncio::Coro<void> main();
  asyncio::EventLoop* loop_ = nullptr;
  asyncio::Future<void> stop_;  // loop thread only
  std::promise<void> ready_;
  std::thread thread_;
};

// The Greeter service: each handler is an asyncio coroutine on `loop`.
class BridgedGreeter final : public asyncio_demo::Greeter::CallbackService {
 public:
  BridgedGreeter(asyncio::EventLoop& loop, ServerStats& stats) : loop_(loop), stats_(stats) {}
  grpc::ServerUnaryReactor* SayHello(grpc::CallbackServerContext* context,
                                     const asyncio_demo::HelloRequest* request,
                                     asyncio_demo::HelloReply* reply) override;
  grpc::ServerWriteReactor<asyncio_demo::CountReply>* CountDown(
      grpc::CallbackServerContext* context, const asyncio_demo::CountRequest* request) override;

 private:
  asyncio::EventLoop& loop_;
  ServerStats& stats_;
};

// The gRPC server on 127.0.0.1 (a port the OS picks) and its handler loop.
class DemoServer {
 public:
  DemoServer();
  ~DemoServer();
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  ServerStats& stats() { return stats_; }
  // Cancels the RPCs still running (after `grace`) and stops the loop.
  void shutdown(std::chrono::milliseconds grace = std::chrono::milliseconds(100));

 private:
  ServerStats stats_;
  ServerLoop loop_;
  std::unique_ptr<BridgedGreeter> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool stopped_ = false;
};

// The client side, used from coroutines on the client's loop.
class GreeterClient {
 public:
  explicit GreeterClient(const std::string& address);
  explicit GreeterClient(std::shared_ptr<grpc::Channel> channel);

  // SayHello(name, delay_ms) -> the greeting.
  asyncio::Coro<std::string> say_hello(std::string name, int delay_ms = 0,
                                       asyncio_grpc::CallOptions options = {});
  // CountDown(count, interval_ms): read the values with read().
  asyncio_grpc::ClientStream<asyncio_demo::CountRequest, asyncio_demo::CountReply> count_down(
      int count, int interval_ms = 0, asyncio_grpc::CallOptions options = {});

  asyncio_demo::Greeter::Stub& stub() { return *stub_; }

 private:
  std::unique_ptr<asyncio_demo::Greeter::Stub> stub_;
};

}  // namespace asyncio_grpc_demo
