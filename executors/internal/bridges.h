// The bridges between threads and the event loop: run_in_executor,
// to_thread, run_coroutine_threadsafe, wrap_future. Included by
// executors/executors.h.
//
// asyncio Futures and Tasks belong to their loop's thread (plain reference
// counts, no locks), so nothing loop-side is ever touched from another
// thread: other threads only post callbacks with call_soon_threadsafe, and
// every loop-side reference a bridge holds is dropped on the loop's thread.
// A per-loop registry (a LoopExtension) knows the bridges still waiting on
// the loop; when the loop is closed (or destroyed) it fails their concurrent
// futures, so no thread waits forever on a loop that will not run again.
#pragma once

#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "executors/internal/concurrent_future.h"
#include "executors/internal/process_pool.h"
#include "executors/internal/thread_pool.h"
#include "futures/futures.h"
#include "loop/loop.h"

namespace asyncio {

namespace executors_internal {

// A way to post to a loop from any thread that stays safe after the loop is
// closed or destroyed (posting then does nothing).
class LoopRef {
 public:
  explicit LoopRef(EventLoop* loop) : loop_(loop) {}
  // call_soon_threadsafe(cb); false (and `cb` dropped in this thread) if the
  // loop is closed or gone.
  bool post(absl::AnyInvocable<void()> cb);
  void detach();

 private:
  std::mutex mu_;
  EventLoop* loop_;
};

class BridgeRegistry;

// A bridge waiting on a loop. Registered links are owned by the registry
// too, so they are released on the loop's thread at the latest when the
// loop closes. Loop thread only.
class LoopLink : public std::enable_shared_from_this<LoopLink> {
 public:
  virtual ~LoopLink() = default;
  bool registered() const noexcept { return registry_ != nullptr; }

 protected:
  // The loop is closing (or being destroyed) while the link is registered;
  // it has been unregistered already.
  virtual void loop_closed() noexcept = 0;

 private:
  friend class BridgeRegistry;
  BridgeRegistry* registry_ = nullptr;
  LoopLink* prev_ = nullptr;
  LoopLink* next_ = nullptr;
  std::shared_ptr<LoopLink> self_;  // the registry's reference
};

class BridgeRegistry final : public LoopExtension {
 public:
  // Loop thread only; created on first use.
  static BridgeRegistry& of(EventLoop& loop);
  const std::shared_ptr<LoopRef>& ref() const { return ref_; }
  void add(LoopLink& link);
  // Unregisters `link` if it is registered (its last reference may go).
  static void remove(LoopLink& link) noexcept;

  void on_close() noexcept override;
  ~BridgeRegistry() override;

 private:
  explicit BridgeRegistry(EventLoop& loop) : ref_(std::make_shared<LoopRef>(&loop)) {}
  void close_all() noexcept;

  std::shared_ptr<LoopRef> ref_;
  LoopLink* head_ = nullptr;
};

std::exception_ptr loop_closed_error();

// --- run_coroutine_threadsafe --------------------------------------------------

template <class T>
class CoroBridge final : public LoopLink {
 public:
  explicit CoroBridge(EventLoop* l) : loop(l) {}
  concurrent::Future<T> future;
  EventLoop* const loop;
  std::shared_ptr<LoopRef> loop_ref;           // set on the loop thread, before cancel can post
  futures_internal::TaskCore* task = nullptr;  // loop thread: the task while it exists

