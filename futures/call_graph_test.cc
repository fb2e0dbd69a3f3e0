// capture_call_graph, format_call_graph, print_call_graph,
// future_add_to_awaited_by, format_tasks_table, format_task_tree.
#include "futures/call_graph.h"

#include <chrono>
#include <cstdio>
#include <optional>
#include <regex>
#include <source_location>
#include <string>
#include <vector>

#include "futures/futures.h"
#include "gtest/gtest.h"

namespace asyncio {
namespace graph_test {

using namespace std::chrono_literals;

// Ids are addresses, and run's own task is numbered by a process-wide
// counter: both are replaced before comparing.
// Source locations (present with ASYNCIO_AWAIT_LOCATIONS) are left out too;
// AwaitLocations checks them.
std::string normalized(const std::string& text) {
  std::string out = std::regex_replace(text, std::regex("0x[0-9a-f]+"), "0x?");
  out = std::regex_replace(out, std::regex("File '[^']*', line [0-9]+, "), "");
  out = std::regex_replace(out, std::regex(" [^ ]+\\.(cc|h):[0-9]+\n"), "\n");
  // Compilers demangle a coroutine's name their own way: a lambda is
  // {lambda()#1} to GCC, $_0 to clang; clang keeps the <> of an empty pack.
  out = std::regex_replace(out, std::regex("\\{lambda\\(\\)#[0-9]+\\}|\\$_[0-9]+"), "{lambda}");
  out = std::regex_replace(out, std::regex("<>\\("), "(");
  return std::regex_replace(out, std::regex("Task-[0-9]+"), "Task-N");
}

// A table's columns, whatever their widths: cells separated by " | ".
std::string cells(const std::string& table) {
  std::string out = std::regex_replace(normalized(table), std::regex(" {2,}"), " | ");
  return std::regex_replace(out, std::regex("-{10,}"), "---");
}

unsigned leaf_await_line = 0;

Coro<void> leaf(Future<void> gate) {
  leaf_await_line = std::source_location::current().line() + 1;
  co_await gate;
}

Coro<void> fetch(Future<void> gate) { co_await leaf(gate); }

Coro<void> group_main(Future<void> gate) {
  TaskGroup group;
  group.create_task(fetch(gate), "fetch-a");
  group.create_task(fetch(gate), "fetch-b");
  co_await group.join();
}

Coro<void> gathering(Future<void> gate) {
  co_await gather(create_task(fetch(gate), "g1"), create_task(leaf(gate), "g2"));
}

// What sync's Event.wait() does: await a future the setter completes.
Coro<void> wait_event(Future<void> event) { co_await event; }

Coro<void> wait_then_shield(Future<int> waited, Future<int> shielded) {
  std::vector<Future<int>> one{waited};
  co_await wait(std::move(one));
  co_await shield(shielded);
}

// A task named `name` waiting in wait_event until its gate is set.
struct GatedTask {
  explicit GatedTask(const std::string& name)
      : gate(create_future<void>(get_running_loop())), task(create_task(wait_event(gate), name)) {}
  // Lets it finish.
  Coro<void> open() {
    gate.set_result();
    co_await task;
  }
  Future<void> gate;
  Task<void> task;
};

// Lets every task started so far run until it suspends.
Coro<void> settle() {
  for (int i = 0; i < 4; ++i) co_await sleep(0s);
}

TEST(CallGraphTest, TaskGroupGatherAndEvent) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Future<void> gate = create_future<void>(loop);
    Future<void> event = create_future<void>(loop);
    Task<void> main = create_task(group_main(gate), "main");
    Task<void> gatherer = create_task(gathering(gate), "gatherer");
    Task<void> waiter = create_task(wait_event(event), "waiter");
    co_await settle();

    std::vector<AnyTask> tasks = all_tasks(loop);
    const auto named = [&](const std::string& name) {
      for (const AnyTask& t : tasks) {
        if (t.get_name() == name) return t;
      }
      throw std::logic_error("no task " + name);
    };

