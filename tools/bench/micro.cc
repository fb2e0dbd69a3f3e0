// Micro benchmarks of the event loop and of futures/tasks.
//
//   bazel run --config=opt //tools/bench:micro
//   bazel run --config=opt //tools/bench:compare     # side by side with uvloop/asyncio
//
// Every benchmark does a fixed amount of work per iteration and reports
// items/s over wall-clock time (UseRealTime), so that rates compare directly
// with tools/bench/micro.py, which runs the same workloads on CPython's
// asyncio and on uvloop: keep the work sizes of both in step. Loops are
// created outside the timed region and reused across iterations. The queue
// and event benchmarks are in micro_sync.cc.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "futures/futures.h"
#include "loop/loop.h"
#include "tools/bench/alloc_counter.h"
#include "tools/bench/workloads.h"

namespace asyncio::bench {
namespace {

using std::chrono::seconds;

// The allocations (operator new calls on the loop's thread) per item of the
// last iteration, once pools and vectors are warm: 0 on the hot paths.
class SteadyStateAllocations {
 public:
  void start_iteration() { calls_at_start_ = thread_new_calls(); }
  void end_iteration() { last_iteration_calls_ = thread_new_calls() - calls_at_start_; }
  void report(benchmark::State& state, int64_t items_per_iteration) const {
    state.counters["allocs_per_item"] =
        static_cast<double>(last_iteration_calls_) / static_cast<double>(items_per_iteration);
  }

