// The umbrella header alone is enough for a program using every package.
#include "asyncio.h"

#include <chrono>

#include "gtest/gtest.h"

namespace {

using namespace std::chrono_literals;

asyncio::Coro<int> produce_and_sum() {
  asyncio::Queue<int> queue(2);
  asyncio::Lock lock;
  int sum = 0;
  auto consumer = [](asyncio::Queue<int>& q, asyncio::Lock& l, int& s) -> asyncio::Coro<void> {
    while (true) {
      int item = co_await q.get();
      co_await l.acquire();
      s += item;
      l.release();
      q.task_done();
    }
  };
  asyncio::Task<void> worker = asyncio::create_task(consumer(queue, lock, sum));
  for (int i = 1; i <= 10; ++i) co_await queue.put(i);
  co_await asyncio::wait_for(queue.join(), 1s);
  worker.cancel();
  // The worker refers to this frame's queue and lock: let it finish first.
  bool cancelled = false;
  try {
    co_await worker;
  } catch (const asyncio::CancelledError&) {
    cancelled = true;
  }
  EXPECT_TRUE(cancelled);
  co_return sum;
}

TEST(AsyncioTest, UmbrellaHeaderBuildsAProgram) { EXPECT_EQ(asyncio::run(produce_and_sum()), 55); }

}  // namespace