 private:
  void loop_closed() noexcept override {
    task = nullptr;
    future.try_set_exception(loop_closed_error());
  }
};

// A parameter of the bridged task's coroutine: destroyed with its frame,
// whether or not the body ever ran (a task cancelled before its first step,
// a task abandoned by a destroyed loop).
template <class T>
class BridgeHold {
 public:
  explicit BridgeHold(std::shared_ptr<CoroBridge<T>> b) : bridge(std::move(b)) {}
  BridgeHold(BridgeHold&& other) noexcept = default;
  ~BridgeHold() {
    if (!bridge) return;
    bridge->task = nullptr;
    // Not done: the task ended without running its body (cancelled first).
    bridge->future.cancel();
    BridgeRegistry::remove(*bridge);
  }
  std::shared_ptr<CoroBridge<T>> bridge;
};

// The outcome is stored after the catch block, so that the loop thread keeps
// no reference to the exception once the waiting thread can see it.
template <class T>
Coro<void> run_bridged(Coro<T> coro, BridgeHold<T> hold) {
  concurrent::Future<T>& future = hold.bridge->future;
  std::exception_ptr error;
  bool cancelled = false;
  try {
    if constexpr (std::is_void_v<T>) {
      co_await coro;
      future.try_set_result();
    } else {
      future.try_set_result(co_await coro);
    }
  } catch (const CancelledError&) {
    cancelled = true;
  } catch (...) {
    error = std::current_exception();
  }
  if (cancelled) future.cancel();  // the task was cancelled: so is the concurrent future
  if (error) future.try_set_exception(std::move(error));
}

// The callback run_coroutine_threadsafe posts: starts the task on the loop.
// Dropped unrun (the loop closed first), it fails the future.
template <class T>
class CoroStarter {
 public:
  CoroStarter(Coro<T> coro, std::shared_ptr<CoroBridge<T>> bridge)
      : coro_(std::move(coro)), bridge_(std::move(bridge)) {}
  CoroStarter(CoroStarter&&) noexcept = default;
  ~CoroStarter() {
    if (bridge_) bridge_->future.try_set_exception(loop_closed_error());
  }

  void operator()() {
    std::shared_ptr<CoroBridge<T>> b = std::move(bridge_);
    if (b->future.cancelled()) return;  // cancelled before it started: never runs
    EventLoop& loop = *b->loop;
    BridgeRegistry& registry = BridgeRegistry::of(loop);
    b->loop_ref = registry.ref();
    Task<void> task = create_task(loop, run_bridged<T>(std::move(coro_), BridgeHold<T>(b)));
    b->task = task.core();
    registry.add(*b);
    // Cancelling the concurrent future (from any thread) cancels the task.
    b->future.add_done_callback([weak = std::weak_ptr<CoroBridge<T>>(b)](concurrent::Future<T>& f) {
      if (!f.cancelled()) return;
      std::shared_ptr<CoroBridge<T>> bridge = weak.lock();
      if (!bridge) return;
      bridge->loop_ref->post([bridge] {
        if (bridge->task != nullptr) bridge->task->cancel("");
      });
    });
  }

 private:
  Coro<T> coro_;
  std::shared_ptr<CoroBridge<T>> bridge_;
};

// --- wrap_future -----------------------------------------------------------------

template <class T>
class WrapLink final : public LoopLink {
 public:
  WrapLink(Future<T> f, std::shared_ptr<LoopRef> r) : ref(std::move(r)), future_(std::move(f)) {}

  // Loop thread: copies the concurrent future's outcome (as _copy_state).
  void transfer(const concurrent::Future<T>& source) {
    if (!registered()) return;  // the loop closed meanwhile
    Future<T> dest = std::move(future_);
    BridgeRegistry::remove(*this);  // may drop the registry's reference
    if (dest.done()) return;        // cancelled on the loop's side
    if (source.cancelled()) {
      dest.cancel();
      return;
    }
    if (std::exception_ptr exc = source.exception()) {
      dest.set_exception(std::move(exc));
    } else if constexpr (std::is_void_v<T>) {
      dest.set_result();
    } else {
      dest.set_result(source.result());
    }
  }

  const std::shared_ptr<LoopRef> ref;

