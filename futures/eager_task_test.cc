// Eager tasks (create_task's eager_start) and task factories
// (set_task_factory, get_task_factory, eager_task_factory,
// create_eager_task_factory), as asyncio 3.12-3.14.
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

// create_task(..., eager_start=True)
TaskOptions eager() { return {.eager_start = true}; }

Coro<int> answer(std::vector<std::string>* log) {
  if (log != nullptr) log->push_back("body");
  co_return 42;
}

Coro<int> answer_after_yield(std::vector<std::string>* log) {
  log->push_back("first step");
  co_await sleep(0s);
  log->push_back("second step");
  co_return 7;
}

Coro<int> fails_at_once() {
  throw std::runtime_error("boom");
  co_return 0;
}

bool contains(const std::vector<AnyTask>& tasks, const AnyTask& task) {
  for (const AnyTask& t : tasks) {
    if (t == task) return true;
  }
  return false;
}

using FactoryFn = AnyTask (*)(EventLoop&, AnyCoro, TaskOptions);

// Awaits `task`; the CancelledError's message if it was cancelled.
template <class T>
Coro<std::optional<std::string>> cancellation_of(Task<T>& task) {
  try {
    co_await task;
  } catch (const CancelledError& e) {
    co_return std::string(e.what());
  }
  co_return std::nullopt;
}

// A task factory that counts the tasks it makes and names the unnamed ones
// "worker-<n>".
TaskFactory counting_factory(int& created) {
  return [&created](EventLoop& loop, AnyCoro coro, TaskOptions options) {
    ++created;
    if (options.name.empty()) options.name = "worker-" + std::to_string(created);
    return AnyTask(std::move(coro), loop, std::move(options));
  };
}

TEST(EagerTaskTest, CompletesInsideCreateTask) {
  run([]() -> Coro<void> {
    std::vector<std::string> log;
    Task<int> t = create_task(answer(&log), {.name = "eager", .eager_start = true});
    log.push_back("after create_task");
    EXPECT_EQ(t.get_name(), "eager");
    EXPECT_EQ(log, (std::vector<std::string>{"body", "after create_task"}));
    EXPECT_TRUE(t.done());
    EXPECT_EQ(t.result(), 42);
    EXPECT_FALSE(contains(all_tasks(), t)) << "a done task is not pending";
    EXPECT_FALSE(t.cancel()) << "a done task cannot be cancelled";
    EXPECT_FALSE(t.cancelled());
    EXPECT_EQ(co_await t, 42);
  }());
}

TEST(EagerTaskTest, DefaultIsNotEager) {
  run([]() -> Coro<void> {
    std::vector<std::string> log;
    Task<int> t = create_task(answer(&log), TaskOptions{.name = "lazy"});
    EXPECT_TRUE(log.empty());
    EXPECT_FALSE(t.done());
    EXPECT_EQ(t.get_name(), "lazy");
    EXPECT_EQ(co_await t, 42);
  }());
}

// From a plain callback: the eager task is done within the callback that
// creates it, so the loop stops after that one iteration with nothing left;
// a scheduled task would still be pending then.
TEST(EagerTaskTest, NeedsNoLoopIteration) {
  auto loop = new_event_loop();
  std::optional<Task<int>> eager_task;
  std::optional<Task<int>> scheduled;
  int iterations = 0;
  loop->call_soon([&] {
    ++iterations;
    eager_task = create_task(*loop, answer(nullptr), eager());
    scheduled = create_task(*loop, answer(nullptr));
    loop->stop();
  });
  loop->run_forever();
  EXPECT_EQ(iterations, 1);
  EXPECT_TRUE(eager_task->done());
  EXPECT_EQ(eager_task->result(), 42);
  EXPECT_FALSE(scheduled->done());
  EXPECT_EQ(run_until_complete(*loop, *scheduled), 42);
  // More iterations do not step the finished eager task again.
  EXPECT_EQ(run_until_complete(*loop, sleep(0s, 1)), 1);
  EXPECT_EQ(eager_task->result(), 42);
  loop->close();
}

TEST(EagerTaskTest, NotRunningLoopSchedulesAsUsual) {
  auto loop = new_event_loop();
  std::vector<std::string> log;
  Task<int> t = create_task(*loop, answer(&log), eager());
  EXPECT_TRUE(log.empty()) << "no running loop to return to: Python schedules it";
  EXPECT_FALSE(t.done());
  EXPECT_EQ(run_until_complete(*loop, t), 42);
  loop->close();
}

