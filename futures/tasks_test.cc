// Tasks: scheduling, results, names, cancellation (asyncio 3.12 rules),
// lifetimes, run(), async generators.
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "futures/futures.h"
#include "gtest/gtest.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;

// Sets a flag when destroyed: shows that a frame's locals were destroyed.
struct DestroyFlag {
  bool* flag;
  ~DestroyFlag() { *flag = true; }
};

Coro<int> add_later(int a, int b) {
  co_await sleep(1ms);
  co_return a + b;
}

TEST(TaskTest, CreateTaskDoesNotStartTheBody) {
  run([]() -> Coro<void> {
    std::vector<std::string> log;
    auto body = [](std::vector<std::string>& l) -> Coro<void> {
      l.push_back("body");
      co_return;
    };
    Task<void> t = create_task(body(log));
    log.push_back("after create_task");
    co_await t;
    EXPECT_EQ(log, (std::vector<std::string>{"after create_task", "body"}));
  }());
}

TEST(TaskTest, ResultNamesAndState) {
  run([]() -> Coro<void> {
    Task<int> t = create_task(add_later(2, 3));
    EXPECT_EQ(t.get_name().rfind("Task-", 0), 0u);
    Task<int> named = create_task(add_later(1, 1), "adder");
    EXPECT_EQ(named.get_name(), "adder");
    named.set_name("renamed");
    EXPECT_EQ(named.get_name(), "renamed");
    EXPECT_FALSE(t.done());
    EXPECT_EQ(co_await t, 5);
    EXPECT_TRUE(t.done());
    EXPECT_EQ(t.result(), 5);
    EXPECT_EQ(co_await named, 2);
    EXPECT_FALSE(t.cancel()) << "a done task cannot be cancelled";
  }());
}

TEST(TaskTest, SeveralAwaitersOfOneTask) {
  run([]() -> Coro<void> {
    Task<int> t = create_task(add_later(20, 22));
    auto waiter = [](Task<int> task) -> Coro<int> { co_return co_await task; };
    auto [a, b, c] = co_await gather(waiter(t), waiter(t), waiter(t));
    EXPECT_EQ(a + b + c, 126);
  }());
}

TEST(TaskTest, ExceptionPropagatesToTheAwaiter) {
  EXPECT_THROW(run([]() -> Coro<void> {
                 auto fails = []() -> Coro<int> {
                   co_await sleep(0s);
                   throw std::domain_error("bad input");
                 };
                 Task<int> t = create_task(fails());
                 co_await t;
               }()),
               std::domain_error);
}

TEST(TaskTest, NestedCoroExceptionsPropagateInline) {
  run([]() -> Coro<void> {
    auto inner = []() -> Coro<int> {
      co_await sleep(0s);
      throw std::length_error("inner");
    };
    bool caught = false;
    try {
      co_await inner();
    } catch (const std::length_error&) {
      caught = true;
    }
    EXPECT_TRUE(caught);
  }());
}

Coro<long> deep(int n) {
  if (n == 0) co_return 0;
  co_return 1 + co_await deep(n - 1);
}

TEST(TaskTest, DeepChainOfInlineAwaits) {
  // GCC emits the tail call of symmetric transfer only when optimizing, so the
  // depth is one that -O0 and the sanitizer builds also take.
  EXPECT_EQ(run(deep(2000)), 2000);
}

TEST(TaskTest, CancelPropagatesIntoTheAwaitedFuture) {
  run([]() -> Coro<void> {
    Future<int> fut = create_future<int>(get_running_loop());
    auto waiter = [](Future<int> f) -> Coro<int> { co_return co_await f; };
    Task<int> t = create_task(waiter(fut));
    co_await sleep(0s);  // t is now blocked on fut
    EXPECT_TRUE(t.cancel("stop"));
    EXPECT_EQ(t.cancelling(), 1);
    EXPECT_TRUE(fut.cancelled()) << "cancelling the task cancels the future it awaits";
    try {
      co_await t;
      ADD_FAILURE() << "expected CancelledError";
    } catch (const CancelledError& e) {
      EXPECT_EQ(e.message(), "stop");
    }
    EXPECT_TRUE(t.cancelled());
    EXPECT_THROW(t.result(), CancelledError);
  }());
}

