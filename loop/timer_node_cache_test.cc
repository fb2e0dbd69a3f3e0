#include "loop/internal/timer_node_cache.h"

#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "loop/loop.h"

namespace asyncio::loop_internal {
namespace {

constexpr std::size_t kBlock = 64;
constexpr std::ptrdiff_t kBurst = 3 * TimerNodeCache::kFloor;

// Allocates `n` blocks from `cache`.
std::vector<void*> take(TimerNodeCache& cache, std::ptrdiff_t n) {
  std::vector<void*> blocks;
  for (std::ptrdiff_t i = 0; i < n; ++i) blocks.push_back(cache.allocate(kBlock));
  return blocks;
}

void give_back(TimerNodeCache& cache, std::vector<void*>& blocks) {
  for (void* p : blocks) cache.deallocate(p);
  blocks.clear();
}

TEST(TimerNodeCacheTest, KeepsABurstForTheNextOne) {
  TimerNodeCache cache;
  std::vector<void*> first = take(cache, kBurst);
  give_back(cache, first);
  EXPECT_EQ(cache.cached(), kBurst);
  // The same number again: all from the cache.
  std::vector<void*> second = take(cache, kBurst);
  EXPECT_EQ(cache.cached(), 0);
  give_back(cache, second);
  cache.retire();
}

TEST(TimerNodeCacheTest, ABurstGivenBackInAnyOrderIsHandedOutPageByPage) {
  TimerNodeCache cache;
  std::vector<void*> blocks = take(cache, kBurst);
  // Back in an order unrelated to their addresses, as timers with random
  // deadlines fire.
  std::mt19937 rng(7);
  std::shuffle(blocks.begin(), blocks.end(), rng);
  give_back(cache, blocks);
  std::vector<void*> again = take(cache, kBurst);
  const auto page = [](void* p) { return reinterpret_cast<std::uintptr_t>(p) >> 12; };
  for (size_t i = 1; i < again.size(); ++i) ASSERT_LE(page(again[i]), page(again[i - 1])) << i;
  give_back(cache, again);
  cache.retire();
}

TEST(TimerNodeCacheTest, GivesTheSurplusBackWhenTheLoopHasNoTimers) {
  TimerNodeCache cache;
  std::vector<void*> blocks = take(cache, kBurst);
  give_back(cache, blocks);
  EXPECT_EQ(cache.on_loop_sleep(10.0, /*timers_pending=*/false),
            std::numeric_limits<double>::infinity());
  EXPECT_EQ(cache.cached(), TimerNodeCache::kFloor);
  // The peak is forgotten: a small use later does not grow it back.
  std::vector<void*> few = take(cache, 10);
  std::vector<void*> more = take(cache, kBurst);
  give_back(cache, more);
  give_back(cache, few);
  EXPECT_EQ(cache.cached(), kBurst + 10);  // that was a new peak
  cache.retire();
}

TEST(TimerNodeCacheTest, GivesTheSurplusBackAfterHoldingItWithFewTimers) {
  TimerNodeCache cache;
  std::vector<void*> blocks = take(cache, kBurst);
  std::vector<void*> still_alive(blocks.end() - 5, blocks.end());
  blocks.resize(blocks.size() - 5);
  give_back(cache, blocks);
  const double start = 100.0;
  // Held since the first sleep that sees it: the loop is told to wake then.
  EXPECT_EQ(cache.on_loop_sleep(start, /*timers_pending=*/true),
            start + TimerNodeCache::kSurplusSeconds);
  EXPECT_EQ(cache.on_loop_sleep(start + 0.5, /*timers_pending=*/true),
            start + TimerNodeCache::kSurplusSeconds);
  EXPECT_EQ(cache.cached(), kBurst - 5);
  cache.on_loop_sleep(start + TimerNodeCache::kSurplusSeconds, /*timers_pending=*/true);
  EXPECT_EQ(cache.cached(), TimerNodeCache::kFloor);
  give_back(cache, still_alive);
  cache.retire();
}

TEST(TimerNodeCacheTest, AThreadThatOnlyFreesKeepsNoMoreThanTheFloor) {
  TimerNodeCache maker;
  std::vector<void*> blocks = take(maker, kBurst);
  TimerNodeCache freer;
  give_back(freer, blocks);
  EXPECT_EQ(freer.cached(), TimerNodeCache::kFloor);
  maker.retire();
  freer.retire();
}

TEST(TimerNodeCacheTest, ALoopReusesItsBurstAndGivesItBackWhenIdle) {
  if (!kPoolEnabled) GTEST_SKIP() << "the caches are bypassed under sanitizers";
  // On a thread of its own: a fresh cache.
  std::thread([] {
    TimerNodeCache& cache = this_thread_timer_node_cache();
    auto loop = new_event_loop();
    int fired = 0;
    for (std::ptrdiff_t i = 0; i < kBurst; ++i) {
      loop->call_later(std::chrono::duration<double>(-1), [&] {
        if (++fired == kBurst) loop->stop();
      });
    }
    loop->run_forever();
    EXPECT_EQ(fired, kBurst);
    EXPECT_EQ(cache.cached(), kBurst);
    // Nothing left to wait for: the loop gives the surplus back before it
    // polls, here for a pipe that is already readable.
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    ASSERT_EQ(::write(fds[1], "x", 1), 1);
    loop->add_reader(fds[0], [&] { loop->stop(); });
    loop->run_forever();
    loop->remove_reader(fds[0]);
    ::close(fds[0]);
    ::close(fds[1]);
    EXPECT_EQ(cache.cached(), TimerNodeCache::kFloor);
  }).join();
}

}  // namespace
}  // namespace asyncio::loop_internal
