// timeout, timeout_at and Timeout, with the cancellation counting of
// CPython 3.13's asyncio.timeout.
#include "futures/timeouts.h"

#include <chrono>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>

#include "futures/futures.h"
#include "gtest/gtest.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;

// The running task's pending cancellation requests.
int cancelling_now() { return current_task()->cancelling(); }

// ---------------------------------------------------------------------------
// Expiry and completion

TEST(TimeoutTest, ExpiresIntoTimeoutError) {
  run([]() -> Coro<void> {
    EXPECT_THROW(co_await timeout(10ms, sleep(10s)), TimeoutError);
    // The cancellation was the timeout's own: nothing is left pending.
    EXPECT_EQ(cancelling_now(), 0);
    co_await sleep(0s);  // and nothing is delivered later
  }());
}

TEST(TimeoutTest, TimeoutAtExpiresAndKeepsItsDeadline) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    const double deadline = loop.time() + 0.01;
    Timeout cm(deadline);
    EXPECT_EQ(cm.when(), deadline);
    EXPECT_THROW(co_await cm.run(sleep(10s)), TimeoutError);
    EXPECT_TRUE(cm.expired());
    EXPECT_EQ(cm.when(), deadline);
    EXPECT_THROW(co_await timeout_at(loop.time() + 0.01, sleep(10s)), TimeoutError);
  }());
}

TEST(TimeoutTest, TheBodySeesCancelledErrorInside) {
  run([]() -> Coro<void> {
    bool saw_cancel = false;
    auto body = [&]() -> Coro<void> {
      try {
        co_await sleep(10s);
      } catch (const CancelledError&) {
        saw_cancel = true;
        throw;
      }
    };
    EXPECT_THROW(co_await timeout(5ms, body), TimeoutError);
    EXPECT_TRUE(saw_cancel);
  }());
}

TEST(TimeoutTest, FinishesInTimeWithTheBodysValue) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    EXPECT_EQ(co_await timeout(10s, sleep(1ms, 7)), 7);
    Task<int> task = create_task(sleep(1ms, 8));
    EXPECT_EQ(co_await timeout(10s, task), 8);
    Timeout cm(loop.time() + 10);
    EXPECT_EQ(co_await cm.run([] { return sleep(1ms, 9); }), 9);
    EXPECT_FALSE(cm.expired());
    EXPECT_GT(*cm.when(), loop.time());
    // The timer went with the block: no late cancellation.
    co_await sleep(0s);
    EXPECT_EQ(cancelling_now(), 0);
  }());
}

TEST(TimeoutTest, NoDeadline) {
  run([]() -> Coro<void> {
    std::optional<double> seen = 0.0;
    co_await timeout(std::nullopt, [&](Timeout& cm) -> Coro<void> {
      seen = cm.when();
      co_await sleep(5ms);
    });
    EXPECT_EQ(seen, std::nullopt);
    EXPECT_EQ(co_await timeout_at(std::nullopt, sleep(5ms, 1)), 1);
    const auto forever = std::chrono::duration<double>(std::numeric_limits<double>::infinity());
    EXPECT_EQ(co_await timeout(forever, sleep(5ms, 2)), 2);
  }());
}

TEST(TimeoutTest, ZeroOrNegativeDelayExpiresAtTheFirstSuspension) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    const double before = loop.time();
    std::optional<double> when;
    EXPECT_THROW(co_await timeout(0s,
                                  [&](Timeout& cm) -> Coro<void> {
                                    when = cm.when();
                                    co_await sleep(0s);
                                  }),
                 TimeoutError);
    EXPECT_LE(before, *when);
    EXPECT_LE(*when, loop.time());
    EXPECT_THROW(co_await timeout(-11s, sleep(0s)), TimeoutError);
    // Without a suspension the body finishes first.
    EXPECT_EQ(co_await timeout(0s, []() -> Coro<int> { co_return 3; }), 3);
  }());
}

TEST(TimeoutTest, NanIsRefused) {
  run([]() -> Coro<void> {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    EXPECT_THROW(co_await timeout(std::chrono::duration<double>(nan), sleep(0s)),
                 std::invalid_argument);
    EXPECT_THROW(Timeout{nan}, std::invalid_argument);
    EXPECT_THROW(co_await timeout(10s,
                                  [&](Timeout& cm) -> Coro<void> {
                                    cm.reschedule(nan);
                                    co_return;
                                  }),
                 std::invalid_argument);
  }());
}

