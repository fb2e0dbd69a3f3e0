// Queue, LifoQueue, PriorityQueue: ordering, blocking, task_done/join,
// shutdown, and what cancellation of a blocked get/put/join leaves behind.
#include "queues/queues.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "futures/futures.h"
#include "gtest/gtest.h"
#include "loop/loop.h"
#include "testing/async_test_util.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;

using testing_util::settle;
using testing_util::throws;

template <class Q>
std::vector<int> drain(Q& q) {
  std::vector<int> out;
  while (!q.empty()) out.push_back(q.get_nowait());
  return out;
}

// ---------------------------------------------------------------------------
// Ordering and the non-blocking calls

TEST(QueueTest, FifoOrderAndSizes) {
  Queue<int> q;
  EXPECT_EQ(q.maxsize(), 0u);
  EXPECT_TRUE(q.empty());
  EXPECT_FALSE(q.full());
  for (int i = 1; i <= 5; ++i) q.put_nowait(i);
  EXPECT_EQ(q.qsize(), 5u);
  EXPECT_FALSE(q.empty());
  EXPECT_FALSE(q.full()) << "maxsize 0 is unbounded";
  EXPECT_EQ(drain(q), (std::vector<int>{1, 2, 3, 4, 5}));
}

TEST(QueueTest, LifoOrder) {
  LifoQueue<int> q;
  for (int i = 1; i <= 5; ++i) q.put_nowait(i);
  EXPECT_EQ(drain(q), (std::vector<int>{5, 4, 3, 2, 1}));
}

TEST(QueueTest, PriorityOrderSmallestFirst) {
  PriorityQueue<int> q;
  for (int v : {5, 1, 4, 1, 9, 2, 6, 3}) q.put_nowait(v);
  EXPECT_EQ(drain(q), (std::vector<int>{1, 1, 2, 3, 4, 5, 6, 9}));

  PriorityQueue<std::pair<int, std::string>> tasks;
  tasks.put_nowait({2, "write"});
  tasks.put_nowait({0, "urgent"});
  tasks.put_nowait({1, "read"});
  EXPECT_EQ(tasks.get_nowait().second, "urgent");
  EXPECT_EQ(tasks.get_nowait().second, "read");
  EXPECT_EQ(tasks.get_nowait().second, "write");

  PriorityQueue<int, std::greater<int>> largest_first;
  for (int v : {3, 7, 1}) largest_first.put_nowait(v);
  EXPECT_EQ(drain(largest_first), (std::vector<int>{7, 3, 1}));
}