    // A TaskGroup's task is awaited by the group's parent.
    EXPECT_EQ(normalized(format_call_graph(named("fetch-a"))),
              "* Task(name='fetch-a', id=0x?)\n"
              "  + Call stack:\n"
              "  |   in async asyncio::graph_test::leaf()\n"
              "  |   in async asyncio::graph_test::fetch()\n"
              "  + Awaited by:\n"
              "    * Task(name='main', id=0x?)\n"
              "      + Call stack:\n"
              "      |   in async asyncio::TaskGroup::join()\n"
              "      |   in async asyncio::graph_test::group_main()");
    // gather's children are awaited by the task awaiting the gather.
    EXPECT_EQ(normalized(format_call_graph(named("g2"))),
              "* Task(name='g2', id=0x?)\n"
              "  + Call stack:\n"
              "  |   in async asyncio::graph_test::leaf()\n"
              "  + Awaited by:\n"
              "    * Task(name='gatherer', id=0x?)\n"
              "      + Call stack:\n"
              "      |   in async asyncio::futures_internal::gather_tuple()\n"
              "      |   in async asyncio::graph_test::gathering()");
    // A plain future, awaited directly; limit keeps the outermost frames.
    EXPECT_EQ(normalized(format_call_graph(event, 1)),
              "* Future(id=0x?)\n"
              "  + Awaited by:\n"
              "    * Task(name='waiter', id=0x?)\n"
              "      + Call stack:\n"
              "      |   in async asyncio::graph_test::wait_event()");
    FutureCallGraph graph = capture_call_graph(gate, -1);
    EXPECT_FALSE(graph.task.has_value());
    EXPECT_TRUE(graph.future == gate);
    EXPECT_EQ(graph.awaited_by.size(), 4u);  // fetch-a, fetch-b, g1, g2
    for (const FutureCallGraph& g : graph.awaited_by) {
      EXPECT_EQ(g.call_stack.size(), 1u);  // the innermost frame only
      if (!g.call_stack.empty()) {
        EXPECT_EQ(g.call_stack[0].function, "asyncio::graph_test::leaf()");
      }
      EXPECT_EQ(g.awaited_by.size(), 1u);
    }
    EXPECT_TRUE(capture_call_graph(main, 0).call_stack.empty());

    EXPECT_EQ(
        cells(format_tasks_table(loop)),
        "task id | task name | state | coroutine stack | awaiter chain | awaiter name | "
        "awaiter id\n"
        "---\n"
        "0x? | Task-N | running | asyncio::graph_test::CallGraphTest_TaskGroupGatherAndEvent_Test::"
        "TestBody()::{lambda}::operator()()\n"
        "0x? | main | pending | asyncio::TaskGroup::join() -> "
        "asyncio::graph_test::group_main()\n"
        "0x? | gatherer | pending | asyncio::futures_internal::gather_tuple() -> "
        "asyncio::graph_test::gathering()\n"
        "0x? | waiter | pending | asyncio::graph_test::wait_event()\n"
        "0x? | fetch-a | pending | asyncio::graph_test::leaf() -> "
        "asyncio::graph_test::fetch() | asyncio::TaskGroup::join() -> "
        "asyncio::graph_test::group_main() | main | 0x?\n"
        "0x? | fetch-b | pending | asyncio::graph_test::leaf() -> "
        "asyncio::graph_test::fetch() | asyncio::TaskGroup::join() -> "
        "asyncio::graph_test::group_main() | main | 0x?\n"
        "0x? | g1 | pending | asyncio::graph_test::leaf() -> asyncio::graph_test::fetch() | "
        "asyncio::futures_internal::gather_tuple() -> asyncio::graph_test::gathering() | "
        "gatherer | 0x?\n"
        "0x? | g2 | pending | asyncio::graph_test::leaf() | "
        "asyncio::futures_internal::gather_tuple() -> asyncio::graph_test::gathering() | "
        "gatherer | 0x?\n");

    EXPECT_EQ(
        normalized(format_task_tree(loop)),
        "└── (T) Task-N\n"
        "    └──  asyncio::graph_test::CallGraphTest_TaskGroupGatherAndEvent_Test::TestBody()::"
        "{lambda}::operator()()\n"
        "└── (T) main\n"
        "    └──  asyncio::graph_test::group_main()\n"
        "        └──  asyncio::TaskGroup::join()\n"
        "            ├── (T) fetch-a\n"
        "            │   └──  asyncio::graph_test::fetch()\n"
        "            │       └──  asyncio::graph_test::leaf()\n"
        "            └── (T) fetch-b\n"
        "                └──  asyncio::graph_test::fetch()\n"
        "                    └──  asyncio::graph_test::leaf()\n"
        "└── (T) gatherer\n"
        "    └──  asyncio::graph_test::gathering()\n"
        "        └──  asyncio::futures_internal::gather_tuple()\n"
        "            ├── (T) g1\n"
        "            │   └──  asyncio::graph_test::fetch()\n"
        "            │       └──  asyncio::graph_test::leaf()\n"
        "            └── (T) g2\n"
        "                └──  asyncio::graph_test::leaf()\n"
        "└── (T) waiter\n"
        "    └──  asyncio::graph_test::wait_event()\n");

    gate.set_result();
    event.set_result();
    co_await main;
    co_await gatherer;
    co_await waiter;
  }());
}

TEST(CallGraphTest, AwaitLocations) {
  run([]() -> Coro<void> {
    GatedTask waiter("waiter");
    Task<void> leaf_task = create_task(leaf(waiter.gate), "leaf");
    co_await settle();
    FutureCallGraph graph = capture_call_graph(leaf_task);
    EXPECT_EQ(graph.call_stack.size(), 1u);
    if (graph.call_stack.size() == 1) {
      const FrameCallGraphEntry& frame = graph.call_stack[0];
#ifdef ASYNCIO_AWAIT_LOCATIONS
      EXPECT_EQ(frame.file, "futures/call_graph_test.cc");
      EXPECT_EQ(frame.line, leaf_await_line);
      EXPECT_NE(format_call_graph(graph).find("  |   File 'futures/call_graph_test.cc', line " +
                                              std::to_string(leaf_await_line) +
                                              ", in async asyncio::graph_test::leaf()"),
                std::string::npos);
#else
      EXPECT_EQ(frame.file, "");
      EXPECT_EQ(frame.line, 0u);
#endif
    }
    co_await waiter.open();
    co_await leaf_task;
  }());
}

