// Task<T>, AnyTask and the functions that make, find and pause tasks:
// create_task, ensure_future, current_task, all_tasks, sleep.
//
//   asyncio::Task<int> t = asyncio::create_task(answer(), "answer");
//   ...                       // answer() runs concurrently from here on
//   int v = co_await t;
//
// A Task is a Future whose result comes from its coroutine. Cancellation
// follows asyncio 3.12: cancel() throws CancelledError into the coroutine at
// its next suspension; cancelling() and uncancel() count the requests.
#pragma once

#include <chrono>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "futures/coro.h"
#include "futures/future.h"
#include "futures/internal/core.h"
#include "loop/loop.h"

namespace asyncio {

// ---------------------------------------------------------------------------
// Task<T>: a Future<T> driven by a coroutine.
template <class T = void>
class Task : public Future<T> {
 public:
  Task() = default;

  std::string get_name() const { return core()->name(); }
  void set_name(std::string name) { core()->set_name(std::move(name)); }
  // Number of pending cancellation requests (cancel() minus uncancel()).
  int cancelling() const { return core()->cancelling(); }
  int uncancel() { return core()->uncancel(); }

  // A task's result comes from its coroutine only.
  template <class U>
  void set_result(U) = delete;
  void set_result() = delete;
  void set_exception(std::exception_ptr) = delete;

 private:
  friend struct futures_internal::Access;
  // Adopts one reference to the task's root promise.
  explicit Task(futures_internal::TaskCore* core) noexcept : Future<T>(core) {}
  futures_internal::TaskCore* core() const {
    return static_cast<futures_internal::TaskCore*>(this->state());
  }
};

// A Task of any result type: cancel, inspect, await (the result is dropped).
class AnyTask {
 public:
  template <class T>
  AnyTask(const Task<T>& task)  // NOLINT: implicit by design
      : AnyTask(futures_internal::Access::core(task)) {}
  AnyTask(const AnyTask& other) noexcept : core_(other.core_) { core_->add_ref(); }
  AnyTask& operator=(AnyTask other) noexcept {
    std::swap(core_, other.core_);
    return *this;
  }
  ~AnyTask() {
    if (core_ != nullptr) core_->release();
  }

  bool done() const { return core_->done(); }
  bool cancelled() const { return core_->cancelled(); }
  bool cancel(std::string message = "") { return core_->cancel(message); }
  std::string get_name() const { return core_->name(); }
  void set_name(std::string name) { core_->set_name(std::move(name)); }
  int cancelling() const { return core_->cancelling(); }
  int uncancel() { return core_->uncancel(); }
  std::exception_ptr exception() const { return core_->exception(); }
  EventLoop& get_loop() const { return core_->loop(); }

  futures_internal::FutureAwaiter<void> operator co_await() const noexcept {
    return futures_internal::FutureAwaiter<void>(core_);
  }
  friend bool operator==(const AnyTask& a, const AnyTask& b) { return a.core_ == b.core_; }

 private:
  friend struct futures_internal::Access;
  // Takes a new reference to `core`.
  explicit AnyTask(futures_internal::TaskCore* core) noexcept : core_(core) { core_->add_ref(); }

  futures_internal::TaskCore* core_;
};

// ---------------------------------------------------------------------------
// Traits

template <class T>
constexpr bool iscoroutine = futures_internal::IsCoro<std::remove_cvref_t<T>>::value;
template <class T>
constexpr bool isfuture = futures_internal::IsFuture<std::remove_cvref_t<T>>::value;

// The result type of awaiting a Coro<T>, Future<T> or Task<T>.
template <class A>
using await_result_t = typename futures_internal::AwaitResult<std::remove_cvref_t<A>>::type;

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
  return futures_internal::Access::adopt_task<T>(&core);
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
// asyncio.current_task(loop) and all_tasks(loop), for a given loop: a loop
// that is not running on this thread has no current task (its tasks run on
// its own thread, if any).
std::optional<AnyTask> current_task(EventLoop& loop);
std::vector<AnyTask> all_tasks(EventLoop& loop);

// ---------------------------------------------------------------------------
// Sleeping

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

// ---------------------------------------------------------------------------
// Implementation details

inline futures_internal::TaskCore* futures_internal::Access::core(const AnyTask& task) noexcept {
  return task.core_;
}

inline AnyTask futures_internal::Access::any_task(TaskCore* core) noexcept { return AnyTask(core); }

inline Future<void> futures_internal::Access::as_future(const AnyTask& task) noexcept {
  task.core_->add_ref();
  return Future<void>(task.core_);
}

}  // namespace asyncio
