// A bridge between gRPC's callback API and asyncio for C++, in both
// directions, built on //executors only (run_coroutine_threadsafe,
// wrap_future, concurrent::Future).
//
// Server side: a handler is an asyncio coroutine. The gRPC method returns a
// reactor at once; the coroutine runs on an event loop thread through
// run_coroutine_threadsafe, and the reactor finishes the RPC when the
// coroutine's concurrent future completes (from the loop's thread). A client
// that cancels (or a deadline that passes) cancels the coroutine's task.
//
//   grpc::ServerUnaryReactor* SayHello(grpc::CallbackServerContext* ctx,
//                                      const HelloRequest* req, HelloReply* reply) override {
//     return asyncio_grpc::serve_unary(ctx, loop, reply, [req](HelloReply* response) {
//       return say_hello(*req, response);   // a coroutine: Coro<grpc::Status>
//     });
//   }
//
// Client side: calls are awaited on the loop without blocking it. gRPC's
// completion callbacks (on gRPC's threads) complete concurrent futures that
// wrap_future hands to the loop. A task cancelled while it awaits a call
// cancels the RPC (ClientContext::TryCancel), so wait_for(call, t) cancels
// the RPC after t; CallOptions::timeout sets the RPC's deadline instead, and
// an exceeded deadline raises asyncio::TimeoutError either way.
//
//   HelloReply r = co_await asyncio_grpc::unary_call<HelloReply>(
//       [&](auto* ctx, auto* req, auto* resp, auto done) {
//         stub->async()->SayHello(ctx, req, resp, std::move(done));
//       }, request, {.timeout = 100ms});
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/client_callback.h>
#include <grpcpp/support/server_callback.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "executors/executors.h"
#include "futures/futures.h"
#include "loop/loop.h"

namespace asyncio_grpc {

// An RPC that ended with a status other than OK (as grpc.aio.AioRpcError).
// A handler may throw it to choose the status its RPC ends with.
class RpcError : public std::runtime_error {
 public:
  explicit RpcError(grpc::Status status);
  grpc::StatusCode code() const { return status_.error_code(); }
  std::string details() const { return status_.error_message(); }
  const grpc::Status& status() const { return status_; }

 private:
  grpc::Status status_;
};

// The status an RPC ends with when its handler failed: RpcError -> its
// status; CancelledError -> CANCELLED; TimeoutError -> DEADLINE_EXCEEDED;
// std::invalid_argument -> INVALID_ARGUMENT; anything else -> UNKNOWN with
// the exception's type and message.
grpc::Status status_from_exception(std::exception_ptr exc);

// The outcome of a handler's concurrent future as a status.
grpc::Status status_of(asyncio::concurrent::Future<grpc::Status>& done);

// What a client call throws for a status that is not OK: TimeoutError for
// DEADLINE_EXCEEDED, RpcError otherwise.
std::exception_ptr exception_for(const grpc::Status& status);

// ---------------------------------------------------------------------------
// Server side
//
// Lifetimes: a cancelled RPC is finished at once (its handler's task is
// cancelled through the loop and may run a little longer), so a handler
// never touches gRPC's objects directly. A unary handler fills a response of
// its own, copied into gRPC's when the handler succeeds; a streaming
// handler's ServerWriter lives until both gRPC (OnDone) and the handler's
// coroutine frame are done with it.

namespace internal {

// Keeps `state` alive as long as the coroutine frame (declared first: the
// handler's frame goes first).
template <class State>
asyncio::Coro<grpc::Status> keep_alive(std::shared_ptr<State> /*state*/,
                                       asyncio::Coro<grpc::Status> handler) {
  co_return co_await handler;
}

template <class Resp>
class UnaryReactor final : public grpc::ServerUnaryReactor {
 public:
  UnaryReactor(asyncio::concurrent::Future<grpc::Status> done, std::shared_ptr<Resp> response,
               Resp* reply)
      : done_(std::move(done)), response_(std::move(response)), reply_(reply) {}
  void start() {
    done_.add_done_callback([this](asyncio::concurrent::Future<grpc::Status>& f) {
      grpc::Status status = status_of(f);
      // Succeeded: the handler has returned and no longer writes its response.
      if (status.ok()) *reply_ = std::move(*response_);
      Finish(status);
    });
  }
  // The client went away or the deadline passed: cancel the handler's task.
  void OnCancel() override { done_.cancel(); }
  void OnDone() override { delete this; }

