// Work sizes shared by micro.cc and asio_micro.cc, so that both run the same
// workloads (tools/bench/micro.py mirrors them for asyncio and uvloop).
#pragma once

#include <time.h>

#include <atomic>
#include <cstdint>
#include <thread>

#include "benchmark/benchmark.h"

namespace asyncio::bench {

constexpr int64_t kTimers = 100'000;
constexpr double kMaxTimerDelay = 0.010;  // seconds
constexpr int64_t kChurnTimers = 1'000'000;
constexpr int64_t kChurnBatch = 1000;  // timers per loop iteration
constexpr int64_t kRoundTrips = 200'000;
constexpr int kIterations = 3;

inline double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Registration options of most benchmarks: kIterations runs, rated by the
// wall clock, in milliseconds.
inline void fixed_iterations_real_time(benchmark::internal::Benchmark* b) {
  b->Iterations(kIterations)->UseRealTime()->Unit(benchmark::kMillisecond);
}

// Round trips between a thread and a loop: the thread posts a callback with
// `post(callable)` and blocks (futex, via std::atomic::wait) until the loop
// ran it, then posts the next; last, `post_stop()`. `run()` runs the loop
// until that stops it.
template <class Post, class PostStop, class Run>
void measure_round_trips(benchmark::State& state, Post post, PostStop post_stop, Run run) {
  for (auto _ : state) {
    std::atomic<uint32_t> seq{0};
    std::thread poster([&] {
      for (uint32_t i = 0; i < kRoundTrips; ++i) {
        post([&seq] {
          seq.fetch_add(1, std::memory_order_release);
          seq.notify_one();
        });
        seq.wait(i, std::memory_order_acquire);
      }
      post_stop();
    });
    run();
    poster.join();
    if (seq.load() != kRoundTrips) state.SkipWithError("lost round trips");
  }
  state.SetItemsProcessed(state.iterations() * kRoundTrips);
}

}  // namespace asyncio::bench
