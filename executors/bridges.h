// The bridges between threads and the event loop: wrap_future,
// run_in_executor, to_thread, run_coroutine_threadsafe.
//
//   // in a coroutine on the loop:
//   std::string data = co_await asyncio::to_thread(read_file, path);
//   // from a plain thread:
//   int r = asyncio::run_coroutine_threadsafe(compute(), loop).result(1s);
//
// Nothing loop-side is touched from another thread: other threads only post
// to the loop. A loop that closes fails the concurrent futures still waiting
// on it.
#pragma once

#include <stdexcept>
#include <type_traits>
#include <utility>

#include "executors/concurrent_future.h"
#include "executors/internal/bridges.h"
#include "executors/internal/work_item.h"
#include "executors/process_pool.h"
#include "futures/futures.h"
#include "loop/loop.h"

namespace asyncio {

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
// (nullptr: the loop's default ThreadPoolExecutor, made on first use), in a
// copy of the caller's contextvars context (asyncio does that in to_thread;
// here both do, so a request id set by a handler reaches its worker threads),
// awaited as an asyncio Future. With a ProcessPoolExecutor, `fn` must be a
// plain function (or a lambda without captures) and goes to its submit().
// Cancelling the returned future cancels the job if it has not started.
// std::runtime_error if the loop is closed, or for the default executor
// once shutdown_default_executor() ran ("Executor shutdown has been called",
// as asyncio 3.9+; see EventLoop::executor_shutdown_called).
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
  // In the caller's context (contextvars), as asyncio.to_thread runs it.
  auto call = [context = copy_context(), bound = concurrent::executors_internal::bind_call(
                                             std::move(fn), std::move(args)...)]() mutable -> R {
    return context.run(bound);
  };
  executor->execute(
      concurrent::executors_internal::WorkItem<R, decltype(call)>(future, std::move(call)));
  return wrap_future(std::move(future), loop);
}

// asyncio.to_thread(fn, *args): runs fn(args...) in the running loop's
// default executor and returns its result (so refused, as run_in_executor,
// after shutdown_default_executor()).
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