TEST(TaskTest, CancelledBeforeItStartsNeverRunsTheBody) {
  run([]() -> Coro<void> {
    bool ran = false;
    auto body = [](bool& r) -> Coro<void> {
      r = true;
      co_return;
    };
    Task<void> t = create_task(body(ran));
    EXPECT_TRUE(t.cancel());
    try {
      co_await t;
    } catch (const CancelledError&) {
    }
    EXPECT_TRUE(t.cancelled());
    EXPECT_FALSE(ran);
  }());
}

TEST(TaskTest, TaskThatSwallowsCancellationIsNotCancelled) {
  run([]() -> Coro<void> {
    auto stubborn = []() -> Coro<std::string> {
      try {
        co_await sleep(10s);
      } catch (const CancelledError&) {
        co_return "survived";
      }
      co_return "slept";
    };
    Task<std::string> t = create_task(stubborn());
    co_await sleep(0s);
    t.cancel();
    EXPECT_EQ(co_await t, "survived");
    EXPECT_FALSE(t.cancelled());
    EXPECT_EQ(t.cancelling(), 1);
    EXPECT_EQ(t.uncancel(), 0);
    EXPECT_EQ(t.uncancel(), 0);
  }());
}

TEST(TaskTest, CancelWhileWokenButNotYetRunning) {
  // The awaited future is already done (the task is scheduled) when cancel()
  // arrives: the task still sees CancelledError at that await.
  run([]() -> Coro<void> {
    Future<int> fut = create_future<int>(get_running_loop());
    bool got_value = false;
    auto waiter = [](Future<int> f, bool& got) -> Coro<void> {
      co_await f;
      got = true;
    };
    Task<void> t = create_task(waiter(fut, got_value));
    co_await sleep(0s);
    fut.set_result(1);  // schedules t
    EXPECT_TRUE(t.cancel());
    EXPECT_FALSE(fut.cancelled());
    EXPECT_THROW(co_await t, CancelledError);
    EXPECT_FALSE(got_value);
    EXPECT_TRUE(t.cancelled());
  }());
}

TEST(TaskTest, SelfCancelTakesEffectAtTheNextSuspension) {
  run([]() -> Coro<void> {
    auto body = []() -> Coro<int> {
      current_task()->cancel("self");
      int steps = 1;  // still running: no exception yet
      try {
        co_await sleep(1s);
      } catch (const CancelledError& e) {
        EXPECT_EQ(e.message(), "self");
        steps = 2;
      }
      co_return steps;
    };
    EXPECT_EQ(co_await create_task(body()), 2);
  }());
}

TEST(TaskTest, CancelAwaitingAnotherTaskCancelsTheInnerTask) {
  run([]() -> Coro<void> {
    Task<void> inner = create_task(sleep(10s));
    auto outer_body = [](Task<void> t) -> Coro<void> { co_await t; };
    Task<void> outer = create_task(outer_body(inner));
    co_await sleep(0s);
    co_await sleep(0s);
    outer.cancel();
    EXPECT_THROW(co_await outer, CancelledError);
    EXPECT_TRUE(inner.cancelled());
  }());
}

TEST(TaskTest, CurrentAndAllTasks) {
  EXPECT_FALSE(current_task().has_value());
  run([]() -> Coro<void> {
    std::optional<AnyTask> me = current_task();
    EXPECT_TRUE(me.has_value());
    Task<void> other = create_task(sleep(1ms), "other");
    std::vector<AnyTask> tasks = all_tasks();
    EXPECT_EQ(tasks.size(), 2u);
    if (tasks.size() == 2 && me) {
      EXPECT_TRUE(tasks[0] == *me);
      EXPECT_EQ(tasks[1].get_name(), "other");
    }
    co_await other;
    EXPECT_EQ(all_tasks().size(), 1u) << "done tasks leave all_tasks";
    auto inner = []() -> Coro<bool> {
      // current_task inside a nested coroutine is the enclosing task.
      co_return current_task().has_value();
    };
    EXPECT_TRUE(co_await inner());
  }());
}

