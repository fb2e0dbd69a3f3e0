// concurrent::ThreadPoolExecutor, as concurrent.futures.ThreadPoolExecutor.
//
//   asyncio::concurrent::ThreadPoolExecutor pool(4);
//   auto f = pool.submit([](int x) { return x * 2; }, 21);  // concurrent::Future<int>
//   int v = f.result();                                      // 42
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "executors/concurrent_future.h"
#include "executors/internal/work_item.h"
#include "loop/loop.h"

namespace asyncio::concurrent {

// concurrent.futures.Executor: the interface of //loop that the pools
// implement.
using Executor = ::asyncio::Executor;

// A pool of threads, as concurrent.futures.ThreadPoolExecutor. Threads start
// on demand, up to max_workers, and live until shutdown.
class ThreadPoolExecutor : public Executor {
 public:
  // max_workers == 0: min(32, hardware threads + 4), as Python's default.
  // std::invalid_argument if negative.
  explicit ThreadPoolExecutor(int max_workers = 0);
  // shutdown(wait=true), unless shutdown() was called already: then the
  // threads still running (after shutdown(wait=false)) are not waited for;
  // they finish the queue and exit on their own, as Python's pool threads do
  // (an event loop's close() leaves its default executor so). A pool
  // destroyed by one of its own threads lets that thread go instead of
  // joining it.
  ~ThreadPoolExecutor() override;
  ThreadPoolExecutor(const ThreadPoolExecutor&) = delete;
  ThreadPoolExecutor& operator=(const ThreadPoolExecutor&) = delete;

  // Runs `work` on a pool thread. After shutdown: std::runtime_error("cannot
  // schedule new futures after shutdown"), as Python's submit raises.
  void execute(absl::AnyInvocable<void()> work) override;

  // Schedules f(args...) and returns its future (refused after shutdown, as
  // execute).
  template <class F, class... A>
  auto submit(F f, A... args) -> Future<std::invoke_result_t<F&, A&...>> {
    using R = std::invoke_result_t<F&, A&...>;
    Future<R> future;
    auto call = executors_internal::bind_call(std::move(f), std::move(args)...);
    execute(executors_internal::WorkItem<R, decltype(call)>(future, std::move(call)));
    return future;
  }

  // Executor.map: fn(item) for each item of `items`, run concurrently;
  // results in order. The first exception (or TimeoutError if `timeout`
  // passes first) is thrown after the futures not yet started are cancelled.
  template <class F, class Range>
  auto map(F fn, const Range& items, std::optional<std::chrono::nanoseconds> timeout = std::nullopt)
      -> std::vector<std::invoke_result_t<F&, decltype(*std::begin(items))>>;

  // Stops accepting work. cancel_futures: the queued work that has not
  // started is dropped and its futures cancelled. wait: blocks until every
  // thread has finished the queue and exited. Idempotent.
  void shutdown(bool wait = true, bool cancel_futures = false) override;
  // shutdown(wait=true) waiting at most `timeout` for the threads to finish;
  // false if some were still busy then (see Executor::shutdown_with_timeout).
  bool shutdown_with_timeout(std::chrono::duration<double> timeout) override;

  int max_workers() const { return max_workers_; }
  // Threads started so far.
  int num_threads() const;

 private:
  // Shared with the threads, so that a pool destroyed by one of its own
  // jobs leaves that thread something valid to return to.
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<absl::AnyInvocable<void()>> queue;
    std::vector<std::thread> threads;
    std::condition_variable exited;  // a thread left worker_main
    int running = 0;                 // threads not yet out of worker_main
    int idle = 0;
    bool shutdown = false;
  };
  static void worker_main(State& state);

  const int max_workers_;
  std::shared_ptr<State> state_;
  std::mutex join_mu_;  // one joiner at a time
};

// ---------------------------------------------------------------------------
// Implementation details

template <class F, class Range>
auto ThreadPoolExecutor::map(F fn, const Range& items,
                             std::optional<std::chrono::nanoseconds> timeout)
    -> std::vector<std::invoke_result_t<F&, decltype(*std::begin(items))>> {
  using R = std::invoke_result_t<F&, decltype(*std::begin(items))>;
  static_assert(!std::is_void_v<R>, "map needs a function that returns a value");
  return executors_internal::map_in_order<R>(
      // this->: clang takes the unqualified call in a generic lambda for one
      // that may not need `this` and reports the capture unused.
      [this, &fn](const auto& item) { return this->submit(fn, item); }, items, timeout);
}

}  // namespace asyncio::concurrent
