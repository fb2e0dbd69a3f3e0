// Lock, Event, Condition, Semaphore, BoundedSemaphore and Barrier: fairness,
// wake-ups, and what cancellation at each waiting point leaves behind.
#include "sync/sync.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "futures/futures.h"
#include "gtest/gtest.h"
#include "loop/loop.h"
#include "testing/async_test_util.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;

using testing_util::settle;
using testing_util::throws;

// ---------------------------------------------------------------------------
// Lock

TEST(LockTest, AcquireAndRelease) {
  run([]() -> Coro<void> {
    Lock lock;
    EXPECT_FALSE(lock.locked());
    co_await lock.acquire();
    EXPECT_TRUE(lock.locked());
    lock.release();
    EXPECT_FALSE(lock.locked());
    try {
      lock.release();
      ADD_FAILURE() << "releasing an unlocked lock must throw";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "Lock is not acquired.");
    }
  }());
}

TEST(LockTest, WaitersAcquireInFifoOrder) {
  run([]() -> Coro<void> {
    Lock lock;
    std::vector<int> order;
    auto worker = [&](int id) -> Coro<void> {
      co_await lock.acquire();
      order.push_back(id);
      co_await sleep(0s);  // hold it across a suspension
      lock.release();
    };
    co_await lock.acquire();
    std::vector<Task<void>> tasks;
    for (int i = 0; i < 5; ++i) tasks.push_back(create_task(worker(i)));
    co_await settle();
    EXPECT_TRUE(order.empty());
    lock.release();
    for (auto& t : tasks) co_await t;
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
    EXPECT_FALSE(lock.locked());
  }());
}

TEST(LockTest, ReleasedLockGoesToTheFirstWaiterNotToANewcomer) {
  run([]() -> Coro<void> {
    Lock lock;
    std::vector<std::string> order;
    auto waiter = [&]() -> Coro<void> {
      co_await lock.acquire();
      order.push_back("waiter");
      lock.release();
    };
    co_await lock.acquire();
    Task<void> t = create_task(waiter());
    co_await settle();
    lock.release();
    co_await lock.acquire();  // must queue behind the woken waiter
    order.push_back("main");
    lock.release();
    co_await t;
    std::vector<std::string> expected = {"waiter", "main"};
    EXPECT_EQ(order, expected);
  }());
}

TEST(LockTest, CancelledWaiterIsSkipped) {
  run([]() -> Coro<void> {
    Lock lock;
    std::vector<int> order;
    auto worker = [&](int id) -> Coro<void> {
      co_await lock.acquire();
      order.push_back(id);
      lock.release();
    };
    co_await lock.acquire();
    Task<void> a = create_task(worker(0));
    Task<void> b = create_task(worker(1));
    Task<void> c = create_task(worker(2));
    co_await settle();
    b.cancel();
    co_await settle();
    EXPECT_TRUE(b.cancelled());
    EXPECT_TRUE(lock.locked());
    lock.release();
    co_await a;
    co_await c;
    EXPECT_EQ(order, (std::vector<int>{0, 2}));
    EXPECT_FALSE(lock.locked());
  }());
}

TEST(LockTest, WaiterCancelledAfterBeingWokenPassesTheLockOn) {
  run([]() -> Coro<void> {
    Lock lock;
    std::vector<int> order;
    auto worker = [&](int id) -> Coro<void> {
      co_await lock.acquire();
      order.push_back(id);
      lock.release();
    };
    co_await lock.acquire();
    Task<void> a = create_task(worker(0));
    Task<void> b = create_task(worker(1));
    co_await settle();
    lock.release();  // wakes a...
    a.cancel();      // ...which is cancelled before it can run
    co_await b;
    EXPECT_TRUE(a.cancelled());
    EXPECT_EQ(order, (std::vector<int>{1}));
    EXPECT_FALSE(lock.locked());
    // Still usable, and free for a newcomer.
    co_await lock.acquire();
    EXPECT_TRUE(lock.locked());
    lock.release();
  }());
}

