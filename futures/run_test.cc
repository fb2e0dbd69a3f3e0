// run(), Runner and shutdown_default_executor: asyncio.run, asyncio.Runner
// and loop.shutdown_default_executor.
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "futures/futures.h"
#include "gtest/gtest.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;

Coro<EventLoop*> running_loop() { co_return &get_running_loop(); }

Coro<int> add_later(int a, int b) {
  co_await sleep(1ms);
  co_return a + b;
}

// Sleeps until cancelled; records how it ended.
Coro<void> sleep_forever(std::string* outcome) {
  try {
    co_await sleep(1h);
    *outcome = "woke";
  } catch (const CancelledError&) {
    *outcome = "cancelled";
    throw;
  }
}

TEST(RunnerTest, RunsSeveralCoroutinesOnOneLoop) {
  Runner runner;
  EXPECT_EQ(runner.run(add_later(1, 2)), 3);
  EventLoop* first = runner.run(running_loop());
  EventLoop* second = runner.run(running_loop());
  EXPECT_EQ(first, second);
  EXPECT_EQ(first, &runner.get_loop());
}

TEST(RunnerTest, ATaskStartedInOneRunGoesOnInTheNext) {
  Runner runner;
  std::vector<int> log;
  auto ticker = [](std::vector<int>& l) -> Coro<void> {
    for (int i = 0; i < 3; ++i) {
      l.push_back(i);
      co_await sleep(0s);
    }
  };
  std::optional<Task<void>> task;
  runner.run([](auto& ticker, auto& log, auto& task) -> Coro<void> {
    task = create_task(ticker(log));
    co_return;
  }(ticker, log, task));
  EXPECT_FALSE(task->done());
  runner.run([](Task<void>& t) -> Coro<void> { co_await t; }(*task));
  EXPECT_EQ(log, (std::vector<int>{0, 1, 2}));
}

TEST(RunnerTest, CloseCancelsTheTasksLeft) {
  std::string outcome;
  Runner runner;
  runner.run([](std::string& o) -> Coro<void> {
    create_task(sleep_forever(&o));
    co_await sleep(0s);  // let it start
  }(outcome));
  EXPECT_EQ(outcome, "");
  runner.close();
  EXPECT_EQ(outcome, "cancelled");
}

TEST(RunnerTest, DestructorCloses) {
  std::string outcome;
  {
    Runner runner;
    runner.run([](std::string& o) -> Coro<void> {
      create_task(sleep_forever(&o));
      co_await sleep(0s);
    }(outcome));
    EXPECT_EQ(outcome, "");
  }
  EXPECT_EQ(outcome, "cancelled");
}

TEST(RunnerTest, ClosedRunnerRaises) {
  Runner runner;
  runner.run(add_later(1, 1));
  runner.close();
  testing::internal::CaptureStderr();
  EXPECT_THROW(runner.run(add_later(1, 1)), std::runtime_error);
  // As asyncio, the refused coroutine is reported as never awaited.
  EXPECT_NE(testing::internal::GetCapturedStderr().find("add_later' was never awaited"),
            std::string::npos);
  try {
    runner.get_loop();
    FAIL() << "get_loop() on a closed runner";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "Runner is closed");
  }
  runner.close();  // again: nothing
}

TEST(RunnerTest, CloseBeforeFirstUseDoesNothing) {
  // As asyncio's: only a runner whose loop was made is closed.
  Runner runner;
  runner.close();
  EXPECT_EQ(runner.run(add_later(2, 3)), 5);
}

TEST(RunnerTest, CloseClosesTheLoopAndUnsetsTheThreadsLoop) {
  Runner runner;
  EventLoop& loop = runner.get_loop();
  EXPECT_EQ(&get_event_loop(), &loop);
  runner.close();
  EXPECT_TRUE(loop.is_closed());
  EXPECT_NE(&get_event_loop(), &loop);
}

TEST(RunnerTest, ExceptionPropagatesAndRunnerStaysUsable) {
  Runner runner;
  EXPECT_THROW(runner.run([]() -> Coro<int> {
    co_await sleep(0s);
    throw std::logic_error("boom");
  }()),
               std::logic_error);
  EXPECT_EQ(runner.run(add_later(2, 2)), 4);
}

TEST(RunnerTest, RunInsideARunningLoopRaises) {
  Runner outer;
  Runner inner;
  outer.run([](Runner& in) -> Coro<void> {
    testing::internal::CaptureStderr();
    try {
      in.run(add_later(1, 1));
      ADD_FAILURE() << "Runner.run inside a running loop";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "Runner.run() cannot be called from a running event loop");
    }
    EXPECT_THROW(run(add_later(1, 1)), std::runtime_error);
    // As asyncio, each refused coroutine is reported as never awaited.
    const std::string reports = testing::internal::GetCapturedStderr();
    const size_t first = reports.find("add_later' was never awaited");
    EXPECT_NE(first, std::string::npos);
    EXPECT_NE(reports.find("add_later' was never awaited", first + 1), std::string::npos);
    co_return;
  }(inner));
}