// ---------------------------------------------------------------------------
// reschedule

// A 5ms deadline moved ten seconds on, or removed, before it passes.
TEST(TimeoutTest, RescheduleLaterOrToNone) {
  for (bool to_none : {false, true}) {
    run([to_none]() -> Coro<void> {
      int result = co_await timeout(5ms, [to_none](Timeout& cm) -> Coro<int> {
        std::optional<double> later;
        if (!to_none) later = *cm.when() + 10;
        cm.reschedule(later);
        EXPECT_EQ(cm.when(), later);
        co_await sleep(20ms);
        co_return 1;
      });
      EXPECT_EQ(result, 1);
    }());
  }
}

TEST(TimeoutTest, RescheduleEarlier) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    bool expired_inside = false;
    auto body = [&](Timeout& cm) -> Coro<void> {
      cm.reschedule(loop.time() + 0.005);
      try {
        co_await sleep(10s);
      } catch (const CancelledError&) {
        expired_inside = cm.expired();
        throw;
      }
    };
    EXPECT_THROW(co_await timeout(10s, body), TimeoutError);
    EXPECT_TRUE(expired_inside);
    // A deadline already passed expires at once.
    EXPECT_THROW(co_await timeout(10s,
                                  [&](Timeout& cm) -> Coro<void> {
                                    cm.reschedule(loop.time() - 1);
                                    co_await sleep(0s);
                                  }),
                 TimeoutError);
  }());
}

TEST(TimeoutTest, RescheduleFromAnotherTask) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    const double deadline1 = loop.time() + 10;
    const double deadline2 = deadline1 + 20;
    Timeout cm(deadline1);
    Future<void> entered = create_future<void>(loop);
    auto body = [&]() -> Coro<void> {
      entered.set_result();
      co_await sleep(50s);
    };
    Task<void> task = create_task(cm.run(body));
    co_await entered;
    cm.reschedule(deadline2);
    EXPECT_EQ(cm.when(), deadline2);
    cm.reschedule(std::nullopt);
    EXPECT_EQ(cm.when(), std::nullopt);
    task.cancel();
    EXPECT_THROW(co_await task, CancelledError);
    EXPECT_FALSE(cm.expired());
  }());
}

TEST(TimeoutTest, RescheduleOnlyWhileActive) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Timeout fresh(loop.time() + 1);
    try {
      fresh.reschedule(loop.time() + 2);
      ADD_FAILURE() << "rescheduled a Timeout never entered";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()), "Timeout has not been entered");
    }
    Timeout finished(loop.time() + 1);
    co_await finished.run(sleep(0s));
    try {
      finished.reschedule(loop.time() + 2);
      ADD_FAILURE() << "rescheduled a finished Timeout";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()), "Cannot change state of finished Timeout");
    }
    Timeout expired(loop.time());
    EXPECT_THROW(co_await expired.run(sleep(1s)), TimeoutError);
    EXPECT_THROW(expired.reschedule(std::nullopt), std::runtime_error);
  }());
}

TEST(TimeoutTest, EnteredOnlyOnce) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Timeout cm(loop.time() + 1);
    co_await cm.run([&]() -> Coro<void> {
      try {
        co_await cm.run(sleep(0s));
        ADD_FAILURE() << "entered twice";
      } catch (const std::runtime_error& e) {
        EXPECT_EQ(std::string(e.what()), "Timeout has already been entered");
      }
    });
    EXPECT_THROW(co_await cm.run(sleep(0s)), std::runtime_error);
  }());
}

TEST(TimeoutTest, Repr) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Timeout cm(loop.time() + 10);
    EXPECT_EQ(cm.repr(), "<Timeout [created]>");
    co_await cm.run([&]() -> Coro<void> {
      EXPECT_EQ(cm.repr().rfind("<Timeout [active] when=", 0), 0u) << cm.repr();
      cm.reschedule(std::nullopt);
      EXPECT_EQ(cm.repr(), "<Timeout [active] when=None>");
      co_return;
    });
    EXPECT_EQ(cm.repr(), "<Timeout [finished]>");
    Timeout late(loop.time());
    EXPECT_THROW(co_await late.run(sleep(1s)), TimeoutError);
    EXPECT_EQ(late.repr(), "<Timeout [expired]>");
  }());
}

// ---------------------------------------------------------------------------
// Other exceptions and cancellation