TEST(QueueTest, SubclassesAreQueues) {
  PriorityQueue<int> pq;
  LifoQueue<int> lq;
  for (Queue<int>* q : {static_cast<Queue<int>*>(&pq), static_cast<Queue<int>*>(&lq)}) {
    q->put_nowait(2);
    q->put_nowait(1);
    q->put_nowait(3);
  }
  EXPECT_EQ(drain(static_cast<Queue<int>&>(pq)), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(drain(static_cast<Queue<int>&>(lq)), (std::vector<int>{3, 1, 2}));
}

TEST(QueueTest, NowaitErrors) {
  Queue<int> q(2);
  EXPECT_EQ(q.maxsize(), 2u);
  EXPECT_THROW(q.get_nowait(), QueueEmpty);
  q.put_nowait(1);
  q.put_nowait(2);
  EXPECT_TRUE(q.full());
  EXPECT_THROW(q.put_nowait(3), QueueFull);
  EXPECT_EQ(q.qsize(), 2u);
  EXPECT_EQ(q.get_nowait(), 1);
  q.put_nowait(3);
  EXPECT_EQ(drain(q), (std::vector<int>{2, 3}));
}

TEST(QueueTest, MoveOnlyItems) {
  run([]() -> Coro<void> {
    Queue<std::unique_ptr<int>> q(1);
    co_await q.put(std::make_unique<int>(7));
    std::unique_ptr<int> p = co_await q.get();
    EXPECT_EQ(*p, 7);
    PriorityQueue<std::unique_ptr<int>,
                  std::function<bool(const std::unique_ptr<int>&, const std::unique_ptr<int>&)>>
        pq(0, [](const auto& a, const auto& b) { return *a < *b; });
    pq.put_nowait(std::make_unique<int>(2));
    pq.put_nowait(std::make_unique<int>(1));
    EXPECT_EQ(*pq.get_nowait(), 1);
    EXPECT_EQ(*pq.get_nowait(), 2);
  }());
}

// ---------------------------------------------------------------------------
// Blocking get and put

TEST(QueueTest, GetWaitsForAnItemAndGettersAreServedInOrder) {
  run([]() -> Coro<void> {
    Queue<int> q;
    std::vector<std::pair<int, int>> got;  // (getter, item)
    auto getter = [&](int id) -> Coro<void> { got.emplace_back(id, co_await q.get()); };
    std::vector<Task<void>> tasks;
    for (int i = 0; i < 3; ++i) tasks.push_back(create_task(getter(i)));
    co_await settle();
    EXPECT_TRUE(got.empty());
    co_await q.put(10);
    co_await q.put(11);
    co_await q.put(12);
    for (auto& t : tasks) co_await t;
    std::vector<std::pair<int, int>> expected = {{0, 10}, {1, 11}, {2, 12}};
    EXPECT_EQ(got, expected);
  }());
}

TEST(QueueTest, PutWaitsWhileFull) {
  run([]() -> Coro<void> {
    Queue<int> q(2);
    co_await q.put(1);
    co_await q.put(2);
    bool put_done = false;
    auto putter = [&]() -> Coro<void> {
      co_await q.put(3);
      put_done = true;
    };
    Task<void> t = create_task(putter());
    co_await settle();
    EXPECT_FALSE(put_done);
    EXPECT_EQ(co_await q.get(), 1);
    co_await t;
    EXPECT_TRUE(put_done);
    EXPECT_EQ(q.qsize(), 2u);
    EXPECT_EQ(co_await q.get(), 2);
    EXPECT_EQ(co_await q.get(), 3);
  }());
}

TEST(QueueTest, BlockedPuttersAreServedInOrder) {
  run([]() -> Coro<void> {
    Queue<int> q(1);
    q.put_nowait(0);
    std::vector<Task<void>> tasks;
    for (int i = 1; i <= 3; ++i) tasks.push_back(create_task(q.put(i)));
    co_await settle();
    std::vector<int> got;
    for (int i = 0; i < 4; ++i) got.push_back(co_await q.get());
    for (auto& t : tasks) co_await t;
    EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3}));
  }());
}

TEST(QueueTest, GetTimesOutWithoutLosingItems) {
  run([]() -> Coro<void> {
    Queue<int> q;
    bool timed_out = co_await throws<TimeoutError>(wait_for(q.get(), 10ms));
    EXPECT_TRUE(timed_out);
    q.put_nowait(5);
    EXPECT_EQ(co_await wait_for(q.get(), 1s), 5);
  }());
}

// ---------------------------------------------------------------------------
// Cancellation

TEST(QueueTest, CancelledGetterIsSkipped) {
  run([]() -> Coro<void> {
    Queue<int> q;
    Task<int> a = create_task(q.get());
    Task<int> b = create_task(q.get());
    co_await settle();
    a.cancel();
    co_await settle();
    EXPECT_TRUE(a.cancelled());
    q.put_nowait(1);
    EXPECT_EQ(co_await b, 1);
    EXPECT_TRUE(q.empty());
  }());
}

TEST(QueueTest, GetterCancelledAfterBeingWokenPassesTheItemOn) {
  run([]() -> Coro<void> {
    Queue<int> q;
    Task<int> a = create_task(q.get());
    Task<int> b = create_task(q.get());
    co_await settle();
    q.put_nowait(1);  // wakes a...
    a.cancel();       // ...which is cancelled before it can take the item
    EXPECT_EQ(co_await b, 1);
    EXPECT_TRUE(a.cancelled());
    EXPECT_TRUE(q.empty());
  }());
}