TEST(TaskTest, UnretrievedTaskExceptionIsReported) {
  auto loop = new_event_loop();
  std::vector<ExceptionContext> reports;
  loop->set_exception_handler(
      [&](EventLoop&, const ExceptionContext& ctx) { reports.push_back(ctx); });
  {
    auto fails = []() -> Coro<void> {
      co_await sleep(0s);
      throw std::runtime_error("nobody looks");
    };
    Task<void> t = create_task(*loop, fails(), "lonely");
    loop->call_later(5ms, [&] { loop->stop(); });
    loop->run_forever();
    EXPECT_TRUE(t.done());
  }
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].message, "Task exception was never retrieved");
  EXPECT_EQ(reports[0].task, "<Task finished name='lonely' exception=nobody looks>");
  EXPECT_NE(reports[0].exception, nullptr);
}

TEST(TaskTest, RunCancelsWhatIsLeftAndRunsItsCleanup) {
  bool cleaned_up = false;
  bool saw_cancel = false;
  int result = run([](bool& cleaned, bool& saw) -> Coro<int> {
    auto background = [](bool& c, bool& s) -> Coro<void> {
      DestroyFlag flag{&c};
      try {
        co_await sleep(10s);
      } catch (const CancelledError&) {
        s = true;
        throw;
      }
    };
    create_task(background(cleaned, saw));
    co_await sleep(0s);
    co_return 7;
  }(cleaned_up, saw_cancel));
  EXPECT_EQ(result, 7);
  EXPECT_TRUE(saw_cancel);
  EXPECT_TRUE(cleaned_up);
}

TEST(TaskTest, DebugModeReportsSlowTaskSteps) {
  std::vector<std::string> messages;
  run(
      [](std::vector<std::string>& m) -> Coro<void> {
        EventLoop& loop = get_running_loop();
        EXPECT_TRUE(loop.get_debug());
        loop.set_slow_callback_duration(0.01);
        loop.set_exception_handler(
            [&m](EventLoop&, const ExceptionContext& ctx) { m.push_back(ctx.message); });
        auto busy = []() -> Coro<void> {
          const auto until = std::chrono::steady_clock::now() + 20ms;
          while (std::chrono::steady_clock::now() < until) {
          }
          co_return;
        };
        co_await create_task(busy());
      }(messages),
      {.debug = true});
  ASSERT_FALSE(messages.empty());
  EXPECT_NE(messages[0].find("took"), std::string::npos);
}

TEST(TaskTest, RunInsideARunningLoopThrows) {
  run([]() -> Coro<void> {
    auto noop = []() -> Coro<void> { co_return; };
    testing::internal::CaptureStderr();
    EXPECT_THROW(run(noop()), std::runtime_error);
    // As asyncio, the refused coroutine is reported as never awaited.
    EXPECT_NE(testing::internal::GetCapturedStderr().find("' was never awaited"),
              std::string::npos);
    co_return;
  }());
}

TEST(TaskTest, RunUntilCompleteAcceptsCoroTaskAndFuture) {
  auto loop = new_event_loop();
  EXPECT_EQ(run_until_complete(*loop, add_later(1, 2)), 3);
  Task<int> t = create_task(*loop, add_later(3, 4));
  EXPECT_EQ(run_until_complete(*loop, t), 7);
  Future<std::string> f = create_future<std::string>(*loop);
  loop->call_soon([f]() mutable { f.set_result("done"); });
  EXPECT_EQ(run_until_complete(*loop, f), "done");
}

