// A cross-package scenario: //futures, //sync and //queues together.
//
// A producer feeds a bounded Queue; a TaskGroup of workers takes items with
// wait_for(get(), timeout) (so they can notice the stop Event), processes
// them under a BoundedSemaphore that limits how many run at once, and hands
// results to a collector through a second queue. Checked: every item is
// processed exactly once, the concurrency limit holds, back-pressure and
// timeouts lose nothing, a failing worker cancels the group, and
// cancellation leaves no task running.
#include <algorithm>
#include <chrono>
#include <exception>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "futures/futures.h"
#include "gtest/gtest.h"
#include "loop/loop.h"
#include "queues/queues.h"
#include "sync/sync.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;

// (Coroutine lambdas below are named locals that outlive their coroutines:
// a lambda's captures live in the closure object, not in the frame.)

// Gives a semaphore's permit back when it goes out of scope, also when the
// holder is cancelled.
class Permit {
 public:
  explicit Permit(Semaphore& sem) : sem_(sem) {}
  Permit(const Permit&) = delete;
  Permit& operator=(const Permit&) = delete;
  ~Permit() { sem_.release(); }

 private:
  Semaphore& sem_;
};

// The tasks of the running loop other than the current one.
std::vector<AnyTask> other_tasks() {
  std::optional<AnyTask> me = current_task();
  std::vector<AnyTask> others;
  for (const AnyTask& t : all_tasks()) {
    if (!me || !(t == *me)) others.push_back(t);
  }
  return others;
}

struct Pipeline {
  static constexpr int kPoison = -1;

  explicit Pipeline(size_t maxsize, int limit) : jobs(maxsize), permits(limit) {}

  Queue<int> jobs;
  Queue<int> results;  // unbounded
  BoundedSemaphore permits;
  Event stop;
  Lock ledger_lock;
  std::map<int, int> processed;  // item -> times processed
  int active = 0;
  int max_active = 0;
  int timeouts = 0;
  int put_timeouts = 0;

  // Puts 0..n-1, pausing now and then so that workers time out mid-stream;
  // n < 0: forever.
  Coro<void> produce(int n) {
    for (int i = 0; n < 0 || i < n; ++i) {
      // A put on a full queue waits; a short wait_for that times out must
      // leave the item out of the queue, so try again.
      for (;;) {
        try {
          co_await wait_for(jobs.put(i), 2ms);
          break;
        } catch (const TimeoutError&) {
          ++put_timeouts;
        }
      }
      if (i % 25 == 24) co_await sleep(3ms);
    }
  }

  Coro<void> process(int item) {
    co_await permits.acquire();
    Permit permit(permits);
    ++active;
    max_active = std::max(max_active, active);
    struct Leave {
      int& active;
      ~Leave() { --active; }
    } leave{active};
    if (item == kPoison) throw std::runtime_error("poisoned item");
    co_await sleep(item % 3 == 0 ? 0ms : 1ms);
    // The ledger update spans a suspension; the Lock keeps it atomic, so an
    // item delivered twice at once would be counted twice, not hidden.
    co_await ledger_lock.acquire();
    {
      struct Unlock {
        Lock& lock;
        ~Unlock() { lock.release(); }
      } unlock{ledger_lock};
      auto it = processed.find(item);
      const int before = it == processed.end() ? 0 : it->second;
      co_await sleep(0s);
      processed[item] = before + 1;
    }
    co_await results.put(item * 2);
  }

  // Takes n results off `results` into `out`.
  Coro<void> collect(int n, std::vector<int>& out) {
    while (out.size() < static_cast<size_t>(n)) {
      out.push_back(co_await results.get());
      results.task_done();
    }
  }

  // Puts 10 good items and a poisoned one, then more until cancelled.
  Coro<void> produce_poison() {
    for (int i = 0; i < 10; ++i) co_await jobs.put(i);
    co_await jobs.put(kPoison);
    // Blocks once the workers are gone: the group cancels it.
    for (int i = 10;; ++i) co_await jobs.put(i);
  }

  // A group of `workers` workers and an endless producer.
  Coro<void> run_endless(int workers) {
    TaskGroup group;
    for (int w = 0; w < workers; ++w) group.create_task(worker());
    group.create_task(produce(-1));
    co_await group.join();
  }

  Coro<void> worker() {
    while (!stop.is_set()) {
      int item;
      try {
        item = co_await wait_for(jobs.get(), 1ms);
      } catch (const TimeoutError&) {
        ++timeouts;
        continue;
      }
      try {
        co_await process(item);
      } catch (...) {
        jobs.task_done();
        throw;
      }
      jobs.task_done();
    }
  }
};