TEST(QueueTest, CancelledPutterAddsNothing) {
  run([]() -> Coro<void> {
    Queue<int> q(1);
    q.put_nowait(0);
    Task<void> a = create_task(q.put(1));
    Task<void> b = create_task(q.put(2));
    co_await settle();
    a.cancel();
    co_await settle();
    EXPECT_TRUE(a.cancelled());
    EXPECT_EQ(co_await q.get(), 0);
    co_await b;
    EXPECT_EQ(co_await q.get(), 2);
    EXPECT_TRUE(q.empty());
  }());
}

TEST(QueueTest, PutterCancelledAfterBeingWokenPassesTheSlotOn) {
  run([]() -> Coro<void> {
    Queue<int> q(1);
    q.put_nowait(0);
    Task<void> a = create_task(q.put(1));
    Task<void> b = create_task(q.put(2));
    co_await settle();
    EXPECT_EQ(q.get_nowait(), 0);  // wakes a...
    a.cancel();                    // ...which is cancelled before it can use the slot
    co_await b;
    EXPECT_TRUE(a.cancelled());
    EXPECT_EQ(q.qsize(), 1u);
    EXPECT_EQ(q.get_nowait(), 2);
  }());
}

TEST(QueueTest, CancelledJoinLeavesTheQueueUsable) {
  run([]() -> Coro<void> {
    Queue<int> q;
    q.put_nowait(1);
    Task<void> j1 = create_task(q.join());
    Task<void> j2 = create_task(q.join());
    co_await settle();
    j1.cancel();
    co_await settle();
    EXPECT_TRUE(j1.cancelled());
    EXPECT_FALSE(j2.done());
    EXPECT_EQ(co_await q.get(), 1);
    q.task_done();
    co_await j2;
    co_await q.join();  // nothing unfinished: returns at once
  }());
}

// ---------------------------------------------------------------------------
// task_done and join

TEST(QueueTest, JoinWaitsForEveryTaskDone) {
  run([]() -> Coro<void> {
    Queue<int> q;
    EXPECT_THROW(q.task_done(), std::invalid_argument);
    co_await q.join();  // empty: at once
    for (int i = 0; i < 3; ++i) co_await q.put(i);
    Task<void> joiner = create_task(q.join());
    for (int i = 0; i < 3; ++i) {
      co_await q.get();
      co_await settle();
      EXPECT_FALSE(joiner.done()) << "item " << i << " taken but not done";
      q.task_done();
    }
    co_await joiner;
    EXPECT_THROW(q.task_done(), std::invalid_argument);
  }());
}

// ---------------------------------------------------------------------------
// shutdown

TEST(QueueTest, ShutdownWakesBlockedGetters) {
  run([]() -> Coro<void> {
    Queue<int> q;
    Task<int> a = create_task(q.get());
    Task<int> b = create_task(q.get());
    co_await settle();
    EXPECT_FALSE(a.done());
    EXPECT_FALSE(b.done());
    q.shutdown();
    bool a_shut = co_await throws<QueueShutDown>(a);
    bool b_shut = co_await throws<QueueShutDown>(b);
    EXPECT_TRUE(a_shut);
    EXPECT_TRUE(b_shut);
    EXPECT_THROW(q.put_nowait(1), QueueShutDown);
    EXPECT_THROW(q.get_nowait(), QueueShutDown);
    bool put_shut = co_await throws<QueueShutDown>(q.put(1));
    EXPECT_TRUE(put_shut);
  }());
}

TEST(QueueTest, ShutdownWakesBlockedPuttersAndGetDrainsFirst) {
  run([]() -> Coro<void> {
    Queue<int> q(2);
    q.put_nowait(1);
    q.put_nowait(2);
    Task<void> p = create_task(q.put(3));
    co_await settle();
    EXPECT_FALSE(p.done());
    q.shutdown();
    bool put_shut = co_await throws<QueueShutDown>(p);
    EXPECT_TRUE(put_shut);
    // Items already in are still handed out; then get() throws.
    EXPECT_EQ(co_await q.get(), 1);
    EXPECT_EQ(q.get_nowait(), 2);
    bool get_shut = co_await throws<QueueShutDown>(q.get());
    EXPECT_TRUE(get_shut);
    EXPECT_THROW(q.get_nowait(), QueueShutDown);
  }());
}

