// concurrent::Future<T>: states, results, timeouts, cancellation, callbacks,
// waiting from several threads.
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "executors/executors.h"
#include "gtest/gtest.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;

TEST(ConcurrentFutureTest, StatesAndResult) {
  concurrent::Future<int> f;
  EXPECT_FALSE(f.done());
  EXPECT_FALSE(f.running());
  EXPECT_FALSE(f.cancelled());
  EXPECT_TRUE(f.set_running_or_notify_cancel());
  EXPECT_TRUE(f.running());
  EXPECT_FALSE(f.cancel());  // running futures cannot be cancelled
  f.set_result(42);
  EXPECT_TRUE(f.done());
  EXPECT_FALSE(f.running());
  EXPECT_EQ(f.result(), 42);
  EXPECT_EQ(f.exception(), nullptr);
  EXPECT_FALSE(f.cancel());
  EXPECT_THROW(f.set_result(1), InvalidStateError);
  EXPECT_THROW(f.set_exception(std::make_exception_ptr(std::runtime_error("x"))),
               InvalidStateError);
  EXPECT_THROW(f.set_running_or_notify_cancel(), std::runtime_error);
  EXPECT_FALSE(f.try_set_result(7));
  EXPECT_EQ(f.result(), 42);
}

TEST(ConcurrentFutureTest, CopiesShareTheState) {
  concurrent::Future<std::string> a;
  concurrent::Future<std::string> b = a;
  EXPECT_TRUE(a == b);
  EXPECT_FALSE(a == concurrent::Future<std::string>());
  a.set_result("shared");
  EXPECT_EQ(b.result(), "shared");
}

TEST(ConcurrentFutureTest, Exception) {
  concurrent::Future<int> f;
  f.set_exception(std::make_exception_ptr(std::out_of_range("bad index")));
  EXPECT_THROW(f.result(), std::out_of_range);
  std::exception_ptr e = f.exception();
  ASSERT_NE(e, nullptr);
  EXPECT_THROW(std::rethrow_exception(e), std::out_of_range);
  EXPECT_THROW(f.set_exception(nullptr), std::invalid_argument);
}

TEST(ConcurrentFutureTest, CancelPending) {
  concurrent::Future<int> f;
  EXPECT_TRUE(f.cancel());
  EXPECT_TRUE(f.cancel());  // again: still true, as Python
  EXPECT_TRUE(f.cancelled());
  EXPECT_TRUE(f.done());
  EXPECT_THROW(f.result(), CancelledError);
  EXPECT_THROW(f.exception(), CancelledError);
  EXPECT_THROW(f.set_result(1), InvalidStateError);
  // A worker that picks it up is told not to run it, once.
  EXPECT_FALSE(f.set_running_or_notify_cancel());
  EXPECT_TRUE(f.cancelled());
  EXPECT_THROW(f.set_running_or_notify_cancel(), std::runtime_error);
}

TEST(ConcurrentFutureTest, Timeouts) {
  concurrent::Future<int> f;
  auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(f.result(20ms), TimeoutError);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 20ms);
  EXPECT_THROW(f.exception(1ms), TimeoutError);
  EXPECT_THROW(f.result(std::chrono::duration<double>(0.001)), TimeoutError);
  EXPECT_THROW(f.result(0s), TimeoutError);
  EXPECT_THROW(f.result(-5s), TimeoutError);
  f.set_result(3);
  EXPECT_EQ(f.result(0s), 3);
  EXPECT_EQ(f.result(std::chrono::hours(1'000'000'000)), 3);  // saturated, not overflowed
}

TEST(ConcurrentFutureTest, VoidFuture) {
  concurrent::Future<void> f;
  EXPECT_THROW(f.result(1ms), TimeoutError);
  f.set_result();
  f.result();
  EXPECT_TRUE(f.done());
  EXPECT_THROW(f.set_result(), InvalidStateError);
}

TEST(ConcurrentFutureTest, ResultFromAnotherThread) {
  concurrent::Future<std::string> f;
  std::thread t([f]() mutable {
    std::this_thread::sleep_for(20ms);
    f.set_result("from thread");
  });
  EXPECT_EQ(f.result(), "from thread");
  t.join();
}

TEST(ConcurrentFutureTest, ManyWaiters) {
  concurrent::Future<int> f;
  std::atomic<int> seen{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < 4; ++i) {
    waiters.emplace_back([f, &seen] {
      if (f.result(10s) == 5) seen.fetch_add(1);
    });
  }
  std::this_thread::sleep_for(10ms);
  f.set_result(5);
  for (auto& t : waiters) t.join();
  EXPECT_EQ(seen.load(), 4);
}

TEST(ConcurrentFutureTest, CancelWakesWaiters) {
  concurrent::Future<int> f;
  std::atomic<bool> cancelled{false};
  std::thread waiter([f, &cancelled] {
    try {
      f.result();
    } catch (const CancelledError&) {
      cancelled = true;
    }
  });
  std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(f.cancel());
  waiter.join();
  EXPECT_TRUE(cancelled.load());
}

TEST(ConcurrentFutureTest, CallbacksRunInTheCompletingThread) {
  concurrent::Future<int> f;
  std::thread::id callback_thread;
  int value = 0;
  f.add_done_callback([&](concurrent::Future<int>& done) {
    callback_thread = std::this_thread::get_id();
    value = done.result();
  });
  std::thread t([f]() mutable { f.set_result(9); });
  std::thread::id completer = t.get_id();
  t.join();
  EXPECT_EQ(callback_thread, completer);
  EXPECT_EQ(value, 9);

  // Added when done: runs at once, in this thread.
  bool ran = false;
  f.add_done_callback([&](concurrent::Future<int>& done) {
    ran = true;
    EXPECT_EQ(std::this_thread::get_id(), std::this_thread::get_id());
    EXPECT_EQ(done.result(), 9);
  });
  EXPECT_TRUE(ran);
}

TEST(ConcurrentFutureTest, CallbacksInOrderAndOnCancel) {
  concurrent::Future<void> f;
  std::vector<int> order;
  f.add_done_callback([&](concurrent::Future<void>& d) {
    EXPECT_TRUE(d.cancelled());
    order.push_back(1);
  });
  f.add_done_callback([&](concurrent::Future<void>&) { order.push_back(2); });
  f.cancel();
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

TEST(ConcurrentFutureTest, ThrowingCallbackIsReportedAndOthersRun) {
  concurrent::Future<int> f;
  bool second = false;
  f.add_done_callback([](concurrent::Future<int>&) { throw std::runtime_error("callback boom"); });
  f.add_done_callback([&](concurrent::Future<int>&) { second = true; });
  testing::internal::CaptureStderr();
  f.set_result(1);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(second);
  EXPECT_NE(err.find("callback boom"), std::string::npos) << err;
}

TEST(ConcurrentFutureTest, RacingCompletersOneWins) {
  for (int round = 0; round < 200; ++round) {
    concurrent::Future<int> f;
    std::atomic<int> wins{0};
    std::atomic<int> callbacks{0};
    f.add_done_callback([&](concurrent::Future<int>&) { callbacks.fetch_add(1); });
    std::thread a([&, f]() mutable {
      if (f.try_set_result(1)) wins.fetch_add(1);
    });
    std::thread b([&, f]() mutable {
      if (f.cancel()) wins.fetch_add(1);
    });
    a.join();
    b.join();
    EXPECT_EQ(wins.load(), 1);
    EXPECT_EQ(callbacks.load(), 1);
    EXPECT_TRUE(f.done());
  }
}

}  // namespace
}  // namespace asyncio