TEST(LockTest, HolderCancelledInsideTheCriticalSectionReleases) {
  run([]() -> Coro<void> {
    Lock lock;
    Event never;
    bool second_got_it = false;
    auto holder = [&]() -> Coro<void> {
      co_await lock.acquire();
      try {
        co_await never.wait();
      } catch (const CancelledError&) {
        lock.release();
        throw;
      }
    };
    auto second = [&]() -> Coro<void> {
      co_await lock.acquire();
      second_got_it = true;
      lock.release();
    };
    Task<void> h = create_task(holder());
    Task<void> s = create_task(second());
    co_await settle();
    EXPECT_TRUE(lock.locked());
    EXPECT_FALSE(second_got_it);
    h.cancel();
    co_await s;
    EXPECT_TRUE(h.cancelled());
    EXPECT_TRUE(second_got_it);
    EXPECT_FALSE(lock.locked());
  }());
}

TEST(LockTest, AcquireTimesOutAndLeavesTheLockConsistent) {
  run([]() -> Coro<void> {
    Lock lock;
    co_await lock.acquire();
    bool timed_out = co_await throws<TimeoutError>(wait_for(lock.acquire(), 10ms));
    EXPECT_TRUE(timed_out);
    EXPECT_TRUE(lock.locked());
    lock.release();
    EXPECT_FALSE(lock.locked());
    co_await wait_for(lock.acquire(), 1s);
    EXPECT_TRUE(lock.locked());
    lock.release();
  }());
}

TEST(LockTest, BoundToTheLoopOfFirstUse) {
  Lock lock;
  auto contend = [&lock]() -> Coro<void> {
    co_await lock.acquire();
    auto waiter = [](Lock& l) -> Coro<void> {
      co_await l.acquire();
      l.release();
    };
    Task<void> t = create_task(waiter(lock));
    co_await sleep(0s);
    lock.release();
    co_await t;
  };
  auto first = new_event_loop();
  auto second = new_event_loop();
  run_until_complete(*first, contend());
  EXPECT_THROW(run_until_complete(*second, contend()), std::runtime_error);
}

// ---------------------------------------------------------------------------
// Event

TEST(EventTest, SetWakesEveryWaiterAndClearRearms) {
  run([]() -> Coro<void> {
    Event event;
    EXPECT_FALSE(event.is_set());
    int woken = 0;
    auto waiter = [&]() -> Coro<void> {
      co_await event.wait();
      ++woken;
    };
    std::vector<Task<void>> tasks;
    for (int i = 0; i < 3; ++i) tasks.push_back(create_task(waiter()));
    co_await settle();
    EXPECT_EQ(woken, 0);
    event.set();
    EXPECT_TRUE(event.is_set());
    for (auto& t : tasks) co_await t;
    EXPECT_EQ(woken, 3);

    co_await event.wait();  // set: returns at once
    event.clear();
    EXPECT_FALSE(event.is_set());
    Task<void> late = create_task(waiter());
    co_await settle();
    EXPECT_FALSE(late.done());
    event.set();
    co_await late;
    EXPECT_EQ(woken, 4);
  }());
}

TEST(EventTest, SetThenClearBeforeTheWaiterRunsStillWakesIt) {
  run([]() -> Coro<void> {
    Event event;
    Task<void> t = create_task(event.wait());
    co_await settle();
    event.set();
    event.clear();
    co_await t;  // woken by the set even though the flag is down again
    EXPECT_FALSE(event.is_set());
  }());
}

TEST(EventTest, CancelledWaiterDoesNotDisturbTheOthers) {
  run([]() -> Coro<void> {
    Event event;
    Task<void> a = create_task(event.wait());
    Task<void> b = create_task(event.wait());
    co_await settle();
    a.cancel();
    co_await settle();
    EXPECT_TRUE(a.cancelled());
    EXPECT_FALSE(b.done());
    event.set();
    co_await b;
    EXPECT_FALSE(b.cancelled());
  }());
}

// ---------------------------------------------------------------------------
// Condition