TEST(CallGraphTest, CurrentTask) {
  EXPECT_THROW(capture_call_graph(), std::runtime_error);  // no running loop
  run([]() -> Coro<void> {
    Task<void> child = create_task(
        []() -> Coro<void> {
          std::optional<FutureCallGraph> graph = capture_call_graph();
          EXPECT_TRUE(graph.has_value());
          if (!graph) co_return;
          EXPECT_EQ(graph->task->get_name(), "child");
          EXPECT_EQ(graph->awaited_by.size(), 1u);
          if (graph->awaited_by.size() == 1) {
            EXPECT_EQ(graph->awaited_by[0].task->get_name(), "parent");
          }
          co_return;
        }(),
        "child");
    current_task()->set_name("parent");
    co_await child;
  }());
}

TEST(CallGraphTest, AwaitedByRecordsWaitAndShield) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Future<int> inner = create_future<int>(loop);
    GatedTask waiter("waiter");
    Future<void> outer = waiter.gate;
    future_add_to_awaited_by(inner, outer);
    future_add_to_awaited_by(inner, outer);  // a set: recorded once
    co_await settle();
    EXPECT_EQ(normalized(format_call_graph(inner)),
              "* Future(id=0x?)\n"
              "  + Awaited by:\n"
              "    * Future(id=0x?)\n"
              "      + Awaited by:\n"
              "        * Task(name='waiter', id=0x?)\n"
              "          + Call stack:\n"
              "          |   in async asyncio::graph_test::wait_event()");
    future_discard_from_awaited_by(inner, outer);
    EXPECT_TRUE(capture_call_graph(inner).awaited_by.empty());

    // wait() and shield() are seen through to the task that calls them.
    Future<int> shielded = create_future<int>(loop);
    Task<void> waiting = create_task(wait_then_shield(inner, shielded), "waiting");
    const auto awaiter_names = [](const FutureCallGraph& graph) {
      std::string names;
      for (const FutureCallGraph& g : graph.awaited_by) names += g.task->get_name() + ";";
      return names;
    };
    co_await settle();
    EXPECT_EQ(awaiter_names(capture_call_graph(inner)), "waiting;");
    inner.set_result(1);
    co_await settle();
    EXPECT_EQ(awaiter_names(capture_call_graph(inner)), "");
    EXPECT_EQ(awaiter_names(capture_call_graph(shielded)), "waiting;");
    shielded.set_result(2);
    co_await waiting;
    co_await waiter.open();
  }());
}

TEST(CallGraphTest, TreeReportsCycles) {
  run([]() -> Coro<void> {
    GatedTask a("a");
    GatedTask b("b");
    co_await settle();
    future_add_to_awaited_by(a.task, b.task);
    future_add_to_awaited_by(b.task, a.task);
    EXPECT_EQ(normalized(format_task_tree(get_running_loop())),
              "└── (T) Task-N\n"
              "    └──  asyncio::graph_test::CallGraphTest_TreeReportsCycles_Test::TestBody()::"
              "{lambda}::operator()()\n"
              "ERROR: await-graph contains cycles - cannot print a tree of these tasks:\n"
              "cycle: a -> b -> a\n");
    // The graph of a cycle stops where it meets a task already drawn.
    EXPECT_EQ(normalized(format_call_graph(a.task)),
              "* Task(name='a', id=0x?)\n"
              "  + Call stack:\n"
              "  |   in async asyncio::graph_test::wait_event()\n"
              "  + Awaited by:\n"
              "    * Task(name='b', id=0x?)\n"
              "      + Call stack:\n"
              "      |   in async asyncio::graph_test::wait_event()\n"
              "      + Awaited by:\n"
              "        * Task(name='a', id=0x?)\n"
              "          + Call stack:\n"
              "          |   in async asyncio::graph_test::wait_event()");
    future_discard_from_awaited_by(a.task, b.task);
    future_discard_from_awaited_by(b.task, a.task);
    EXPECT_TRUE(capture_call_graph(a.task).awaited_by.empty());
    co_await a.open();
    co_await b.open();
  }());
}

TEST(CallGraphTest, PrintWritesTheFormattedGraph) {
  run([]() -> Coro<void> {
    GatedTask waiter("waiter");
    co_await settle();
    std::FILE* file = std::tmpfile();
    print_call_graph(waiter.task, std::nullopt, file);
    std::rewind(file);
    char buffer[512] = {};
    size_t size = std::fread(buffer, 1, sizeof buffer - 1, file);
    std::fclose(file);
    EXPECT_EQ(std::string(buffer, size), format_call_graph(waiter.task) + "\n");
    co_await waiter.open();
  }());
}

}  // namespace graph_test
}  // namespace asyncio
