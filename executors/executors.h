// //executors: thread and process pools, and the bridges between threads and
// the event loop — concurrent.futures and asyncio's run_in_executor,
// to_thread, run_coroutine_threadsafe and wrap_future.
//
//   asyncio::concurrent::ThreadPoolExecutor pool;
//   auto f = pool.submit([](int x) { return x * 2; }, 21);   // concurrent::Future<int>
//   int v = f.result();                                       // 42, from any thread
//
//   // in a coroutine on the loop:
//   std::string data = co_await asyncio::to_thread(read_file, path);
//   long sum = co_await asyncio::run_in_executor(loop, &process_pool, &cpu_bound);
//
//   // from a plain thread:
//   int r = asyncio::run_coroutine_threadsafe(compute(), loop).result(1s);
//
// concurrent::Future is thread-safe (mutex + condition variable); asyncio's
// Future stays loop-affine, and the bridges only ever touch it on its loop's
// thread. Cancellation crosses in both directions, and a loop that closes
// fails the concurrent futures still waiting on it.
//
// This header includes the package's public headers, one per concept; each
// can also be included on its own.
#pragma once

// concurrent::Future<T>: the thread-safe future.
#include "executors/concurrent_future.h"

// concurrent::Executor and concurrent::ThreadPoolExecutor.
#include "executors/thread_pool.h"

// concurrent::ProcessPoolExecutor and BrokenProcessPool.
#include "executors/process_pool.h"

// wrap_future, run_in_executor, to_thread, run_coroutine_threadsafe.
#include "executors/bridges.h"
