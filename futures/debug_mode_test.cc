// Debug mode's thread check on futures and tasks (asyncio's _check_thread):
// completing a Future or creating a task from another thread throws.
#include <chrono>
#include <stdexcept>
#include <thread>

#include "futures/futures.h"
#include "gtest/gtest.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;

Coro<int> answer() { co_return 42; }

TEST(DebugModeTest, FuturesAndTasksRefuseOtherThreads) {
  run(
      []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        Future<int> future = create_future<int>(loop);
        Future<void> checked = create_future<void>(loop);
        bool set_result_threw = false;
        bool cancel_threw = false;
        bool create_task_threw = false;
        std::thread other([&] {
          try {
            future.set_result(1);
          } catch (const std::runtime_error&) {
            set_result_threw = true;
          }
          try {
            future.cancel();
          } catch (const std::runtime_error&) {
            cancel_threw = true;
          }
          try {
            create_task(loop, answer());  // the Coro keeps its frame: nothing leaks
          } catch (const std::runtime_error&) {
            create_task_threw = true;
          }
          loop.call_soon_threadsafe([checked]() mutable { checked.set_result(); });
        });
        co_await checked;
        other.join();
        EXPECT_TRUE(set_result_threw);
        EXPECT_TRUE(cancel_threw);
        EXPECT_TRUE(create_task_threw);
        EXPECT_FALSE(future.done());
        future.set_result(7);  // from the loop's thread
        EXPECT_EQ(co_await future, 7);
      }(),
      {.debug = true});
}

}  // namespace
}  // namespace asyncio
