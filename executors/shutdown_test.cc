// Shutting the loop's default executor down with a timeout: asyncio.run and
// Runner.close wait for a stuck to_thread job only so long.
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "executors/executors.h"
#include "futures/futures.h"
#include "gtest/gtest.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;

// A job that blocks its thread until released.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool started = false;
  bool open = false;

  void pass() {
    std::unique_lock<std::mutex> lock(mu);
    started = true;
    cv.notify_all();
    cv.wait(lock, [this] { return open; });
  }
  void wait_started() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [this] { return started; });
  }
  void release() {
    std::lock_guard<std::mutex> lock(mu);
    open = true;
    cv.notify_all();
  }
};

Coro<void> leave_a_stuck_job(Gate& gate, std::shared_ptr<Executor>& pool,
                             std::vector<std::string>& messages) {
  EventLoop& loop = get_running_loop();
  loop.set_exception_handler(
      [&messages](EventLoop&, const ExceptionContext& ctx) { messages.push_back(ctx.message); });
  create_task(to_thread([&gate] { gate.pass(); }));
  co_await sleep(0s);  // the task submits the job
  pool = loop.default_executor();
  gate.wait_started();
}

TEST(DefaultExecutorShutdownTest, RunReturnsAfterTheTimeoutWithAStuckJob) {
  Gate gate;
  std::shared_ptr<Executor> pool;
  std::vector<std::string> messages;
  const auto start = std::chrono::steady_clock::now();
  run(leave_a_stuck_job(gate, pool, messages), {.executor_shutdown_timeout = 200ms});
  EXPECT_GE(std::chrono::steady_clock::now() - start, 200ms);
  EXPECT_EQ(messages,
            (std::vector<std::string>{
                "The executor did not finishing joining its threads within 0.2 seconds."}));
  ASSERT_NE(pool, nullptr);
  // The job is released after run() returned: its thread finishes (its
  // result goes nowhere, the loop being closed) and is joined.
  gate.release();
  pool->shutdown(/*wait=*/true);
  EXPECT_EQ(dynamic_cast<concurrent::ThreadPoolExecutor&>(*pool).num_threads(), 0);
}

TEST(DefaultExecutorShutdownTest, RunnerCloseReturnsAfterTheTimeout) {
  Gate gate;
  std::shared_ptr<Executor> pool;
  std::vector<std::string> messages;
  {
    Runner runner({.executor_shutdown_timeout = 100ms});
    runner.run(leave_a_stuck_job(gate, pool, messages));
    runner.close();
    EXPECT_EQ(messages.size(), 1u);
  }
  gate.release();
  pool->shutdown(/*wait=*/true);
}

TEST(DefaultExecutorShutdownTest, FinishedJobsAreJoinedQuietly) {
  std::vector<std::string> messages;
  int result = run(
      [](std::vector<std::string>& m) -> Coro<int> {
        get_running_loop().set_exception_handler(
            [&m](EventLoop&, const ExceptionContext& ctx) { m.push_back(ctx.message); });
        co_return co_await to_thread([] { return 42; });
      }(messages),
      {.executor_shutdown_timeout = 10s});
  EXPECT_EQ(result, 42);
  EXPECT_TRUE(messages.empty());
}

TEST(DefaultExecutorShutdownTest, ThreadPoolShutdownWithTimeout) {
  concurrent::ThreadPoolExecutor pool(2);
  Gate gate;
  pool.execute([&gate] { gate.pass(); });
  gate.wait_started();
  EXPECT_FALSE(pool.shutdown_with_timeout(50ms));
  EXPECT_THROW(pool.execute([] {}), std::runtime_error);  // shut down all the same
  gate.release();
  EXPECT_TRUE(pool.shutdown_with_timeout(std::chrono::duration<double>::max()));
  EXPECT_EQ(pool.num_threads(), 0);
}

TEST(DefaultExecutorShutdownTest, ThreadPoolShutdownWithTimeoutFromItsOwnThread) {
  auto pool = std::make_shared<concurrent::ThreadPoolExecutor>(1);
  concurrent::Future<bool> joined =
      pool->submit([pool] { return pool->shutdown_with_timeout(10s); });
  EXPECT_TRUE(joined.result());
}

// What awaiting `aw` throws as std::runtime_error, or "" if nothing.
template <class A>
Coro<std::string> runtime_error_of(A aw) {
  try {
    co_await std::move(aw);
  } catch (const std::runtime_error& e) {
    co_return e.what();
  }
  co_return "";
}

// After loop.shutdown_default_executor(), asyncio refuses the default
// executor (RuntimeError) and keeps accepting explicit ones.
Coro<void> use_after_shutdown(bool make_default_first) {
  EventLoop& loop = get_running_loop();
  if (make_default_first) {
    EXPECT_EQ(co_await to_thread([] { return 1; }), 1);
  }
  EXPECT_FALSE(loop.executor_shutdown_called());
  co_await shutdown_default_executor();
  EXPECT_TRUE(loop.executor_shutdown_called());
  const std::string refused = "Executor shutdown has been called";
  EXPECT_EQ(co_await runtime_error_of(to_thread([] { return 2; })), refused);
  try {
    (void)run_in_executor(loop, nullptr, [] { return 3; });
    ADD_FAILURE() << "run_in_executor(default) accepted the job";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), refused);
  }
  // Not even a new default executor lifts it, as in asyncio.
  loop.set_default_executor(std::make_shared<concurrent::ThreadPoolExecutor>(1));
  EXPECT_EQ(co_await runtime_error_of(to_thread([] { return 4; })), refused);
  concurrent::ThreadPoolExecutor own(1);
  EXPECT_EQ(co_await run_in_executor(loop, &own, [] { return 5; }), 5);
}

TEST(DefaultExecutorShutdownTest, TheDefaultExecutorIsRefusedAfterShutdown) {
  run(use_after_shutdown(/*make_default_first=*/true));
}

TEST(DefaultExecutorShutdownTest, RefusedEvenIfNoDefaultExecutorWasMade) {
  run(use_after_shutdown(/*make_default_first=*/false));
}

TEST(DefaultExecutorShutdownTest, RunnerCloseAndLoopCloseMarkTheShutdown) {
  Runner runner;
  EventLoop& loop = runner.get_loop();
  EXPECT_EQ(runner.run(to_thread([] { return 6; })), 6);
  runner.close();
  EXPECT_TRUE(loop.executor_shutdown_called());
  std::unique_ptr<EventLoop> other = new_event_loop();
  other->close();
  EXPECT_TRUE(other->executor_shutdown_called());
}

TEST(DefaultExecutorShutdownTest, ThreadPoolSubmitAfterShutdown) {
  concurrent::ThreadPoolExecutor pool(1);
  EXPECT_EQ(pool.submit([] { return 7; }).result(), 7);
  pool.shutdown();
  try {
    (void)pool.submit([] { return 8; });
    ADD_FAILURE() << "submit accepted a job after shutdown";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "cannot schedule new futures after shutdown");
  }
}

}  // namespace
}  // namespace asyncio
