// current_task(loop), all_tasks(loop), repr, get_stack, print_stack.
#include <chrono>
#include <coroutine>
#include <cstdio>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "futures/futures.h"
#include "gtest/gtest.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;

// ASSERT_* for coroutine bodies (gtest's own `return`).
#define CO_ASSERT_TRUE(c) \
  do {                    \
    EXPECT_TRUE(c);       \
    if (!(c)) co_return;  \
  } while (0)

// co_await FrameAddress{&p}: stores the awaiting coroutine's frame address
// and goes on at once.
struct FrameAddress {
  const void** out;
  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) const noexcept {
    *out = h.address();
    return false;
  }
  void await_resume() const noexcept {}
};

TEST(CurrentTaskTest, ForAGivenLoop) {
  auto other = new_event_loop();
  EXPECT_FALSE(current_task(*other).has_value());
  run([](EventLoop& other_loop) -> Coro<void> {
    std::optional<AnyTask> here = current_task(get_running_loop());
    CO_ASSERT_TRUE(here.has_value());
    EXPECT_TRUE(*here == *current_task());
    EXPECT_FALSE(current_task(other_loop).has_value());
    co_return;
  }(*other));
}

TEST(AllTasksTest, OfALoopThatIsNotRunning) {
  Runner runner;
  std::vector<AnyTask> made;
  runner.run([](std::vector<AnyTask>& m) -> Coro<void> {
    m.push_back(create_task(sleep(1h), "a"));
    m.push_back(create_task(sleep(1h), "b"));
    m.push_back(create_task(sleep(0s), "quick"));
    co_await sleep(1ms);
  }(made));
  std::vector<AnyTask> pending = all_tasks(runner.get_loop());
  ASSERT_EQ(pending.size(), 2u);
  EXPECT_EQ(pending[0].get_name(), "a");
  EXPECT_EQ(pending[1].get_name(), "b");
  EXPECT_TRUE(all_tasks(*new_event_loop()).empty());
}

TEST(ReprTest, States) {
  run([]() -> Coro<void> {
    Future<int> future = create_future<int>(get_running_loop());
    Task<int> waiter =
        create_task([](Future<int> f) -> Coro<int> { co_return co_await f; }(future), "waiter");
    EXPECT_EQ(repr(waiter), "<Task pending name='waiter'>");  // not started
    co_await sleep(0s);
    EXPECT_EQ(repr(waiter), "<Task pending name='waiter' wait_for=<Future pending>>");
    Task<int> outer =
        create_task([](Task<int> t) -> Coro<int> { co_return co_await t; }(waiter), "outer");
    co_await sleep(0s);
    EXPECT_EQ(repr(outer), "<Task pending name='outer' wait_for=<Task pending name='waiter'>>");
    // Cancelling a task cancels what it waits on; it is cancelling until
    // the CancelledError has gone through its coroutine.
    outer.cancel();
    EXPECT_EQ(repr(outer), "<Task cancelling name='outer' wait_for=<Task pending name='waiter'>>");
    EXPECT_EQ(repr(waiter), "<Task cancelling name='waiter' wait_for=<Future cancelled>>");
    co_await sleep(0s);
    co_await sleep(0s);
    EXPECT_EQ(repr(outer), "<Task cancelled name='outer'>");
    EXPECT_EQ(repr(waiter), "<Task cancelled name='waiter'>");

    Task<int> quick = create_task(sleep(0s, 5), "quick");
    co_await quick;
    EXPECT_EQ(repr(quick), "<Task finished name='quick'>");
    Task<void> failing = create_task(
        []() -> Coro<void> {
          co_await sleep(0s);
          throw std::runtime_error("boom");
        }(),
        "failing");
    try {
      co_await failing;
    } catch (const std::runtime_error&) {
    }
    EXPECT_EQ(repr(failing), "<Task finished name='failing' exception=boom>");
  }());
}

struct Frames {
  const void* outer = nullptr;
  const void* middle = nullptr;
  const void* inner = nullptr;
};

Coro<int> inner_coro(Frames& f, Future<int> gate) {
  co_await FrameAddress{&f.inner};
  co_return co_await gate;
}
Coro<int> middle_coro(Frames& f, Future<int> gate) {
  co_await FrameAddress{&f.middle};
  co_return co_await inner_coro(f, gate);
}
Coro<int> outer_coro(Frames& f, Future<int> gate) {
  co_await FrameAddress{&f.outer};
  co_return co_await middle_coro(f, gate);
}

