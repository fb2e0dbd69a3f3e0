// Child process throughput:
//   spawn + wait of /bin/true per second (no pipes, and with all three
//   pipes), and communicate() of 10 MiB through cat.
//
//   bazel run -c opt //subprocess:subprocess_bench
#include <benchmark/benchmark.h>

#include <optional>
#include <string>

#include "futures/futures.h"
#include "subprocess/subprocess.h"

namespace asyncio {
namespace {

void BM_SpawnWaitTrue(benchmark::State& state) {
  asyncio::run([](benchmark::State& state) -> Coro<void> {
    for (auto _ : state) {
      Process p = co_await create_subprocess_exec("/bin/true");
      int rc = co_await p.wait();
      benchmark::DoNotOptimize(rc);
    }
  }(state));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SpawnWaitTrue)->UseRealTime();

void BM_SpawnCommunicateTrueWithPipes(benchmark::State& state) {
  asyncio::run([](benchmark::State& state) -> Coro<void> {
    SubprocessOptions opts;
    opts.stdin_ = opts.stdout_ = opts.stderr_ = subprocess::PIPE;
    for (auto _ : state) {
      Process p = co_await create_subprocess_exec("/bin/true", opts);
      auto result = co_await p.communicate();
      benchmark::DoNotOptimize(result);
    }
  }(state));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SpawnCommunicateTrueWithPipes)->UseRealTime();

void BM_Communicate10MiBThroughCat(benchmark::State& state) {
  const std::string data(10 << 20, 'x');
  asyncio::run([](benchmark::State& state, const std::string& data) -> Coro<void> {
    SubprocessOptions opts;
    opts.stdin_ = opts.stdout_ = subprocess::PIPE;
    for (auto _ : state) {
      Process p = co_await create_subprocess_exec("cat", opts);
      std::optional<std::string> input = data;
      auto [out, err] = co_await p.communicate(std::move(input));
      if (out.size() != data.size()) state.SkipWithError("short output");
    }
  }(state, data));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(data.size()));
}
BENCHMARK(BM_Communicate10MiBThroughCat)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace asyncio