TEST(ConditionTest, WaitAndNotifyRequireTheLock) {
  run([]() -> Coro<void> {
    Condition cond;
    EXPECT_THROW(cond.notify(), std::runtime_error);
    EXPECT_THROW(cond.notify_all(), std::runtime_error);
    bool threw = co_await throws<std::runtime_error>(cond.wait());
    EXPECT_TRUE(threw);
    co_await cond.acquire();
    EXPECT_TRUE(cond.locked());
    cond.notify();  // no waiters: nothing happens
    cond.release();
    EXPECT_FALSE(cond.locked());
  }());
}

TEST(ConditionTest, NotifyWakesExactlyNInOrder) {
  run([]() -> Coro<void> {
    Condition cond;
    std::vector<int> woken;
    auto waiter = [&](int id) -> Coro<void> {
      co_await cond.acquire();
      co_await cond.wait();
      EXPECT_TRUE(cond.locked());
      woken.push_back(id);
      cond.release();
    };
    std::vector<Task<void>> tasks;
    for (int i = 0; i < 5; ++i) tasks.push_back(create_task(waiter(i)));
    co_await settle();
    EXPECT_FALSE(cond.locked());

    co_await cond.acquire();
    cond.notify(2);
    cond.release();
    co_await settle();
    EXPECT_EQ(woken, (std::vector<int>{0, 1}));

    co_await cond.acquire();
    cond.notify();
    cond.release();
    co_await settle();
    EXPECT_EQ(woken, (std::vector<int>{0, 1, 2}));

    co_await cond.acquire();
    cond.notify_all();
    cond.release();
    for (auto& t : tasks) co_await t;
    EXPECT_EQ(woken, (std::vector<int>{0, 1, 2, 3, 4}));
  }());
}

TEST(ConditionTest, WaitForChecksThePredicateUnderTheLock) {
  run([]() -> Coro<void> {
    Condition cond;
    int value = 0;
    int checks = 0;
    auto consumer = [&]() -> Coro<void> {
      co_await cond.acquire();
      co_await cond.wait_for([&] {
        EXPECT_TRUE(cond.locked());
        ++checks;
        return value >= 3;
      });
      EXPECT_EQ(value, 3);
      cond.release();
    };
    Task<void> t = create_task(consumer());
    co_await settle();
    for (int i = 1; i <= 3; ++i) {
      EXPECT_FALSE(t.done());
      co_await cond.acquire();
      ++value;
      cond.notify();
      cond.release();
      co_await settle();
    }
    co_await t;
    EXPECT_EQ(checks, 4);  // once at the start, once per notify
  }());
}

TEST(ConditionTest, SharedLock) {
  run([]() -> Coro<void> {
    Lock lock;
    Condition cond(&lock);
    bool ready = false;
    auto waiter = [&]() -> Coro<void> {
      co_await lock.acquire();
      co_await cond.wait_for([&] { return ready; });
      lock.release();
    };
    Task<void> t = create_task(waiter());
    co_await settle();
    co_await cond.acquire();
    EXPECT_TRUE(lock.locked());
    ready = true;
    cond.notify_all();
    lock.release();
    co_await t;
    EXPECT_FALSE(lock.locked());
  }());
}

// Waits on `cond` until cancelled; records whether the lock was held when
// the cancellation arrived.
Coro<void> wait_until_cancelled(Condition& cond, bool& held_when_cancelled) {
  co_await cond.acquire();
  try {
    co_await cond.wait();
  } catch (const CancelledError&) {
    held_when_cancelled = cond.locked();
    cond.release();
    throw;
  }
}

TEST(ConditionTest, CancelledWaitReacquiresTheLockBeforeThrowing) {
  run([]() -> Coro<void> {
    Condition cond;
    bool held_when_cancelled = false;
    Task<void> t = create_task(wait_until_cancelled(cond, held_when_cancelled));
    co_await settle();
    co_await cond.acquire();  // the waiter cannot get the lock back yet
    t.cancel();
    co_await settle();
    EXPECT_FALSE(t.done());
    cond.release();
    co_await settle();
    EXPECT_TRUE(t.cancelled());
    EXPECT_TRUE(held_when_cancelled);
    EXPECT_FALSE(cond.locked());
  }());
}