 private:
  void loop_closed() noexcept override { Future<T> released = std::move(future_); }
  Future<T> future_;  // loop thread only
};

// --- run_in_executor ---------------------------------------------------------------

template <class P>
struct FunctionPointer {
  static constexpr bool wire = false;
};
template <class R, class... P>
struct FunctionPointer<R (*)(P...)> {
  static constexpr bool wire =
      (std::is_void_v<R> || concurrent::executors_internal::kWireType<R>)&&(
          concurrent::executors_internal::kWireType<std::remove_cvref_t<P>> && ...);
};

// A plain function pointer, or a lambda without captures converted to one;
// void for anything else.
template <class F>
struct ToFunctionPointer {
  using type = void;
};
template <class F>
requires std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>
struct ToFunctionPointer<F> {
  using type = F;
};
template <class F>
requires(!std::is_pointer_v<F>) && requires(F f) { +f; }
&&std::is_pointer_v<decltype(+std::declval<F>())>&& std::is_function_v<
    std::remove_pointer_t<decltype(+std::declval<F>())>> struct ToFunctionPointer<F> {
  using type = decltype(+std::declval<F>());
};
template <class F>
using function_pointer_t = typename ToFunctionPointer<F>::type;

// True when run_in_executor can send `F` to a process pool.
template <class F>
constexpr bool sends_to_process() {
  using P = function_pointer_t<F>;
  if constexpr (std::is_void_v<P>) {
    return false;
  } else {
    return FunctionPointer<P>::wire;
  }
}

// The loop's default executor, a ThreadPoolExecutor made on first use.
Executor& default_executor(EventLoop& loop);

}  // namespace executors_internal

// wrap_future: an asyncio Future on `loop` (call it on the loop's thread)
// that completes with `source`; cancelling it cancels `source`.
template <class T>
Future<T> wrap_future(concurrent::Future<T> source, EventLoop& loop) {
  using executors_internal::BridgeRegistry;
  Future<T> dest = create_future<T>(loop);
  BridgeRegistry& registry = BridgeRegistry::of(loop);
  auto link = std::make_shared<executors_internal::WrapLink<T>>(dest, registry.ref());
  registry.add(*link);
  dest.add_done_callback([source](Future<T>& f) mutable {
    if (f.cancelled()) source.cancel();
  });
  // Both move on to the loop thread: this thread (the one completing
  // `source`) keeps no reference to its outcome.
  source.add_done_callback([link = std::move(link)](concurrent::Future<T>& done) mutable {
    std::shared_ptr<executors_internal::LoopRef> ref = link->ref;
    ref->post([link = std::move(link), done = std::move(done)] { link->transfer(done); });
  });
  return dest;
}

// loop.run_in_executor(executor, fn, *args): fn(args...) in `executor`
// (nullptr: the loop's default ThreadPoolExecutor, made on first use),
// awaited as an asyncio Future. With a ProcessPoolExecutor, `fn` must be a
// plain function (or a lambda without captures) and goes to its submit().
// Cancelling the returned future cancels the job if it has not started.
template <class F, class... A>
auto run_in_executor(EventLoop& loop, Executor* executor, F fn, A... args)
    -> Future<std::invoke_result_t<F&, A&...>> {
  using R = std::invoke_result_t<F&, A&...>;
  if (loop.is_closed()) throw std::runtime_error("Event loop is closed");
  if (executor == nullptr) executor = &executors_internal::default_executor(loop);
  if constexpr (executors_internal::sends_to_process<F>()) {
    if (auto* pool = dynamic_cast<concurrent::ProcessPoolExecutor*>(executor)) {
      executors_internal::function_pointer_t<F> pointer = fn;
      return wrap_future(pool->submit(pointer, std::move(args)...), loop);
    }
  }
  concurrent::Future<R> future;
  auto call = concurrent::executors_internal::bind_call(std::move(fn), std::move(args)...);
  executor->execute(
      concurrent::executors_internal::WorkItem<R, decltype(call)>(future, std::move(call)));
  return wrap_future(std::move(future), loop);
}

// asyncio.to_thread(fn, *args): runs fn(args...) in the running loop's
// default executor and returns its result.
template <class F, class... A>
auto to_thread(F fn, A... args) -> Coro<std::invoke_result_t<F&, A&...>> {
  co_return co_await run_in_executor(get_running_loop(), nullptr, std::move(fn),
                                     std::move(args)...);
}

// Submits `coro` to `loop` from any thread; the concurrent future gets its
// result. Cancelling the future cancels the task. A closed loop, or one that
// closes before the coroutine is done, fails the future with
// std::runtime_error("Event loop is closed").
template <class T>
concurrent::Future<T> run_coroutine_threadsafe(Coro<T> coro, EventLoop& loop) {
  if (!coro.valid()) throw std::invalid_argument("run_coroutine_threadsafe: empty Coro");
  auto bridge = std::make_shared<executors_internal::CoroBridge<T>>(&loop);
  concurrent::Future<T> future = bridge->future;
  try {
    loop.call_soon_threadsafe(
        executors_internal::CoroStarter<T>(std::move(coro), std::move(bridge)));
  } catch (const std::runtime_error&) {
    // The loop is closed: the dropped starter has failed the future.
  }
  return future;
}

}  // namespace asyncio