TEST(TimeoutTest, ForeignExceptionPassesThrough) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Timeout cm(loop.time() + 1);
    EXPECT_THROW(co_await cm.run([]() -> Coro<void> { throw std::out_of_range("key"); }),
                 std::out_of_range);
    EXPECT_FALSE(cm.expired());
  }());
}

TEST(TimeoutTest, ForeignExceptionRaisedOnTimeoutWins) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Timeout cm(loop.time() + 0.005);
    auto crash = []() -> Coro<void> {
      try {
        co_await sleep(1s);
      } catch (const CancelledError&) {
      }
      throw std::domain_error("cleanup failed");
    };
    EXPECT_THROW(co_await cm.run(crash), std::domain_error);
    EXPECT_TRUE(cm.expired());
    EXPECT_EQ(cancelling_now(), 0);
  }());
}

TEST(TimeoutTest, BodyThatSwallowsTheCancellationReturnsNormally) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Timeout cm(loop.time() + 0.005);
    int result = co_await cm.run([]() -> Coro<int> {
      try {
        co_await sleep(1s);
      } catch (const CancelledError&) {
        co_return -1;
      }
      co_return 1;
    });
    EXPECT_EQ(result, -1);
    EXPECT_TRUE(cm.expired());
    EXPECT_EQ(cancelling_now(), 0);
    co_await sleep(0s);
  }());
}

TEST(TimeoutTest, CancelFromInsideIsNotATimeout) {
  run([]() -> Coro<void> {
    Task<void> task = create_task([]() -> Coro<void> {
      EventLoop& loop = get_running_loop();
      Timeout cm(loop.time() + 10);
      try {
        co_await cm.run([]() -> Coro<void> {
          current_task()->cancel();
          co_await sleep(10s);
        });
      } catch (const CancelledError&) {
        EXPECT_FALSE(cm.expired());
        EXPECT_EQ(cancelling_now(), 1);
        throw;
      }
    }());
    EXPECT_THROW(co_await task, CancelledError);
    EXPECT_TRUE(task.cancelled());
  }());
}

TEST(TimeoutTest, TheTaskItselfIsNotCancelled) {
  run([]() -> Coro<void> {
    Task<int> task = create_task([]() -> Coro<int> {
      try {
        co_await timeout(1ms, sleep(10s));
      } catch (const TimeoutError&) {
        co_return 1;
      }
      co_return 0;
    }());
    EXPECT_EQ(co_await task, 1);
    EXPECT_FALSE(task.cancelled());
    EXPECT_EQ(task.cancelling(), 0);
  }());
}

TEST(TimeoutTest, OuterCancelDuringATimeoutPropagates) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Future<void> entered = create_future<void>(loop);
    int cancelling_seen = -1;
    // A named closure: the task's coroutine refers to its captures.
    auto body = [&]() -> Coro<void> {
      try {
        co_await timeout(10s, [&]() -> Coro<void> {
          entered.set_result();
          co_await sleep(10s);
        });
      } catch (const CancelledError&) {
        cancelling_seen = cancelling_now();
        throw;
      }
    };
    Task<void> task = create_task(body());
    co_await entered;
    task.cancel("from outside");
    try {
      co_await task;
      ADD_FAILURE() << "the cancellation was swallowed";
    } catch (const CancelledError& e) {
      EXPECT_EQ(e.message(), "from outside");
    }
    EXPECT_EQ(cancelling_seen, 1);
    EXPECT_TRUE(task.cancelled());
  }());
}

// The deadline passes in the same loop iteration as a cancel from outside:
// the outer cancel is never swallowed.
TEST(TimeoutTest, ExpiryAtTheSameTimeAsAnOuterCancelLetsCancelledErrorThrough) {
  for (bool outside_first : {false, true}) {
    run([outside_first]() -> Coro<void> {
      EventLoop& loop = get_running_loop();
      Future<void> entered = create_future<void>(loop);
      // Outlives the task, so it can be inspected afterwards.
      Timeout cm(loop.time() + 10);
      int cancelling_seen = -1;
      auto body = [&]() -> Coro<void> {
        try {
          co_await cm.run([&]() -> Coro<void> {
            entered.set_result();
            co_await sleep(10s);
          });
        } catch (const CancelledError&) {
          cancelling_seen = cancelling_now();
          throw;
        }
      };
      Task<void> task = create_task(body());
      co_await entered;
      if (outside_first) {
        // The outer request is counted first; the expiry, due at once, lands
        // before the task runs again.
        cm.reschedule(loop.time() - 1);
        task.cancel();
      } else {
        // Due together: the timeout's timer was scheduled first, so it fires
        // first in that iteration.
        const double deadline = loop.time() + 0.005;
        cm.reschedule(deadline);
        loop.call_at(deadline, [task]() mutable { task.cancel(); });
      }
      EXPECT_THROW(co_await task, CancelledError);
      EXPECT_EQ(cancelling_seen, 1);
      EXPECT_TRUE(cm.expired());
      EXPECT_TRUE(task.cancelled());
    }());
  }
}

