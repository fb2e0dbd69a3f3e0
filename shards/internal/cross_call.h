// The machinery of Shard::call and Shard::submit: a request posted to the
// target shard's loop, a reply posted back to the caller's. Nothing here is
// for users; see shards/shards.h.
//
// Ownership rule: the state both sides share (Reply) holds no loop-affine
// object (no Future, no Task): its last reference may go on either thread.
// What is loop-affine stays on its loop: the caller's Future lives in the
// caller's frame and is reached through a raw pointer that only the caller's
// thread reads or clears; the remote task's handle lives in the target's
// done-callback and is reached through a raw pointer only the target's
// thread touches.
#pragma once

#include <atomic>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <variant>

#include "futures/futures.h"
#include "loop/loop.h"

namespace asyncio::shards_internal {

template <class R>
using Stored = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

inline std::exception_ptr loop_closed_error() {
  return std::make_exception_ptr(std::runtime_error("Event loop is closed"));
}

template <class R>
struct Reply {
  // Written on the target before the reply is posted; read on the caller
  // after it has run there (the post orders the two).
  std::optional<Stored<R>> value;
  std::exception_ptr error;
  // Caller's thread only: what the caller awaits; null once it stopped
  // waiting (reply arrived, or the caller was cancelled or destroyed).
  Future<void>* waiter = nullptr;
  // Set by the caller when it stops waiting: the target skips work it has
  // not started yet and sends no reply.
  std::atomic<bool> abandoned{false};
  // Target's thread only (submit): the remote task while it runs, and
  // whether it has replied.
  AnyTask* remote_task = nullptr;
  bool replied = false;
};

// Posts the reply to the caller's loop. A closed caller loop has nobody
// waiting: the reply is dropped here, which is fine (see Reply).
template <class R>
void post_reply(EventLoop& home, std::shared_ptr<Reply<R>> reply) noexcept {
  if (reply->abandoned.load(std::memory_order_relaxed)) return;
  try {
    home.call_soon_threadsafe([reply = std::move(reply)] {
      if (Future<void>* waiter = std::exchange(reply->waiter, nullptr)) {
        if (!waiter->done()) waiter->set_result();
      }
    });
  } catch (...) {
  }
}

// A reply owed to the caller, held by a request until it runs. Dropped
// without being taken (the target's loop closed first), it replies "Event
// loop is closed" so that the caller does not wait forever.
template <class R>
class OwedReply {
 public:
  OwedReply(std::shared_ptr<Reply<R>> reply, EventLoop* home)
      : reply_(std::move(reply)), home_(home) {}
  OwedReply(OwedReply&&) noexcept = default;
  OwedReply& operator=(OwedReply&&) = delete;
  ~OwedReply() {
    if (!reply_) return;
    reply_->error = loop_closed_error();
    post_reply(*home_, std::move(reply_));
  }
  // The reply, to fill and post; null if the caller has stopped waiting.
  std::shared_ptr<Reply<R>> take() {
    std::shared_ptr<Reply<R>> reply = std::move(reply_);
    if (reply->abandoned.load(std::memory_order_relaxed)) return nullptr;
    return reply;
  }
  EventLoop& home() const { return *home_; }

 private:
  std::shared_ptr<Reply<R>> reply_;
  EventLoop* home_;
};

// Shard::call's request: runs `fn` on the target's loop.
template <class R, class F>
struct CallRequest {
  void operator()() {
    std::shared_ptr<Reply<R>> r = owed.take();
    if (!r) return;
    try {
      if constexpr (std::is_void_v<R>) {
        fn();
        r->value.emplace();
      } else {
        r->value.emplace(fn());
      }
    } catch (...) {
      r->error = std::current_exception();
    }
    post_reply(owed.home(), std::move(r));
  }

