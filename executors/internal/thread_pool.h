// concurrent::ThreadPoolExecutor and the work item every executor runs.
// Included by executors/executors.h.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "executors/internal/concurrent_future.h"
#include "loop/loop.h"

namespace asyncio::concurrent {

namespace executors_internal {

// What an executor runs for submit(): calls `fn` unless the future was
// cancelled first, and stores the outcome in the future. A work item that is
// destroyed without having run (an executor dropping its queue, a shutdown
// with cancel_futures) cancels its future, so no waiter blocks forever.
template <class R, class Fn>
class WorkItem {
 public:
  WorkItem(Future<R> future, Fn fn) : future_(std::move(future)), fn_(std::move(fn)) {}
  WorkItem(WorkItem&& other) noexcept
      : future_(std::move(other.future_)),
        fn_(std::move(other.fn_)),
        armed_(std::exchange(other.armed_, false)) {}
  WorkItem& operator=(WorkItem&&) = delete;
  ~WorkItem() {
    if (armed_) future_.cancel();
  }

  // The outcome is stored after the catch block and with this item's
  // reference to the future: once a done-callback has passed the future to
  // another thread, the worker holds nothing of the result or exception.
  void operator()() {
    armed_ = false;
    Future<R> future = std::move(future_);
    if (!future.set_running_or_notify_cancel()) return;
    std::exception_ptr error;
    if constexpr (std::is_void_v<R>) {
      try {
        fn_();
      } catch (...) {
        error = std::current_exception();
      }
      if (!error) {
        std::move(future).try_set_result_and_release();
        return;
      }
    } else {
      std::optional<R> result;
      try {
        result.emplace(fn_());
      } catch (...) {
        error = std::current_exception();
      }
      if (!error) {
        std::move(future).try_set_result_and_release(std::move(*result));
        return;
      }
    }
    std::move(future).try_set_exception_and_release(std::move(error));
  }

 private:
  Future<R> future_;
  Fn fn_;
  bool armed_ = true;
};

// The callable behind submit(f, args...): args are stored by value.
template <class F, class... A>
auto bind_call(F f, A... args) {
  if constexpr (sizeof...(A) == 0) {
    return f;
  } else {
    return [f = std::move(f), tup = std::make_tuple(std::move(args)...)]() mutable {
      return std::apply(f, tup);
    };
  }
}

}  // namespace executors_internal

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

  // Runs `work` on a pool thread. std::runtime_error after shutdown.
  void execute(absl::AnyInvocable<void()> work) override;

  // Schedules f(args...) and returns its future.
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
    int idle = 0;
    bool shutdown = false;
  };
  static void worker_main(State& state);

  const int max_workers_;
  std::shared_ptr<State> state_;
  std::mutex join_mu_;  // one joiner at a time
};

namespace executors_internal {

// Executor.map's collection step: waits for every future in order.
template <class R>
std::vector<R> collect_in_order(std::vector<Future<R>>& futures,
                                std::optional<std::chrono::nanoseconds> timeout) {
  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (timeout) deadline = std::chrono::steady_clock::now() + *timeout;
  std::vector<R> results;
  results.reserve(futures.size());
  try {
    for (Future<R>& f : futures) {
      if (deadline) {
        auto left = *deadline - std::chrono::steady_clock::now();
        results.push_back(
            f.result(std::max(std::chrono::nanoseconds(0),
                              std::chrono::duration_cast<std::chrono::nanoseconds>(left))));
      } else {
        results.push_back(f.result());
      }
    }
  } catch (...) {
    for (Future<R>& f : futures) f.cancel();
    throw;
  }
  return results;
}

}  // namespace executors_internal

template <class F, class Range>
auto ThreadPoolExecutor::map(F fn, const Range& items,
                             std::optional<std::chrono::nanoseconds> timeout)
    -> std::vector<std::invoke_result_t<F&, decltype(*std::begin(items))>> {
  using R = std::invoke_result_t<F&, decltype(*std::begin(items))>;
  static_assert(!std::is_void_v<R>, "map needs a function that returns a value");
  std::vector<Future<R>> futures;
  try {
    for (const auto& item : items) futures.push_back(submit(fn, item));
  } catch (...) {
    for (Future<R>& f : futures) f.cancel();
    throw;
  }
  return executors_internal::collect_in_order(futures, timeout);
}

}  // namespace asyncio::concurrent
