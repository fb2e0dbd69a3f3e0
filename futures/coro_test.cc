// A Coro dropped without being awaited is reported, as Python's "coroutine
// 'f' was never awaited"; awaited, tasked, moved-from and closed ones are not.
#include "futures/coro.h"

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "futures/futures.h"
#include "gtest/gtest.h"

namespace asyncio {
namespace coro_test {

Coro<int> forgotten_body() { co_return 1; }
Coro<int> answer() { co_return 42; }

// The running loop's exception reports, in order.
std::vector<std::string>& collect_reports() {
  static std::vector<std::string> reports;
  reports.clear();
  get_running_loop().set_exception_handler(
      [](EventLoop&, const ExceptionContext& context) { reports.push_back(context.message); });
  return reports;
}

TEST(NeverAwaitedTest, DroppedCoroIsReportedOnceWithItsName) {
  run([]() -> Coro<void> {
    std::vector<std::string>& reports = collect_reports();
    { Coro<int> forgotten = forgotten_body(); }
    EXPECT_EQ(reports, std::vector<std::string>{
                           "coroutine 'asyncio::coro_test::forgotten_body' was never awaited"});
    co_return;
  }());
}

TEST(NeverAwaitedTest, ReplacingAnUnawaitedCoroReportsIt) {
  run([]() -> Coro<void> {
    std::vector<std::string>& reports = collect_reports();
    Coro<int> coro = forgotten_body();
    coro = answer();  // the first one is dropped
    EXPECT_EQ(co_await coro, 42);
    EXPECT_EQ(reports.size(), 1u);
    if (reports.size() != 1) co_return;
    EXPECT_NE(reports[0].find("'asyncio::coro_test::forgotten_body'"), std::string::npos);
  }());
}

TEST(NeverAwaitedTest, AwaitedTaskedMovedAndClosedCorosAreNotReported) {
  run([]() -> Coro<void> {
    std::vector<std::string>& reports = collect_reports();
    EXPECT_EQ(co_await answer(), 42);
    Coro<int> kept = answer();
    EXPECT_EQ(co_await kept, 42);
    Task<int> task = create_task(answer());
    EXPECT_EQ(co_await task, 42);
    Coro<int> from = answer();
    Coro<int> to = std::move(from);
    EXPECT_EQ(co_await to, 42);
    Coro<int> closed = answer();
    closed.close();  // Python's coro.close(): no warning
    EXPECT_FALSE(closed.valid());
    EXPECT_EQ(co_await gather(answer(), answer()), std::make_tuple(42, 42));
    EXPECT_EQ(reports, std::vector<std::string>{});
  }());
}

TEST(NeverAwaitedTest, ClosingACoroBeingAwaitedIsALogicError) {
  run([]() -> Coro<void> {
    Future<void> gate = create_future<void>(get_running_loop());
    Coro<void> waiting = [](Future<void> g) -> Coro<void> { co_await g; }(gate);
    Task<void> awaiting = create_task([](Coro<void>& c) -> Coro<void> { co_await c; }(waiting));
    co_await sleep(std::chrono::seconds(0));  // `awaiting` suspends inside `waiting`
    EXPECT_THROW(waiting.close(), std::logic_error);
    gate.set_result();
    co_await awaiting;
    waiting.close();  // finished: closing is fine
  }());
}

// As asyncio's TaskGroup.create_task, which closes the coroutine it refuses.
TEST(NeverAwaitedTest, ATaskGroupRefusingACoroClosesIt) {
  run([]() -> Coro<void> {
    std::vector<std::string>& reports = collect_reports();
    std::optional<TaskGroup> group;
    group.emplace();
    co_await group->join();
    EXPECT_THROW(group->create_task(answer()), std::runtime_error);  // finished
    EXPECT_EQ(reports, std::vector<std::string>{});
  }());
}

// Outside a running loop there is no handler: the report goes to stderr.
// An AnyCoro (what a task factory receives) dropped before it starts is
// the same bug; one that became a task is not.
TEST(NeverAwaitedTest, AnAnyCoroDroppedBeforeItStartsIsReported) {
  run([]() -> Coro<void> {
    std::vector<std::string>& reports = collect_reports();
    { AnyCoro erased = forgotten_body(); }
    EXPECT_EQ(reports, std::vector<std::string>{
                           "coroutine 'asyncio::coro_test::forgotten_body' was never awaited"});
    reports.clear();
    AnyTask task(AnyCoro(answer()), get_running_loop(), TaskOptions{});
    co_await task;
    EXPECT_TRUE(reports.empty());
  }());
}

TEST(NeverAwaitedTest, WithoutARunningLoopTheReportGoesToStderr) {
  testing::internal::CaptureStderr();
  { Coro<int> forgotten = forgotten_body(); }
  EXPECT_EQ(testing::internal::GetCapturedStderr(),
            "coroutine 'asyncio::coro_test::forgotten_body' was never awaited\n");
}

[[gnu::noinline]] void drop_one() { Coro<int> forgotten = forgotten_body(); }

// In debug mode the report names the functions on the stack of the drop.
TEST(NeverAwaitedTest, DebugModeAddsWhereTheCoroWasDropped) {
  run(
      []() -> Coro<void> {
        std::vector<std::string>& reports = collect_reports();
        drop_one();
        EXPECT_EQ(reports.size(), 1u);
        if (reports.size() != 1) co_return;
        EXPECT_EQ(reports[0].find("coroutine 'asyncio::coro_test::forgotten_body' was never "
                                  "awaited\nCoroutine dropped at (most recent call first):\n"
                                  "  asyncio::coro_test::drop_one()\n"),
                  0u)
            << reports[0];
        co_return;
      }(),
      {.debug = true});
}

}  // namespace coro_test
}  // namespace asyncio
