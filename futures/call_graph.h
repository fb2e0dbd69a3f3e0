// Who awaits whom: call graphs of tasks and futures (Python 3.14's
// asyncio.capture_call_graph, format_call_graph, print_call_graph,
// future_add_to_awaited_by, future_discard_from_awaited_by), and a dump of a
// loop's tasks as a table and as a tree (3.14's `python -m asyncio ps` and
// `pstree`, in process).
//
//   Python                                       C++
//   asyncio.capture_call_graph(task, limit=2)    asyncio::capture_call_graph(task, 2)
//   asyncio.capture_call_graph()                 asyncio::capture_call_graph()  (current task)
//   asyncio.format_call_graph(fut)               asyncio::format_call_graph(fut)
//   asyncio.print_call_graph(fut, file=f)        asyncio::print_call_graph(fut, std::nullopt, f)
//   asyncio.future_add_to_awaited_by(f, w)       asyncio::future_add_to_awaited_by(f, w)
//   asyncio.future_discard_from_awaited_by(f, w) asyncio::future_discard_from_awaited_by(f, w)
//   python -m asyncio ps PID                     asyncio::format_tasks_table(loop)
//   python -m asyncio pstree PID                 asyncio::format_task_tree(loop)
//
// print_call_graph(task) prints, as 3.14 does:
//
//   * Task(name='fetch-a', id=0x5581f3c0)
//     + Call stack:
//     |   in async app::read_reply()
//     |   in async app::fetch()
//     + Awaited by:
//       * Task(name='main', id=0x5581e2a0)
//         + Call stack:
//         |   in async asyncio::TaskGroup::join()
//         |   in async app::main()
//
// Nothing is recorded for this while the program runs: a task's frames are
// the chain get_stack walks, and who awaits a future is read from its
// done-callbacks (a task's wake-up, gather's and wait's nodes, and the nodes
// of future_add_to_awaited_by, which TaskGroup, shield and as_completed
// add). A frame is named by the symbol of its coroutine's body (read from
// the binary's symbol table). Built with ASYNCIO_AWAIT_LOCATIONS defined
// (`--config=await_locations`), each Coro also keeps the co_await it is
// suspended at, and frames read as Python's:
//
//     |   File 'app/fetch.cc', line 42, in async app::read_reply()
//
// That is off by default: a store per co_await and a pointer per frame.
// Call these on the loop's thread, as any task method.
#pragma once

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "futures/future.h"
#include "futures/internal/core.h"
#include "futures/introspection.h"
#include "futures/task.h"
#include "loop/loop.h"

