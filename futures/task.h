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
#include <concepts>
#include <exception>
#include <functional>
#include <optional>
#include <source_location>
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

  // Task.get_coro(), as an identity: the address of the task's outermost
  // coroutine frame while the task is pending (the `address` of the first
  // get_stack() frame), nullptr once it is done (C++ frees the frame then;
  // asyncio 3.12+ also returns None for some finished tasks).
  const void* get_coro() const { return futures_internal::coroutine_identity(*core()); }
  std::string get_name() const { return core()->name(); }
  // Python 3.12's Task.get_context(): the contextvars Context it runs in.
  Context get_context() const { return core()->context(); }
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
  // asyncio.Task(coro, loop=loop, name=..., eager_start=...): makes a task
  // without consulting the loop's task factory (what a factory calls).
  // eager_start unset means false here, as in Python.
  AnyTask(AnyCoro coro, EventLoop& loop, TaskOptions options);
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
  const void* get_coro() const { return futures_internal::coroutine_identity(*core_); }
  std::string get_name() const { return core_->name(); }
  Context get_context() const { return core_->context(); }
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

// The keyword arguments of create_task, of a task factory and of the Task
// constructor (Python's **kwargs), as a struct for designated initializers:
//
//   create_task(work(), {.name = "worker", .eager_start = true})
//
// eager_start (Python 3.14): true runs the task's first step inside
// create_task when the loop is running (see "Eager tasks" below); false
// schedules it; unset leaves the choice to the loop's task factory (none, or
// any factory that does not look at it: scheduled; eager_task_factory: eager).
//
// context (Python's context=): the contextvars Context the task runs in;
// unset, the task runs in a copy of the context current at create_task.
struct TaskOptions {
  std::string name = {};  // empty: "Task-<n>"
  std::optional<bool> eager_start = std::nullopt;
  std::optional<Context> context = std::nullopt;
};

namespace futures_internal {
// What every create_task overload does; the name is passed by reference down
// to the task, as string moves are a measurable part of a task's creation.
template <class T>
Task<T> create_task_on(EventLoop& loop, Coro<T>& coro, std::string&& name,
                       std::optional<bool> eager_start, const Context* context,
                       std::source_location created_at) {
  if (loop.is_closed()) throw std::runtime_error("Event loop is closed");
  if (!coro.valid()) throw std::invalid_argument("create_task: empty Coro");
  loop.check_thread();  // debug mode: before the Coro gives up its frame
  auto handle = coro.release();
  TaskCore* core = start_new_task(loop, handle.promise(), handle, std::move(name), eager_start,
                                  context, created_at);
  return Access::adopt_task<T>(core);
}
}  // namespace futures_internal

// create_task(coro, name=...) / loop.create_task(coro, name=..., eager_start=...):
// wraps `coro` in a Task on `loop`. Unless the loop has a task factory or
// eager_start is set, the first step is scheduled with call_soon: the body
// does not start inside create_task. With a task factory, the factory makes
// the task (it must return the task made from `coro`, see below).
template <class T>
Task<T> create_task(EventLoop& loop, Coro<T> coro, TaskOptions options,
                    std::source_location where = std::source_location::current()) {
  return futures_internal::create_task_on(loop, coro, std::move(options.name), options.eager_start,
                                          options.context ? &*options.context : nullptr, where);
}

// The name as a plain argument, as before TaskOptions existed. A template,
// so that a braced list ({.name = ...}) can only mean TaskOptions.
template <class T, std::convertible_to<std::string> Name>
Task<T> create_task(EventLoop& loop, Coro<T> coro, Name&& name,
                    std::source_location where = std::source_location::current()) {
  return futures_internal::create_task_on(loop, coro, std::string(std::forward<Name>(name)),
                                          std::nullopt, nullptr, where);
}

template <class T>
Task<T> create_task(EventLoop& loop, Coro<T> coro,
                    std::source_location where = std::source_location::current()) {
  return futures_internal::create_task_on(loop, coro, std::string(), std::nullopt, nullptr, where);
}

// The same on the running loop.
template <class T>
Task<T> create_task(Coro<T> coro, TaskOptions options,
                    std::source_location where = std::source_location::current()) {
  return futures_internal::create_task_on(get_running_loop(), coro, std::move(options.name),
                                          options.eager_start,
                                          options.context ? &*options.context : nullptr, where);
}

template <class T, std::convertible_to<std::string> Name>
Task<T> create_task(Coro<T> coro, Name&& name,
                    std::source_location where = std::source_location::current()) {
  return futures_internal::create_task_on(get_running_loop(), coro,
                                          std::string(std::forward<Name>(name)), std::nullopt,
                                          nullptr, where);
}

