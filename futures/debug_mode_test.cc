// Debug mode's thread check on futures and tasks (asyncio's _check_thread):
// completing a Future or creating a task from another thread throws.
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

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
        testing::internal::CaptureStderr();
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
            create_task(loop, answer());  // the frame is dropped: nothing leaks
          } catch (const std::runtime_error&) {
            create_task_threw = true;
          }
          loop.call_soon_threadsafe([checked]() mutable { checked.set_result(); });
        });
        co_await checked;
        other.join();
        // As asyncio, the refused coroutine is reported as never awaited.
        EXPECT_NE(testing::internal::GetCapturedStderr().find("answer' was never awaited"),
                  std::string::npos);
        EXPECT_TRUE(set_result_threw);
        EXPECT_TRUE(cancel_threw);
        EXPECT_TRUE(create_task_threw);
        EXPECT_FALSE(future.done());
        future.set_result(7);  // from the loop's thread
        EXPECT_EQ(co_await future, 7);
      }(),
      {.debug = true});
}

Coro<void> fails() {
  throw std::runtime_error("lost");
  co_return;
}

// Debug mode, as asyncio's: a task's repr and the loop's reports say where
// the task was created.
TEST(DebugModeTest, TasksRememberWhereTheyWereCreated) {
  std::vector<std::string> reports;
  run(
      [](std::vector<std::string>* reports) -> Coro<void> {
        EventLoop& loop = get_running_loop();
        loop.set_exception_handler([reports](EventLoop&, const ExceptionContext& context) {
          reports->push_back(context.message + " " + context.task);
        });
        const int line = __LINE__ + 1;
        Task<int> task = create_task(answer());
        const std::string where = "created at futures/debug_mode_test.cc:" + std::to_string(line);
        EXPECT_NE(repr(task).find(where), std::string::npos) << repr(task);
        co_await task;
        {
          const int fails_line = __LINE__ + 1;
          Task<void> lost = create_task(fails(), "lost");
          co_await sleep(0s);
          co_await sleep(0s);
          EXPECT_TRUE(lost.done());
          reports->push_back("expect line " + std::to_string(fails_line));
        }  // dropped with its exception never retrieved
      }(&reports),
      {.debug = true});
  ASSERT_EQ(reports.size(), 2u);
  const std::string line = reports[0].substr(std::string("expect line ").size());
  EXPECT_NE(reports[1].find("Task exception was never retrieved"), std::string::npos) << reports[1];
  EXPECT_NE(reports[1].find("created at futures/debug_mode_test.cc:" + line), std::string::npos)
      << reports[1];
}

TEST(DebugModeTest, OutsideDebugModeNothingIsKept) {
  run([]() -> Coro<void> {
    Task<int> task = create_task(answer());
    EXPECT_EQ(repr(task).find("created at"), std::string::npos);
    co_await task;
  }());
}

Coro<void> blocks_the_loop() {
  std::this_thread::sleep_for(20ms);  // the slow step under test, not a wait for readiness
  co_return;
}

TEST(DebugModeTest, TheSlowStepReportNamesTheTaskAndWhereItWasCreated) {
  std::vector<std::string> reports;
  run(
      [](std::vector<std::string>* reports) -> Coro<void> {
        EventLoop& loop = get_running_loop();
        loop.set_slow_callback_duration(0.01);
        loop.set_exception_handler([reports](EventLoop&, const ExceptionContext& context) {
          reports->push_back(context.message + " | " + context.task);
        });
        const int line = __LINE__ + 1;
        co_await create_task(blocks_the_loop(), "slow one");
        reports->push_back("line " + std::to_string(line));
      }(&reports),
      {.debug = true});
  ASSERT_GE(reports.size(), 2u);
  const std::string& report = reports[reports.size() - 2];
  const std::string line = reports.back().substr(5);
  EXPECT_NE(report.find("Executing a task step took"), std::string::npos) << report;
  EXPECT_NE(report.find("name='slow one'"), std::string::npos) << report;
  EXPECT_NE(report.find("created at futures/debug_mode_test.cc:" + line), std::string::npos)
      << report;
}

}  // namespace
}  // namespace asyncio