TEST(PipelineTest, EveryItemIsProcessedExactlyOnce) {
  constexpr int kItems = 300;
  constexpr int kWorkers = 6;
  constexpr int kLimit = 2;
  Pipeline p(/*maxsize=*/8, kLimit);
  std::vector<int> collected;

  auto main_coro = [&]() -> Coro<void> {
    TaskGroup group;
    for (int w = 0; w < kWorkers; ++w) group.create_task(p.worker(), "worker-" + std::to_string(w));
    Task<void> producer = group.create_task(p.produce(kItems), "producer");
    Task<void> collector = group.create_task(p.collect(kItems, collected), "collector");

    co_await producer;
    co_await p.jobs.join();  // every item taken and marked done
    co_await collector;
    EXPECT_TRUE(p.jobs.empty());
    EXPECT_TRUE(p.results.empty());
    p.stop.set();
    co_await group.join();

    EXPECT_TRUE(other_tasks().empty()) << other_tasks().size() << " tasks still running";
    EXPECT_FALSE(p.permits.locked());
  };
  run(main_coro());

  ASSERT_EQ(p.processed.size(), static_cast<size_t>(kItems));
  for (const auto& [item, times] : p.processed) {
    EXPECT_EQ(times, 1) << "item " << item;
  }
  ASSERT_EQ(collected.size(), static_cast<size_t>(kItems));
  std::sort(collected.begin(), collected.end());
  for (int i = 0; i < kItems; ++i) EXPECT_EQ(collected[i], 2 * i);
  EXPECT_EQ(p.max_active, kLimit) << "the semaphore bounds concurrency and it was reached";
  EXPECT_EQ(p.active, 0);
  EXPECT_GT(p.timeouts, 0) << "workers polled the stop event through wait_for timeouts";
  RecordProperty("worker_get_timeouts", p.timeouts);
  RecordProperty("producer_put_timeouts", p.put_timeouts);
}

TEST(PipelineTest, WaitForOnAFullQueueTimesOutWithoutPutting) {
  auto main_coro = []() -> Coro<void> {
    Queue<std::string> q(2);
    co_await q.put("a");
    co_await q.put("b");
    EXPECT_TRUE(q.full());
    bool timed_out = false;
    try {
      co_await wait_for(q.put("c"), 10ms);
    } catch (const TimeoutError&) {
      timed_out = true;
    }
    EXPECT_TRUE(timed_out);
    EXPECT_EQ(q.qsize(), 2u);
    // A get that times out on an empty queue takes nothing either.
    EXPECT_EQ(co_await q.get(), "a");
    EXPECT_EQ(co_await q.get(), "b");
    timed_out = false;
    try {
      (void)co_await wait_for(q.get(), 10ms);
    } catch (const TimeoutError&) {
      timed_out = true;
    }
    EXPECT_TRUE(timed_out);
    q.put_nowait("d");
    EXPECT_EQ(q.get_nowait(), "d");
    EXPECT_TRUE(other_tasks().empty());
  };
  run(main_coro());
}

TEST(PipelineTest, AFailingWorkerCancelsTheGroup) {
  Pipeline p(/*maxsize=*/4, /*limit=*/3);
  std::optional<ExceptionGroup> caught;

  auto main_coro = [&]() -> Coro<void> {
    try {
      TaskGroup group;
      for (int w = 0; w < 4; ++w) group.create_task(p.worker());
      group.create_task(p.produce_poison());
      co_await group.join();
    } catch (const ExceptionGroup& e) {
      caught.emplace(e);
    }
    EXPECT_TRUE(other_tasks().empty()) << other_tasks().size() << " tasks still running";
    EXPECT_FALSE(p.permits.locked());
  };
  run(main_coro());

  ASSERT_TRUE(caught.has_value());
  ASSERT_EQ(caught->exceptions().size(), 1u);
  try {
    std::rethrow_exception(caught->exceptions()[0]);
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "poisoned item");
  }
  EXPECT_EQ(p.active, 0);
  for (const auto& [item, times] : p.processed) EXPECT_EQ(times, 1) << "item " << item;
}

TEST(PipelineTest, CancellingThePipelineLeavesNothingRunning) {
  Pipeline p(/*maxsize=*/5, /*limit=*/2);
  bool pipeline_cancelled = false;

  auto main_coro = [&]() -> Coro<void> {
    Task<void> pipeline = create_task(p.run_endless(3), "pipeline");
    co_await sleep(30ms);
    EXPECT_FALSE(pipeline.done());
    EXPECT_FALSE(p.processed.empty()) << "the pipeline was making progress";
    EXPECT_EQ(other_tasks().size(), 5u) << "pipeline + 3 workers + producer";

    pipeline.cancel();
    try {
      co_await pipeline;
    } catch (const CancelledError&) {
      pipeline_cancelled = true;
    }
    EXPECT_TRUE(pipeline.cancelled());
    EXPECT_TRUE(other_tasks().empty()) << other_tasks().size() << " tasks still running";
    EXPECT_EQ(p.active, 0);
    EXPECT_FALSE(p.permits.locked());
    EXPECT_FALSE(p.ledger_lock.locked());
  };
  run(main_coro());

  EXPECT_TRUE(pipeline_cancelled);
  for (const auto& [item, times] : p.processed) EXPECT_EQ(times, 1) << "item " << item;
}

}  // namespace
}  // namespace asyncio