TEST(EagerTaskTest, SuspendsThenContinuesOnTheLoop) {
  run([]() -> Coro<void> {
    std::vector<std::string> log;
    Task<int> t = create_task(answer_after_yield(&log), eager());
    EXPECT_EQ(log, (std::vector<std::string>{"first step"}));
    EXPECT_FALSE(t.done());
    EXPECT_TRUE(contains(all_tasks(), t));
    EXPECT_EQ(co_await t, 7);
    EXPECT_EQ(log, (std::vector<std::string>{"first step", "second step"}));
    EXPECT_FALSE(contains(all_tasks(), t));
  }());
}

TEST(EagerTaskTest, AwaitsAFutureDuringTheEagerStep) {
  run([]() -> Coro<void> {
    Future<std::string> fut = create_future<std::string>(get_running_loop());
    auto set = [](Future<std::string> f) -> Coro<void> {
      f.set_result("my message");
      co_return;
    };
    Task<void> t = create_task(set(fut), eager());
    EXPECT_TRUE(t.done());
    EXPECT_EQ(co_await fut, "my message");
  }());
}

TEST(EagerTaskTest, ExceptionLandsInTheTask) {
  run([]() -> Coro<void> {
    std::optional<Task<int>> t;
    EXPECT_NO_THROW(t = create_task(fails_at_once(), eager()));
    EXPECT_TRUE(t->done());
    EXPECT_FALSE(t->cancelled());
    EXPECT_NE(t->exception(), nullptr);
    bool thrown = false;
    try {
      co_await *t;
    } catch (const std::runtime_error& e) {
      thrown = std::string(e.what()) == "boom";
    }
    EXPECT_TRUE(thrown);
  }());
}

TEST(EagerTaskTest, CurrentTaskInsideAndOutside) {
  run([]() -> Coro<void> {
    std::optional<AnyTask> outer = current_task();
    EXPECT_TRUE(outer.has_value());
    std::optional<AnyTask> seen_first;
    std::optional<AnyTask> seen_after_suspending;
    auto body = [](std::optional<AnyTask>& first, std::optional<AnyTask>& after) -> Coro<void> {
      first = current_task();
      co_await sleep(0s);
      after = current_task();
    };
    Task<void> t = create_task(body(seen_first, seen_after_suspending), eager());
    EXPECT_TRUE(seen_first == AnyTask(t));
    EXPECT_TRUE(current_task() == outer) << "the creator is current again";
    co_await t;
    EXPECT_TRUE(seen_after_suspending == AnyTask(t));
  }());
}

TEST(EagerTaskTest, CurrentTaskRestoredToNoneInACallback) {
  auto loop = new_event_loop();
  std::optional<AnyTask> inside;
  bool none_after = false;
  std::optional<Task<void>> t;
  auto body = [](std::optional<AnyTask>& seen) -> Coro<void> {
    seen = current_task();
    co_return;
  };
  loop->call_soon([&] {
    t = create_task(*loop, body(inside), eager());
    none_after = !current_task().has_value();
    loop->stop();
  });
  loop->run_forever();
  ASSERT_TRUE(inside.has_value());
  EXPECT_TRUE(*inside == AnyTask(*t));
  EXPECT_TRUE(none_after);
  loop->close();
}

TEST(EagerTaskTest, NestedEagerTasksRestoreTheirCreators) {
  run([]() -> Coro<void> {
    std::vector<std::string> log;
    auto inner = [](std::vector<std::string>& l) -> Coro<int> {
      l.push_back("inner");
      co_return 1;
    };
    auto outer = [&inner](std::vector<std::string>& l) -> Coro<int> {
      std::optional<AnyTask> me = current_task();
      Task<int> child = create_task(inner(l), eager());
      l.push_back(current_task() == me ? "outer is current" : "wrong task");
      co_return co_await child + 1;
    };
    Task<int> t = create_task(outer(log), eager());
    EXPECT_TRUE(t.done());
    EXPECT_EQ(t.result(), 2);
    EXPECT_EQ(log, (std::vector<std::string>{"inner", "outer is current"}));
    co_return;
  }());
}

TEST(EagerTaskTest, CancelAfterEagerCompletionIsRefused) {
  run([]() -> Coro<void> {
    Task<int> t = create_task(answer(nullptr), eager());
    EXPECT_FALSE(t.cancel());
    EXPECT_EQ(co_await t, 42);
    EXPECT_FALSE(t.cancelled());
  }());
}