TEST(TaskTest, TaskAwaitingItselfGetsRuntimeError) {
  run([]() -> Coro<void> {
    auto await_self = []() -> Coro<void> {
      std::optional<AnyTask> self = current_task();
      co_await *self;
    };
    Task<void> t = create_task(await_self());
    // A guard only: the task fails at once.
    std::vector<Task<void>> one{t};
    co_await wait(one, 10s);
    EXPECT_TRUE(t.done());
    if (!t.done()) co_return;
    try {
      co_await t;
      ADD_FAILURE() << "no error";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("cannot await on itself"), std::string::npos);
    }
  }());
}

TEST(TaskTest, FutureOfAnotherLoopIsRefused) {
  auto other = new_event_loop();
  Future<int> foreign = create_future<int>(*other);
  run([&]() -> Coro<void> {
    // wait_for only bounds the wait if the await is accepted.
    try {
      co_await wait_for(foreign, 10s);
      ADD_FAILURE() << "awaited a future of another loop";
    } catch (const TimeoutError&) {
      ADD_FAILURE() << "awaited a future of another loop";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("different loop"), std::string::npos) << e.what();
    }
    EXPECT_THROW(co_await gather(foreign), std::invalid_argument);
    std::vector<Future<int>> futures{foreign};
    EXPECT_THROW(co_await gather(futures), std::invalid_argument);
    EXPECT_THROW(co_await wait(futures, 10s), std::invalid_argument);
    EXPECT_THROW(as_completed(futures), std::invalid_argument);
  }());
  auto loop = new_event_loop();
  TimerHandle guard = loop->call_later(10s, [&] { loop->stop(); });
  EXPECT_THROW(run_until_complete(*loop, foreign), std::invalid_argument);
  guard.cancel();
  EXPECT_FALSE(foreign.done());
}

TEST(TaskTest, RunUntilCompleteStoppedEarlyThrows) {
  auto loop = new_event_loop();
  Future<int> never = create_future<int>(*loop);
  loop->call_soon([&] { loop->stop(); });
  EXPECT_THROW(run_until_complete(*loop, never), std::runtime_error);
}

TEST(TaskTest, AbandonedTaskIsReportedAndItsFrameReleased) {
  bool destroyed = false;
  std::vector<std::string> reports;
  {
    auto loop = new_event_loop();
    loop->set_exception_handler([&](EventLoop&, const ExceptionContext& ctx) {
      reports.push_back(ctx.message + " task: " + ctx.task);
    });
    Future<void> never = create_future<void>(*loop);
    auto stuck = [](Future<void> f, bool& d) -> Coro<void> {
      DestroyFlag flag{&d};
      co_await f;
    };
    create_task(*loop, stuck(never, destroyed), "stuck");
    loop->call_later(1ms, [&] { loop->stop(); });
    loop->run_forever();
    EXPECT_FALSE(destroyed);
  }  // the loop goes with the task still pending
  EXPECT_TRUE(destroyed);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0],
            "Task was destroyed but it is pending! task: "
            "<Task pending name='stuck' wait_for=<Future pending>>");
}

TEST(TaskTest, CreateTaskOnClosedLoopThrows) {
  auto loop = new_event_loop();
  loop->close();
  testing::internal::CaptureStderr();
  EXPECT_THROW(create_task(*loop, add_later(1, 1)), std::runtime_error);
  // As asyncio, the refused coroutine is reported as never awaited.
  EXPECT_NE(testing::internal::GetCapturedStderr().find("add_later' was never awaited"),
            std::string::npos);
}

TEST(TaskTest, AwaitOutsideATaskThrows) {
  auto loop = new_event_loop();
  Future<int> f = create_future<int>(*loop);
  Coro<int> c = [](Future<int> fut) -> Coro<int> { co_return co_await fut; }(f);
  // Driving a coroutine by hand (not through a task) cannot suspend.
  auto h = c.release();
  h.resume();
  EXPECT_TRUE(h.done());
  EXPECT_THROW(h.promise().take_result(), std::runtime_error);
  h.destroy();
}

