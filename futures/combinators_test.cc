// gather, wait, wait_for, shield, as_completed and TaskGroup, with the
// cancellation rules of asyncio 3.12 (3.13 for as_completed and TaskGroup).
#include <chrono>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "futures/futures.h"
#include "gtest/gtest.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;

Coro<int> value_after(std::chrono::milliseconds delay, int value) {
  co_await sleep(delay);
  co_return value;
}

Coro<int> fail_after(std::chrono::milliseconds delay, std::string what) {
  co_await sleep(delay);
  throw std::runtime_error(what);
}

Coro<void> sleep_then_flag(std::chrono::milliseconds delay, bool& flag) {
  co_await sleep(delay);
  flag = true;
}

// ---------------------------------------------------------------------------
// gather

TEST(GatherTest, TupleInArgumentOrderWithVoidAsMonostate) {
  run([]() -> Coro<void> {
    bool flag = false;
    auto [a, nothing, b] =
        co_await gather(value_after(20ms, 1), sleep_then_flag(5ms, flag), value_after(1ms, 2));
    EXPECT_EQ(a, 1);
    EXPECT_EQ(b, 2);
    EXPECT_TRUE(flag);
    static_assert(std::is_same_v<decltype(nothing), std::monostate>);
  }());
}

TEST(GatherTest, VectorForms) {
  run([]() -> Coro<void> {
    std::vector<Coro<int>> coros;
    for (int i = 0; i < 5; ++i) coros.push_back(value_after(std::chrono::milliseconds(5 - i), i));
    std::vector<int> results = co_await gather(std::move(coros));
    EXPECT_EQ(results, (std::vector<int>{0, 1, 2, 3, 4}));

    int done = 0;
    auto bump = [](int& d) -> Coro<void> {
      co_await sleep(0s);
      ++d;
    };
    std::vector<Coro<void>> voids;
    for (int i = 0; i < 3; ++i) voids.push_back(bump(done));
    co_await gather(std::move(voids));
    EXPECT_EQ(done, 3);

    std::vector<Task<int>> none;
    EXPECT_TRUE((co_await gather(std::move(none))).empty());
  }());
}

TEST(GatherTest, FirstExceptionPropagatesAndOthersKeepRunning) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    // The others wait for futures that are set only after gather has failed,
    // so "first" is the first exception and the others are still running.
    Future<int> release_slow = create_future<int>(loop);
    Future<void> release_second = create_future<void>(loop);
    auto value_when = [](Future<int> release) -> Coro<int> { co_return co_await release; };
    auto fail_when = [](Future<void> release, std::string what) -> Coro<int> {
      co_await release;
      throw std::runtime_error(what);
    };
    Task<int> slow = create_task(value_when(release_slow));
    bool caught = false;
    try {
      co_await gather(fail_after(0ms, "first"), slow, fail_when(release_second, "second"));
    } catch (const std::runtime_error& e) {
      caught = true;
      EXPECT_STREQ(e.what(), "first");
    }
    EXPECT_TRUE(caught);
    EXPECT_FALSE(slow.done()) << "gather does not cancel the others on failure";
    release_second.set_result();
    release_slow.set_result(9);
    EXPECT_EQ(co_await slow, 9);
  }());
}

TEST(GatherTest, ReturnExceptionsCollectsEverything) {
  run([]() -> Coro<void> {
    Task<int> cancelled = create_task(value_after(1s, 0));
    std::vector<Task<int>> tasks{create_task(value_after(1ms, 1)),
                                 create_task(fail_after(2ms, "boom")), cancelled};
    cancelled.cancel("no");
    std::vector<Outcome<int>> out = co_await gather(return_exceptions, std::move(tasks));
    EXPECT_EQ(out.size(), 3u);
    EXPECT_TRUE(out[0].has_value());
    EXPECT_EQ(out[0].value(), 1);
    EXPECT_FALSE(out[1].has_value());
    EXPECT_THROW(std::rethrow_exception(out[1].exception()), std::runtime_error);
    EXPECT_THROW(std::rethrow_exception(out[2].exception()), CancelledError);

    auto [x, y] = co_await gather(return_exceptions, value_after(1ms, 5), fail_after(1ms, "y"));
    EXPECT_EQ(x.value(), 5);
    EXPECT_FALSE(y.has_value());
  }());
}

