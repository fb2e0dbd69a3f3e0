// //futures: coroutines, futures and tasks — asyncio's core, for C++20.
//
//   asyncio::Coro<int> compute() { co_await asyncio::sleep(10ms); co_return 42; }
//   int main() { return asyncio::run(compute()) == 42 ? 0 : 1; }
//
// Coro<T> is what every coroutine returns; `co_await` on it runs it inline.
// create_task() runs it concurrently as a Task<T>, which is a Future<T>.
// Cancellation, gather, wait, wait_for, shield, as_completed and TaskGroup
// follow asyncio 3.12.
//
// This header includes the package's public headers, one per concept; each
// can also be included on its own.
#pragma once

// Future<T>, create_future, and the errors: CancelledError, TimeoutError,
// InvalidStateError, ExceptionGroup.
#include "futures/future.h"

// Coro<T>, the return type of every coroutine.
#include "futures/coro.h"

// Task<T>, AnyTask, create_task, ensure_future, current_task, all_tasks,
// sleep; the traits iscoroutine, isfuture, await_result_t.
#include "futures/task.h"

// repr, get_stack, print_stack: looking at tasks.
#include "futures/introspection.h"

// capture_call_graph, format_call_graph, print_call_graph,
// future_add_to_awaited_by, format_tasks_table, format_task_tree: who awaits
// whom.
#include "futures/call_graph.h"

// dump_all_tasks, enable_task_dump, enable_debug_socket: every loop's tasks,
// on a signal or asked for through a Unix socket (tools/asyncio_ps).
#include "futures/debug_dump.h"

// run, Runner and run_until_complete: drive a loop until a coroutine is done;
// shutdown_default_executor.
#include "futures/run.h"

// gather, wait, wait_for, shield, as_completed.
#include "futures/combinators.h"

// TaskGroup: structured concurrency.
#include "futures/task_group.h"

// timeout, timeout_at, Timeout: one deadline over several awaits.
#include "futures/timeouts.h"

// AsyncGenerator<T> and shutdown_asyncgens.
#include "futures/async_generator.h"

// WaiterQueue and LoopBinding, for primitives built on futures (//sync,
// //queues).
#include "futures/waiters.h"