TEST(EagerTaskTest, CancelAfterTheEagerStepSuspended) {
  run([]() -> Coro<void> {
    auto blocks = []() -> Coro<std::string> {
      co_await sleep(1h);
      co_return "finished after blocking";
    };
    Task<std::string> t = create_task(blocks(), eager());
    EXPECT_FALSE(t.done());
    EXPECT_TRUE(t.cancel("cancellation message"));
    EXPECT_GT(t.cancelling(), 0);
    EXPECT_EQ(co_await cancellation_of(t), "cancellation message");
    EXPECT_TRUE(t.cancelled());
  }());
}

TEST(EagerTaskTest, CancellingItselfDuringTheEagerStep) {
  run([]() -> Coro<void> {
    auto self_cancel = []() -> Coro<void> {
      current_task()->cancel("self");
      co_await sleep(0s);  // sees the cancellation here
    };
    Task<void> t = create_task(self_cancel(), eager());
    EXPECT_FALSE(t.done());
    EXPECT_EQ(co_await cancellation_of(t), "self");
    EXPECT_TRUE(t.cancelled());
  }());
}

// ---------------------------------------------------------------------------
// Task factories

TEST(TaskFactoryTest, NoneByDefaultAndRoundTrip) {
  auto loop = new_event_loop();
  EXPECT_FALSE(get_task_factory(*loop)) << "None by default";
  set_task_factory(*loop, eager_task_factory);
  TaskFactory got = get_task_factory(*loop);
  ASSERT_TRUE(got);
  ASSERT_NE(got.target<FactoryFn>(), nullptr);
  EXPECT_EQ(*got.target<FactoryFn>(), &eager_task_factory);
  set_task_factory(*loop, nullptr);
  EXPECT_FALSE(get_task_factory(*loop)) << "reset to None";
  loop->close();
}

TEST(TaskFactoryTest, EagerTaskFactoryMakesCreateTaskEager) {
  run([]() -> Coro<void> {
    set_task_factory(get_running_loop(), eager_task_factory);
    std::vector<std::string> log;
    Task<int> t = create_task(answer(&log), "named");
    EXPECT_TRUE(t.done());
    EXPECT_EQ(t.get_name(), "named");
    EXPECT_EQ(log, (std::vector<std::string>{"body"}));
    // eager_start = false overrides the factory's default.
    Task<int> lazy = create_task(answer(&log), TaskOptions{.eager_start = false});
    EXPECT_FALSE(lazy.done());
    EXPECT_EQ(co_await lazy, 42);
    // Reset to none: tasks are scheduled again.
    set_task_factory(get_running_loop(), nullptr);
    Task<int> plain = create_task(answer(&log));
    EXPECT_FALSE(plain.done());
    EXPECT_EQ(co_await plain, 42);
  }());
}

// eager_task_factory called from another factory: the general path, with
// the same result as installing it directly.
TEST(TaskFactoryTest, EagerTaskFactoryInsideAnotherFactory) {
  run([]() -> Coro<void> {
    int created = 0;
    set_task_factory(get_running_loop(),
                     [&created](EventLoop& loop, AnyCoro coro, TaskOptions options) {
                       ++created;
                       return eager_task_factory(loop, std::move(coro), std::move(options));
                     });
    Task<int> t = create_task(answer(nullptr), "wrapped");
    EXPECT_TRUE(t.done());
    EXPECT_EQ(t.get_name(), "wrapped");
    EXPECT_EQ(t.result(), 42);
    Task<int> lazy = create_task(answer(nullptr), TaskOptions{.eager_start = false});
    EXPECT_FALSE(lazy.done());
    EXPECT_EQ(co_await lazy, 42);
    EXPECT_EQ(created, 2);
    set_task_factory(get_running_loop(), nullptr);
  }());
}

TEST(TaskFactoryTest, CustomFactoryNamesAndCountsTasks) {
  run([]() -> Coro<void> {
    int created = 0;
    set_task_factory(get_running_loop(), counting_factory(created));
    Task<int> a = create_task(answer(nullptr));
    Task<int> b = create_task(answer(nullptr), "explicit");
    EXPECT_EQ(created, 2);
    EXPECT_EQ(a.get_name(), "worker-1");
    EXPECT_EQ(b.get_name(), "explicit");
    EXPECT_FALSE(a.done()) << "this factory does not make eager tasks";
    EXPECT_EQ(co_await a + co_await b, 84);
    // ensure_future and TaskGroup go through loop.create_task, so through
    // the factory, as in Python.
    Task<int> c = ensure_future(answer(nullptr));
    TaskGroup group;
    Task<int> d = group.create_task(answer(nullptr));
    co_await group.join();
    EXPECT_EQ(created, 4);
    EXPECT_EQ(co_await c + d.result(), 84);
    set_task_factory(get_running_loop(), nullptr);
  }());
}