TEST(GatherTest, CancellingTheGatherCancelsAllChildren) {
  run([]() -> Coro<void> {
    Task<int> a = create_task(value_after(1s, 1));
    Task<int> b = create_task(value_after(1s, 2));
    auto gatherer = [](Task<int> x, Task<int> y) -> Coro<void> { co_await gather(x, y); };
    Task<void> g = create_task(gatherer(a, b));
    co_await sleep(1ms);
    g.cancel();
    EXPECT_THROW(co_await g, CancelledError);
    EXPECT_TRUE(g.cancelled());
    EXPECT_TRUE(a.cancelled());
    EXPECT_TRUE(b.cancelled());
  }());
}

TEST(GatherTest, CancelledChildFailsTheGather) {
  run([]() -> Coro<void> {
    Task<int> a = create_task(value_after(1s, 1));
    Task<int> b = create_task(value_after(5ms, 2));
    get_running_loop().call_later(1ms, [a]() mutable { a.cancel(); });
    EXPECT_THROW(co_await gather(a, b), CancelledError);
    EXPECT_EQ(co_await b, 2);
  }());
}

// ---------------------------------------------------------------------------
// wait

TEST(WaitTest, AllCompletedNeverRaises) {
  run([]() -> Coro<void> {
    std::vector<Task<int>> tasks{create_task(value_after(1ms, 1)),
                                 create_task(fail_after(2ms, "x"))};
    auto [done, pending] = co_await wait(tasks);
    EXPECT_EQ(done.size(), 2u);
    EXPECT_TRUE(pending.empty());
    EXPECT_EQ(done[0].result(), 1);
    EXPECT_THROW(done[1].result(), std::runtime_error);
  }());
}

TEST(WaitTest, FirstCompletedAndNoCancellationOfTheRest) {
  run([]() -> Coro<void> {
    std::vector<Task<int>> tasks{create_task(value_after(50ms, 1)),
                                 create_task(value_after(1ms, 2))};
    auto [done, pending] = co_await wait(tasks, std::nullopt, ReturnWhen::FIRST_COMPLETED);
    EXPECT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].result(), 2);
    EXPECT_EQ(pending.size(), 1u);
    EXPECT_FALSE(pending[0].cancelled());
    EXPECT_EQ(co_await pending[0], 1);
  }());
}

TEST(WaitTest, FirstExceptionAndTimeout) {
  run([]() -> Coro<void> {
    std::vector<Task<int>> tasks{create_task(value_after(1s, 1)),
                                 create_task(fail_after(1ms, "e"))};
    auto [done, pending] = co_await wait(tasks, std::nullopt, ReturnWhen::FIRST_EXCEPTION);
    EXPECT_EQ(done.size(), 1u);
    EXPECT_EQ(pending.size(), 1u);

    auto [done2, pending2] = co_await wait(pending, 5ms);
    EXPECT_TRUE(done2.empty());
    EXPECT_EQ(pending2.size(), 1u);
    EXPECT_FALSE(pending2[0].cancelled()) << "wait's timeout does not cancel";
    pending2[0].cancel();
  }());
}

TEST(WaitTest, EmptyIsAnError) {
  run([]() -> Coro<void> {
    std::vector<Task<int>> none;
    EXPECT_THROW(co_await wait(none), std::invalid_argument);
  }());
}

// ---------------------------------------------------------------------------
// wait_for

TEST(WaitForTest, TimesOutAndCancelsTheAwaitable) {
  run([]() -> Coro<void> {
    bool cleaned = false;
    auto eternity = [](bool& c) -> Coro<void> {
      try {
        co_await sleep(3600s);
      } catch (const CancelledError&) {
        c = true;
        throw;
      }
    };
    EXPECT_THROW(co_await wait_for(eternity(cleaned), 10ms), TimeoutError);
    EXPECT_TRUE(cleaned);
    EXPECT_EQ(current_task()->cancelling(), 0) << "the timeout's cancel is taken back";
  }());
}

TEST(WaitForTest, CompletesInTime) {
  run([]() -> Coro<void> {
    EXPECT_EQ(co_await wait_for(value_after(1ms, 4), 1s), 4);
    Task<int> t = create_task(value_after(1ms, 5));
    EXPECT_EQ(co_await wait_for(t, 1s), 5);
    EXPECT_THROW(co_await wait_for(fail_after(1ms, "inner"), 1s), std::runtime_error);
  }());
}

TEST(WaitForTest, TaskTimesOutAndIsCancelled) {
  run([]() -> Coro<void> {
    Task<int> t = create_task(value_after(1s, 1));
    EXPECT_THROW(co_await wait_for(t, 5ms), TimeoutError);
    EXPECT_TRUE(t.cancelled());
  }());
}