TEST(TimeoutTest, TimeoutAfterACaughtCancellation) {
  run([]() -> Coro<void> {
    Task<void> task = create_task([]() -> Coro<void> {
      try {
        current_task()->cancel();
        co_await sleep(1s);
      } catch (const CancelledError&) {
      }
      // Still one request counted: the timeout is measured from there.
      EXPECT_EQ(cancelling_now(), 1);
      EXPECT_THROW(co_await timeout(0s, sleep(1s)), TimeoutError);
      EXPECT_THROW(co_await timeout(1s,
                                    []() -> Coro<void> {
                                      current_task()->cancel();
                                      co_await sleep(2s);
                                    }),
                   CancelledError);
    }());
    co_await task;
  }());
}

// ---------------------------------------------------------------------------
// Nesting

TEST(TimeoutTest, NestedInnerExpires) {
  run([]() -> Coro<void> {
    int result = co_await timeout(10s, []() -> Coro<int> {
      EXPECT_THROW(co_await timeout(5ms, sleep(10s)), TimeoutError);
      EXPECT_EQ(cancelling_now(), 0);
      co_await sleep(1ms);  // the outer block goes on undisturbed
      co_return 4;
    });
    EXPECT_EQ(result, 4);
  }());
}

TEST(TimeoutTest, NestedOuterExpires) {
  run([]() -> Coro<void> {
    bool inner_saw_cancel = false;
    auto outer = [&]() -> Coro<void> {
      try {
        co_await timeout(10s, sleep(10s));
      } catch (const CancelledError&) {
        inner_saw_cancel = true;
        throw;
      }
    };
    EXPECT_THROW(co_await timeout(5ms, outer), TimeoutError);
    EXPECT_TRUE(inner_saw_cancel);
    EXPECT_EQ(cancelling_now(), 0);
  }());
}

TEST(TimeoutTest, NestedWithOneDeadlineOnlyTheOutermostRaisesTimeoutError) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    const double deadline = loop.time() + 0.005;
    Timeout outer(deadline);
    Timeout inner(deadline);
    bool inner_saw_cancel = false;
    auto body = [&]() -> Coro<void> {
      try {
        co_await inner.run(sleep(10s));
      } catch (const CancelledError&) {
        inner_saw_cancel = true;
        throw;
      }
    };
    EXPECT_THROW(co_await outer.run(body), TimeoutError);
    EXPECT_TRUE(inner_saw_cancel);
    EXPECT_TRUE(outer.expired());
    EXPECT_TRUE(inner.expired());
  }());
}

TEST(TimeoutTest, NestedTimeoutInCleanupAfterExpiry) {
  run([]() -> Coro<void> {
    auto body = []() -> Coro<void> {
      bool cancelled = false;
      try {
        co_await sleep(1s);
      } catch (const CancelledError&) {
        cancelled = true;
      }
      EXPECT_TRUE(cancelled);
      EXPECT_THROW(co_await timeout(5ms, sleep(10s)), TimeoutError);
      throw CancelledError();  // as the `finally` re-raising
    };
    EXPECT_THROW(co_await timeout(5ms, body), TimeoutError);
  }());
}

// ---------------------------------------------------------------------------
// Task.uncancel as in 3.13: the last one rescinds a cancel not delivered yet.

TEST(TaskUncancelTest, LastUncancelRescindsAPendingCancel) {
  run([]() -> Coro<void> {
    Task<int> task = create_task([]() -> Coro<int> {
      std::optional<AnyTask> me = current_task();
      me->cancel();
      EXPECT_EQ(me->uncancel(), 0);
      co_await sleep(0s);  // no CancelledError here
      co_return 5;
    }());
    EXPECT_EQ(co_await task, 5);
  }());
}

}  // namespace
}  // namespace asyncio
