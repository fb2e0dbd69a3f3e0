// concurrent::ThreadPoolExecutor: submit, map, execute, shutdown with
// pending work, cancellation of queued jobs.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "executors/executors.h"
#include "gtest/gtest.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;
using concurrent::ThreadPoolExecutor;

// A gate the tests open when they want blocked jobs to go on.
class Gate {
 public:
  void open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

int square(int x) { return x * x; }

TEST(ThreadPoolTest, SubmitReturnsResults) {
  ThreadPoolExecutor pool(4);
  EXPECT_EQ(pool.max_workers(), 4);
  auto a = pool.submit(square, 7);
  auto b = pool.submit([](std::string s, int n) { return s + std::to_string(n); }, "n=", 3);
  auto c = pool.submit([] {});
  EXPECT_EQ(a.result(), 49);
  EXPECT_EQ(b.result(), "n=3");
  c.result();
  EXPECT_TRUE(c.done());
}

TEST(ThreadPoolTest, DefaultMaxWorkers) {
  ThreadPoolExecutor pool;
  unsigned n = std::thread::hardware_concurrency();
  EXPECT_EQ(pool.max_workers(), static_cast<int>(std::min(32u, (n == 0 ? 1 : n) + 4)));
  EXPECT_THROW(ThreadPoolExecutor(-1), std::invalid_argument);
}

TEST(ThreadPoolTest, ExceptionsCrossToTheFuture) {
  ThreadPoolExecutor pool(2);
  auto f = pool.submit([]() -> int { throw std::invalid_argument("bad arg"); });
  EXPECT_THROW(f.result(), std::invalid_argument);
  ASSERT_NE(f.exception(), nullptr);
  try {
    f.result();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "bad arg");
  }
}

TEST(ThreadPoolTest, RunsConcurrentlyUpToMaxWorkers) {
  ThreadPoolExecutor pool(3);
  std::atomic<int> running{0};
  std::atomic<int> peak{0};
  std::vector<concurrent::Future<void>> futures;
  for (int i = 0; i < 9; ++i) {
    futures.push_back(pool.submit([&] {
      int now = running.fetch_add(1) + 1;
      int old = peak.load();
      while (now > old && !peak.compare_exchange_weak(old, now)) {
      }
      std::this_thread::sleep_for(10ms);
      running.fetch_sub(1);
    }));
  }
  for (auto& f : futures) f.result();
  EXPECT_EQ(peak.load(), 3);
  EXPECT_EQ(pool.num_threads(), 3);
}

TEST(ThreadPoolTest, ThreadsStartOnDemand) {
  ThreadPoolExecutor pool(8);
  EXPECT_EQ(pool.num_threads(), 0);
  for (int i = 0; i < 5; ++i) {
    pool.submit(square, i).result();
    std::this_thread::sleep_for(2ms);  // the thread goes back to idle
  }
  // Sequential jobs reuse the idle thread.
  EXPECT_EQ(pool.num_threads(), 1);
}

TEST(ThreadPoolTest, Map) {
  ThreadPoolExecutor pool(4);
  std::vector<int> in = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<int> out = pool.map(square, in);
  EXPECT_EQ(out, (std::vector<int>{1, 4, 9, 16, 25, 36, 49, 64}));
  auto lengths = pool.map([](const std::string& s) { return s.size(); },
                          std::vector<std::string>{"a", "bb", "ccc"});
  EXPECT_EQ(lengths, (std::vector<size_t>{1, 2, 3}));
}

TEST(ThreadPoolTest, MapRaisesTheFirstException) {
  ThreadPoolExecutor pool(2);
  std::vector<int> in = {1, 2, 3};
  EXPECT_THROW(pool.map(
                   [](int x) {
                     if (x == 2) throw std::runtime_error("two");
                     return x;
                   },
                   in),
               std::runtime_error);
}

TEST(ThreadPoolTest, MapTimeout) {
  ThreadPoolExecutor pool(1);
  Gate gate;
  std::vector<int> in = {1, 2, 3};
  EXPECT_THROW(pool.map(
                   [&](int x) {
                     gate.wait();
                     return x;
                   },
                   in, 20ms),
               TimeoutError);
  gate.open();
}

TEST(ThreadPoolTest, CancelQueuedJob) {
  ThreadPoolExecutor pool(1);
  Gate gate;
  std::atomic<bool> second_ran{false};
  auto first = pool.submit([&] { gate.wait(); });
  auto second = pool.submit([&] { second_ran = true; });
  while (!first.running()) std::this_thread::yield();
  EXPECT_FALSE(first.cancel());  // running
  EXPECT_TRUE(second.cancel());  // queued
  gate.open();
  first.result();
  pool.shutdown();
  EXPECT_FALSE(second_ran.load());
  EXPECT_THROW(second.result(), CancelledError);
}