TEST(WaitForTest, OuterCancellationIsNotATimeout) {
  run([]() -> Coro<void> {
    auto waiter = []() -> Coro<void> { co_await wait_for(sleep(10s), 5s); };
    Task<void> t = create_task(waiter());
    co_await sleep(1ms);
    t.cancel();
    EXPECT_THROW(co_await t, CancelledError);
    EXPECT_TRUE(t.cancelled());
  }());
}

TEST(WaitForTest, ZeroTimeout) {
  run([]() -> Coro<void> {
    Future<int> done = create_future<int>(get_running_loop());
    done.set_result(3);
    EXPECT_EQ(co_await wait_for(done, 0s), 3);
    Task<int> slow = create_task(value_after(1s, 1));
    EXPECT_THROW(co_await wait_for(slow, 0s), TimeoutError);
    EXPECT_TRUE(slow.cancelled());
  }());
}

TEST(WaitForTest, NanTimeoutIsRejectedAndTheAwaitableKept) {
  run([]() -> Coro<void> {
    const auto nan = std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN());
    Task<int> t = create_task(value_after(1ms, 6));
    EXPECT_THROW(co_await wait_for(t, nan), std::invalid_argument);
    Coro<int> kept = value_after(1ms, 7);
    EXPECT_THROW(co_await wait_for(std::move(kept), nan), std::invalid_argument);
    EXPECT_TRUE(kept.valid()) << "the refused Coro is left to its owner";
    kept.close();
    EXPECT_EQ(co_await t, 6) << "the task was neither cancelled nor lost";
    EXPECT_EQ(current_task()->cancelling(), 0);
  }());
}

TEST(WaitForTest, InfiniteTimeoutNeverExpiresAndMinusInfinityIsNow) {
  run([]() -> Coro<void> {
    const auto inf = std::chrono::duration<double>(std::numeric_limits<double>::infinity());
    EXPECT_EQ(co_await wait_for(value_after(2ms, 8), inf), 8);
    Task<int> slow = create_task(value_after(1s, 1));
    EXPECT_THROW(co_await wait_for(slow, -inf), TimeoutError);
    EXPECT_TRUE(slow.cancelled());
  }());
}

TEST(SleepTest, NanIsRejectedInfinitySleepsUntilCancelled) {
  run([]() -> Coro<void> {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double inf = std::numeric_limits<double>::infinity();
    EXPECT_THROW(co_await sleep(std::chrono::duration<double>(nan)), std::invalid_argument);
    EXPECT_THROW(co_await sleep(std::chrono::duration<double>(nan), 1), std::invalid_argument);
    co_await sleep(std::chrono::duration<double>(-inf));  // one iteration, as sleep(0)
    Task<void> forever = create_task(sleep(std::chrono::duration<double>(inf)));
    co_await sleep(1ms);
    EXPECT_FALSE(forever.done());
    forever.cancel();
    EXPECT_THROW(co_await forever, CancelledError);
  }());
}

TEST(WaitTest, NanTimeoutIsRejected) {
  run([]() -> Coro<void> {
    const auto nan = std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN());
    std::vector<Task<int>> tasks{create_task(value_after(1ms, 1))};
    EXPECT_THROW(co_await wait(tasks, nan), std::invalid_argument);
    EXPECT_THROW(as_completed(tasks, nan), std::invalid_argument);
    EXPECT_EQ(co_await tasks[0], 1);
  }());
}

// ---------------------------------------------------------------------------
// shield

TEST(ShieldTest, CancellingTheOuterLeavesTheInnerRunning) {
  run([]() -> Coro<void> {
    Task<int> inner = create_task(value_after(5ms, 42));
    auto guarded = [](Task<int> t) -> Coro<int> { co_return co_await shield(t); };
    Task<int> outer = create_task(guarded(inner));
    co_await sleep(1ms);
    outer.cancel();
    EXPECT_THROW(co_await outer, CancelledError);
    EXPECT_FALSE(inner.cancelled());
    EXPECT_EQ(co_await inner, 42);
  }());
}

TEST(ShieldTest, PassesResultsAndErrorsThrough) {
  run([]() -> Coro<void> {
    EXPECT_EQ(co_await shield(value_after(1ms, 8)), 8);
    EXPECT_THROW(co_await shield(fail_after(1ms, "through")), std::runtime_error);
    Future<int> done = create_future<int>(get_running_loop());
    done.set_result(1);
    EXPECT_TRUE(shield(done) == done) << "a done future is returned as is";
  }());
}

// ---------------------------------------------------------------------------
// as_completed