TEST(SleepTest, OrderAndResult) {
  run([]() -> Coro<void> {
    std::vector<int> order;
    auto after = [](std::chrono::milliseconds d, int v, std::vector<int>& o) -> Coro<void> {
      co_await sleep(d);
      o.push_back(v);
    };
    co_await gather(after(30ms, 3, order), after(10ms, 1, order), after(20ms, 2, order));
    EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
    EXPECT_EQ(co_await sleep(1ms, std::string("value")), "value");
    const double t0 = get_running_loop().time();
    co_await sleep(20ms);
    EXPECT_GE(get_running_loop().time() - t0, 0.02);
  }());
}

TEST(SleepTest, SleepZeroLetsOthersRun) {
  run([]() -> Coro<void> {
    std::vector<std::string> log;
    auto ping = [](std::string name, std::vector<std::string>& l) -> Coro<void> {
      for (int i = 0; i < 3; ++i) {
        l.push_back(name);
        co_await sleep(0s);
      }
    };
    co_await gather(ping("a", log), ping("b", log));
    EXPECT_EQ(log, (std::vector<std::string>{"a", "b", "a", "b", "a", "b"}));
  }());
}

AsyncGenerator<int> count_to(int n, bool* destroyed) {
  DestroyFlag flag{destroyed};
  for (int i = 1; i <= n; ++i) {
    co_await sleep(0s);
    co_yield i;
  }
}

TEST(AsyncGeneratorTest, YieldsThenEnds) {
  run([]() -> Coro<void> {
    bool destroyed = false;
    auto gen = count_to(3, &destroyed);
    std::vector<int> got;
    while (std::optional<int> v = co_await gen.next()) got.push_back(*v);
    EXPECT_EQ(got, (std::vector<int>{1, 2, 3}));
    EXPECT_FALSE(co_await gen.next());
  }());
}

TEST(AsyncGeneratorTest, AcloseDestroysTheFrame) {
  run([]() -> Coro<void> {
    bool destroyed = false;
    auto gen = count_to(100, &destroyed);
    EXPECT_EQ(co_await gen.next(), 1);
    EXPECT_FALSE(destroyed);
    co_await gen.aclose();
    EXPECT_TRUE(destroyed);
    EXPECT_FALSE(co_await gen.next());
  }());
}

TEST(AsyncGeneratorTest, ExceptionsPropagateToNext) {
  run([]() -> Coro<void> {
    auto bad = []() -> AsyncGenerator<int> {
      co_yield 1;
      throw std::runtime_error("generator failed");
    };
    auto gen = bad();
    EXPECT_EQ(co_await gen.next(), 1);
    EXPECT_THROW(co_await gen.next(), std::runtime_error);
    EXPECT_FALSE(co_await gen.next());
  }());
}

TEST(AsyncGeneratorTest, RunShutsDownOpenGenerators) {
  bool destroyed = false;
  auto holder = std::make_shared<std::optional<AsyncGenerator<int>>>();
  run([](bool& d, std::shared_ptr<std::optional<AsyncGenerator<int>>> h) -> Coro<void> {
    h->emplace(count_to(100, &d));
    EXPECT_EQ(co_await (**h).next(), 1);
  }(destroyed, holder));
  EXPECT_TRUE(destroyed) << "asyncio::run closes generators left open";
  holder->reset();
}

TEST(AsyncGeneratorTest, ShutdownAsyncgensClosesOpenOnes) {
  run([]() -> Coro<void> {
    bool d1 = false, d2 = false;
    auto g1 = count_to(10, &d1);
    auto g2 = count_to(10, &d2);
    co_await g1.next();
    co_await g2.next();
    co_await shutdown_asyncgens(get_running_loop());
    EXPECT_TRUE(d1);
    EXPECT_TRUE(d2);
    EXPECT_FALSE(co_await g1.next());
  }());
}

}  // namespace
}  // namespace asyncio