 private:
  int64_t calls_at_start_ = 0;
  int64_t last_iteration_calls_ = 0;
};

constexpr int64_t kCallbacks = 1'000'000;
constexpr int64_t kTasks = 1'000'000;
constexpr int64_t kAwaits = 10'000'000;
constexpr int64_t kSwitches = 1'000'000;
constexpr int64_t kFutures = 1'000'000;

// ---------------------------------------------------------------------------
// call_soon

// One callback that re-schedules itself: every loop iteration runs one.
void call_soon_chained(benchmark::State& state) {
  auto loop = new_event_loop();
  struct Step {
    EventLoop* loop;
    int64_t* remaining;
    void operator()() const {
      if (--*remaining > 0) {
        loop->call_soon(*this);
      } else {
        loop->stop();
      }
    }
  };
  SteadyStateAllocations allocations;
  for (auto _ : state) {
    allocations.start_iteration();
    int64_t remaining = kCallbacks;
    loop->call_soon(Step{loop.get(), &remaining});
    loop->run_forever();
    allocations.end_iteration();
  }
  state.SetItemsProcessed(state.iterations() * kCallbacks);
  allocations.report(state, kCallbacks);
}
BENCHMARK(call_soon_chained)->Iterations(kIterations)->UseRealTime()->Unit(benchmark::kMillisecond);

// Batches of `batch` callbacks scheduled from outside the loop, then run.
void call_soon_batched(benchmark::State& state) {
  const int64_t batch = state.range(0);
  auto loop = new_event_loop();
  int64_t ran = 0;
  SteadyStateAllocations allocations;
  for (auto _ : state) {
    allocations.start_iteration();
    for (int64_t done = 0; done < kCallbacks; done += batch) {
      for (int64_t i = 0; i < batch; ++i) loop->call_soon([&ran] { ++ran; });
      loop->call_soon([&loop] { loop->stop(); });
      loop->run_forever();
    }
    allocations.end_iteration();
  }
  if (ran != state.iterations() * kCallbacks) state.SkipWithError("lost callbacks");
  state.SetItemsProcessed(state.iterations() * kCallbacks);
  allocations.report(state, kCallbacks);
}
BENCHMARK(call_soon_batched)
    ->Arg(1000)
    ->Arg(kCallbacks)
    ->Iterations(kIterations)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ---------------------------------------------------------------------------
// Coroutines and tasks

Coro<int> trivial(int i) { co_return i; }

Coro<int64_t> create_and_await_tasks(int64_t n) {
  int64_t sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += co_await create_task(trivial(static_cast<int>(i)));
  co_return sum;
}

// create_task + co_await of a coroutine that returns at once, in one task.
void create_task_await(benchmark::State& state) {
  auto loop = new_event_loop();
  SteadyStateAllocations allocations;
  for (auto _ : state) {
    allocations.start_iteration();
    benchmark::DoNotOptimize(run_until_complete(*loop, create_and_await_tasks(kTasks)));
    allocations.end_iteration();
  }
  state.SetItemsProcessed(state.iterations() * kTasks);
  allocations.report(state, kTasks);
}
BENCHMARK(create_task_await)->Iterations(kIterations)->UseRealTime()->Unit(benchmark::kMillisecond);

// Eager tasks: the same trivial coroutines, scheduled (mode 0) or started
// inside create_task (mode 1: eager_start = true; mode 2: through
// eager_task_factory, which adds the task factory's call).
enum EagerMode : int64_t { kScheduled = 0, kEagerStart = 1, kEagerFactory = 2 };

TaskOptions eager_mode_options(int64_t mode) {
  return {.eager_start = mode == kEagerStart ? std::optional<bool>(true) : std::nullopt};
}

// Runs `workload(kTasks, mode)` once per iteration, mode from the argument.
void run_in_eager_mode(benchmark::State& state, Coro<int64_t> (*workload)(int64_t, int64_t)) {
  const int64_t mode = state.range(0);
  auto loop = new_event_loop();
  set_task_factory(*loop, mode == kEagerFactory ? TaskFactory(eager_task_factory) : nullptr);
  for (auto _ : state) benchmark::DoNotOptimize(run_until_complete(*loop, workload(kTasks, mode)));
  state.SetItemsProcessed(state.iterations() * kTasks);
}

void eager_modes(benchmark::internal::Benchmark* b) {
  b->ArgName("mode")->Arg(kScheduled)->Arg(kEagerStart)->Arg(kEagerFactory);
  b->Iterations(kIterations)->UseRealTime()->Unit(benchmark::kMillisecond);
}

Coro<int64_t> create_and_await_tasks_in_mode(int64_t n, int64_t mode) {
  int64_t sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    sum += co_await create_task(trivial(static_cast<int>(i)), eager_mode_options(mode));
  }
  co_return sum;
}

// create_task + co_await, one at a time: a scheduled task costs the creator a
// loop round trip; an eager one is done before create_task returns.
void create_task_await_eager(benchmark::State& state) {
  run_in_eager_mode(state, create_and_await_tasks_in_mode);
}
BENCHMARK(create_task_await_eager)->Apply(eager_modes);

Coro<int64_t> create_batches_then_await(int64_t n, int64_t mode) {
  constexpr int64_t batch = 1000;
  int64_t sum = 0;
  std::vector<Task<int>> tasks;
  tasks.reserve(static_cast<size_t>(batch));
  for (int64_t done = 0; done < n; done += batch) {
    for (int64_t i = 0; i < batch; ++i) {
      tasks.push_back(create_task(trivial(static_cast<int>(i)), eager_mode_options(mode)));
    }
    for (Task<int>& t : tasks) sum += co_await t;
    tasks.clear();
  }
  co_return sum;
}

// Batches of 1000 tasks created, then awaited: scheduled tasks share loop
// iterations, so this is the smaller of the two savings.
void create_tasks_then_await_eager(benchmark::State& state) {
  run_in_eager_mode(state, create_batches_then_await);
}
BENCHMARK(create_tasks_then_await_eager)->Apply(eager_modes);

Coro<int64_t> await_coros(int64_t n) {
  int64_t sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += co_await trivial(static_cast<int>(i));
  co_return sum;
}

// co_await of a Coro that returns at once: a frame, no loop round trip.
void coro_await(benchmark::State& state) {
  auto loop = new_event_loop();
  for (auto _ : state) {
    benchmark::DoNotOptimize(run_until_complete(*loop, await_coros(kAwaits)));
  }
  state.SetItemsProcessed(state.iterations() * kAwaits);
}
BENCHMARK(coro_await)->Iterations(kIterations)->UseRealTime()->Unit(benchmark::kMillisecond);

Coro<void> yield_n_times(int64_t n, int64_t* resumes) {
  for (int64_t i = 0; i < n; ++i) {
    co_await sleep(seconds(0));
    ++*resumes;
  }
}

Coro<int64_t> two_yielding_tasks(int64_t n) {
  int64_t resumes = 0;
  Task<void> a = create_task(yield_n_times(n / 2, &resumes));
  Task<void> b = create_task(yield_n_times(n / 2, &resumes));
  co_await a;
  co_await b;
  co_return resumes;
}

// Two tasks taking turns with sleep(0); every resume counts.
void sleep0_switch(benchmark::State& state) {
  auto loop = new_event_loop();
  SteadyStateAllocations allocations;
  for (auto _ : state) {
    allocations.start_iteration();
    if (run_until_complete(*loop, two_yielding_tasks(kSwitches)) != kSwitches) {
      state.SkipWithError("lost switches");
    }
    allocations.end_iteration();
  }
  state.SetItemsProcessed(state.iterations() * kSwitches);
  allocations.report(state, kSwitches);
}
BENCHMARK(sleep0_switch)->Iterations(kIterations)->UseRealTime()->Unit(benchmark::kMillisecond);

Coro<int64_t> await_futures(EventLoop& loop, int64_t n) {
  int64_t sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    Future<int> f = create_future<int>(loop);
    loop.call_soon([f, i]() mutable { f.set_result(static_cast<int>(i)); });
    sum += co_await f;
  }
  co_return sum;
}

