// Micro benchmarks of //queues and //sync: queue throughput between two
// tasks, and the memory a task costs while it is suspended on an Event.
#include <malloc.h>

#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "futures/futures.h"
#include "loop/loop.h"
#include "queues/queues.h"
#include "sync/sync.h"
#include "tools/bench/alloc_counter.h"

namespace asyncio::bench {
namespace {

constexpr int64_t kItems = 1'000'000;
constexpr int64_t kSuspendedTasks = 100'000;

// ---------------------------------------------------------------------------
// Queue

Coro<void> produce(Queue<int64_t>& queue, int64_t n) {
  for (int64_t i = 0; i < n; ++i) co_await queue.put(i);
}

Coro<void> consume(Queue<int64_t>& queue, int64_t n, int64_t* sum) {
  for (int64_t i = 0; i < n; ++i) *sum += co_await queue.get();
}

Coro<int64_t> producer_consumer(size_t maxsize, int64_t n) {
  Queue<int64_t> queue(maxsize);
  int64_t sum = 0;
  Task<void> consumer = create_task(consume(queue, n, &sum));
  Task<void> producer = create_task(produce(queue, n));
  co_await producer;
  co_await consumer;
  co_return sum;
}

// A producer task puts kItems integers, a consumer task gets them. With
// maxsize 0 (unbounded) put never blocks; with maxsize 1 the two tasks
// alternate on every item.
void queue_put_get(benchmark::State& state) {
  const auto maxsize = static_cast<size_t>(state.range(0));
  auto loop = new_event_loop();
  const int64_t expected = kItems * (kItems - 1) / 2;
  for (auto _ : state) {
    if (run_until_complete(*loop, producer_consumer(maxsize, kItems)) != expected) {
      state.SkipWithError("wrong sum");
    }
  }
  state.SetItemsProcessed(state.iterations() * kItems);
}
BENCHMARK(queue_put_get)
    ->ArgName("maxsize")
    ->Arg(0)
    ->Arg(1)
    ->Iterations(3)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ---------------------------------------------------------------------------
// Memory per suspended task

Coro<void> wait_for_event(Event& event) { co_await event.wait(); }

struct MemoryReport {
  int64_t new_bytes = 0;  // asked of operator new while creating and suspending
  int64_t new_calls = 0;
  int64_t malloc_bytes = 0;  // growth of malloc's in-use bytes (with its overhead)
  double create_seconds = 0;
};

Coro<void> suspend_many(int64_t n, MemoryReport* report) {
  Event event;
  std::vector<Task<void>> tasks;
  tasks.reserve(n);  // the handles are the caller's, not the tasks' cost
  co_await sleep(std::chrono::seconds(0));
  const int64_t bytes_before = thread_new_bytes();
  const int64_t calls_before = thread_new_calls();
  const auto malloc_before = static_cast<int64_t>(mallinfo2().uordblks);
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < n; ++i) tasks.push_back(create_task(wait_for_event(event)));
  // One loop iteration: every task runs up to event.wait() and suspends.
  co_await sleep(std::chrono::seconds(0));
  report->create_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  report->new_bytes = thread_new_bytes() - bytes_before;
  report->new_calls = thread_new_calls() - calls_before;
  report->malloc_bytes = static_cast<int64_t>(mallinfo2().uordblks) - malloc_before;
  for (const Task<void>& t : tasks) {
    if (t.done()) throw std::logic_error("a task finished before the event was set");
  }
  event.set();
  for (Task<void>& t : tasks) co_await t;
}

// 100k tasks blocked on one Event. Runs on a fresh thread so that the
// library's per-thread free lists start empty and every block it takes is
// counted.
void memory_per_suspended_task(benchmark::State& state) {
  MemoryReport report;
  for (auto _ : state) {
    std::thread worker([&report] {
      auto loop = new_event_loop();
      run_until_complete(*loop, suspend_many(kSuspendedTasks, &report));
    });
    worker.join();
  }
  const double n = static_cast<double>(kSuspendedTasks);
  state.counters["bytes_per_task"] = static_cast<double>(report.new_bytes) / n;
  state.counters["allocs_per_task"] = static_cast<double>(report.new_calls) / n;
  state.counters["malloc_bytes_per_task"] = static_cast<double>(report.malloc_bytes) / n;
  state.counters["suspended_tasks_per_second"] = n / report.create_seconds;
}
BENCHMARK(memory_per_suspended_task)->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace asyncio::bench