 private:
  asyncio::concurrent::Future<grpc::Status> done_;
  std::shared_ptr<Resp> response_;
  Resp* reply_;
};

}  // namespace internal

// Runs make_handler(response) -> Coro<grpc::Status> on `loop` and finishes
// the RPC with the status the coroutine returns (or the status of the
// exception it throws; see status_from_exception). On success, the response
// the handler filled becomes the RPC's reply. Call from the gRPC method with
// its reply; returns the reactor for the method to return.
template <class Resp, class MakeHandler>
grpc::ServerUnaryReactor* serve_unary(grpc::CallbackServerContext* /*context*/,
                                      asyncio::EventLoop& loop, Resp* reply,
                                      MakeHandler make_handler) {
  auto response = std::make_shared<Resp>();
  asyncio::Coro<grpc::Status> handler = make_handler(response.get());
  auto* reactor = new internal::UnaryReactor<Resp>(
      asyncio::run_coroutine_threadsafe(internal::keep_alive(response, std::move(handler)), loop),
      response, reply);
  reactor->start();
  return reactor;
}

template <class Resp>
class ServerWriter;

namespace internal {

// The handler frame's reference to its ServerWriter.
template <class Resp>
class WriterRef {
 public:
  explicit WriterRef(ServerWriter<Resp>* w) : writer_(w) {}
  WriterRef(WriterRef&& other) noexcept : writer_(std::exchange(other.writer_, nullptr)) {}
  ~WriterRef() {
    if (writer_ != nullptr) writer_->unref();
  }

 private:
  ServerWriter<Resp>* writer_;
};

template <class Resp>
asyncio::Coro<grpc::Status> keep_writer(WriterRef<Resp> /*ref*/,
                                        asyncio::Coro<grpc::Status> handler) {
  co_return co_await handler;
}

}  // namespace internal

// The writing end of a server-streaming RPC, handed to its handler
// coroutine. write() runs on the loop and returns once gRPC has taken the
// message (flow control); it throws RpcError(CANCELLED) once the RPC is
// cancelled or finished.
template <class Resp>
class ServerWriter final : public grpc::ServerWriteReactor<Resp> {
 public:
  explicit ServerWriter(asyncio::EventLoop& loop) : loop_(loop) {}

  asyncio::Coro<void> write(Resp message) {
    asyncio::concurrent::Future<bool> written;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (cancelled_ || finished_) {
        throw RpcError(grpc::Status(grpc::StatusCode::CANCELLED, "RPC cancelled"));
      }
      message_ = std::move(message);
      write_done_ = written;
      writing_ = true;
    }
    this->StartWrite(&message_);
    bool ok = co_await asyncio::wrap_future(written, loop_);
    if (!ok) throw RpcError(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
  }

  // Internal: ties the reactor to its handler's future.
  void start(asyncio::concurrent::Future<grpc::Status> done) {
    bool cancelled;
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = done;
      cancelled = cancelled_;
    }
    if (cancelled) done.cancel();
    done.add_done_callback(
        [this](asyncio::concurrent::Future<grpc::Status>& f) { finish(status_of(f)); });
  }

  void OnWriteDone(bool ok) override {
    asyncio::concurrent::Future<bool> written;
    std::optional<grpc::Status> finish_now;
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      written = write_done_;
      finish_now = std::exchange(pending_finish_, std::nullopt);
    }
    written.try_set_result(ok);
    if (finish_now) this->Finish(*finish_now);
  }
  void OnCancel() override {
    std::optional<asyncio::concurrent::Future<grpc::Status>> done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
      done = done_;
    }
    if (done) done->cancel();
  }
  void OnDone() override { unref(); }

 private:
  friend class internal::WriterRef<Resp>;

  void unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // Finishes now, or after the write in flight (a cancelled handler can
  // leave one behind).
  void finish(grpc::Status status) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      finished_ = true;
      if (writing_) {
        pending_finish_ = std::move(status);
        return;
      }
    }
    this->Finish(status);
  }

  asyncio::EventLoop& loop_;
  std::atomic<int> refs_{2};  // gRPC's (until OnDone) and the handler frame's
  std::mutex mu_;
  Resp message_;
  asyncio::concurrent::Future<bool> write_done_;
  std::optional<asyncio::concurrent::Future<grpc::Status>> done_;
  std::optional<grpc::Status> pending_finish_;
  bool writing_ = false;
  bool cancelled_ = false;
  bool finished_ = false;
};

// Runs make_handler(writer) -> Coro<grpc::Status> on `loop` for a
// server-streaming RPC; returns the reactor for the gRPC method to return.
template <class Resp, class MakeHandler>
grpc::ServerWriteReactor<Resp>* serve_stream(grpc::CallbackServerContext* /*context*/,
                                             asyncio::EventLoop& loop, MakeHandler make_handler) {
  auto* writer = new ServerWriter<Resp>(loop);
  asyncio::Coro<grpc::Status> handler = make_handler(writer);
  writer->start(asyncio::run_coroutine_threadsafe(
      internal::keep_writer(internal::WriterRef<Resp>(writer), std::move(handler)), loop));
  return writer;
}