  OwedReply<R> owed;
  F fn;
};

// The remote task of a submit: calls the factory, stores the coroutine's
// value straight into the reply (so results need only be movable) and posts
// the reply as soon as the coroutine is done, without waiting for the
// task's done-callbacks (one loop iteration later). The factory lives in
// this frame for as long as its coroutine runs (a lambda coroutine refers to
// its captures through the lambda).
template <class R, class F>
Coro<void> run_into(std::shared_ptr<Reply<R>> reply, EventLoop* home, F factory) {
  try {
    if constexpr (std::is_void_v<R>) {
      co_await factory();
      reply->value.emplace();
    } else {
      reply->value.emplace(co_await factory());
    }
  } catch (...) {
    reply->error = std::current_exception();
  }
  reply->replied = true;
  post_reply(*home, std::move(reply));
}

// The handle of a remote task, owned by its done-callback on the target's
// thread; while it exists the reply points at it, for cancellation.
template <class R>
struct RemoteTask {
  RemoteTask(std::shared_ptr<Reply<R>> r, AnyTask t) : reply(std::move(r)), task(std::move(t)) {
    reply->remote_task = &task;
  }
  RemoteTask(const RemoteTask&) = delete;
  RemoteTask& operator=(const RemoteTask&) = delete;
  ~RemoteTask() { reply->remote_task = nullptr; }
  std::shared_ptr<Reply<R>> reply;
  AnyTask task;
};

// The remote task's done-callback: lets go of the task's handle. If the
// task ended without replying (cancelled before its first step, or dropped
// with its loop), it replies: CancelledError, or "Event loop is closed".
template <class R>
struct RemoteDone {
  RemoteDone(std::unique_ptr<RemoteTask<R>> h, EventLoop* home_loop)
      : handle(std::move(h)), home(home_loop) {}
  RemoteDone(RemoteDone&&) noexcept = default;
  RemoteDone& operator=(RemoteDone&&) = delete;
  ~RemoteDone() {
    if (handle) finish(loop_closed_error());
  }
  void operator()(Future<void>&) { finish(std::make_exception_ptr(CancelledError())); }

  void finish(std::exception_ptr unreplied) {
    std::shared_ptr<Reply<R>> reply = handle->reply;
    handle.reset();
    if (reply->replied) return;
    reply->value.reset();
    reply->error = std::move(unreplied);
    post_reply(*home, std::move(reply));
  }

  std::unique_ptr<RemoteTask<R>> handle;
  EventLoop* home;
};

// Shard::submit's request: makes the coroutine on the target's loop and runs
// it there as a task.
template <class R, class F>
struct SubmitRequest {
  void operator()() {
    std::shared_ptr<Reply<R>> r = owed.take();
    if (!r) return;
    Task<void> task;
    try {
      // Eager: the coroutine's first step runs in this callback rather than
      // one loop iteration later; one that does not suspend replies at once.
      TaskOptions options;
      options.eager_start = true;
      task = create_task(*target, run_into<R>(r, &owed.home(), std::move(factory)),
                         std::move(options));
    } catch (...) {
      r->error = std::current_exception();
      post_reply(owed.home(), std::move(r));
      return;
    }
    auto handle = std::make_unique<RemoteTask<R>>(r, task);
    task.add_done_callback(RemoteDone<R>(std::move(handle), &owed.home()));
  }

  OwedReply<R> owed;
  F factory;
  EventLoop* target;
};

// The caller's side of the wait, on every way out of the awaiting frame
// (reply, cancellation, destruction with its loop): stops waiting, tells the
// target, and for a submit asks it to cancel the remote task.
template <class R>
struct CallerWait {
  CallerWait(std::shared_ptr<Reply<R>> r, EventLoop* cancel_on)
      : reply(std::move(r)), target(cancel_on) {}
  CallerWait(const CallerWait&) = delete;
  CallerWait& operator=(const CallerWait&) = delete;
  ~CallerWait() {
    if (reply->waiter == nullptr) return;  // the reply came
    reply->waiter = nullptr;
    reply->abandoned.store(true, std::memory_order_relaxed);
    if (target == nullptr) return;
    try {
      target->call_soon_threadsafe([reply = reply] {
        if (reply->remote_task != nullptr) reply->remote_task->cancel();
      });
    } catch (...) {
      // The target's loop is closed: its tasks are gone already.
    }
  }
  std::shared_ptr<Reply<R>> reply;
  EventLoop* target;
};

// Posts `request` to `there` and waits on `home` for the reply.
template <class R, class Request>
Coro<R> await_remote(EventLoop& home, EventLoop& there, std::shared_ptr<Reply<R>> reply,
                     Request request, bool cancel_remote) {
  Future<void> done = create_future<void>(home);
  reply->waiter = &done;
  CallerWait<R> wait(reply, cancel_remote ? &there : nullptr);
  there.call_soon_threadsafe(std::move(request));
  co_await done;
  if (reply->error) std::rethrow_exception(std::exchange(reply->error, nullptr));
  if constexpr (!std::is_void_v<R>) co_return std::move(*reply->value);
}

}  // namespace asyncio::shards_internal
