// The machinery of executors/bridges.h: the per-loop registry of bridges
// still waiting on a loop, and the objects each bridge keeps on either side.
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
#include "executors/concurrent_future.h"
#include "executors/internal/process_protocol.h"
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
    if (b->future.cancelled()) {
      // Cancelled before it started: never runs. Closed, not reported as
      // never awaited: asyncio makes the task and cancels it before its
      // first step, which closes the coroutine.
      coro_.close();
      return;
    }
    EventLoop& loop = *b->loop;
    BridgeRegistry& registry = BridgeRegistry::of(loop);
    b->loop_ref = registry.ref();
    Task<void> task = create_task(loop, run_bridged<T>(std::move(coro_), BridgeHold<T>(b)));
    b->task = futures_internal::Access::core(task);
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

}  // namespace asyncio
