// run, Runner and run_until_complete: the entry points that drive an event
// loop until a coroutine is done; shutdown_default_executor.
//
//   asyncio::Coro<int> main_coro() { co_await asyncio::sleep(10ms); co_return 42; }
//   int main() { return asyncio::run(main_coro()) == 42 ? 0 : 1; }
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <type_traits>
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

// Ctrl-C interrupted run() or Runner::run (Python's KeyboardInterrupt, see
// Runner::run). Derives from std::exception only, as Python's is a
// BaseException: `catch (const std::runtime_error&)` does not swallow it.
class KeyboardInterrupt : public std::exception {
 public:
  const char* what() const noexcept override { return "KeyboardInterrupt"; }
};

namespace futures_internal {

// Runner.run's SIGINT handling, for the length of one run (see Runner::run).
// Does nothing unless on the main thread with SIGINT's disposition the
// default one.
class SigintHandling {
 public:
  SigintHandling(EventLoop& loop, AnyTask main);
  SigintHandling(const SigintHandling&) = delete;
  SigintHandling& operator=(const SigintHandling&) = delete;
  // Puts the previous disposition back, if ours is still installed.
  ~SigintHandling();
  // Called in a catch block around the run: throws KeyboardInterrupt in
  // place of the exception being handled if Ctrl-C caused it (a second
  // Ctrl-C, or the main task cancelled by the first and not uncancelled).
  void throw_if_interrupted();

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace futures_internal

// Builds the loop of a Runner or run() (asyncio's loop_factory argument).
using LoopFactory = std::function<std::unique_ptr<EventLoop>()>;

// asyncio's constants.THREAD_JOIN_TIMEOUT: how long run() and Runner::close()
// wait for the default executor's threads before warning and going on.
inline constexpr std::chrono::duration<double> kThreadJoinTimeout{300.0};

// The options of run() and Runner, asyncio.run(main, *, debug=None,
// loop_factory=None) and asyncio.Runner(*, debug=None, loop_factory=None):
//   debug: the loop's debug mode (EventLoop::set_debug); unset leaves the
//     loop's own setting.
//   loop_factory: builds the loop; unset: new_event_loop(), which then also
//     becomes this thread's event loop (set_event_loop) until closed, as in
//     asyncio; a factory's loop does not.
//   executor_shutdown_timeout: the timeout of shutdown_default_executor when
//     closing (asyncio hard-codes 300 s; a test wants less).
struct RunOptions {
  std::optional<bool> debug = std::nullopt;
  LoopFactory loop_factory = nullptr;
  std::chrono::duration<double> executor_shutdown_timeout = kThreadJoinTimeout;
};

// asyncio.Runner: runs several top-level coroutines, in turn, on one loop.
//
//   with asyncio.Runner() as runner:        asyncio::Runner runner;
//       runner.run(setup())                 runner.run(setup());
//       runner.run(main())                  runner.run(main_coro());
//
// C++ has no `with`: the destructor closes the runner (RAII); close() does it
// earlier. The loop is made on the first run() or get_loop().
class Runner {
 public:
  explicit Runner(RunOptions options = {});
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;
  ~Runner() { close(); }

  // Runner.run(coro): runs `coro` as a task on the runner's loop until done
  // and returns its result (or throws its exception). std::runtime_error if
  // the runner is closed or a loop is running on this thread;
  // std::invalid_argument for an empty Coro.
  //
  // Ctrl-C, as asyncio 3.11+: on the main thread, while SIGINT has its
  // default disposition, run() handles SIGINT for its duration. The first
  // Ctrl-C cancels the main task, which can catch CancelledError and clean
  // up; if it then ends cancelled, run() throws KeyboardInterrupt (a main
  // task that swallows the cancellation returns normally). A second Ctrl-C
  // makes run() throw KeyboardInterrupt at once, leaving the main task to
  // close(). Python raises that one inside whatever code is running; C++
  // cannot throw from a signal handler, so Ctrl-C takes effect when the
  // loop next gets control (the loop's add_signal_handler delivers it): a
  // callback that blocks the loop is not interrupted, as a blocking call
  // into C is not in Python. The default disposition is put back when run()
  // returns.
  template <class T>
  T run(Coro<T> coro) {
    if (!coro.valid()) throw std::invalid_argument("Runner.run(): a coroutine was expected");
    if (running_loop_or_null() != nullptr) {
      throw std::runtime_error("Runner.run() cannot be called from a running event loop");
    }
    EventLoop& loop = get_loop();
    Task<T> task = create_task(loop, std::move(coro));
    futures_internal::SigintHandling sigint(loop, task);
    try {
      return run_until_complete(loop, task);
    } catch (...) {
      sigint.throw_if_interrupted();
      throw;
    }
  }

  // Runner.close(): cancels the tasks left, closes the async generators,
  // shuts the default executor down (shutdown_default_executor with the
  // options' timeout) and closes the loop. Does nothing unless the loop was
  // made and is still open, as asyncio's. Never throws: errors go to the
  // loop's exception handler.
  void close() noexcept;

  // Runner.get_loop(): the loop, made now if need be. std::runtime_error
  // ("Runner is closed") after close().
  EventLoop& get_loop();

 private:
  enum class State { kCreated, kInitialized, kClosed };
  State state_ = State::kCreated;
  RunOptions options_;
  std::unique_ptr<EventLoop> loop_;
  bool set_event_loop_ = false;
};

// Runs `main` on a new event loop and returns its result: asyncio.run().
// The loop is closed on the way out (see Runner::close()).
template <class T>
T run(Coro<T> main, RunOptions options = {}) {
  if (running_loop_or_null() != nullptr) {
    throw std::runtime_error("asyncio::run() cannot be called from a running event loop");
  }
  Runner runner(std::move(options));
  return runner.run(std::move(main));
}

// asyncio.run(main, loop_factory=factory).
template <class T, class Factory>
requires std::is_invocable_r_v<std::unique_ptr<EventLoop>, Factory&> T run(Coro<T> main,
                                                                           Factory loop_factory) {
  return run(std::move(main), RunOptions{.loop_factory = std::move(loop_factory)});
}

// loop.shutdown_default_executor(timeout=None), on the running loop: shuts
// the default executor down and waits for its threads, the loop running
// meanwhile (work that reports back to the loop can finish). After `timeout`
// it reports "The executor did not finishing joining its threads within ..."
// through the loop's exception handler (Python warns: RuntimeWarning) and
// returns; the threads still busy then finish on their own. No timeout: waits
// as long as it takes. From its start on, the loop refuses to use a default
// executor: run_in_executor(nullptr) and to_thread throw std::runtime_error
// ("Executor shutdown has been called"), even if none was ever made.
// Cancelled meanwhile, it still waits for its joining thread (at most the
// timeout) before raising: that thread posts to the loop.
Coro<void> shutdown_default_executor(
    std::optional<std::chrono::duration<double>> timeout = std::nullopt);

}  // namespace asyncio
