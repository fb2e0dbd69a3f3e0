// TaskGroup: structured concurrency, as asyncio.TaskGroup.
#pragma once

#include <exception>
#include <memory>
#include <source_location>
#include <string>
#include <utility>

#include "futures/coro.h"
#include "futures/future.h"
#include "futures/internal/core.h"
#include "futures/task.h"
#include "loop/loop.h"

namespace asyncio {

namespace futures_internal {
struct TaskGroupState;
}  // namespace futures_internal

// Create tasks in the group, then `co_await group.join()`: it waits for all
// of them. When one fails, the others and the task that owns the group are
// cancelled, and join() throws an ExceptionGroup holding every failure. As in
// 3.13, if the owner was also cancelled from outside, the ExceptionGroup wins
// but that cancellation stays pending: the owner's next await raises it.
//
//   asyncio::TaskGroup group;
//   auto a = group.create_task(fetch(1));
//   auto b = group.create_task(fetch(2));
//   co_await group.join();
//
// To mirror `async with` when the body itself may throw, pass its exception
// to join(): `std::exception_ptr e; try { ... } catch (...) { e =
// std::current_exception(); } co_await group.join(e);`
class TaskGroup {
 public:
  // Must be created inside a task (the group's parent).
  TaskGroup();
  // A group never joined cancels the tasks still running.
  ~TaskGroup();
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  // tg.create_task(coro, name=name): as asyncio::create_task, on the group's
  // loop; the group tracks the task.
  template <class T>
  Task<T> create_task(Coro<T> coro, std::string name = "",
                      std::source_location where = std::source_location::current());
  // tg.create_task(coro, name=..., context=..., eager_start=...).
  template <class T>
  Task<T> create_task(Coro<T> coro, TaskOptions options,
                      std::source_location where = std::source_location::current());

  // __aexit__: waits for every task; `body_exception` is what escaped the
  // body, if anything.
  Coro<void> join(std::exception_ptr body_exception = nullptr);

 private:
  std::shared_ptr<futures_internal::TaskGroupState> state_;
};

// ---------------------------------------------------------------------------
// Implementation details

namespace futures_internal {
void track_in_group(const std::shared_ptr<TaskGroupState>& group, AnyTask task,
                    Future<void> completion);
EventLoop& group_loop(const TaskGroupState& group);
void check_group_accepts_tasks(const TaskGroupState& group);
}  // namespace futures_internal

template <class T>
Task<T> TaskGroup::create_task(Coro<T> coro, std::string name, std::source_location where) {
  return create_task(std::move(coro), TaskOptions{.name = std::move(name)}, where);
}

template <class T>
Task<T> TaskGroup::create_task(Coro<T> coro, TaskOptions options, std::source_location where) {
  try {
    futures_internal::check_group_accepts_tasks(*state_);
  } catch (...) {
    coro.close();  // as asyncio: a refused coroutine is closed, not reported as never awaited
    throw;
  }
  Task<T> task = asyncio::create_task(futures_internal::group_loop(*state_), std::move(coro),
                                      std::move(options), where);
  AnyTask tracked(task);
  futures_internal::track_in_group(state_, tracked, futures_internal::Access::as_future(tracked));
  return task;
}

}  // namespace asyncio