TEST(AsCompletedTest, YieldsInCompletionOrder) {
  run([]() -> Coro<void> {
    std::vector<Coro<int>> coros;
    coros.push_back(value_after(30ms, 3));
    coros.push_back(value_after(10ms, 1));
    coros.push_back(value_after(20ms, 2));
    std::vector<int> order;
    for (auto next : as_completed(std::move(coros))) order.push_back(co_await next);
    EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  }());
}

// Finishes after `steps` loop iterations: a completion order that does not
// depend on timing.
Coro<int> value_after_steps(int steps, int value) {
  for (int i = 0; i < steps; ++i) co_await sleep(0s);
  co_return value;
}

// 3.13's `async for t in as_completed(tasks)`: the tasks themselves.
TEST(AsCompletedTest, NextGivesTheTasksPassedIn) {
  run([]() -> Coro<void> {
    std::vector<Task<int>> tasks{create_task(value_after_steps(3, 30), "c"),
                                 create_task(value_after_steps(1, 10), "a"),
                                 create_task(value_after_steps(2, 20), "b")};
    auto completed = as_completed(tasks);
    std::vector<std::string> names;
    std::vector<int> results;
    while (std::optional<Task<int>> t = co_await completed.next()) {
      EXPECT_TRUE(t->done());
      EXPECT_TRUE(*t == tasks[0] || *t == tasks[1] || *t == tasks[2]);
      names.push_back(t->get_name());
      results.push_back(co_await *t);
    }
    EXPECT_EQ(names, (std::vector<std::string>{"a", "b", "c"}));
    EXPECT_EQ(results, (std::vector<int>{10, 20, 30}));
    EXPECT_FALSE((co_await completed.next()).has_value()) << "stays exhausted";
  }());
}

TEST(AsCompletedTest, NextGivesTheFuturesPassedIn) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    std::vector<Future<int>> futures{create_future<int>(loop), create_future<int>(loop)};
    loop.call_soon([f = futures[1]]() mutable { f.set_result(2); });
    loop.call_soon([f = futures[0]]() mutable {
      f.set_exception(std::make_exception_ptr(std::runtime_error("first")));
    });
    auto completed = as_completed(futures);
    std::optional<Future<int>> first = co_await completed.next();
    EXPECT_TRUE(*first == futures[1]);
    EXPECT_EQ(first->result(), 2);
    std::optional<Future<int>> second = co_await completed.next();
    EXPECT_TRUE(*second == futures[0]);
    EXPECT_THROW(second->result(), std::runtime_error) << "the failure stays in the future";
    EXPECT_FALSE((co_await completed.next()).has_value());
  }());
}

TEST(AsCompletedTest, NextGivesATaskForEachCoroutine) {
  run([]() -> Coro<void> {
    std::vector<Coro<int>> coros;
    coros.push_back(value_after_steps(2, 2));
    coros.push_back(value_after_steps(1, 1));
    auto completed = as_completed(std::move(coros));
    std::vector<int> results;
    while (auto t = co_await completed.next()) {
      static_assert(std::is_same_v<decltype(t), std::optional<Task<int>>>);
      results.push_back(t->result());
    }
    EXPECT_EQ(results, (std::vector<int>{1, 2}));
  }());
}

TEST(AsCompletedTest, NextThrowsTimeoutErrorForTheRest) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Future<int> never = create_future<int>(loop);
    std::vector<Future<int>> futures{never, create_future<int>(loop)};
    futures[1].set_result(1);
    auto completed = as_completed(futures, 5ms);
    EXPECT_EQ((co_await completed.next())->result(), 1);
    EXPECT_THROW(co_await completed.next(), TimeoutError);
    EXPECT_FALSE((co_await completed.next()).has_value());
    EXPECT_FALSE(never.done()) << "as_completed never cancels what it was given";
  }());
}

TEST(AsCompletedTest, TimeoutRaisesForTheRest) {
  run([]() -> Coro<void> {
    std::vector<Task<int>> tasks{create_task(value_after(1ms, 1)), create_task(value_after(1s, 2))};
    int got = 0, timeouts = 0;
    for (auto next : as_completed(tasks, 20ms)) {
      try {
        got += co_await next;
      } catch (const TimeoutError&) {
        ++timeouts;
      }
    }
    EXPECT_EQ(got, 1);
    EXPECT_EQ(timeouts, 1);
    tasks[1].cancel();
  }());
}

// ---------------------------------------------------------------------------
// TaskGroup

TEST(TaskGroupTest, WaitsForAllChildren) {
  run([]() -> Coro<void> {
    TaskGroup group;
    Task<int> a = group.create_task(value_after(5ms, 1));
    Task<int> b = group.create_task(value_after(1ms, 2));
    co_await group.join();
    EXPECT_EQ(a.result() + b.result(), 3);
    EXPECT_THROW(group.create_task(value_after(1ms, 3)), std::runtime_error);
  }());
}

