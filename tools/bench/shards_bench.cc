// //shards in numbers, on two shards:
//   - cross-shard round trips per second: Shard::call (a plain function) and
//     Shard::submit (a coroutine), one after the other from shard 0 to
//     shard 1, against asyncio's way between two loops: a coroutine on loop
//     A awaiting wrap_future(run_coroutine_threadsafe(coro, B), A);
//   - how 1,000 connections to a reuse_port server on 2 shards spread, over
//     several rounds (the kernel picks the shard by a hash of the
//     connection's addresses and ports).
//
//   bazel run --config=opt //tools/bench:shards_bench [-- --calls N --rounds R]
//
// Prints one markdown table.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "executors/executors.h"
#include "futures/futures.h"
#include "loop/loop.h"
#include "shards/shards.h"
#include "streams/streams.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double call_round_trips(int n) {
  double rate = 0;
  asyncio::run_sharded(2, [&](asyncio::Shard& shard) -> asyncio::Coro<void> {
    if (shard.index() != 0) co_return;
    int counter = 0;
    auto bump = [&counter] { return ++counter; };
    for (int i = 0; i < 1000; ++i) co_await shard.call(1, bump);  // warm-up
    const Clock::time_point start = Clock::now();
    for (int i = 0; i < n; ++i) co_await shard.call(1, bump);
    rate = n / seconds_since(start);
  });
  return rate;
}

asyncio::Coro<int> one() { co_return 1; }

asyncio::Coro<void> call_many(asyncio::Shard& shard, int n) {
  int counter = 0;
  auto bump = [&counter] { return ++counter; };
  for (int i = 0; i < n; ++i) co_await shard.call(1, bump);
}

// 100 callers at once: the wake-ups batch (a post wakes the target only
// when its queue was empty), so each round trip costs less.
double concurrent_call_round_trips(int n) {
  double rate = 0;
  asyncio::run_sharded(2, [&](asyncio::Shard& shard) -> asyncio::Coro<void> {
    if (shard.index() != 0) co_return;
    co_await call_many(shard, 1000);
    const Clock::time_point start = Clock::now();
    std::vector<asyncio::Task<void>> callers;
    for (int i = 0; i < 100; ++i)
      callers.push_back(asyncio::create_task(call_many(shard, n / 100)));
    for (auto& t : callers) co_await t;
    rate = (n / 100 * 100) / seconds_since(start);
  });
  return rate;
}

asyncio::Coro<void> rct_many(asyncio::EventLoop& a, asyncio::EventLoop& b, int n) {
  for (int i = 0; i < n; ++i) {
    co_await asyncio::wrap_future(asyncio::run_coroutine_threadsafe(one(), b), a);
  }
}

double submit_round_trips(int n) {
  double rate = 0;
  asyncio::run_sharded(2, [&](asyncio::Shard& shard) -> asyncio::Coro<void> {
    if (shard.index() != 0) co_return;
    for (int i = 0; i < 1000; ++i) co_await shard.submit(1, one);
    const Clock::time_point start = Clock::now();
    for (int i = 0; i < n; ++i) co_await shard.submit(1, one);
    rate = n / seconds_since(start);
  });
  return rate;
}

// asyncio's way: loop B runs forever in a thread, loop A submits to it (one
// at a time; then 100 at once, into `concurrent_rct`).
double run_coroutine_threadsafe_round_trips(int n, double& concurrent_rct) {
  std::unique_ptr<asyncio::EventLoop> b = asyncio::new_event_loop();
  std::thread thread([&b] { b->run_forever(); });
  double rate = 0;
  asyncio::run([&]() -> asyncio::Coro<void> {
    asyncio::EventLoop& a = asyncio::get_running_loop();
    for (int i = 0; i < 1000; ++i) {
      co_await asyncio::wrap_future(asyncio::run_coroutine_threadsafe(one(), *b), a);
    }
    const Clock::time_point start = Clock::now();
    for (int i = 0; i < n; ++i) {
      co_await asyncio::wrap_future(asyncio::run_coroutine_threadsafe(one(), *b), a);
    }
    rate = n / seconds_since(start);
  }());
  double concurrent = 0;
  asyncio::run([&]() -> asyncio::Coro<void> {
    asyncio::EventLoop& a = asyncio::get_running_loop();
    const Clock::time_point start = Clock::now();
    std::vector<asyncio::Task<void>> callers;
    for (int i = 0; i < 100; ++i) callers.push_back(asyncio::create_task(rct_many(a, *b, n / 100)));
    for (auto& t : callers) co_await t;
    concurrent = (n / 100 * 100) / seconds_since(start);
  }());
  concurrent_rct = concurrent;
  b->call_soon_threadsafe([&b] { b->stop(); });
  thread.join();
  b->close();
  return rate;
}