TEST(RunnerTest, EmptyCoroRaises) {
  Runner runner;
  EXPECT_THROW(runner.run(Coro<int>()), std::invalid_argument);
}

TEST(RunnerTest, DebugOption) {
  Runner debug_runner({.debug = true});
  EXPECT_TRUE(debug_runner.get_loop().get_debug());
  Runner quiet_runner({.debug = false});
  EXPECT_FALSE(quiet_runner.get_loop().get_debug());
}

TEST(RunnerTest, LoopFactoryLoopIsUsedButNotSetAsTheThreadsLoop) {
  int made = 0;
  EventLoop* made_loop = nullptr;
  Runner runner({.loop_factory = [&] {
    ++made;
    auto loop = new_event_loop();
    loop->set_debug(true);  // kept: the runner's debug option is unset
    made_loop = loop.get();
    return loop;
  }});
  EXPECT_EQ(runner.run(running_loop()), made_loop);
  EXPECT_EQ(runner.run(running_loop()), made_loop);
  EXPECT_EQ(made, 1);
  EXPECT_TRUE(made_loop->get_debug());
  EXPECT_NE(&get_event_loop(), made_loop);
}

TEST(RunTest, LoopFactoryArgument) {
  EventLoop* made_loop = nullptr;
  EventLoop* used = run(running_loop(), [&] {
    auto loop = new_event_loop();
    made_loop = loop.get();
    return loop;
  });
  EXPECT_EQ(used, made_loop);
}

TEST(RunTest, ThreadsLoopIsSetWhileRunning) {
  EventLoop* seen = run([]() -> Coro<EventLoop*> {
    EXPECT_EQ(&get_event_loop(), &get_running_loop());
    co_return &get_running_loop();
  }());
  EXPECT_NE(&get_event_loop(), seen);
}

// An executor whose threads stay busy until released: shutdown_with_timeout
// waits for the release or the timeout, as a pool with a stuck job would.
class StuckExecutor : public Executor {
 public:
  void execute(absl::AnyInvocable<void()>) override {}
  void shutdown(bool wait, bool) override {
    if (!wait) return;
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return released_; });
  }
  bool shutdown_with_timeout(std::chrono::duration<double> timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [this] { return released_; });
  }
  void release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
};

TEST(ShutdownDefaultExecutorTest, WarnsAfterTheTimeoutAndReturns) {
  auto executor = std::make_shared<StuckExecutor>();
  std::vector<std::string> messages;
  const auto start = std::chrono::steady_clock::now();
  run(
      [](std::shared_ptr<StuckExecutor> ex, std::vector<std::string>& m) -> Coro<void> {
        EventLoop& loop = get_running_loop();
        loop.set_exception_handler(
            [&m](EventLoop&, const ExceptionContext& ctx) { m.push_back(ctx.message); });
        loop.set_default_executor(ex);
        co_return;
      }(executor, messages),
      {.executor_shutdown_timeout = 200ms});
  EXPECT_GE(std::chrono::steady_clock::now() - start, 200ms);
  EXPECT_EQ(messages,
            (std::vector<std::string>{
                "The executor did not finishing joining its threads within 0.2 seconds."}));
  executor->release();
}

TEST(ShutdownDefaultExecutorTest, TheLoopRunsWhileWaiting) {
  auto executor = std::make_shared<StuckExecutor>();
  run([](std::shared_ptr<StuckExecutor> ex) -> Coro<void> {
    EventLoop& loop = get_running_loop();
    loop.set_exception_handler([](EventLoop&, const ExceptionContext&) {});
    loop.set_default_executor(ex);
    // Released from the loop while the shutdown waits: the wait ends early.
    loop.call_later(20ms, [ex] { ex->release(); });
    const auto start = std::chrono::steady_clock::now();
    co_await shutdown_default_executor(10s);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  }(executor));
}

TEST(ShutdownDefaultExecutorTest, NoDefaultExecutorReturnsAtOnce) {
  run([]() -> Coro<void> {
    co_await shutdown_default_executor();
    EXPECT_EQ(get_running_loop().default_executor(), nullptr);
  }());
}

TEST(ShutdownDefaultExecutorTest, JoinedInTimeIsQuiet) {
  auto executor = std::make_shared<StuckExecutor>();
  executor->release();
  std::vector<std::string> messages;
  run([](std::shared_ptr<StuckExecutor> ex, std::vector<std::string>& m) -> Coro<void> {
    EventLoop& loop = get_running_loop();
    loop.set_exception_handler(
        [&m](EventLoop&, const ExceptionContext& ctx) { m.push_back(ctx.message); });
    loop.set_default_executor(ex);
    co_await shutdown_default_executor(1s);
  }(executor, messages));
  EXPECT_TRUE(messages.empty());
}

}  // namespace
}  // namespace asyncio
