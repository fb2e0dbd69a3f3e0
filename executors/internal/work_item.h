// The work item every executor runs for submit(), and Executor.map's
// collection step: machinery of executors/thread_pool.h and
// executors/process_pool.h.
#pragma once

#include <algorithm>
#include <chrono>
#include <exception>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "executors/concurrent_future.h"

namespace asyncio::concurrent::executors_internal {

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

// Executor.map: submit(item) for each item, then the results in order. A
// failure to submit cancels the futures submitted so far.
template <class R, class Submit, class Range>
std::vector<R> map_in_order(Submit submit, const Range& items,
                            std::optional<std::chrono::nanoseconds> timeout) {
  std::vector<Future<R>> futures;
  try {
    for (const auto& item : items) futures.push_back(submit(item));
  } catch (...) {
    for (Future<R>& f : futures) f.cancel();
    throw;
  }
  return collect_in_order(futures, timeout);
}

}  // namespace asyncio::concurrent::executors_internal
