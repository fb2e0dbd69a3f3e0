// run and run_until_complete: the entry points that drive an event loop
// until a coroutine is done.
//
//   asyncio::Coro<int> main_coro() { co_await asyncio::sleep(10ms); co_return 42; }
//   int main() { return asyncio::run(main_coro()) == 42 ? 0 : 1; }
#pragma once

#include <memory>
#include <stdexcept>
#include <utility>

#include "futures/coro.h"
#include "futures/future.h"
#include "futures/internal/core.h"
#include "futures/task.h"
#include "loop/loop.h"

namespace asyncio {

// Runs the loop until `aw` (a Coro, Task or Future) is done and returns its
// result (or throws its exception).
template <class A>
auto run_until_complete(EventLoop& loop, A&& aw) -> await_result_t<A> {
  using R = await_result_t<A>;
  Future<R> future = [&]() -> Future<R> {
    if constexpr (iscoroutine<A>) {
      return create_task(loop, std::forward<A>(aw));
    } else {
      futures_internal::check_same_loop(*futures_internal::Access::state(aw), loop);
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

// Options of run(); debug: the new loop's debug mode (EventLoop::set_debug).
struct RunOptions {
  bool debug = false;
};

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

}  // namespace asyncio