TEST(GetStackTest, TheChainOfAwaitingCoroutines) {
  run([]() -> Coro<void> {
    Frames f;
    Future<int> gate = create_future<int>(get_running_loop());
    Task<int> task = create_task(outer_coro(f, gate), "walker");
    std::vector<TaskFrame> before = get_stack(task);  // not started: its own coroutine
    CO_ASSERT_TRUE(before.size() == 1u);
    co_await sleep(0s);
    std::vector<TaskFrame> stack = get_stack(task);
    CO_ASSERT_TRUE(stack.size() == 3u);
    EXPECT_EQ(before[0].address, f.outer);
    EXPECT_EQ(stack[0].address, f.outer);
    EXPECT_EQ(stack[1].address, f.middle);
    EXPECT_EQ(stack[2].address, f.inner);
    for (const TaskFrame& frame : stack) {
      EXPECT_EQ(frame.kind, TaskFrame::Kind::kCoroutine);
      EXPECT_NE(frame.resume, nullptr);
    }
    std::vector<TaskFrame> last = get_stack(task, 1);
    CO_ASSERT_TRUE(last.size() == 1u);
    EXPECT_EQ(last[0].address, f.inner);

    std::FILE* out = std::tmpfile();
    print_stack(task, std::nullopt, out);
    std::rewind(out);
    std::string text(4096, '\0');
    text.resize(std::fread(text.data(), 1, text.size(), out));
    std::fclose(out);
    EXPECT_EQ(text.rfind("Stack for <Task pending name='walker' wait_for=<Future pending>> "
                         "(most recent call last):\n  coroutine frame ",
                         0),
              0u)
        << text;
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 4) << text;

    gate.set_result(7);
    EXPECT_EQ(co_await task, 7);
    EXPECT_TRUE(get_stack(task).empty());
  }());
}

TEST(GetCoroTest, TheOutermostFrameWhilePendingThenNull) {
  run([]() -> Coro<void> {
    Frames f;
    Future<int> gate = create_future<int>(get_running_loop());
    Task<int> task = create_task(outer_coro(f, gate), "walker");
    co_await sleep(0s);
    EXPECT_EQ(task.get_coro(), f.outer);
    EXPECT_EQ(AnyTask(task).get_coro(), f.outer);
    EXPECT_EQ(task.get_coro(), get_stack(task)[0].address);
    gate.set_result(1);
    co_await task;
    EXPECT_EQ(task.get_coro(), nullptr);
  }());
}

TEST(GetStackTest, TheRunningTaskHasItsOwnCoroutine) {
  run([]() -> Coro<void> {
    const void* self = nullptr;
    co_await FrameAddress{&self};
    std::vector<TaskFrame> stack = get_stack(*current_task());
    CO_ASSERT_TRUE(stack.size() == 1u);
    EXPECT_EQ(stack[0].address, self);
  }());
}

AsyncGenerator<int> numbers(Future<int> gate, const void** frame) {
  co_await FrameAddress{frame};
  co_yield co_await gate;
}

TEST(GetStackTest, StopsAtAnAsyncGenerator) {
  run([]() -> Coro<void> {
    Future<int> gate = create_future<int>(get_running_loop());
    const void* generator_frame = nullptr;
    Task<int> task = create_task([](Future<int> g, const void** frame) -> Coro<int> {
      AsyncGenerator<int> gen = numbers(g, frame);
      co_return *co_await gen.next();
    }(gate, &generator_frame));
    co_await sleep(0s);
    std::vector<TaskFrame> stack = get_stack(task);
    CO_ASSERT_TRUE(stack.size() == 1u);
    EXPECT_EQ(stack[0].kind, TaskFrame::Kind::kAsyncGenerator);
    EXPECT_EQ(stack[0].address, generator_frame);
    gate.set_result(3);
    EXPECT_EQ(co_await task, 3);
  }());
}

Coro<int> awaited_by_generator(Future<int> gate) { co_return co_await gate; }

AsyncGenerator<int> delegating(Future<int> gate) { co_yield co_await awaited_by_generator(gate); }

TEST(GetStackTest, ACoroAwaitedByAGeneratorNamesItAndStops) {
  run([]() -> Coro<void> {
    Future<int> gate = create_future<int>(get_running_loop());
    Task<int> task = create_task([](Future<int> g) -> Coro<int> {
      AsyncGenerator<int> gen = delegating(g);
      co_return *co_await gen.next();
    }(gate));
    co_await sleep(0s);
    std::vector<TaskFrame> stack = get_stack(task);
    CO_ASSERT_TRUE(stack.size() == 2u);
    EXPECT_EQ(stack[0].kind, TaskFrame::Kind::kAsyncGenerator);
    EXPECT_EQ(stack[1].kind, TaskFrame::Kind::kCoroutine);
    gate.set_result(4);
    EXPECT_EQ(co_await task, 4);
  }());
}

}  // namespace
}  // namespace asyncio