TEST(ConditionTest, CancelledWhileReacquiringKeepsTryingForTheLock) {
  run([]() -> Coro<void> {
    Condition cond;
    bool held_when_cancelled = false;
    Task<void> t = create_task(wait_until_cancelled(cond, held_when_cancelled));
    co_await settle();
    co_await cond.acquire();
    cond.notify();
    co_await settle();  // the waiter is woken and now waits for the lock
    t.cancel();
    co_await settle();
    EXPECT_FALSE(t.done()) << "must not give up on the lock";
    t.cancel();  // twice, for good measure
    co_await settle();
    EXPECT_FALSE(t.done());
    cond.release();
    co_await settle();
    EXPECT_TRUE(t.cancelled());
    EXPECT_TRUE(held_when_cancelled);
    EXPECT_FALSE(cond.locked());
  }());
}

TEST(ConditionTest, NotifiedWaiterCancelledPassesTheNotificationOn) {
  run([]() -> Coro<void> {
    Condition cond;
    bool b_woken = false;
    auto a_body = [&]() -> Coro<void> {
      co_await cond.acquire();
      try {
        co_await cond.wait();
      } catch (const CancelledError&) {
        cond.release();
        throw;
      }
      cond.release();
    };
    auto b_body = [&]() -> Coro<void> {
      co_await cond.acquire();
      co_await cond.wait();
      b_woken = true;
      cond.release();
    };
    Task<void> a = create_task(a_body());
    Task<void> b = create_task(b_body());
    co_await settle();
    co_await cond.acquire();
    cond.notify(1);  // wakes a...
    a.cancel();      // ...which is cancelled before it runs
    cond.release();
    co_await b;  // b gets the notification a could not use
    EXPECT_TRUE(b_woken);
    EXPECT_TRUE(a.cancelled());
    EXPECT_FALSE(cond.locked());
  }());
}

// ---------------------------------------------------------------------------
// Semaphore and BoundedSemaphore

TEST(SemaphoreTest, NegativeValueIsRejected) {
  EXPECT_THROW(Semaphore(-1), std::invalid_argument);
  EXPECT_THROW(BoundedSemaphore(-1), std::invalid_argument);
}

TEST(SemaphoreTest, CountsPermits) {
  run([]() -> Coro<void> {
    Semaphore sem(3);
    int active = 0;
    int max_active = 0;
    int finished = 0;
    auto worker = [&]() -> Coro<void> {
      co_await sem.acquire();
      ++active;
      max_active = std::max(max_active, active);
      co_await sleep(0s);
      co_await sleep(0s);
      --active;
      ++finished;
      sem.release();
    };
    std::vector<Task<void>> tasks;
    for (int i = 0; i < 10; ++i) tasks.push_back(create_task(worker()));
    for (auto& t : tasks) co_await t;
    EXPECT_EQ(max_active, 3);
    EXPECT_EQ(finished, 10);
    EXPECT_FALSE(sem.locked());
  }());
}

TEST(SemaphoreTest, WaitersAreServedInFifoOrderAndNewcomersQueue) {
  run([]() -> Coro<void> {
    Semaphore sem(1);
    co_await sem.acquire();
    EXPECT_TRUE(sem.locked());
    std::vector<int> order;
    auto worker = [&](int id) -> Coro<void> {
      co_await sem.acquire();
      order.push_back(id);
    };
    std::vector<Task<void>> tasks;
    for (int i = 0; i < 4; ++i) tasks.push_back(create_task(worker(i)));
    co_await settle();
    sem.release();  // the permit goes to worker 0 at once
    EXPECT_TRUE(sem.locked()) << "waiters come first";
    Task<void> newcomer = create_task(worker(99));
    sem.release();
    sem.release();
    sem.release();
    sem.release();
    for (auto& t : tasks) co_await t;
    co_await newcomer;
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 99}));
    EXPECT_TRUE(sem.locked());  // all five permits are held
  }());
}