TEST(ThreadPoolTest, ShutdownWaitsForPendingWork) {
  std::atomic<int> done{0};
  std::vector<concurrent::Future<void>> futures;
  ThreadPoolExecutor pool(2);
  for (int i = 0; i < 10; ++i) {
    futures.push_back(pool.submit([&] {
      std::this_thread::sleep_for(2ms);
      done.fetch_add(1);
    }));
  }
  pool.shutdown(/*wait=*/true);
  EXPECT_EQ(done.load(), 10);
  for (auto& f : futures) EXPECT_TRUE(f.done());
  EXPECT_THROW(pool.submit(square, 1), std::runtime_error);
  pool.shutdown();  // idempotent
}

TEST(ThreadPoolTest, ShutdownCancelFutures) {
  ThreadPoolExecutor pool(1);
  Gate gate;
  std::atomic<int> ran{0};
  auto blocker = pool.submit([&] {
    gate.wait();
    ran.fetch_add(1);
  });
  while (!blocker.running()) std::this_thread::yield();
  std::vector<concurrent::Future<void>> queued;
  for (int i = 0; i < 5; ++i) queued.push_back(pool.submit([&] { ran.fetch_add(1); }));
  std::thread opener([&] {
    std::this_thread::sleep_for(20ms);
    gate.open();
  });
  pool.shutdown(/*wait=*/true, /*cancel_futures=*/true);
  opener.join();
  EXPECT_EQ(ran.load(), 1);  // only the running one
  blocker.result();
  for (auto& f : queued) {
    EXPECT_TRUE(f.cancelled());
    EXPECT_THROW(f.result(), CancelledError);
  }
}

TEST(ThreadPoolTest, ShutdownWithoutWaitFinishesTheQueueLater) {
  auto pool = std::make_unique<ThreadPoolExecutor>(1);
  Gate gate;
  auto a = pool->submit([&] { gate.wait(); });
  auto b = pool->submit([] { return 5; });
  pool->shutdown(/*wait=*/false);
  EXPECT_FALSE(b.done());
  gate.open();
  EXPECT_EQ(b.result(5s), 5);  // queued work still runs
  EXPECT_TRUE(a.done());
}

TEST(ThreadPoolTest, DestroyedAfterShutdownWithoutWaitDoesNotWait) {
  auto pool = std::make_unique<ThreadPoolExecutor>(1);
  auto gate = std::make_shared<Gate>();
  auto started = std::make_shared<Gate>();
  auto a = pool->submit([gate, started] {
    started->open();
    gate->wait();
  });
  auto b = pool->submit([] { return 5; });
  started->wait();
  pool->shutdown(/*wait=*/false);
  pool.reset();  // returns with the job still blocked
  EXPECT_FALSE(a.done());
  gate->open();
  EXPECT_EQ(b.result(), 5);  // the detached thread finishes the queue
  EXPECT_TRUE(a.done());
}

TEST(ThreadPoolTest, ExecuteRunsClosures) {
  ThreadPoolExecutor pool(2);
  concurrent::Future<int> f;
  pool.execute([f]() mutable { f.set_result(11); });
  EXPECT_EQ(f.result(), 11);
}

TEST(ThreadPoolTest, DestroyedFromItsOwnJob) {
  auto pool = std::make_shared<ThreadPoolExecutor>(1);
  concurrent::Future<void> done;
  std::weak_ptr<ThreadPoolExecutor> weak = pool;
  auto* raw = pool.get();
  raw->execute([pool = std::move(pool), done]() mutable {
    // The last reference goes inside the job: the destructor runs on a pool
    // thread, which it must not join.
    pool.reset();
    done.set_result();
  });
  done.result(5s);
  while (!weak.expired()) std::this_thread::yield();
}

TEST(ThreadPoolTest, ManySubmittersAtOnce) {
  ThreadPoolExecutor pool(4);
  std::atomic<long> sum{0};
  std::vector<std::thread> submitters;
  for (int t = 0; t < 4; ++t) {
    submitters.emplace_back([&] {
      std::vector<concurrent::Future<int>> futures;
      for (int i = 0; i < 500; ++i) futures.push_back(pool.submit(square, i % 10));
      for (auto& f : futures) sum.fetch_add(f.result());
    });
  }
  for (auto& t : submitters) t.join();
  long expected = 0;
  for (int i = 0; i < 500; ++i) expected += (i % 10) * (i % 10);
  EXPECT_EQ(sum.load(), 4 * expected);
}

}  // namespace
}  // namespace asyncio
