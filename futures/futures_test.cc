// Future<T>: results, exceptions, cancellation, done-callbacks, awaiting.
#include "futures/futures.h"

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;

TEST(FutureTest, ResultAndState) {
  auto loop = new_event_loop();
  Future<int> f = create_future<int>(*loop);
  EXPECT_FALSE(f.done());
  EXPECT_FALSE(f.cancelled());
  EXPECT_THROW(f.result(), InvalidStateError);
  EXPECT_THROW(f.exception(), InvalidStateError);
  f.set_result(42);
  EXPECT_TRUE(f.done());
  EXPECT_EQ(f.result(), 42);
  EXPECT_EQ(f.exception(), nullptr);
  EXPECT_THROW(f.set_result(1), InvalidStateError);
  EXPECT_THROW(f.set_exception(std::make_exception_ptr(std::runtime_error("x"))),
               InvalidStateError);
  EXPECT_FALSE(f.cancel());
  EXPECT_EQ(&f.get_loop(), loop.get());
}

TEST(FutureTest, CopiesShareTheResult) {
  auto loop = new_event_loop();
  Future<std::string> a = create_future<std::string>(*loop);
  Future<std::string> b = a;
  EXPECT_TRUE(a == b);
  a.set_result("shared");
  EXPECT_EQ(b.result(), "shared");
}

TEST(FutureTest, ExceptionIsRethrown) {
  auto loop = new_event_loop();
  Future<void> f = create_future<void>(*loop);
  f.set_exception(std::make_exception_ptr(std::runtime_error("bad")));
  EXPECT_THROW(f.result(), std::runtime_error);
  EXPECT_NE(f.exception(), nullptr);
  EXPECT_THROW(f.set_exception(nullptr), std::invalid_argument);
}

TEST(FutureTest, CancelWithMessage) {
  auto loop = new_event_loop();
  Future<int> f = create_future<int>(*loop);
  EXPECT_TRUE(f.cancel("stop it"));
  EXPECT_TRUE(f.cancelled());
  EXPECT_TRUE(f.done());
  EXPECT_FALSE(f.cancel());
  try {
    f.result();
    FAIL() << "expected CancelledError";
  } catch (const CancelledError& e) {
    EXPECT_EQ(e.message(), "stop it");
    EXPECT_STREQ(e.what(), "stop it");
  }
  EXPECT_THROW(f.exception(), CancelledError);
  EXPECT_THROW(f.set_result(1), InvalidStateError);
}

TEST(FutureTest, DoneCallbacksAreScheduledInOrderWithCallSoon) {
  auto loop = new_event_loop();
  Future<int> f = create_future<int>(*loop);
  std::vector<int> order;
  f.add_done_callback([&](Future<int>& done) { order.push_back(done.result()); });
  f.add_done_callback([&](Future<int>&) { order.push_back(-1); });
  f.set_result(7);
  EXPECT_TRUE(order.empty()) << "callbacks run on the loop, not inside set_result";
  // Added after completion: scheduled at once, after the others.
  f.add_done_callback([&](Future<int>&) {
    order.push_back(-2);
    loop->stop();
  });
  loop->run_forever();
  EXPECT_EQ(order, (std::vector<int>{7, -1, -2}));
}

TEST(FutureTest, RemoveDoneCallback) {
  auto loop = new_event_loop();
  Future<void> f = create_future<void>(*loop);
  int calls = 0;
  CallbackId a = f.add_done_callback([&](Future<void>&) { ++calls; });
  f.add_done_callback([&](Future<void>&) { loop->stop(); });
  EXPECT_EQ(f.remove_done_callback(a), 1u);
  EXPECT_EQ(f.remove_done_callback(a), 0u);
  f.set_result();
  loop->run_forever();
  EXPECT_EQ(calls, 0);
}

TEST(FutureTest, ThrowingCallbackIsReportedNotFatal) {
  auto loop = new_event_loop();
  std::vector<std::string> reported;
  loop->set_exception_handler(
      [&](EventLoop&, const ExceptionContext& ctx) { reported.push_back(ctx.message); });
  Future<void> f = create_future<void>(*loop);
  f.add_done_callback([](Future<void>&) { throw std::runtime_error("cb"); });
  f.add_done_callback([&](Future<void>&) { loop->stop(); });
  f.set_result();
  loop->run_forever();
  ASSERT_EQ(reported.size(), 1u);
}

TEST(FutureTest, UnretrievedExceptionIsReported) {
  auto loop = new_event_loop();
  std::vector<std::string> reported;
  loop->set_exception_handler(
      [&](EventLoop&, const ExceptionContext& ctx) { reported.push_back(ctx.message); });
  {
    Future<int> f = create_future<int>(*loop);
    f.set_exception(std::make_exception_ptr(std::runtime_error("lost")));
  }
  ASSERT_EQ(reported.size(), 1u);
  EXPECT_EQ(reported[0], "Future exception was never retrieved");
  {
    Future<int> f = create_future<int>(*loop);
    f.set_exception(std::make_exception_ptr(std::runtime_error("seen")));
    EXPECT_NE(f.exception(), nullptr);
  }
  EXPECT_EQ(reported.size(), 1u);
}

TEST(FutureTest, CallbackOnNeverCompletedFutureIsFreed) {
  auto loop = new_event_loop();
  auto token = std::make_shared<int>(0);
  {
    Future<int> f = create_future<int>(*loop);
    f.add_done_callback([token](Future<int>&) {});
    EXPECT_EQ(token.use_count(), 2);
  }
  EXPECT_EQ(token.use_count(), 1);
}

TEST(FutureTest, AwaitingAFutureSetFromACallback) {
  EXPECT_EQ(run([]() -> Coro<int> {
              EventLoop& loop = get_running_loop();
              Future<int> f = create_future<int>(loop);
              loop.call_later(1ms, [f]() mutable { f.set_result(5); });
              int v = co_await f;
              co_return v * 2;
            }()),
            10);
}

TEST(FutureTest, AwaitingADoneFutureDoesNotSuspend) {
  run([]() -> Coro<void> {
    Future<int> f = create_future<int>(get_running_loop());
    f.set_result(3);
    bool other_ran = false;
    auto t = create_task([](bool& flag) -> Coro<void> {
      flag = true;
      co_return;
    }(other_ran));
    EXPECT_EQ(co_await f, 3);
    EXPECT_FALSE(other_ran) << "awaiting a done future must not yield to the loop";
    co_await t;
    EXPECT_TRUE(other_ran);
  }());
}

TEST(FutureTest, AwaitingAFailedFutureThrows) {
  EXPECT_THROW(run([]() -> Coro<void> {
                 Future<void> f = create_future<void>(get_running_loop());
                 get_running_loop().call_soon([f]() mutable {
                   f.set_exception(std::make_exception_ptr(std::out_of_range("oops")));
                 });
                 co_await f;
               }()),
               std::out_of_range);
}

TEST(FutureTest, TraitsRecognizeCorosAndFutures) {
  static_assert(iscoroutine<Coro<int>>);
  static_assert(!iscoroutine<Future<int>>);
  static_assert(isfuture<Future<int>>);
  static_assert(isfuture<Task<void>>);
  static_assert(!isfuture<Coro<void>>);
  static_assert(!isfuture<int>);
  static_assert(std::is_same_v<await_result_t<Task<std::string>>, std::string>);
}

}  // namespace
}  // namespace asyncio