TEST(SemaphoreTest, WaiterCancelledAfterBeingWokenGivesThePermitBack) {
  run([]() -> Coro<void> {
    Semaphore sem(0);
    std::vector<int> order;
    auto worker = [&](int id) -> Coro<void> {
      co_await sem.acquire();
      order.push_back(id);
    };
    Task<void> a = create_task(worker(0));
    Task<void> b = create_task(worker(1));
    co_await settle();
    sem.release();  // handed to a...
    a.cancel();     // ...which is cancelled before it can use it
    co_await b;
    EXPECT_TRUE(a.cancelled());
    EXPECT_EQ(order, (std::vector<int>{1}));
    EXPECT_TRUE(sem.locked());
    sem.release();
    EXPECT_FALSE(sem.locked());
  }());
}

TEST(SemaphoreTest, CancelledWaiterIsSkipped) {
  run([]() -> Coro<void> {
    Semaphore sem(0);
    std::vector<int> order;
    auto worker = [&](int id) -> Coro<void> {
      co_await sem.acquire();
      order.push_back(id);
    };
    Task<void> a = create_task(worker(0));
    Task<void> b = create_task(worker(1));
    co_await settle();
    a.cancel();
    co_await settle();
    sem.release();
    co_await b;
    EXPECT_TRUE(a.cancelled());
    EXPECT_EQ(order, (std::vector<int>{1}));
  }());
}

TEST(BoundedSemaphoreTest, ReleasePastTheInitialValueThrows) {
  run([]() -> Coro<void> {
    BoundedSemaphore sem(2);
    EXPECT_THROW(sem.release(), std::invalid_argument);
    co_await sem.acquire();
    co_await sem.acquire();
    EXPECT_TRUE(sem.locked());
    sem.release();
    sem.release();
    EXPECT_FALSE(sem.locked());
    EXPECT_THROW(sem.release(), std::invalid_argument);
    // Through the base class too.
    Semaphore& base = sem;
    EXPECT_THROW(base.release(), std::invalid_argument);
    co_await sem.acquire();
    co_await sem.acquire();
    EXPECT_TRUE(sem.locked()) << "the failed releases did not add permits";
    sem.release();
    sem.release();
  }());
}

// ---------------------------------------------------------------------------
// Barrier

TEST(BarrierTest, PartiesMustBePositive) {
  EXPECT_THROW(Barrier(0), std::invalid_argument);
  Barrier b(3);
  EXPECT_EQ(b.parties(), 3);
  EXPECT_EQ(b.n_waiting(), 0);
  EXPECT_FALSE(b.broken());
}

TEST(BarrierTest, ThreePartiesGetIndicesZeroToTwoRoundAfterRound) {
  run([]() -> Coro<void> {
    Barrier barrier(3);
    std::vector<int> indices;
    int passed = 0;
    auto party = [&]() -> Coro<void> {
      indices.push_back(co_await barrier.wait());
      ++passed;
    };
    for (int round = 0; round < 2; ++round) {
      indices.clear();
      passed = 0;
      Task<void> a = create_task(party());
      co_await settle();
      EXPECT_EQ(barrier.n_waiting(), 1);
      Task<void> b = create_task(party());
      co_await settle();
      EXPECT_EQ(barrier.n_waiting(), 2);
      EXPECT_EQ(passed, 0);
      Task<void> c = create_task(party());
      co_await a;
      co_await b;
      co_await c;
      EXPECT_EQ(passed, 3);
      std::sort(indices.begin(), indices.end());
      EXPECT_EQ(indices, (std::vector<int>{0, 1, 2}));
      EXPECT_EQ(barrier.n_waiting(), 0);
      EXPECT_FALSE(barrier.broken());
    }
  }());
}