// ---------------------------------------------------------------------------
// Client side
//
// gRPC objects of a call (the ClientContext, which holds a reference to the
// channel) are only ever destroyed on the loop's thread, never in a gRPC
// callback: a channel whose last reference goes in one of gRPC's callback
// threads tears down the thread pool it runs on (grpc/grpc#32584), a crash.
// The callbacks only complete concurrent futures; a cancelled call waits,
// after TryCancel, for gRPC to be done with it.

struct CallOptions {
  // The RPC's deadline, from now. An exceeded deadline raises TimeoutError.
  std::optional<std::chrono::nanoseconds> timeout;
};

namespace internal {

inline void set_deadline(grpc::ClientContext& context, const CallOptions& options) {
  if (options.timeout) {
    context.set_deadline(
        std::chrono::system_clock::now() +
        std::chrono::duration_cast<std::chrono::system_clock::duration>(*options.timeout));
  }
}

// Waits on the loop until `finished` is done, through any number of
// cancellations (the caller rethrows the first one).
inline asyncio::Coro<void> wait_uncancellable(asyncio::concurrent::Future<void> finished) {
  asyncio::EventLoop& loop = asyncio::get_running_loop();
  while (!finished.done()) {
    try {
      co_await asyncio::shield(asyncio::wrap_future(finished, loop));
    } catch (const asyncio::CancelledError&) {
    }
  }
}

// Owns a call's gRPC objects in the awaiting coroutine's frame. If the frame
// goes while gRPC still uses them (the loop destroyed under a pending call),
// they are leaked rather than freed under gRPC's feet.
template <class T>
class CallOwner {
 public:
  CallOwner(std::unique_ptr<T> call, asyncio::concurrent::Future<void> finished)
      : call_(std::move(call)), finished_(std::move(finished)) {}
  CallOwner(CallOwner&&) noexcept = default;
  ~CallOwner() {
    if (call_ && !finished_.done()) {
      call_->context.TryCancel();
      (void)call_.release();
    }
  }
  T* operator->() const { return call_.get(); }
  T* get() const { return call_.get(); }

 private:
  std::unique_ptr<T> call_;
  asyncio::concurrent::Future<void> finished_;
};

}  // namespace internal

// Awaits a unary call on the running loop. `start(context, request,
// response, done)` starts it with the stub's callback API:
//   stub->async()->Method(context, request, response, std::move(done)).
template <class Resp, class Req, class Start>
asyncio::Coro<Resp> unary_call(Start start, Req request, CallOptions options = {}) {
  struct Call {
    grpc::ClientContext context;
    Req request;
    Resp response;
  };
  asyncio::EventLoop& loop = asyncio::get_running_loop();
  asyncio::concurrent::Future<grpc::Status> status;  // what the caller awaits
  asyncio::concurrent::Future<void> finished;        // gRPC is done with the call
  internal::CallOwner<Call> call(std::make_unique<Call>(), finished);
  call->request = std::move(request);
  internal::set_deadline(call->context, options);
  asyncio::Future<grpc::Status> status_future = asyncio::wrap_future(status, loop);
  start(&call->context, &call->request, &call->response,
        std::function<void(grpc::Status)>([status, finished](grpc::Status s) mutable {
          status.try_set_result(std::move(s));
          finished.try_set_result();
        }));
  grpc::Status result;
  bool cancelled = false;
  try {
    result = co_await status_future;
  } catch (const asyncio::CancelledError&) {
    cancelled = true;
  }
  if (cancelled) {
    // The awaiting task was cancelled: so is the RPC. Its objects go once
    // gRPC has let go of them.
    call->context.TryCancel();
    co_await internal::wait_uncancellable(finished);
    throw asyncio::CancelledError();
  }
  co_await internal::wait_uncancellable(finished);  // done already, or about to be
  if (!result.ok()) std::rethrow_exception(exception_for(result));
  co_return std::move(call->response);
}

namespace internal {

template <class Req, class Resp>
class ReadReactor final : public grpc::ClientReadReactor<Resp> {
 public:
  grpc::ClientContext context;
  Req request;
  Resp message;                                      // the message being read
  asyncio::concurrent::Future<grpc::Status> status;  // set by OnDone; awaited
  asyncio::concurrent::Future<void> finished;        // set by OnDone, last: gRPC let go