TEST(QueueTest, ImmediateShutdownDropsItemsAndReleasesJoin) {
  run([]() -> Coro<void> {
    Queue<int> q(3);
    for (int i = 0; i < 3; ++i) q.put_nowait(i);
    EXPECT_EQ(co_await q.get(), 0);  // taken, not done yet
    q.put_nowait(3);
    Task<void> p = create_task(q.put(4));  // blocks: full
    Task<void> joiner = create_task(q.join());
    co_await settle();
    EXPECT_FALSE(p.done());
    EXPECT_FALSE(joiner.done());
    q.shutdown(/*immediate=*/true);
    EXPECT_TRUE(q.empty());
    bool get_shut = co_await throws<QueueShutDown>(q.get());
    EXPECT_TRUE(get_shut);
    bool put_shut = co_await throws<QueueShutDown>(p);
    EXPECT_TRUE(put_shut);
    co_await settle();
    EXPECT_FALSE(joiner.done()) << "the item taken is still unfinished";
    q.task_done();
    co_await joiner;
    EXPECT_THROW(q.task_done(), std::invalid_argument);
  }());
}

TEST(QueueTest, ImmediateShutdownCountsDroppedItemsAsDone) {
  run([]() -> Coro<void> {
    Queue<int> q;
    q.put_nowait(1);
    q.put_nowait(2);
    Task<void> joiner = create_task(q.join());
    Task<int> getter = create_task(q.get());  // takes 1 before the shutdown
    co_await settle();
    EXPECT_EQ(co_await getter, 1);
    q.task_done();
    q.shutdown(true);
    co_await joiner;
    EXPECT_TRUE(q.empty());
  }());
}

// ---------------------------------------------------------------------------
// A pipeline: producers -> bounded queue -> workers -> results

TEST(QueueTest, ProducerConsumerPipelineDeliversEveryItemOnce) {
  run([]() -> Coro<void> {
    constexpr int kProducers = 3;
    constexpr int kItemsEach = 200;
    constexpr int kWorkers = 4;
    Queue<int> q(5);
    std::map<int, int> seen;  // item -> times
    std::vector<int> per_worker(kWorkers, 0);
    auto producer = [&](int id) -> Coro<void> {
      for (int i = 0; i < kItemsEach; ++i) {
        co_await q.put(id * kItemsEach + i);
        if (i % 7 == 0) co_await sleep(0s);
      }
    };
    auto worker = [&](int id) -> Coro<void> {
      while (true) {
        int item;
        try {
          item = co_await q.get();
        } catch (const QueueShutDown&) {
          co_return;
        }
        ++seen[item];
        ++per_worker[id];
        if (item % 3 == 0) co_await sleep(0s);
        q.task_done();
      }
    };
    std::vector<Task<void>> workers, producers;
    for (int i = 0; i < kWorkers; ++i) workers.push_back(create_task(worker(i)));
    for (int i = 0; i < kProducers; ++i) producers.push_back(create_task(producer(i)));
    for (auto& p : producers) co_await p;
    co_await q.join();
    q.shutdown();
    for (auto& w : workers) co_await w;

    EXPECT_EQ(seen.size(), static_cast<size_t>(kProducers * kItemsEach));
    for (const auto& [item, times] : seen) EXPECT_EQ(times, 1) << "item " << item;
    for (int i = 0; i < kWorkers; ++i) EXPECT_GT(per_worker[i], 0) << "worker " << i;
    EXPECT_TRUE(q.empty());
  }());
}

TEST(QueueTest, BoundToTheLoopOfFirstUse) {
  Queue<int> q;
  auto wait_for_item = [&q]() -> Coro<void> {
    Task<int> getter = create_task(q.get());
    co_await sleep(0s);
    q.put_nowait(1);
    EXPECT_EQ(co_await getter, 1);
  };
  auto first = new_event_loop();
  auto second = new_event_loop();
  run_until_complete(*first, wait_for_item());
  EXPECT_THROW(run_until_complete(*second, wait_for_item()), std::runtime_error);
}

}  // namespace
}  // namespace asyncio
