// contextvars and asyncio: tasks run in a copy of their creator's context,
// callbacks in the context current when they were scheduled, as in CPython.
#include <chrono>
#include <string>
#include <vector>

#include "futures/futures.h"
#include "gtest/gtest.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;

ContextVar<std::string> request_id("request_id");

std::string current_request_id() { return request_id.get("-"); }

Coro<std::string> report_after_yield() {
  co_await sleep(0s);
  co_return current_request_id();
}

Coro<void> set_in_child() {
  request_id.set("child");
  co_await sleep(0s);
  EXPECT_EQ(current_request_id(), "child");
}

TEST(TaskContextTest, ATaskSeesItsCreatorsValuesAcrossSuspensions) {
  run([]() -> Coro<void> {
    request_id.set("r1");
    Task<std::string> child = create_task(report_after_yield());
    request_id.set("r2");  // after create_task: the child has its own copy
    EXPECT_EQ(co_await child, "r1");
  }());
}

TEST(TaskContextTest, AChildsSetDoesNotReachItsCreator) {
  run([]() -> Coro<void> {
    request_id.set("parent");
    co_await create_task(set_in_child());
    EXPECT_EQ(current_request_id(), "parent");
  }());
}

TEST(TaskContextTest, ATaskWithoutValuesStartsEmpty) {
  run([]() -> Coro<void> {
    Task<std::string> child = create_task(report_after_yield());
    EXPECT_EQ(co_await child, "-");
  }());
}

TEST(TaskContextTest, CreateTaskRunsInTheGivenContextAndGetContextReturnsIt) {
  run([]() -> Coro<void> {
    Context context;
    context.run([] { request_id.set("given"); });
    Task<void> child = create_task(set_in_child(), {.context = context});
    EXPECT_TRUE(child.get_context() == context);
    co_await child;
    // The task ran in `context` itself, not a copy: its set is visible there.
    EXPECT_EQ(request_id.get_in(context), "child");
  }());
}

TEST(TaskContextTest, InterleavedTasksKeepTheirOwnValues) {
  run([]() -> Coro<void> {
    std::vector<std::string> seen;
    auto worker = [&seen](std::string id) -> Coro<void> {
      request_id.set(id);
      for (int i = 0; i < 3; ++i) {
        co_await sleep(0s);
        seen.push_back(current_request_id());
      }
    };
    Task<void> a = create_task(worker("a"));
    Task<void> b = create_task(worker("b"));
    co_await a;
    co_await b;
    EXPECT_EQ(seen, (std::vector<std::string>{"a", "b", "a", "b", "a", "b"}));
    EXPECT_EQ(current_request_id(), "-");
  }());
}

TEST(TaskContextTest, EagerTasksRunInTheirOwnCopyToo) {
  run([]() -> Coro<void> {
    request_id.set("creator");
    Task<void> child = create_task(set_in_child(), {.eager_start = true});
    EXPECT_EQ(current_request_id(), "creator");  // the eager step set "child" in its copy
    co_await child;
  }());
}

TEST(CallbackContextTest, CallbacksRunInTheContextOfTheirScheduling) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Future<std::string> soon = create_future<std::string>(loop);
    Future<std::string> later = create_future<std::string>(loop);
    request_id.set("scheduled");
    loop.call_soon([soon]() mutable { soon.set_result(current_request_id()); });
    loop.call_later(1ms, [later]() mutable { later.set_result(current_request_id()); });
    request_id.set("changed");
    EXPECT_EQ(co_await soon, "scheduled");
    EXPECT_EQ(co_await later, "scheduled");
  }());
}

TEST(CallbackContextTest, ACallbackRunsInAGivenContext) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Context context;
    context.run([] { request_id.set("given"); });
    Future<std::string> seen = create_future<std::string>(loop);
    loop.call_soon(
        [seen]() mutable {
          seen.set_result(current_request_id());
          request_id.set("set by callback");
        },
        context);
    EXPECT_EQ(co_await seen, "given");
    EXPECT_EQ(request_id.get_in(context), "set by callback");
    EXPECT_EQ(current_request_id(), "-");
  }());
}

TEST(TaskGroupContextTest, GroupTasksCopyTheContextOrTakeAGivenOne) {
  run([]() -> Coro<void> {
    request_id.set("group owner");
    Context given;
    std::string seen_default;
    // Named: a coroutine lambda's captures live in the lambda object.
    auto observe = [&seen_default]() -> Coro<void> {
      co_await sleep(0s);
      seen_default = current_request_id();
    };
    TaskGroup group;
    group.create_task(observe());
    group.create_task(set_in_child(), {.name = "in given", .context = given});
    co_await group.join();
    EXPECT_EQ(seen_default, "group owner");
    EXPECT_EQ(request_id.get_in(given), "child");
  }());
}

}  // namespace
}  // namespace asyncio
