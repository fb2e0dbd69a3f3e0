// Bridge throughput:
//   run_coroutine_threadsafe round trips per second (one at a time, and
//   pipelined in batches), run_in_executor and to_thread jobs per second,
//   ThreadPoolExecutor submit + result.
//
//   bazel run -c opt //executors:executors_bench
//   taskset -c 0 bazel-bin/executors/executors_bench    (one core)
#include <benchmark/benchmark.h>

#include <memory>
#include <thread>
#include <vector>

#include "executors/executors.h"
#include "futures/futures.h"
#include "loop/loop.h"

namespace asyncio {
namespace {

class LoopThread {
 public:
  LoopThread() : loop_(new_event_loop()) {
    thread_ = std::thread([this] { loop_->run_forever(); });
  }
  ~LoopThread() {
    loop_->call_soon_threadsafe([this] { loop_->stop(); });
    thread_.join();
  }
  EventLoop& loop() { return *loop_; }

 private:
  std::unique_ptr<EventLoop> loop_;
  std::thread thread_;
};

Coro<int> identity(int i) { co_return i; }

// One call at a time: submit, block on the result.
void BM_RunCoroutineThreadsafe_RoundTrip(benchmark::State& state) {
  LoopThread lt;
  int i = 0;
  for (auto _ : state) {
    int v = run_coroutine_threadsafe(identity(i++), lt.loop()).result();
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RunCoroutineThreadsafe_RoundTrip)->UseRealTime();

// `batch` calls in flight, then all results.
void BM_RunCoroutineThreadsafe_Pipelined(benchmark::State& state) {
  LoopThread lt;
  const int batch = static_cast<int>(state.range(0));
  std::vector<concurrent::Future<int>> futures;
  futures.reserve(batch);
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i)
      futures.push_back(run_coroutine_threadsafe(identity(i), lt.loop()));
    for (auto& f : futures) benchmark::DoNotOptimize(f.result());
    futures.clear();
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_RunCoroutineThreadsafe_Pipelined)->Arg(100)->Arg(1000)->UseRealTime();

Coro<void> run_in_executor_loop(benchmark::State& state, Executor* ex, int batch) {
  EventLoop& loop = get_running_loop();
  std::vector<Future<int>> futures;
  futures.reserve(batch);
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) {
      futures.push_back(run_in_executor(loop, ex, [i] { return i; }));
    }
    for (auto& f : futures) benchmark::DoNotOptimize(co_await f);
    futures.clear();
  }
}

// run_in_executor on a pool of `workers` threads, `batch` jobs in flight.
void BM_RunInExecutor(benchmark::State& state) {
  concurrent::ThreadPoolExecutor pool(static_cast<int>(state.range(0)));
  const int batch = static_cast<int>(state.range(1));
  run(run_in_executor_loop(state, &pool, batch));
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_RunInExecutor)->Args({1, 1})->Args({1, 100})->Args({4, 100})->UseRealTime();

Coro<void> to_thread_loop(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(co_await to_thread([] { return 1; }));
}

void BM_ToThread(benchmark::State& state) {
  run(to_thread_loop(state));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ToThread)->UseRealTime();

void BM_ThreadPoolSubmit(benchmark::State& state) {
  concurrent::ThreadPoolExecutor pool(1);
  const int batch = static_cast<int>(state.range(0));
  std::vector<concurrent::Future<int>> futures;
  futures.reserve(batch);
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) futures.push_back(pool.submit([i] { return i; }));
    for (auto& f : futures) benchmark::DoNotOptimize(f.result());
    futures.clear();
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_ThreadPoolSubmit)->Arg(1)->Arg(100)->UseRealTime();

}  // namespace
}  // namespace asyncio