namespace asyncio {

// FrameCallGraphEntry: one coroutine frame of a call stack.
struct FrameCallGraphEntry {
  TaskFrame frame;
  // The coroutine's function, demangled without its parameters
  // ("app::fetch()"), or the module and offset of its body if the binary
  // has no symbol for it.
  std::string function;
  // With ASYNCIO_AWAIT_LOCATIONS: the co_await the frame is suspended at.
  // Otherwise, and for the running task's frame or a frame that is not a
  // Coro's, empty and 0.
  std::string file;
  unsigned line = 0;
};

// FutureCallGraph(future, call_stack, awaited_by).
struct FutureCallGraph {
  Future<void> future;          // the future or task (its result type erased)
  std::optional<AnyTask> task;  // set when `future` is a task
  // Innermost (the frame that awaits) first, the task's own coroutine last;
  // empty for a plain future, a task that is done, or a task not started.
  std::vector<FrameCallGraphEntry> call_stack;
  std::vector<FutureCallGraph> awaited_by;  // the futures and tasks awaiting this one
};

// capture_call_graph(future, *, limit=None): `limit` as 3.14: positive keeps
// the `limit` outermost frames of each call stack, negative the -`limit`
// innermost ones, 0 none. Python's `depth` is left out: it skips frames of
// the running task's live stack, which C++ cannot walk; the running task's
// call stack is its own coroutine (frames are known at suspension points).
FutureCallGraph capture_call_graph(const AnyTask& task, std::optional<int> limit = std::nullopt);
template <class T>
FutureCallGraph capture_call_graph(const Future<T>& future,
                                   std::optional<int> limit = std::nullopt);
// capture_call_graph(): the current task's graph; nullopt outside a task.
// Throws std::runtime_error outside a running loop, as Python.
std::optional<FutureCallGraph> capture_call_graph(std::optional<int> limit = std::nullopt);

// format_call_graph(future, *, limit=None): the text shown above ("" for
// no current task).
std::string format_call_graph(const FutureCallGraph& graph);
std::string format_call_graph(const AnyTask& task, std::optional<int> limit = std::nullopt);
template <class T>
std::string format_call_graph(const Future<T>& future, std::optional<int> limit = std::nullopt);
std::string format_call_graph(std::optional<int> limit = std::nullopt);

// print_call_graph(future, *, file=None, limit=None): format_call_graph and
// a newline, written to `file`.
void print_call_graph(const AnyTask& task, std::optional<int> limit = std::nullopt,
                      std::FILE* file = stdout);
template <class T>
void print_call_graph(const Future<T>& future, std::optional<int> limit = std::nullopt,
                      std::FILE* file = stdout);
void print_call_graph(std::optional<int> limit = std::nullopt, std::FILE* file = stdout);

// future_add_to_awaited_by(fut, waiter): records that `waiter` (a future or
// task) awaits `fut`, for code that awaits by callback. The record goes when
// `fut` completes or with future_discard_from_awaited_by(fut, waiter);
// adding it twice records it once. Both must belong to one loop.
template <class F, class W>
void future_add_to_awaited_by(const F& fut, const W& waiter);
template <class F, class W>
void future_discard_from_awaited_by(const F& fut, const W& waiter);

// `python -m asyncio ps`: one row per pending task of `loop` and task that
// awaits it, with the columns task id, task name, state (pending,
// cancelling, running), coroutine stack (innermost first), awaiter chain
// (the awaiting task's coroutine stack), awaiter name and awaiter id.
std::string format_tasks_table(EventLoop& loop);

// `python -m asyncio pstree`: the pending tasks of `loop` as trees, each
// awaiting task above its coroutine frames and, under the innermost one, the
// tasks it awaits. Tasks awaiting each other in a cycle cannot be drawn as a
// tree: each cycle is listed after the trees ("cycle: a -> b -> a").
//
//   └── (T) main
//       └──  app::main()
//           └──  asyncio::TaskGroup::join()
//               ├── (T) fetch-a
//               │   └──  app::fetch()
//               └── (T) fetch-b
//                   └──  app::fetch()
std::string format_task_tree(EventLoop& loop);

// ---------------------------------------------------------------------------
// Implementation details

namespace futures_internal {
FutureCallGraph capture_call_graph_of(FutureStateBase* future, std::optional<int> limit);
inline FutureStateBase* graph_state(const AnyTask& task) noexcept { return Access::core(task); }
template <class T>
FutureStateBase* graph_state(const Future<T>& future) {
  FutureStateBase* state = Access::state(future);
  if (state == nullptr) throw InvalidStateError("empty Future");
  return state;
}
}  // namespace futures_internal

template <class T>
FutureCallGraph capture_call_graph(const Future<T>& future, std::optional<int> limit) {
  return futures_internal::capture_call_graph_of(futures_internal::graph_state(future), limit);
}

template <class T>
std::string format_call_graph(const Future<T>& future, std::optional<int> limit) {
  return format_call_graph(capture_call_graph(future, limit));
}

template <class T>
void print_call_graph(const Future<T>& future, std::optional<int> limit, std::FILE* file) {
  std::string text = format_call_graph(future, limit) + "\n";
  std::fwrite(text.data(), 1, text.size(), file);
  std::fflush(file);
}

template <class F, class W>
void future_add_to_awaited_by(const F& fut, const W& waiter) {
  futures_internal::add_awaited_by(futures_internal::graph_state(fut),
                                   futures_internal::graph_state(waiter));
}

template <class F, class W>
void future_discard_from_awaited_by(const F& fut, const W& waiter) {
  futures_internal::discard_awaited_by(futures_internal::graph_state(fut),
                                       futures_internal::graph_state(waiter));
}

}  // namespace asyncio
