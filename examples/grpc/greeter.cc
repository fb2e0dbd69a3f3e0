#include "examples/grpc/greeter.h"

#include <exception>
#include <stdexcept>
#include <utility>

#include "executors/executors.h"
#include "queues/queues.h"

namespace asyncio_grpc_demo {

using asyncio_demo::CountReply;
using asyncio_demo::CountRequest;
using asyncio_demo::HelloReply;
using asyncio_demo::HelloRequest;

// ---------------------------------------------------------------------------
// The server's loop

ServerLoop::ServerLoop() {
  std::future<void> ready = ready_.get_future();
  thread_ = std::thread([this] { asyncio::run(main()); });
  ready.wait();
}

ServerLoop::~ServerLoop() { stop(); }

asyncio::Coro<void> ServerLoop::main() {
  loop_ = &asyncio::get_running_loop();
  stop_ = asyncio::create_future<void>(*loop_);
  ready_.set_value();
  co_await stop_;
}

void ServerLoop::stop() {
  if (!thread_.joinable()) return;
  loop_->call_soon_threadsafe([this] {
    if (!stop_.done()) stop_.set_result();
  });
  thread_.join();
}

// ---------------------------------------------------------------------------
// Handlers: asyncio coroutines

namespace {

asyncio::Coro<grpc::Status> say_hello(HelloRequest request, HelloReply* reply, ServerStats* stats) {
  if (request.name().empty()) throw std::invalid_argument("name must not be empty");
  stats->started.fetch_add(1);
  if (request.delay_ms() > 0) {
    try {
      co_await asyncio::sleep(std::chrono::milliseconds(request.delay_ms()));
    } catch (const asyncio::CancelledError&) {
      stats->cancelled.fetch_add(1);
      throw;
    }
  }
  reply->set_message("Hello, " + request.name() + "!");
  stats->hellos.fetch_add(1);
  co_return grpc::Status::OK;
}

// Puts count, count - 1, ..., 1, then 0 (the end), one every interval.
asyncio::Coro<void> produce(asyncio::Queue<int>* queue, int count, int interval_ms) {
  for (int v = count; v > 0; --v) {
    if (interval_ms > 0) co_await asyncio::sleep(std::chrono::milliseconds(interval_ms));
    co_await queue->put(v);
  }
  co_await queue->put(0);
}

asyncio::Coro<grpc::Status> count_down(CountRequest request,
                                       asyncio_grpc::ServerWriter<CountReply>* writer,
                                       ServerStats* stats) {
  asyncio::Queue<int> queue(1);
  asyncio::Task<void> producer =
      asyncio::create_task(produce(&queue, request.count(), request.interval_ms()));
  std::exception_ptr error;
  try {
    while (int value = co_await queue.get()) {
      CountReply reply;
      reply.set_value(value);
      co_await writer->write(std::move(reply));
    }
  } catch (...) {
    error = std::current_exception();
  }
  if (error) {
    // Cancelled (the client went away) or failed: stop the producer before
    // its queue goes.
    producer.cancel();
    try {
      co_await producer;
    } catch (...) {
    }
    try {
      std::rethrow_exception(error);
    } catch (const asyncio::CancelledError&) {
      stats->cancelled.fetch_add(1);
      throw;
    } catch (const asyncio_grpc::RpcError& e) {
      // A write that failed because the RPC was cancelled can come first.
      if (e.code() == grpc::StatusCode::CANCELLED) stats->cancelled.fetch_add(1);
      throw;
    }
  }
  co_await producer;
  stats->streams.fetch_add(1);
  co_return grpc::Status::OK;
}

}  // namespace

grpc::ServerUnaryReactor* BridgedGreeter::SayHello(grpc::CallbackServerContext* context,
                                                   const HelloRequest* request, HelloReply* reply) {
  return asyncio_grpc::serve_unary(context, loop_, reply, [this, request](HelloReply* response) {
    return say_hello(*request, response, &stats_);
  });
}

grpc::ServerWriteReactor<CountReply>* BridgedGreeter::CountDown(
    grpc::CallbackServerContext* context, const CountRequest* request) {
  return asyncio_grpc::serve_stream<CountReply>(
      context, loop_, [this, request](asyncio_grpc::ServerWriter<CountReply>* writer) {
        return count_down(*request, writer, &stats_);
      });
}

// ---------------------------------------------------------------------------
// The server

DemoServer::DemoServer() : service_(std::make_unique<BridgedGreeter>(loop_.loop(), stats_)) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (!server_ || port_ == 0) throw std::runtime_error("could not start the gRPC server");
}

DemoServer::~DemoServer() { shutdown(); }

void DemoServer::shutdown(std::chrono::milliseconds grace) {
  if (stopped_) return;
  stopped_ = true;
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  server_->Wait();
  loop_.stop();
}

// ---------------------------------------------------------------------------
// The client

GreeterClient::GreeterClient(const std::string& address)
    : GreeterClient(grpc::CreateChannel(address, grpc::InsecureChannelCredentials())) {}

GreeterClient::GreeterClient(std::shared_ptr<grpc::Channel> channel)
    : stub_(asyncio_demo::Greeter::NewStub(std::move(channel))) {}

asyncio::Coro<std::string> GreeterClient::say_hello(std::string name, int delay_ms,
                                                    asyncio_grpc::CallOptions options) {
  HelloRequest request;
  request.set_name(std::move(name));
  request.set_delay_ms(delay_ms);
  auto* stub = stub_.get();
  HelloReply reply = co_await asyncio_grpc::unary_call<HelloReply>(
      [stub](grpc::ClientContext* context, const HelloRequest* req, HelloReply* resp,
             std::function<void(grpc::Status)> done) {
        stub->async()->SayHello(context, req, resp, std::move(done));
      },
      std::move(request), options);
  co_return reply.message();
}

asyncio_grpc::ClientStream<CountRequest, CountReply> GreeterClient::count_down(
    int count, int interval_ms, asyncio_grpc::CallOptions options) {
  CountRequest request;
  request.set_count(count);
  request.set_interval_ms(interval_ms);
  auto* stub = stub_.get();
  return asyncio_grpc::server_stream_call<CountReply>(
      [stub](grpc::ClientContext* context, const CountRequest* req,
             grpc::ClientReadReactor<CountReply>* reactor) {
        stub->async()->CountDown(context, req, reactor);
      },
      std::move(request), options);
}

}  // namespace asyncio_grpc_demo