// A factory that drops the coroutine it was given leaves it never awaited:
// the running loop's handler counts those reports from here on.
int g_never_awaited = 0;
void count_never_awaited_reports() {
  g_never_awaited = 0;
  get_running_loop().set_exception_handler([](EventLoop&, const ExceptionContext& context) {
    if (context.message.find("was never awaited") != std::string::npos) ++g_never_awaited;
  });
}
int never_awaited_reports() {
  get_running_loop().set_exception_handler(nullptr);
  return g_never_awaited;
}

TEST(TaskFactoryTest, FactoryThatThrowsLeavesNoTask) {
  run([]() -> Coro<void> {
    bool destroyed = false;
    struct Flag {
      bool* flag;
      ~Flag() { *flag = true; }
    };
    auto body = [](Flag flag) -> Coro<void> {
      (void)flag;
      co_return;
    };
    count_never_awaited_reports();
    set_task_factory(get_running_loop(), [](EventLoop&, AnyCoro, TaskOptions) -> AnyTask {
      throw std::runtime_error("no tasks today");
    });
    bool thrown = false;
    try {
      create_task(body(Flag{&destroyed}));
    } catch (const std::runtime_error&) {
      thrown = true;
    }
    EXPECT_TRUE(thrown);
    EXPECT_TRUE(destroyed) << "the unused coroutine frame is destroyed";
    EXPECT_EQ(never_awaited_reports(), 1) << "as Python warns for a coroutine never awaited";
    set_task_factory(get_running_loop(), nullptr);
    co_return;
  }());
}

TEST(TaskFactoryTest, FactoryMustReturnTheTaskOfItsCoroutine) {
  run([]() -> Coro<void> {
    set_task_factory(get_running_loop(), [](EventLoop& loop, AnyCoro, TaskOptions) {
      return AnyTask(answer(nullptr), loop, eager());
    });
    count_never_awaited_reports();
    EXPECT_THROW(create_task(answer(nullptr)), std::logic_error);
    EXPECT_EQ(never_awaited_reports(), 1) << "the coroutine the factory dropped";
    set_task_factory(get_running_loop(), nullptr);
    co_return;
  }());
}

// As Python's BaseEagerTaskFactoryTests: with an eager factory, tasks whose
// coroutines never suspend never become scheduled tasks.
TEST(TaskFactoryTest, CreateEagerTaskFactoryWithCountingConstructor) {
  run([]() -> Coro<void> {
    int constructed = 0;
    int scheduled = 0;
    set_task_factory(
        get_running_loop(),
        create_eager_task_factory([&](AnyCoro coro, EventLoop& loop, TaskOptions options) {
          ++constructed;
          if (!options.eager_start.value_or(false)) ++scheduled;
          return AnyTask(std::move(coro), loop, std::move(options));
        }));
    struct Tree {
      static Coro<int> count(int width, int depth) {
        if (depth == 0) co_return 1;
        std::vector<Coro<int>> children;
        for (int i = 0; i < width; ++i) children.push_back(count(width, depth - 1));
        int total = 1;
        for (int n : co_await gather(std::move(children))) total += n;
        co_return total;
      }
    };
    // gather's own completion takes a loop callback (as in Python), so the
    // inner nodes suspend once; the leaves complete eagerly.
    EXPECT_EQ(co_await create_task(Tree::count(3, 3)), 1 + 3 + 9 + 27);
    EXPECT_EQ(constructed, 1 + 3 + 9 + 27);
    EXPECT_EQ(scheduled, 0);
    set_task_factory(get_running_loop(), nullptr);
    co_return;
  }());
}

TEST(TaskFactoryTest, TaskConstructorBypassesTheFactory) {
  run([]() -> Coro<void> {
    int created = 0;
    set_task_factory(get_running_loop(), counting_factory(created));
    AnyTask direct(answer(nullptr), get_running_loop(), {.name = "direct"});
    EXPECT_EQ(created, 0);
    EXPECT_EQ(direct.get_name(), "direct");
    EXPECT_FALSE(direct.done());
    co_await direct;
    EXPECT_TRUE(direct.done());
    set_task_factory(get_running_loop(), nullptr);
  }());
}

}  // namespace
}  // namespace asyncio