  // The future of the read in flight; set before StartRead.
  void set_read(asyncio::concurrent::Future<bool> f) {
    std::lock_guard<std::mutex> lock(mu_);
    read_done_ = std::move(f);
  }
  void OnReadDone(bool ok) override {
    asyncio::concurrent::Future<bool> f;
    {
      std::lock_guard<std::mutex> lock(mu_);
      f = read_done_;
    }
    f.try_set_result(ok);
  }
  void OnDone(const grpc::Status& s) override {
    // `this` may be freed as soon as `finished` is set: copy the handles.
    asyncio::concurrent::Future<grpc::Status> st = status;
    asyncio::concurrent::Future<void> fin = finished;
    st.try_set_result(s);
    fin.try_set_result();
  }
  // Reads start from the loop's thread, outside gRPC's reactions: a hold
  // (taken before StartCall) keeps OnDone, and the end of the stream object,
  // from coming between two reads. Released once no more reads will start.
  void release_hold() {
    if (!hold_released_.exchange(true)) this->RemoveHold();
  }

 private:
  std::mutex mu_;
  asyncio::concurrent::Future<bool> read_done_;
  std::atomic<bool> hold_released_{false};
};

// Keeps an abandoned stream's reactor until gRPC is done with it, then
// frees it on the loop's thread (leaked if the loop goes first).
template <class Reactor>
asyncio::Coro<void> reap(std::unique_ptr<Reactor> reactor) {
  struct LeakUnlessFinished {
    std::unique_ptr<Reactor>& r;
    ~LeakUnlessFinished() {
      if (r && !r->finished.done()) (void)r.release();
    }
  } guard{reactor};
  co_await wait_uncancellable(reactor->finished);
}

}  // namespace internal

// The reading end of a server-streaming call, used on the loop:
//   while (std::optional<Resp> m = co_await stream.read()) { ... }
// read() returns std::nullopt at the end of a successful stream and throws
// (TimeoutError, RpcError) if the RPC failed. A task cancelled in read()
// cancels the RPC; so does destroying the stream before its end.
template <class Req, class Resp>
class ClientStream {
 public:
  using Reactor = internal::ReadReactor<Req, Resp>;
  explicit ClientStream(std::unique_ptr<Reactor> reactor) : reactor_(std::move(reactor)) {}
  ClientStream(ClientStream&&) noexcept = default;
  ClientStream& operator=(ClientStream&&) = delete;
  ~ClientStream() {
    if (!reactor_) return;
    if (reactor_->finished.done()) return;  // gRPC is done with it: freed here
    reactor_->context.TryCancel();
    reactor_->release_hold();
    // Freed on this loop once gRPC lets go of it.
    if (asyncio::EventLoop* loop = asyncio::running_loop_or_null()) {
      asyncio::create_task(*loop, internal::reap(std::move(reactor_)));
    } else {
      (void)reactor_.release();  // no loop to wait on: leaked, not freed under gRPC
    }
  }

  asyncio::Coro<std::optional<Resp>> read() {
    Reactor* r = reactor_.get();
    asyncio::EventLoop& loop = asyncio::get_running_loop();
    bool ok = false;
    bool cancelled = false;
    if (!ended_) {
      asyncio::concurrent::Future<bool> read_done;
      r->set_read(read_done);
      r->StartRead(&r->message);
      try {
        ok = co_await asyncio::wrap_future(read_done, loop);
      } catch (const asyncio::CancelledError&) {
        cancelled = true;
      }
    }
    if (cancelled) {
      r->context.TryCancel();
      throw asyncio::CancelledError();
    }
    if (ok) co_return std::move(r->message);
    ended_ = true;
    r->release_hold();
    grpc::Status status;
    try {
      status = co_await asyncio::wrap_future(r->status, loop);
    } catch (const asyncio::CancelledError&) {
      cancelled = true;
    }
    if (cancelled) {
      r->context.TryCancel();
      throw asyncio::CancelledError();
    }
    if (!status.ok()) std::rethrow_exception(exception_for(status));
    co_return std::nullopt;
  }

  void cancel() { reactor_->context.TryCancel(); }

 private:
  std::unique_ptr<Reactor> reactor_;
  bool ended_ = false;
};

// Starts a server-streaming call. `start(context, request, reactor)` starts
// it with the stub's callback API: stub->async()->Method(context, request, reactor).
template <class Resp, class Req, class Start>
ClientStream<Req, Resp> server_stream_call(Start start, Req request, CallOptions options = {}) {
  auto reactor = std::make_unique<internal::ReadReactor<Req, Resp>>();
  reactor->request = std::move(request);
  internal::set_deadline(reactor->context, options);
  start(&reactor->context, &reactor->request,
        static_cast<grpc::ClientReadReactor<Resp>*>(reactor.get()));
  reactor->AddHold();
  reactor->StartCall();
  return ClientStream<Req, Resp>(std::move(reactor));
}

}  // namespace asyncio_grpc
