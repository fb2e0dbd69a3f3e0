// Looking at tasks: repr, get_stack and print_stack (asyncio's repr(task),
// Task.get_stack, Task.print_stack).
//
//   for (const asyncio::AnyTask& t : asyncio::all_tasks(loop)) {
//     std::puts(asyncio::repr(t).c_str());  // <Task pending name='Task-3' wait_for=<Future
//     pending>> asyncio::print_stack(t);             // its chain of awaiting coroutines
//   }
//
// All of them read what the tasks record anyway (their state, the future they
// wait on, the parent link of each awaited Coro): they cost nothing until
// called. Call them on the loop's thread, as any task method.
#pragma once

#include <cstddef>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "futures/task.h"

namespace asyncio {

// repr(task): "<Task pending name='Task-1' wait_for=<Future pending>>";
// the state is pending, cancelling (a cancel() was requested), finished
// (with "exception=..." if it failed) or cancelled. C++ has no coroutine
// names or results to print generically, so those are left out.
std::string repr(const AnyTask& task);

// One frame of a task's chain of awaiting coroutines.
struct TaskFrame {
  enum class Kind {
    kCoroutine,       // a Coro
    kAsyncGenerator,  // an AsyncGenerator's body; the chain is not followed further
    kOther,           // a coroutine of another type; not followed further
  };
  Kind kind;
  const void* address;  // std::coroutine_handle<>::address() of the frame
  const void* resume;   // the code that resumes it: the coroutine's body
};

// Task.get_stack(limit=None): the coroutines a suspended task is awaiting
// through, outermost (the task's own coroutine) first, innermost (the one
// waiting on a future) last; `limit` keeps the innermost ones, as asyncio
// keeps the newest frames of a stack. A task that is done has none (C++ keeps
// no traceback); the running task has its outermost coroutine only, its
// chain being known at suspension points.
std::vector<TaskFrame> get_stack(const AnyTask& task, std::optional<size_t> limit = std::nullopt);

// Task.print_stack(limit=None, file=None): writes repr(task) and get_stack()
// to `file`, one frame per line with the symbol (when the binary exports it)
// or the module and offset of the frame's body, for addr2line.
void print_stack(const AnyTask& task, std::optional<size_t> limit = std::nullopt,
                 std::FILE* file = stderr);

}  // namespace asyncio