TEST(BarrierTest, AbortBreaksItUntilReset) {
  run([]() -> Coro<void> {
    Barrier barrier(3);
    int broken_errors = 0;
    auto party = [&]() -> Coro<void> {
      try {
        co_await barrier.wait();
      } catch (const BrokenBarrierError&) {
        ++broken_errors;
      }
    };
    Task<void> a = create_task(party());
    Task<void> b = create_task(party());
    co_await settle();
    EXPECT_EQ(barrier.n_waiting(), 2);
    co_await barrier.abort();
    co_await a;
    co_await b;
    EXPECT_EQ(broken_errors, 2);
    EXPECT_TRUE(barrier.broken());
    EXPECT_EQ(barrier.n_waiting(), 0);
    bool threw = co_await throws<BrokenBarrierError>(barrier.wait());
    EXPECT_TRUE(threw);

    co_await barrier.reset();
    EXPECT_FALSE(barrier.broken());
    std::vector<int> indices;
    auto counted = [&]() -> Coro<void> { indices.push_back(co_await barrier.wait()); };
    Task<void> x = create_task(counted());
    Task<void> y = create_task(counted());
    Task<void> z = create_task(counted());
    co_await x;
    co_await y;
    co_await z;
    std::sort(indices.begin(), indices.end());
    EXPECT_EQ(indices, (std::vector<int>{0, 1, 2}));
  }());
}

TEST(BarrierTest, ResetWhileWaitingRaisesInTheWaitersAndRefills) {
  run([]() -> Coro<void> {
    Barrier barrier(3);
    int broken_errors = 0;
    auto party = [&]() -> Coro<void> {
      try {
        co_await barrier.wait();
      } catch (const BrokenBarrierError&) {
        ++broken_errors;
      }
    };
    Task<void> a = create_task(party());
    Task<void> b = create_task(party());
    co_await settle();
    co_await barrier.reset();
    co_await a;
    co_await b;
    EXPECT_EQ(broken_errors, 2);
    EXPECT_FALSE(barrier.broken());
    EXPECT_EQ(barrier.n_waiting(), 0);

    Task<void> x = create_task(party());
    Task<void> y = create_task(party());
    Task<void> z = create_task(party());
    co_await x;
    co_await y;
    co_await z;
    EXPECT_EQ(broken_errors, 2);
  }());
}

TEST(BarrierTest, CancelledWaiterLeavesItsPlace) {
  run([]() -> Coro<void> {
    Barrier barrier(3);
    std::vector<int> indices;
    auto party = [&]() -> Coro<void> { indices.push_back(co_await barrier.wait()); };
    Task<void> a = create_task(party());
    Task<void> b = create_task(party());
    co_await settle();
    EXPECT_EQ(barrier.n_waiting(), 2);
    b.cancel();
    co_await settle();
    EXPECT_TRUE(b.cancelled());
    EXPECT_EQ(barrier.n_waiting(), 1);
    EXPECT_FALSE(barrier.broken());
    Task<void> c = create_task(party());
    Task<void> d = create_task(party());
    co_await a;
    co_await c;
    co_await d;
    std::sort(indices.begin(), indices.end());
    EXPECT_EQ(indices, (std::vector<int>{0, 1, 2}));
  }());
}

// ---------------------------------------------------------------------------
// Scoped acquisition (`async with primitive:`)

TEST(ScopedTest, TheGuardReleasesAtTheEndOfItsScope) {
  run([]() -> Coro<void> {
    Lock lock;
    {
      Held<Lock> held = co_await lock.scoped();
      EXPECT_TRUE(held);
      EXPECT_TRUE(lock.locked());
      Held<Lock> moved = std::move(held);
      EXPECT_FALSE(held);  // NOLINT(bugprone-use-after-move): moved-from is empty
      EXPECT_TRUE(lock.locked());
    }
    EXPECT_FALSE(lock.locked());
    {
      auto held = co_await lock.scoped();
      held.release();  // leaving the block early
      EXPECT_FALSE(lock.locked());
      EXPECT_FALSE(held);
    }
    EXPECT_FALSE(lock.locked());

    Semaphore sem(2);
    {
      auto first = co_await sem.scoped();
      auto second = co_await sem.scoped();
      EXPECT_TRUE(sem.locked());
    }
    EXPECT_FALSE(sem.locked());
  }());
}