// A task awaits a new future that a call_soon callback resolves:
//   fut = loop.create_future(); loop.call_soon(fut.set_result, i); await fut
void future_set_result_await(benchmark::State& state) {
  auto loop = new_event_loop();
  SteadyStateAllocations allocations;
  for (auto _ : state) {
    allocations.start_iteration();
    benchmark::DoNotOptimize(run_until_complete(*loop, await_futures(*loop, kFutures)));
    allocations.end_iteration();
  }
  state.SetItemsProcessed(state.iterations() * kFutures);
  allocations.report(state, kFutures);
}
BENCHMARK(future_set_result_await)
    ->Iterations(kIterations)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ---------------------------------------------------------------------------
// Timers

// Schedules one call_later per delay, then runs the loop until the last
// fires; rated per wall-clock second, with the loop's CPU cost beside it.
void run_timer_burst(benchmark::State& state, const std::vector<double>& delays) {
  const auto timers = static_cast<int64_t>(delays.size());
  auto loop = new_event_loop();
  double cpu = 0;
  SteadyStateAllocations allocations;
  for (auto _ : state) {
    allocations.start_iteration();
    const double cpu_start = thread_cpu_seconds();
    // Two words of captures: the callback fits in the AnyInvocable itself.
    int64_t unfired = timers;
    EventLoop* l = loop.get();
    for (double d : delays) {
      l->call_later(std::chrono::duration<double>(d), [l, &unfired] {
        if (--unfired == 0) l->stop();
      });
    }
    l->run_forever();
    cpu += thread_cpu_seconds() - cpu_start;
    allocations.end_iteration();
  }
  state.SetItemsProcessed(state.iterations() * timers);
  state.counters["timers_per_cpu_second"] = static_cast<double>(state.iterations() * timers) / cpu;
  allocations.report(state, timers);
}

// 100k call_later timers with random delays in [0, 10 ms], run until the last
// fires. Wall-clock bound: 100k timers cannot finish before 10 ms, so the
// rate tops out at 10M/s; `timers_per_cpu_second` shows the loop's cost.
void call_later_100k(benchmark::State& state) {
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> dist(0.0, kMaxTimerDelay);
  std::vector<double> delays(kTimers);
  for (double& d : delays) d = dist(rng);
  run_timer_burst(state, delays);
}
BENCHMARK(call_later_100k)->Iterations(5)->UseRealTime()->Unit(benchmark::kMillisecond);

// The same burst with one delay for all (10 ms): deadlines arrive in firing
// order, as when a loop arms the same timeout for many operations.
void call_later_100k_one_delay(benchmark::State& state) {
  run_timer_burst(state, std::vector<double>(kTimers, kMaxTimerDelay));
}
BENCHMARK(call_later_100k_one_delay)->Iterations(5)->UseRealTime()->Unit(benchmark::kMillisecond);

// 1M timers armed for a second and cancelled before they fire, what every
// wait_for whose awaitable finishes first does; 1000 per loop iteration, so
// that the loop's lazy cleanup of cancelled timers is part of the cost.
void timer_churn_1m(benchmark::State& state) {
  auto loop = new_event_loop();
  EventLoop* l = loop.get();
  int64_t ran = 0;
  SteadyStateAllocations allocations;
  for (auto _ : state) {
    allocations.start_iteration();
    for (int64_t done = 0; done < kChurnTimers; done += kChurnBatch) {
      for (int64_t i = 0; i < kChurnBatch; ++i) {
        l->call_later(seconds(1), [&ran] { ++ran; }).cancel();
      }
      l->call_soon([l] { l->stop(); });
      l->run_forever();
    }
    allocations.end_iteration();
  }
  if (ran != 0) state.SkipWithError("a cancelled timer ran");
  state.SetItemsProcessed(state.iterations() * kChurnTimers);
  allocations.report(state, kChurnTimers);
}
BENCHMARK(timer_churn_1m)->Iterations(kIterations)->UseRealTime()->Unit(benchmark::kMillisecond);

// ---------------------------------------------------------------------------
// call_soon_threadsafe

// Another thread posts a callback and blocks (futex, via std::atomic::wait)
// until the callback, run by the loop, bumps the counter; then again.
void call_soon_threadsafe_roundtrip(benchmark::State& state) {
  auto loop = new_event_loop();
  EventLoop* l = loop.get();
  measure_round_trips(
      state, [l](auto callback) { l->call_soon_threadsafe(std::move(callback)); },
      [l] { l->call_soon_threadsafe([l] { l->stop(); }); }, [l] { l->run_forever(); });
}
BENCHMARK(call_soon_threadsafe_roundtrip)
    ->Iterations(kIterations)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace asyncio::bench
