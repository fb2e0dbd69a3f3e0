// //futures: coroutines, futures and tasks — asyncio's core, for C++20.
//
//   asyncio::Coro<int> compute() { co_await asyncio::sleep(10ms); co_return 42; }
//   int main() { return asyncio::run(compute()) == 42 ? 0 : 1; }
//
// Coro<T> is what every coroutine returns; `co_await` on it runs it inline.
// create_task() runs it concurrently as a Task<T>, which is a Future<T>.
// Cancellation, gather, wait, wait_for, shield, as_completed and TaskGroup
// follow asyncio 3.12.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "futures/internal/core.h"
#include "loop/loop.h"

namespace asyncio {

// ---------------------------------------------------------------------------
// Tasks

// Wraps `coro` in a Task on `loop` and schedules its first step with
// call_soon: the body does not start inside create_task.
template <class T>
Task<T> create_task(EventLoop& loop, Coro<T> coro, std::string name = "") {
  if (loop.is_closed()) throw std::runtime_error("Event loop is closed");
  if (!coro.valid()) throw std::invalid_argument("create_task: empty Coro");
  auto handle = coro.release();
  futures_internal::TaskCore& core = handle.promise();
  core.start_task(loop, std::move(name), handle);
  return Task<T>(&core);
}

// The same on the running loop.
template <class T>
Task<T> create_task(Coro<T> coro, std::string name = "") {
  return create_task(get_running_loop(), std::move(coro), std::move(name));
}

// Coro -> a new Task on the running loop; a Future or Task is returned as is.
template <class A>
auto ensure_future(A&& aw) {
  using Aw = std::remove_cvref_t<A>;
  if constexpr (iscoroutine<Aw>) {
    return create_task(std::forward<A>(aw));
  } else {
    static_assert(isfuture<Aw>, "ensure_future takes a Coro, a Future or a Task");
    return Aw(std::forward<A>(aw));
  }
}

// The task running on this thread, if any.
std::optional<AnyTask> current_task();
// The running loop's tasks that are not done yet.
std::vector<AnyTask> all_tasks();

// ---------------------------------------------------------------------------
// Running

// Runs the loop until `aw` (a Coro, Task or Future) is done and returns its
// result (or throws its exception).
template <class A>
auto run_until_complete(EventLoop& loop, A&& aw) -> await_result_t<A> {
  using R = await_result_t<A>;
  Future<R> future = [&]() -> Future<R> {
    if constexpr (iscoroutine<A>) {
      return create_task(loop, std::forward<A>(aw));
    } else {
      futures_internal::check_same_loop(*aw.state_ptr(), loop);
      return Future<R>(aw);
    }
  }();
  CallbackId stopper = future.add_done_callback([&loop](Future<R>& f) {
    if (!f.cancelled()) (void)f.exception();  // retrieved: run_until_complete raises it
    loop.stop();
  });
  try {
    loop.run_forever();
  } catch (...) {
    future.remove_done_callback(stopper);
    throw;
  }
  future.remove_done_callback(stopper);
  if (!future.done()) throw std::runtime_error("Event loop stopped before Future completed.");
  return future.result();
}

struct RunOptions {
  bool debug = false;
};

namespace futures_internal {
// asyncio.run's cleanup: cancels what is left, closes async generators,
// shuts the default executor down, closes the loop. Never throws.
void finish_run(EventLoop& loop) noexcept;
}  // namespace futures_internal

// Runs `main` on a new event loop and returns its result: asyncio.run().
template <class T>
T run(Coro<T> main, RunOptions options = {}) {
  if (running_loop_or_null() != nullptr) {
    throw std::runtime_error("asyncio::run() cannot be called from a running event loop");
  }
  std::unique_ptr<EventLoop> loop = new_event_loop();
  loop->set_debug(options.debug);
  set_event_loop(loop.get());
  struct Finish {
    EventLoop& loop;
    ~Finish() { futures_internal::finish_run(loop); }
  } finish{*loop};
  return run_until_complete(*loop, std::move(main));
}

// ---------------------------------------------------------------------------
// Sleeping

namespace futures_internal {
Coro<void> sleep_seconds(double seconds);
}  // namespace futures_internal

// Suspends the current task for `delay`; sleep(0s) yields to the loop for one
// iteration, an infinite delay sleeps until cancelled, and a NaN one throws
// std::invalid_argument.
template <class Rep, class Period>
Coro<void> sleep(std::chrono::duration<Rep, Period> delay) {
  return futures_internal::sleep_seconds(std::chrono::duration<double>(delay).count());
}

template <class Rep, class Period, class T>
Coro<T> sleep(std::chrono::duration<Rep, Period> delay, T result) {
  co_await futures_internal::sleep_seconds(std::chrono::duration<double>(delay).count());
  co_return result;
}

}  // namespace asyncio

#include "futures/internal/async_generator.h"
#include "futures/internal/combinators.h"
#include "futures/internal/task_group.h"
#include "futures/internal/waiters.h"