// One task fails while holding the primitive; the one waiting behind it
// still gets it.
template <class P>
Coro<void> exception_while_held_does_not_block_the_next(P& primitive) {
  bool second_got_it = false;
  auto failing = [&]() -> Coro<void> {
    auto held = co_await primitive.scoped();
    co_await sleep(0s);
    throw std::runtime_error("inside the critical section");
  };
  auto second = [&]() -> Coro<void> {
    auto held = co_await primitive.scoped();
    second_got_it = true;
  };
  Task<void> a = create_task(failing());
  co_await settle();
  Task<void> b = create_task(second());
  EXPECT_TRUE(co_await throws<std::runtime_error>(a));
  co_await b;
  EXPECT_TRUE(second_got_it);
  EXPECT_FALSE(primitive.locked());
}

TEST(ScopedTest, ExceptionWhileHeldReleases) {
  run([]() -> Coro<void> {
    Lock lock;
    co_await exception_while_held_does_not_block_the_next(lock);
    Semaphore sem(1);
    co_await exception_while_held_does_not_block_the_next(sem);
    BoundedSemaphore bounded(1);
    co_await exception_while_held_does_not_block_the_next(bounded);
    Condition cond;
    co_await exception_while_held_does_not_block_the_next(cond);
  }());
}

// A task cancelled while waiting in scoped() holds nothing, whether it was
// still queued or already woken; the primitive passes to the next waiter.
template <class P>
Coro<void> cancelled_while_waiting_holds_nothing(P& primitive, bool after_wake) {
  std::vector<int> got;
  auto waiter = [&](int id) -> Coro<void> {
    auto held = co_await primitive.scoped();
    got.push_back(id);
  };
  std::optional mine(co_await primitive.scoped());
  Task<void> first = create_task(waiter(1));
  Task<void> second = create_task(waiter(2));
  co_await settle();
  if (after_wake) {
    mine.reset();    // hands it to the first waiter...
    first.cancel();  // ...cancelled before it runs
  } else {
    first.cancel();
    co_await settle();
    EXPECT_TRUE(primitive.locked()) << "still ours";
    mine.reset();
  }
  EXPECT_TRUE(co_await throws<CancelledError>(first));
  co_await second;
  EXPECT_EQ(got, (std::vector<int>{2}));
  EXPECT_FALSE(primitive.locked());
  auto again = co_await primitive.scoped();  // no leak: it is free at once
  EXPECT_TRUE(again);
}

TEST(ScopedTest, CancelledWhileWaitingToAcquireLeaksNothing) {
  run([]() -> Coro<void> {
    for (bool after_wake : {false, true}) {
      Lock lock;
      co_await cancelled_while_waiting_holds_nothing(lock, after_wake);
      Semaphore sem(1);
      co_await cancelled_while_waiting_holds_nothing(sem, after_wake);
      BoundedSemaphore bounded(1);
      co_await cancelled_while_waiting_holds_nothing(bounded, after_wake);
      Condition cond;
      co_await cancelled_while_waiting_holds_nothing(cond, after_wake);
    }
  }());
}

TEST(ScopedTest, ConditionWaitInsideTheGuard) {
  run([]() -> Coro<void> {
    Condition cond;
    bool ready = false;
    auto consumer = [&]() -> Coro<bool> {
      auto held = co_await cond.scoped();
      co_await cond.wait_for([&] { return ready; });
      co_return cond.locked();
    };
    Task<bool> task = create_task(consumer());
    co_await settle();
    {
      auto held = co_await cond.scoped();
      ready = true;
      cond.notify();
    }
    EXPECT_TRUE(co_await task) << "wait() gives the lock back before returning";
    EXPECT_FALSE(cond.locked());
  }());
}

TEST(ScopedTest, ReleasedBehindTheGuardsBackIsReportedNotThrown) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    std::vector<std::string> reports;
    loop.set_exception_handler(
        [&](EventLoop&, const ExceptionContext& context) { reports.push_back(context.message); });
    BoundedSemaphore bounded(1);
    {
      auto held = co_await bounded.scoped();
      bounded.release();  // the guard's own release would go past the bound
    }
    EXPECT_EQ(reports, (std::vector<std::string>{"Releasing a held primitive failed"}));
    EXPECT_FALSE(bounded.locked());
    loop.set_exception_handler(nullptr);
  }());
}

}  // namespace
}  // namespace asyncio
