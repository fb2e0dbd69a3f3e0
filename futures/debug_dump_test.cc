#include "futures/debug_dump.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <future>
#include <string>
#include <thread>

#include "futures/futures.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace asyncio {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

Coro<void> wait_for_gate(Future<void> gate) { co_await gate; }

// A loop on its own thread whose task "main" awaits "worker", which awaits
// a future the test resolves at the end.
class LoopWithTasks {
 public:
  LoopWithTasks() {
    thread_ = std::thread([this] { run(main_task()); });
    loop_ = ready_.get_future().get();
  }
  ~LoopWithTasks() {
    loop_->call_soon_threadsafe([this] { gate_->set_result(); });
    thread_.join();
  }
  EventLoop* loop() const { return loop_; }

 private:
  Coro<void> main_task() {
    current_task()->set_name("main");
    Future<void> gate = create_future<void>(get_running_loop());
    gate_ = &gate;
    Task<void> worker = create_task(wait_for_gate(gate), {.name = "worker"});
    co_await sleep(std::chrono::seconds(0));  // worker starts and awaits the gate
    // Whoever asks now is answered once this task is suspended below.
    ready_.set_value(&get_running_loop());
    co_await worker;
  }

  std::promise<EventLoop*> ready_;
  EventLoop* loop_ = nullptr;
  Future<void>* gate_ = nullptr;
  std::thread thread_;
};

// A loop whose thread is stuck in a task's step until the test releases it.
class StuckLoop {
 public:
  StuckLoop() {
    thread_ = std::thread([this] { run(stuck()); });
    entered_.get_future().wait();
  }
  ~StuckLoop() {
    release_.set_value();
    thread_.join();
  }

 private:
  Coro<void> stuck() {
    entered_.set_value();
    release_.get_future().wait();  // blocks the loop's thread: what is tested
    co_return;
  }

  std::promise<void> entered_;
  std::promise<void> release_;
  std::thread thread_;
};

std::string hex(const void* p) {
  char text[32];
  std::snprintf(text, sizeof text, "%p", p);
  return text;
}

TEST(DumpAllTasks, ListsEachLoopAsATree) {
  LoopWithTasks tasks;
  std::string dump = dump_all_tasks();
  EXPECT_THAT(dump, HasSubstr(" at " + hex(tasks.loop()) + " (thread "));
  EXPECT_THAT(dump, HasSubstr("└── (T) main\n"));
  EXPECT_THAT(dump, HasSubstr("(T) worker\n"));
  EXPECT_THAT(dump, HasSubstr("wait_for_gate"));
  EXPECT_THAT(dump, Not(HasSubstr("not responding")));
}

TEST(DumpAllTasks, TableHasPsColumns) {
  LoopWithTasks tasks;
  std::string dump = dump_all_tasks(TaskDumpFormat::kTable);
  EXPECT_THAT(dump, HasSubstr("task id"));
  EXPECT_THAT(dump, HasSubstr("awaiter name"));
  EXPECT_THAT(dump, HasSubstr("worker"));
}

TEST(DumpAllTasks, FormatsTheCallersOwnLoopDirectly) {
  // A Coro<void>: get_stack on a running Coro<T> of another T trips UBSan's
  // downcast check (introspection.cc reads every frame as Promise<void>).
  std::string dump;
  run([](std::string& out) -> Coro<void> {
    current_task()->set_name("asker");
    out = dump_all_tasks(TaskDumpFormat::kTree, std::chrono::seconds(30));
    co_return;
  }(dump));
  EXPECT_THAT(dump, HasSubstr("(T) asker"));
  EXPECT_THAT(dump, Not(HasSubstr("not responding")));
}

TEST(DumpAllTasks, ReportsALoopStuckInACallback) {
  LoopWithTasks tasks;
  StuckLoop stuck;
  // The stuck loop cannot answer: the whole timeout passes, by design.
  std::string dump = dump_all_tasks(TaskDumpFormat::kTree, std::chrono::milliseconds(200));
  EXPECT_THAT(dump, HasSubstr("not responding (stuck in a callback, or not running)"));
  EXPECT_THAT(dump, HasSubstr("tools/gdb/asyncio_gdb.py"));
  EXPECT_THAT(dump, HasSubstr("(T) worker"));  // the other loop still answers
}

TEST(EnableTaskDump, SignalWritesEveryLoopsTree) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  LoopWithTasks tasks;
  enable_task_dump(SIGUSR2, fds[1]);
  ASSERT_EQ(::kill(::getpid(), SIGUSR2), 0);
  std::string text;
  char buffer[4096];
  while (text.find("(T) worker\n") == std::string::npos) {
    ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    ASSERT_GT(n, 0);
    text.append(buffer, static_cast<size_t>(n));
  }
  EXPECT_THAT(text, HasSubstr("└── (T) main\n"));
  ::signal(SIGUSR2, SIG_DFL);
  ::close(fds[0]);
  ::close(fds[1]);
}

std::string ask(const std::string& path, const std::string& command) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  path.copy(address.sun_path, sizeof address.sun_path - 1);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return "connect failed";
  }
  std::string request = command + "\n";
  EXPECT_EQ(::write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  std::string reply;
  char buffer[4096];
  for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0;) {
    reply.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return reply;
}

TEST(EnableDebugSocket, AnswersPsAndPstree) {
  const std::string path = enable_debug_socket();
  EXPECT_EQ(path, "/tmp/asyncio-" + std::to_string(::getpid()) + ".sock");
  EXPECT_EQ(enable_debug_socket("/elsewhere"), path);  // one per process
  LoopWithTasks tasks;
  std::string tree = ask(path, "pstree");
  EXPECT_THAT(tree, HasSubstr("└── (T) main\n"));
  EXPECT_THAT(tree, HasSubstr("(T) worker\n"));
  std::string table = ask(path, "ps");
  EXPECT_THAT(table, HasSubstr("task name"));
  EXPECT_THAT(table, HasSubstr("worker"));
  EXPECT_THAT(ask(path, "top"), HasSubstr("expected ps or pstree"));
}

TEST(EnableDebugSocket, ReportsAStuckLoop) {
  const std::string path = enable_debug_socket();
  LoopWithTasks tasks;
  StuckLoop stuck;
  std::string tree = ask(path, "pstree");
  EXPECT_THAT(tree, HasSubstr("not responding"));
  EXPECT_THAT(tree, HasSubstr("(T) worker\n"));
}

}  // namespace
}  // namespace asyncio