TEST(TaskGroupTest, FailureCancelsSiblingsAndRaisesExceptionGroup) {
  run([]() -> Coro<void> {
    TaskGroup group;
    Task<int> slow = group.create_task(value_after(1s, 1));
    group.create_task(fail_after(1ms, "child failed"));
    bool caught = false;
    try {
      co_await group.join();
    } catch (const ExceptionGroup& eg) {
      caught = true;
      EXPECT_EQ(eg.exceptions().size(), 1u);
      EXPECT_THROW(std::rethrow_exception(eg.exceptions()[0]), std::runtime_error);
    }
    EXPECT_TRUE(caught);
    EXPECT_TRUE(slow.cancelled());
    EXPECT_EQ(current_task()->cancelling(), 0) << "the group takes its cancel request back";
  }());
}

TEST(TaskGroupTest, SeveralFailuresAreAllReported) {
  run([]() -> Coro<void> {
    TaskGroup group;
    group.create_task(fail_after(1ms, "a"));
    group.create_task(fail_after(1ms, "b"));
    size_t count = 0;
    try {
      co_await group.join();
    } catch (const ExceptionGroup& eg) {
      count = eg.exceptions().size();
    }
    EXPECT_EQ(count, 2u);
  }());
}

TEST(TaskGroupTest, ParentCancellationCancelsChildren) {
  run([]() -> Coro<void> {
    std::vector<Task<int>> children;
    auto parent = [](std::vector<Task<int>>& kids) -> Coro<void> {
      TaskGroup group;
      kids.push_back(group.create_task(value_after(1s, 1)));
      kids.push_back(group.create_task(value_after(1s, 2)));
      co_await group.join();
    };
    Task<void> p = create_task(parent(children));
    co_await sleep(1ms);
    p.cancel();
    EXPECT_THROW(co_await p, CancelledError);
    EXPECT_EQ(children.size(), 2u);
    for (auto& c : children) EXPECT_TRUE(c.cancelled());
  }());
}

TEST(TaskGroupTest, CreateTaskWithAName) {
  run([]() -> Coro<void> {
    TaskGroup group;
    Task<int> named = group.create_task(value_after(1ms, 1), "worker-1");
    EXPECT_EQ(named.get_name(), "worker-1");
    co_await group.join();
    EXPECT_EQ(named.result(), 1);
  }());
}

// As 3.13: cancelled from outside while a child fails, join() raises the
// ExceptionGroup and the outer cancellation is re-armed, not swallowed.
TEST(TaskGroupTest, OuterCancelSurvivesAnExceptionGroup) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Future<void> joining = create_future<void>(loop);
    bool got_group = false;
    int cancelling_after_join = -1;
    bool cancelled_at_next_await = false;
    auto fail_on_cancel = []() -> Coro<void> {
      try {
        co_await sleep(10s);
      } catch (const CancelledError&) {
      }
      throw std::runtime_error("cleanup failed");
    };
    auto parent = [&]() -> Coro<void> {
      TaskGroup group;
      group.create_task(fail_on_cancel());
      joining.set_result();
      try {
        co_await group.join();
      } catch (const ExceptionGroup&) {
        got_group = true;
      }
      cancelling_after_join = current_task()->cancelling();
      try {
        co_await sleep(0s);
      } catch (const CancelledError&) {
        cancelled_at_next_await = true;
        throw;
      }
    };
    Task<void> p = create_task(parent());
    co_await joining;
    co_await sleep(0s);  // p is inside join() now
    p.cancel();
    EXPECT_THROW(co_await p, CancelledError);
    EXPECT_TRUE(got_group);
    EXPECT_EQ(cancelling_after_join, 1);
    EXPECT_TRUE(cancelled_at_next_await);
    EXPECT_TRUE(p.cancelled());
  }());
}

TEST(TaskGroupTest, BodyExceptionIsJoinedIn) {
  run([]() -> Coro<void> {
    TaskGroup group;
    Task<int> child = group.create_task(value_after(1s, 1));
    std::exception_ptr body_error;
    try {
      throw std::logic_error("body");
    } catch (...) {
      body_error = std::current_exception();
    }
    size_t count = 0;
    try {
      co_await group.join(body_error);
    } catch (const ExceptionGroup& eg) {
      count = eg.exceptions().size();
    }
    EXPECT_EQ(count, 1u);
    EXPECT_TRUE(child.cancelled());
  }());
}

}  // namespace
}  // namespace asyncio
