// Unary gRPC calls per second: the asyncio client bridge (N tasks on one
// event loop, each awaiting calls in a loop) against a plain synchronous
// gRPC client (N threads, each making blocking calls in a loop), same
// concurrency, same in-process server on loopback.
//
//   bazel run -c opt //examples/grpc:grpc_bench -- [concurrency=16] [seconds=3]
//       [server=plain|bridged]
//
// server=plain: a callback-API server that answers at once (measures the
// clients); server=bridged: the demo server, whose handlers are asyncio
// coroutines (measures both bridges).
#include <grpc/grpc.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "examples/grpc/demo.grpc.pb.h"
#include "examples/grpc/greeter.h"
#include "examples/grpc/grpc_bridge.h"
#include "futures/futures.h"

namespace {

using Clock = std::chrono::steady_clock;

class PlainGreeter final : public asyncio_demo::Greeter::CallbackService {
 public:
  grpc::ServerUnaryReactor* SayHello(grpc::CallbackServerContext* context,
                                     const asyncio_demo::HelloRequest* request,
                                     asyncio_demo::HelloReply* reply) override {
    reply->set_message("Hello, " + request->name() + "!");
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

double sync_client(const std::string& address, int concurrency, double seconds) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto stub = asyncio_demo::Greeter::NewStub(channel);
  std::atomic<long> calls{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  auto start = Clock::now();
  for (int i = 0; i < concurrency; ++i) {
    threads.emplace_back([&] {
      asyncio_demo::HelloRequest request;
      request.set_name("bench");
      while (!stop.load(std::memory_order_relaxed)) {
        grpc::ClientContext context;
        asyncio_demo::HelloReply reply;
        if (stub->SayHello(&context, request, &reply).ok()) {
          calls.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  return static_cast<double>(calls.load()) / elapsed;
}

asyncio::Coro<void> caller(asyncio_demo::Greeter::Stub* stub, Clock::time_point end, long* calls) {
  asyncio_demo::HelloRequest request;
  request.set_name("bench");
  while (Clock::now() < end) {
    asyncio_demo::HelloReply reply = co_await asyncio_grpc::unary_call<asyncio_demo::HelloReply>(
        [stub](grpc::ClientContext* context, const asyncio_demo::HelloRequest* req,
               asyncio_demo::HelloReply* resp, std::function<void(grpc::Status)> done) {
          stub->async()->SayHello(context, req, resp, std::move(done));
        },
        request);
    ++*calls;
  }
}

asyncio::Coro<void> asyncio_clients(asyncio_demo::Greeter::Stub* stub, int concurrency,
                                    double seconds, long* calls) {
  auto end = Clock::now() +
             std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::vector<asyncio::Coro<void>> callers;
  for (int i = 0; i < concurrency; ++i) callers.push_back(caller(stub, end, calls));
  co_await asyncio::gather(std::move(callers));
}

double asyncio_client(const std::string& address, int concurrency, double seconds) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto stub = asyncio_demo::Greeter::NewStub(channel);
  long calls = 0;
  auto start = Clock::now();
  asyncio::run(asyncio_clients(stub.get(), concurrency, seconds, &calls));
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  return static_cast<double>(calls) / elapsed;
}

}  // namespace

int main(int argc, char** argv) {
  int concurrency = 16;
  double seconds = 3;
  std::string server_kind = "plain";
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char* key) -> const char* {
      std::string prefix = std::string(key) + "=";
      return arg.rfind(prefix, 0) == 0 ? argv[i] + prefix.size() : nullptr;
    };
    if (const char* v = value("concurrency")) concurrency = std::atoi(v);
    if (const char* v = value("seconds")) seconds = std::atof(v);
    if (const char* v = value("server")) server_kind = v;
  }
  grpc_init();
  {
    std::unique_ptr<asyncio_grpc_demo::DemoServer> bridged;
    PlainGreeter plain;
    std::unique_ptr<grpc::Server> plain_server;
    std::string address;
    if (server_kind == "bridged") {
      bridged = std::make_unique<asyncio_grpc_demo::DemoServer>();
      address = bridged->address();
    } else {
      int port = 0;
      grpc::ServerBuilder builder;
      builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
      builder.RegisterService(&plain);
      plain_server = builder.BuildAndStart();
      address = "127.0.0.1:" + std::to_string(port);
    }
    // Warm up both paths (connections, thread pools).
    sync_client(address, concurrency, 0.3);
    asyncio_client(address, concurrency, 0.3);

    double sync_qps = sync_client(address, concurrency, seconds);
    double asyncio_qps = asyncio_client(address, concurrency, seconds);
    std::printf("server=%s concurrency=%d seconds=%.1f\n", server_kind.c_str(), concurrency,
                seconds);
    std::printf("  synchronous gRPC client (%d threads):  %10.0f calls/s\n", concurrency, sync_qps);
    std::printf("  asyncio client bridge (%d tasks):      %10.0f calls/s  (%.2fx)\n", concurrency,
                asyncio_qps, asyncio_qps / sync_qps);
    if (plain_server) plain_server->Shutdown();
    if (bridged) bridged->shutdown();
  }
  grpc_shutdown_blocking();
  return 0;
}
