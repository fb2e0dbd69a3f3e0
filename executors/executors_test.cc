// The executors facade end to end: the three pools of the asyncio docs'
// run_in_executor example (default, custom thread pool, process pool); a process pool whose
// worker aborts, seen from a coroutine; shutdown with pending work under a
// running loop.
#include "executors/executors.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "futures/futures.h"
#include "gtest/gtest.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;

long cpu_bound() {
  long sum = 0;
  for (long i = 0; i < 100000; ++i) sum += i * i;
  return sum;
}

long sum_squares(long n) {
  long sum = 0;
  for (long i = 0; i < n; ++i) sum += i * i;
  return sum;
}

std::string blocking_io() {
  // Reads 16 bytes of /dev/urandom, as the docs' blocking_io reads 100.
  std::string data(16, '\0');
  FILE* f = std::fopen("/dev/urandom", "rb");
  if (f == nullptr) throw std::runtime_error("cannot open /dev/urandom");
  size_t n = std::fread(data.data(), 1, data.size(), f);
  std::fclose(f);
  data.resize(n);
  return data;
}

int worker_pid() { return static_cast<int>(::getpid()); }

int aborts() { std::abort(); }

Coro<void> three_pools(concurrent::ProcessPoolExecutor* process_pool) {
  EventLoop& loop = get_running_loop();
  std::string r1 = co_await run_in_executor(loop, nullptr, blocking_io);
  EXPECT_EQ(r1.size(), 16u);
  {
    concurrent::ThreadPoolExecutor pool;
    std::string r2 = co_await run_in_executor(loop, &pool, blocking_io);
    EXPECT_EQ(r2.size(), 16u);
  }
  long r3 = co_await run_in_executor(loop, process_pool, cpu_bound);
  EXPECT_EQ(r3, cpu_bound());
  // Arguments go along; a lambda without captures converts to a function.
  long r4 = co_await run_in_executor(loop, process_pool, sum_squares, 10L);
  EXPECT_EQ(r4, 285);
  int pid = co_await run_in_executor(loop, process_pool, [] { return worker_pid(); });
  EXPECT_NE(pid, static_cast<int>(::getpid()));
  // Through the Executor interface too.
  Executor* as_executor = process_pool;
  long r5 = co_await run_in_executor(loop, as_executor, sum_squares, 3L);
  EXPECT_EQ(r5, 5);
  // A closure cannot go to another process.
  int captured = 3;
  EXPECT_THROW(run_in_executor(loop, process_pool, [captured] { return captured; }),
               std::invalid_argument);
}

TEST(ExecutorsTest, ThreadProcessAndDefaultPoolsInOneProgram) {
  concurrent::ProcessPoolExecutor process_pool(2);  // forked before any thread
  run(three_pools(&process_pool));
}

Coro<void> broken_worker(concurrent::ProcessPoolExecutor* pool) {
  EventLoop& loop = get_running_loop();
  try {
    co_await run_in_executor(loop, pool, aborts);
    ADD_FAILURE() << "no exception";
  } catch (const concurrent::BrokenProcessPool& e) {
    EXPECT_NE(std::string(e.what()).find("terminated abruptly"), std::string::npos);
  }
  // The pool replaced the worker.
  long r = co_await run_in_executor(loop, pool, sum_squares, 4L);
  EXPECT_EQ(r, 14);
}

TEST(ExecutorsTest, ProcessPoolWorkerThatAbortsFromACoroutine) {
  concurrent::ProcessPoolExecutor pool(1);
  run(broken_worker(&pool));
}

Coro<void> pending_work(concurrent::ThreadPoolExecutor* pool, std::atomic<int>* started,
                        std::atomic<bool>* gate, std::atomic<int>* done, int* cancelled) {
  EventLoop& loop = get_running_loop();
  std::vector<Future<void>> futures;
  for (int i = 0; i < 20; ++i) {
    futures.push_back(run_in_executor(loop, pool, [started, gate, done] {
      started->fetch_add(1);
      while (!gate->load()) std::this_thread::sleep_for(100us);
      done->fetch_add(1);
    }));
  }
  while (started->load() < 2) co_await sleep(1ms);
  // Shut down with cancel_futures from the loop: the queued jobs' asyncio
  // futures end up cancelled, the running ones complete.
  pool->shutdown(/*wait=*/false, /*cancel_futures=*/true);
  gate->store(true);
  std::vector<Future<void>> copy = futures;
  co_await wait(std::move(copy));
  for (auto& f : futures) *cancelled += f.cancelled() ? 1 : 0;
}

TEST(ExecutorsTest, ShutdownWithPendingWorkUnderALoop) {
  concurrent::ThreadPoolExecutor pool(2);
  std::atomic<int> started{0};
  std::atomic<bool> gate{false};
  std::atomic<int> done{0};
  int cancelled = 0;
  run(pending_work(&pool, &started, &gate, &done, &cancelled));
  pool.shutdown();
  EXPECT_EQ(done.load(), 2);
  EXPECT_EQ(cancelled, 18);
}

TEST(ExecutorsTest, ConcurrentNamespaceHasExecutor) {
  concurrent::ThreadPoolExecutor pool(1);
  concurrent::Executor& ex = pool;
  concurrent::Future<int> f;
  ex.execute([f]() mutable { f.set_result(1); });
  EXPECT_EQ(f.result(5s), 1);
}

}  // namespace
}  // namespace asyncio
