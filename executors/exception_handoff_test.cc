// An exception thrown on one side of a bridge and read on the other: the
// thread that hands it over keeps no reference to it, so the reader's thread
// is where it is freed (ThreadSanitizer checks this: run under
// --config=tsan, with --runs_per_test for the races that need luck).
#include <stdexcept>
#include <string>
#include <thread>

#include "executors/executors.h"
#include "futures/futures.h"
#include "gtest/gtest.h"
#include "loop/loop.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;

// Many rounds per run: each is a chance for the worker to drop its last
// reference after the loop thread is done with the exception.
constexpr int kRounds = 50;

int invalid_in_process(int round) {
  throw std::invalid_argument("process boom " + std::to_string(round));
}

// First: the pool forks its server before this test program has threads.
TEST(ExceptionHandoffTest, RunInExecutorWithAProcessPool) {
  concurrent::ProcessPoolExecutor pool(1);
  run([](concurrent::ProcessPoolExecutor* pool) -> Coro<void> {
    EventLoop& loop = get_running_loop();
    for (int round = 0; round < kRounds; ++round) {
      try {
        co_await run_in_executor(loop, pool, invalid_in_process, round);
        ADD_FAILURE() << "no exception";
      } catch (const std::invalid_argument& e) {
        EXPECT_EQ(std::string(e.what()), "process boom " + std::to_string(round));
      }
    }
  }(&pool));
}

TEST(ExceptionHandoffTest, ToThread) {
  run([]() -> Coro<void> {
    for (int round = 0; round < kRounds; ++round) {
      try {
        co_await asyncio::to_thread([]() -> int { throw std::invalid_argument("to_thread boom"); });
        ADD_FAILURE() << "no exception";
      } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(e.what(), "to_thread boom");
      }
    }
  }());
}

TEST(ExceptionHandoffTest, RunInExecutorWithACustomPool) {
  concurrent::ThreadPoolExecutor pool(2);
  run([](concurrent::ThreadPoolExecutor* pool) -> Coro<void> {
    EventLoop& loop = get_running_loop();
    for (int round = 0; round < kRounds; ++round) {
      try {
        co_await run_in_executor(loop, pool, []() -> std::string {
          throw std::invalid_argument("run_in_executor boom");
        });
        ADD_FAILURE() << "no exception";
      } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(e.what(), "run_in_executor boom");
      }
    }
  }(&pool));
}

TEST(ExceptionHandoffTest, WrapFutureOfAPoolJob) {
  concurrent::ThreadPoolExecutor pool(2);
  run([](concurrent::ThreadPoolExecutor* pool) -> Coro<void> {
    EventLoop& loop = get_running_loop();
    for (int round = 0; round < kRounds; ++round) {
      try {
        co_await wrap_future(
            pool->submit([]() -> int { throw std::invalid_argument("wrap_future boom"); }), loop);
        ADD_FAILURE() << "no exception";
      } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(e.what(), "wrap_future boom");
      }
    }
  }(&pool));
}

Coro<int> throws_on_the_loop() {
  co_await sleep(0s);
  throw std::invalid_argument("coroutine boom");
}

TEST(ExceptionHandoffTest, RunCoroutineThreadsafeReadOnAForeignThread) {
  auto loop = new_event_loop();
  std::thread loop_thread([&loop] { loop->run_forever(); });
  for (int round = 0; round < kRounds; ++round) {
    concurrent::Future<int> future = run_coroutine_threadsafe(throws_on_the_loop(), *loop);
    try {
      future.result();
      ADD_FAILURE() << "no exception";
    } catch (const std::invalid_argument& e) {
      EXPECT_STREQ(e.what(), "coroutine boom");
    }
  }
  loop->call_soon_threadsafe([&loop] { loop->stop(); });
  loop_thread.join();
  loop->close();
}

}  // namespace
}  // namespace asyncio
