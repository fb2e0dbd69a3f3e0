// The timer and cross-thread workloads of micro.cc on Boost.Asio (1.81,
// Debian's libboost1.81-dev, header-only), under the same benchmark names so
// that compare.py can put them in a column of their own:
//
//   bazel run --config=opt //tools/bench:asio_micro
//   bazel run --config=opt //tools/bench:compare -- --asio
//
// Each workload is written the way an Asio program would do the same thing:
// a steady_timer per timer, post() for a callback from another thread.
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "tools/bench/workloads.h"

namespace asyncio::bench {
namespace {

namespace asio = boost::asio;

// 100k steady_timers with random expiries in [0, 10 ms], run until all fired.
void call_later_100k(benchmark::State& state) {
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> dist(0.0, kMaxTimerDelay);
  std::vector<std::chrono::nanoseconds> delays(kTimers);
  for (auto& d : delays) {
    d = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::duration<double>(dist(rng)));
  }
  asio::io_context ioc(1);
  std::vector<asio::steady_timer> timers;
  timers.reserve(kTimers);
  double cpu = 0;
  for (auto _ : state) {
    const double cpu_start = thread_cpu_seconds();
    int64_t fired = 0;
    for (auto d : delays) {
      timers.emplace_back(ioc, d);
      timers.back().async_wait([&fired](const boost::system::error_code&) { ++fired; });
    }
    ioc.run();
    ioc.restart();
    timers.clear();
    cpu += thread_cpu_seconds() - cpu_start;
    if (fired != kTimers) state.SkipWithError("lost timers");
  }
  state.SetItemsProcessed(state.iterations() * kTimers);
  state.counters["timers_per_cpu_second"] = static_cast<double>(state.iterations() * kTimers) / cpu;
}
BENCHMARK(call_later_100k)->Iterations(5)->UseRealTime()->Unit(benchmark::kMillisecond);

// 1M timers armed for a second and cancelled before they fire (a wait_for
// whose awaitable finished first), 1000 per run of the loop, which delivers
// the aborted waits.
void timer_churn_1m(benchmark::State& state) {
  asio::io_context ioc(1);
  int64_t aborted = 0;
  for (auto _ : state) {
    for (int64_t done = 0; done < kChurnTimers; done += kChurnBatch) {
      for (int64_t i = 0; i < kChurnBatch; ++i) {
        asio::steady_timer timer(ioc, std::chrono::seconds(1));
        timer.async_wait([&aborted](const boost::system::error_code& ec) {
          if (ec == asio::error::operation_aborted) ++aborted;
        });
        timer.cancel();
      }
      ioc.poll();
      ioc.restart();
    }
  }
  if (aborted != state.iterations() * kChurnTimers) state.SkipWithError("lost cancellations");
  state.SetItemsProcessed(state.iterations() * kChurnTimers);
}
BENCHMARK(timer_churn_1m)->Apply(fixed_iterations_real_time);

// Another thread posts a handler and blocks (futex, via std::atomic::wait)
// until the handler, run by io_context::run, bumps the counter; then again.
void call_soon_threadsafe_roundtrip(benchmark::State& state) {
  asio::io_context ioc(1);
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  measure_round_trips(
      state, [&ioc](auto callback) { asio::post(ioc, std::move(callback)); },
      [&ioc, &work] { asio::post(ioc, [&work] { work.reset(); }); },
      [&ioc, &work] {
        ioc.restart();
        work.emplace(ioc.get_executor());  // run() returns once it is reset
        ioc.run();
      });
}
BENCHMARK(call_soon_threadsafe_roundtrip)->Apply(fixed_iterations_real_time);

}  // namespace
}  // namespace asyncio::bench