asyncio::Coro<void> answer(asyncio::StreamReader reader, asyncio::StreamWriter writer) {
  co_await reader.read(1);
  writer.write("x");
  writer.close();
}

asyncio::Coro<void> one_client(uint16_t port) {
  auto [reader, writer] = co_await asyncio::open_connection("127.0.0.1", port);
  writer.write("x");
  co_await reader.read(1);
  writer.close();
  co_await writer.wait_closed();
}

// Connections accepted by each of 2 shards out of `total`.
std::vector<uint64_t> balance(int total) {
  asyncio::ShardQueue<uint16_t> port_for_1;
  asyncio::ShardQueue<int> listening;  // owned by shard 0
  asyncio::ShardQueue<int> done;       // owned by shard 1
  std::vector<uint64_t> accepted(2);
  asyncio::run_sharded(2, [&](asyncio::Shard& shard) -> asyncio::Coro<void> {
    if (shard.index() == 1) {
      uint16_t port = co_await port_for_1.get();
      asyncio::Server server = co_await shard.start_server(answer, "127.0.0.1", port);
      listening.put_nowait(1);
      co_await done.get();
      co_return;
    }
    asyncio::Server server = co_await shard.start_server(answer, "127.0.0.1", 0);
    const uint16_t port = server.sockets().at(0).getsockname().port();
    port_for_1.put_nowait(port);
    co_await listening.get();
    for (int started = 0; started < total;) {
      std::vector<asyncio::Task<void>> batch;
      for (int i = 0; i < 50 && started < total; ++i, ++started) {
        batch.push_back(asyncio::create_task(one_client(port)));
      }
      for (auto& t : batch) co_await t;
    }
    for (const asyncio::ShardStats& s : shard.all_stats()) {
      accepted[s.index] = s.connections_accepted;
    }
    done.put_nowait(1);
  });
  return accepted;
}

std::string rate(double per_second) {
  char buf[32];
  if (per_second >= 1e6) {
    std::snprintf(buf, sizeof buf, "%.2fM", per_second / 1e6);
  } else {
    std::snprintf(buf, sizeof buf, "%.0fk", per_second / 1e3);
  }
  return buf;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int calls = 200000;
  int rounds = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--calls") == 0) calls = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--rounds") == 0) rounds = std::atoi(argv[i + 1]);
  }
  std::vector<double> call_rates, submit_rates, rct_rates, many_call_rates, many_rct_rates;
  for (int r = 0; r < rounds; ++r) {
    call_rates.push_back(call_round_trips(calls));
    submit_rates.push_back(submit_round_trips(calls));
    double many_rct = 0;
    rct_rates.push_back(run_coroutine_threadsafe_round_trips(calls, many_rct));
    many_rct_rates.push_back(many_rct);
    many_call_rates.push_back(concurrent_call_round_trips(calls));
  }
  const double rct = median(rct_rates);
  std::printf(
      "| cross-loop round trips, shard 0 -> shard 1 (median of %d) | per second | vs "
      "run_coroutine_threadsafe |\n",
      rounds);
  std::printf("|---|--:|--:|\n");
  std::printf("| `co_await shard.call(1, fn)` | %s | %.2fx |\n", rate(median(call_rates)).c_str(),
              median(call_rates) / rct);
  std::printf("| `co_await shard.submit(1, coro_fn)` | %s | %.2fx |\n",
              rate(median(submit_rates)).c_str(), median(submit_rates) / rct);
  std::printf("| `co_await wrap_future(run_coroutine_threadsafe(coro, b), a)` | %s | 1.00x |\n",
              rate(rct).c_str());
  const double many_rct = median(many_rct_rates);
  std::printf("| 100 callers at once: `shard.call` | %s | %.2fx |\n",
              rate(median(many_call_rates)).c_str(), median(many_call_rates) / many_rct);
  std::printf("| 100 callers at once: `run_coroutine_threadsafe` | %s | 1.00x |\n\n",
              rate(many_rct).c_str());

  std::printf(
      "| round | 1,000 connections: shard 0 | shard 1 | largest deviation from the mean |\n");
  std::printf("|---|--:|--:|--:|\n");
  for (int r = 0; r < std::max(rounds, 5); ++r) {
    std::vector<uint64_t> got = balance(1000);
    const double mean = (got[0] + got[1]) / 2.0;
    const double deviation =
        std::max(std::fabs(got[0] - mean), std::fabs(got[1] - mean)) / mean * 100;
    std::printf("| %d | %llu | %llu | %.1f %% |\n", r + 1, static_cast<unsigned long long>(got[0]),
                static_cast<unsigned long long>(got[1]), deviation);
  }
  return 0;
}