template <class T>
Task<T> create_task(Coro<T> coro, std::source_location where = std::source_location::current()) {
  return futures_internal::create_task_on(get_running_loop(), coro, std::string(), std::nullopt,
                                          nullptr, where);
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

// ---------------------------------------------------------------------------
// Eager tasks and task factories (Python 3.12+)
//
// An eager task runs its first step synchronously inside create_task, with
// current_task() set to it and the caller's current task restored after. If
// the coroutine finishes without suspending, create_task returns a task that
// is already done and the loop never schedules it: no callback, no loop
// iteration. If it suspends, it continues on the loop like any task. An
// exception or cancellation in that first step lands in the task, never in
// the caller. On a loop that is not running, an eager task is scheduled as
// usual (as in Python).
//
//   Python                                     C++
//   loop.create_task(c, eager_start=True)      create_task(loop, c, {.eager_start = true})
//   loop.set_task_factory(f)                   set_task_factory(loop, f)
//   loop.set_task_factory(None)                set_task_factory(loop, nullptr)
//   loop.get_task_factory()                    get_task_factory(loop)  (empty: None)
//   asyncio.eager_task_factory                 asyncio::eager_task_factory
//   asyncio.create_eager_task_factory(Task)    create_eager_task_factory(ctor)
//   asyncio.Task(c, loop=loop, name=n)         AnyTask(std::move(c), loop, {.name = n})
//
// The factory is set through a free function taking the loop, not a method of
// EventLoop: //loop sits below tasks and cannot name them. It is kept in the
// per-loop state of //futures; with no factory set, create_task pays one
// pointer check.
//
// A factory gets the coroutine type-erased as an AnyCoro and must return the
// task it makes from that coroutine (create_task returns it as a Task<T>; any
// other task throws std::logic_error: C++ cannot give it the type T). Python
// factories return an instance of a Task subclass; C++ tasks cannot be
// subclassed (their state lives in the coroutine frame), so a factory's
// freedom is in what it does around making the task: name it, count it,
// choose eager_start, log.
//
//   asyncio::set_task_factory(loop, [](asyncio::EventLoop& loop, asyncio::AnyCoro coro,
//                                      asyncio::TaskOptions options) {
//     if (options.name.empty()) options.name = "worker";
//     return asyncio::AnyTask(std::move(coro), loop, std::move(options));
//   });

// An owned, not yet started coroutine of any result type: what a task
// factory receives. Destroying it destroys the frame.
class AnyCoro {
 public:
  template <class T>
  AnyCoro(Coro<T>&& coro) noexcept  // NOLINT: implicit by design
  {
    auto handle = coro.release();
    frame_ = handle;
    if (handle) core_ = &handle.promise();
  }
  AnyCoro(AnyCoro&& other) noexcept
      : frame_(std::exchange(other.frame_, {})), core_(std::exchange(other.core_, nullptr)) {}
  AnyCoro& operator=(AnyCoro other) noexcept {
    std::swap(frame_, other.frame_);
    std::swap(core_, other.core_);
    return *this;
  }
  // Dropped before it became a task (a factory that refused it): reported as
  // a Coro never awaited is (futures/coro.h).
  ~AnyCoro() {
    if (!frame_) return;
    if (core_ != nullptr && !core_->link_) [[unlikely]] {
      futures_internal::report_never_awaited(frame_.address());
    }
    frame_.destroy();
  }
  bool valid() const noexcept { return static_cast<bool>(frame_); }

 private:
  friend struct futures_internal::Access;
  AnyCoro(std::coroutine_handle<> frame, futures_internal::TaskCore* core) noexcept
      : frame_(frame), core_(core) {}
  std::coroutine_handle<> frame_;
  futures_internal::TaskCore* core_ = nullptr;
};

// factory(loop, coro, **kwargs) -> Task.
using TaskFactory = std::function<AnyTask(EventLoop& loop, AnyCoro coro, TaskOptions options)>;
// What create_eager_task_factory wraps: Task(coro, loop=loop, **kwargs).
using TaskConstructor = std::function<AnyTask(AnyCoro coro, EventLoop& loop, TaskOptions options)>;

// loop.set_task_factory(factory); an empty factory (nullptr) restores the
// default (Python's None).
void set_task_factory(EventLoop& loop, TaskFactory factory);
// loop.get_task_factory(): a copy of the factory, empty when none is set.
TaskFactory get_task_factory(EventLoop& loop);

// asyncio.eager_task_factory: makes every task eager unless create_task is
// given eager_start = false.
AnyTask eager_task_factory(EventLoop& loop, AnyCoro coro, TaskOptions options);

// asyncio.create_eager_task_factory(custom_task_constructor): a factory that
// calls `custom_task_constructor(coro, loop, options)` with eager_start
// defaulting to true.
TaskFactory create_eager_task_factory(TaskConstructor custom_task_constructor);

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

inline futures_internal::TaskCore* futures_internal::Access::release(AnyTask&& task) noexcept {
  return std::exchange(task.core_, nullptr);
}

inline AnyCoro futures_internal::Access::any_coro(std::coroutine_handle<> frame,
                                                  TaskCore* core) noexcept {
  return AnyCoro(frame, core);
}

inline std::pair<std::coroutine_handle<>, futures_internal::TaskCore*>
futures_internal::Access::release(AnyCoro&& coro) noexcept {
  return {std::exchange(coro.frame_, {}), std::exchange(coro.core_, nullptr)};
}

inline Future<void> futures_internal::Access::as_future(const AnyTask& task) noexcept {
  task.core_->add_ref();
  return Future<void>(task.core_);
}

}  // namespace asyncio
