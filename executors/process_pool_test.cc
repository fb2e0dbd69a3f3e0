// concurrent::ProcessPoolExecutor: work in forked workers, serialized
// arguments and results, exceptions, a worker that aborts, shutdown reaping
// every process and closing every descriptor.
//
// Each pool is made before the test starts threads of its own (the fork
// server is forked in the constructor).
#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "executors/executors.h"
#include "gtest/gtest.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;
using concurrent::BrokenProcessPool;
using concurrent::ProcessPoolExecutor;

int open_fd_count() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n - 1;  // the DIR's own descriptor
}

// True when this process has no child left (running or zombie).
// The command name of process `pid` ("" if it is gone).
std::string command_of(const std::string& pid) {
  std::ifstream comm("/proc/" + pid + "/comm");
  std::string name;
  std::getline(comm, name);
  return name;
}

// No child process left, running or unreaped, other than a sanitizer's
// symbolizer: clang's ThreadSanitizer runs llvm-symbolizer as a child of the
// test to match its suppressions, and keeps it.
bool no_children() {
  DIR* tasks = ::opendir("/proc/self/task");
  if (tasks == nullptr) return false;
  bool none = true;
  while (dirent* task = ::readdir(tasks)) {
    if (task->d_name[0] == '.') continue;
    std::ifstream children(std::string("/proc/self/task/") + task->d_name + "/children");
    std::string pid;
    while (children >> pid) {
      if (command_of(pid) != "llvm-symbolizer") none = false;
    }
  }
  ::closedir(tasks);
  return none;
}

long cpu_bound(long n) {
  long sum = 0;
  for (long i = 0; i < n; ++i) sum += i * i;
  return sum;
}

int my_pid() { return static_cast<int>(::getpid()); }

std::string repeat(std::string s, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) out += s;
  return out;
}

struct Point {
  double x;
  double y;
};
Point midpoint(Point a, Point b) { return {(a.x + b.x) / 2, (a.y + b.y) / 2}; }

std::string concat3(const std::string& a, int b, std::string c) {
  return a + std::to_string(b) + c;
}

int fail_with(int kind) {
  switch (kind) {
    case 0:
      throw std::invalid_argument("bad value");
    case 1:
      throw std::out_of_range("too far");
    case 2:
      throw std::system_error(std::make_error_code(std::errc::timed_out), "custom");
    default:
      throw 42;  // not a std::exception
  }
}

int crash(int how) {
  if (how == 0) std::abort();
  if (how == 1) ::_exit(3);
  ::raise(SIGKILL);
  return 0;
}

void no_result(int) {}

int sleep_ms(int ms) {
  ::usleep(static_cast<useconds_t>(ms) * 1000);
  return ms;
}

TEST(ProcessPoolTest, RunsInOtherProcesses) {
  int fds_before = open_fd_count();
  {
    ProcessPoolExecutor pool(2);
    EXPECT_EQ(pool.max_workers(), 2);
    EXPECT_EQ(pool.worker_pids().size(), 2u);
    auto pid = pool.submit(my_pid).result(10s);
    EXPECT_NE(pid, static_cast<int>(::getpid()));
    std::set<pid_t> workers;
    for (pid_t p : pool.worker_pids()) workers.insert(p);
    EXPECT_EQ(workers.count(pid), 1u);
    EXPECT_EQ(pool.submit(cpu_bound, 1000L).result(10s), cpu_bound(1000));
  }
  EXPECT_TRUE(no_children());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(ProcessPoolTest, SerializesArgumentsAndResults) {
  ProcessPoolExecutor pool(2);
  EXPECT_EQ(pool.submit(repeat, std::string("ab"), 3).result(10s), "ababab");
  std::string big(1 << 20, 'x');
  EXPECT_EQ(pool.submit(repeat, big, 2).result(10s).size(), 2u << 20);
  Point m = pool.submit(midpoint, Point{0, 0}, Point{2, 4}).result(10s);
  EXPECT_EQ(m.x, 1);
  EXPECT_EQ(m.y, 2);
  EXPECT_EQ(pool.submit(concat3, std::string("a"), 1, std::string("c")).result(10s), "a1c");
  EXPECT_EQ(pool.submit(repeat, std::string(""), 5).result(10s), "");
  auto v = pool.submit(no_result, 1);
  v.result(10s);
  EXPECT_TRUE(v.done());
  // Arguments convert to the parameter types, as in a call.
  EXPECT_EQ(pool.submit(cpu_bound, 10).result(10s), cpu_bound(10));
}

TEST(ProcessPoolTest, ExceptionsComeBack) {
  ProcessPoolExecutor pool(1);
  EXPECT_THROW(pool.submit(fail_with, 0).result(10s), std::invalid_argument);
  try {
    pool.submit(fail_with, 1).result(10s);
    ADD_FAILURE() << "no exception";
  } catch (const std::out_of_range& e) {
    EXPECT_STREQ(e.what(), "too far");
  }
  try {
    pool.submit(fail_with, 2).result(10s);
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    // Other types come back as runtime_error naming the type.
    EXPECT_NE(std::string(e.what()).find("std::system_error"), std::string::npos) << e.what();
  }
  EXPECT_THROW(pool.submit(fail_with, 3).result(10s), std::runtime_error);
  // The worker survives its jobs' exceptions.
  EXPECT_EQ(pool.submit(cpu_bound, 3L).result(10s), 5);
}

TEST(ProcessPoolTest, WorkerThatAbortsIsReplaced) {
  int fds_before = open_fd_count();
  {
    ProcessPoolExecutor pool(2);
    for (int how = 0; how < 3; ++how) {
      auto f = pool.submit(crash, how);
      EXPECT_THROW(f.result(10s), BrokenProcessPool) << how;
    }
    // The pool replaced the dead workers and still works, at full size.
    std::vector<concurrent::Future<int>> futures;
    for (int i = 0; i < 8; ++i) futures.push_back(pool.submit(sleep_ms, 1));
    for (auto& f : futures) EXPECT_EQ(f.result(10s), 1);
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (pool.worker_pids().size() != 2 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(1ms);
    }
    EXPECT_EQ(pool.worker_pids().size(), 2u);
  }
  EXPECT_TRUE(no_children());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(ProcessPoolTest, KilledIdleWorkerIsReplaced) {
  ProcessPoolExecutor pool(1);
  pid_t victim = pool.worker_pids().at(0);
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto pids = pool.worker_pids();
    if (pids.size() == 1 && pids[0] != victim) break;
    std::this_thread::sleep_for(1ms);
  }
  auto pids = pool.worker_pids();
  ASSERT_EQ(pids.size(), 1u);
  EXPECT_NE(pids[0], victim);
  EXPECT_EQ(pool.submit(cpu_bound, 4L).result(10s), 14);
}

TEST(ProcessPoolTest, ShutdownWaitsForPendingWork) {
  ProcessPoolExecutor pool(2);
  std::vector<concurrent::Future<int>> futures;
  for (int i = 0; i < 6; ++i) futures.push_back(pool.submit(sleep_ms, 5));
  pool.shutdown(/*wait=*/true);
  for (auto& f : futures) {
    ASSERT_TRUE(f.done());
    EXPECT_EQ(f.result(), 5);
  }
  EXPECT_THROW(pool.submit(sleep_ms, 1), std::runtime_error);
  EXPECT_TRUE(no_children());
  pool.shutdown();  // idempotent
}

TEST(ProcessPoolTest, ShutdownCancelFutures) {
  ProcessPoolExecutor pool(1);
  auto running = pool.submit(sleep_ms, 100);
  while (!running.running()) std::this_thread::sleep_for(1ms);
  std::vector<concurrent::Future<int>> queued;
  for (int i = 0; i < 4; ++i) queued.push_back(pool.submit(sleep_ms, 1000));
  pool.shutdown(/*wait=*/true, /*cancel_futures=*/true);
  EXPECT_EQ(running.result(), 100);
  for (auto& f : queued) EXPECT_TRUE(f.cancelled());
  EXPECT_TRUE(no_children());
}

TEST(ProcessPoolTest, CancelQueuedJob) {
  ProcessPoolExecutor pool(1);
  auto running = pool.submit(sleep_ms, 50);
  auto queued = pool.submit(sleep_ms, 1);
  while (!running.running()) std::this_thread::sleep_for(1ms);
  EXPECT_FALSE(running.cancel());
  EXPECT_TRUE(queued.cancel());
  EXPECT_EQ(running.result(10s), 50);
  EXPECT_THROW(queued.result(), CancelledError);
  EXPECT_EQ(pool.submit(sleep_ms, 2).result(10s), 2);
}

TEST(ProcessPoolTest, Map) {
  ProcessPoolExecutor pool(2);
  std::vector<long> in = {1, 2, 3, 4};
  std::vector<long> out = pool.map(cpu_bound, in);
  EXPECT_EQ(out, (std::vector<long>{0, 1, 5, 14}));
}

TEST(ProcessPoolTest, ExecuteRejectsClosures) {
  ProcessPoolExecutor pool(1);
  EXPECT_THROW(pool.execute([] {}), std::invalid_argument);
  EXPECT_THROW(ProcessPoolExecutor(-2), std::invalid_argument);
}

TEST(ProcessPoolTest, ManyJobs) {
  ProcessPoolExecutor pool(2);
  std::vector<concurrent::Future<long>> futures;
  for (long i = 0; i < 500; ++i) futures.push_back(pool.submit(cpu_bound, i));
  for (long i = 0; i < 500; ++i) EXPECT_EQ(futures[i].result(10s), cpu_bound(i));
}

// --- framing ---------------------------------------------------------------

std::string frame(uint64_t length, std::string_view body) {
  std::string out(reinterpret_cast<const char*>(&length), sizeof(length));
  out.append(body);
  return out;
}

TEST(ProcessPoolFramingTest, LengthsAre64BitsAndChecked) {
  using concurrent::executors_internal::frame_length;
  std::string header = frame(uint64_t{5} << 32, "");  // over 4 GiB: no u32 wrap-around
  EXPECT_EQ(frame_length(header, UINT64_MAX), uint64_t{5} << 32);
  EXPECT_THROW(frame_length(header, concurrent::executors_internal::kDefaultMaxFrameSize),
               std::length_error);
  EXPECT_EQ(frame_length(frame(1024, ""), 1024), 1024u);
  EXPECT_THROW(frame_length(frame(1025, ""), 1024), std::length_error);
  EXPECT_THROW(frame_length("short", 1024), std::invalid_argument);
}

TEST(ProcessPoolFramingTest, NextFrameWaitsForWholeFramesAndRejectsHugeLengths) {
  using concurrent::executors_internal::next_frame;
  std::string bytes = frame(3, "abc") + frame(0, "") + frame(2, "de");
  std::string_view stream(bytes);
  EXPECT_EQ(next_frame(stream, 16), "abc");
  EXPECT_EQ(next_frame(stream, 16), "");
  EXPECT_EQ(next_frame(stream, 16), "de");
  EXPECT_TRUE(stream.empty());
  EXPECT_EQ(next_frame(stream, 16), std::nullopt);
  // Truncated header, truncated body: nothing taken.
  std::string truncated = frame(10, "0123");
  for (size_t n = 0; n <= truncated.size(); ++n) {
    std::string_view part(truncated.data(), n);
    EXPECT_EQ(next_frame(part, 16), std::nullopt) << n;
    EXPECT_EQ(part.size(), n);
  }
  // A huge length is malformed at once, without waiting for (or allocating) it.
  std::string huge = frame(UINT64_MAX, "x");
  std::string_view huge_stream(huge);
  EXPECT_THROW(next_frame(huge_stream, 16), std::length_error);
}

int never_called_marker = 0;
void never_called(uintptr_t, std::string_view, std::string*) { ++never_called_marker; }

TEST(ProcessPoolFramingTest, CallsNameRegisteredFunctionsOnly) {
  using concurrent::executors_internal::FunctionEntry;
  using concurrent::executors_internal::parse_call;
  FunctionEntry table[2] = {{&never_called, 1}, {&never_called, 2}};
  uint32_t index = 1;
  std::string body(reinterpret_cast<const char*>(&index), sizeof(index));
  body += "args";
  auto call = parse_call(body, table, 2);
  EXPECT_EQ(call.function.fn, 2u);
  EXPECT_EQ(call.args, "args");
  // An index at or past the count is refused, as is a body too short for one.
  EXPECT_THROW(parse_call(body, table, 1), std::runtime_error);
  index = 0xdeadbeef;
  std::memcpy(body.data(), &index, sizeof(index));
  EXPECT_THROW(parse_call(body, table, 2), std::runtime_error);
  EXPECT_THROW(parse_call("abc", table, 2), std::runtime_error);
  EXPECT_THROW(parse_call("", table, 2), std::runtime_error);
  EXPECT_EQ(never_called_marker, 0);
}

TEST(ProcessPoolFramingTest, GarbageIsReportedNeverCalled) {
  using concurrent::executors_internal::FunctionEntry;
  FunctionEntry table[3] = {{&never_called, 1}, {&never_called, 2}, {&never_called, 3}};
  std::mt19937 random(12345);
  for (int round = 0; round < 2000; ++round) {
    std::string bytes(random() % 64, '\0');
    for (char& c : bytes) c = static_cast<char>(random());
    // Small lengths now and then, so that some frames are complete.
    if (bytes.size() >= 8 && round % 2 == 0) bytes[1] = bytes[2] = bytes[3] = 0;
    std::string_view stream(bytes);
    try {
      while (std::optional<std::string_view> body =
                 concurrent::executors_internal::next_frame(stream, 32)) {
        try {
          auto call = concurrent::executors_internal::parse_call(*body, table, 3);
          EXPECT_TRUE(call.function.fn >= 1 && call.function.fn <= 3);
        } catch (const std::runtime_error&) {
        }
      }
    } catch (const std::length_error&) {
    }
  }
  EXPECT_EQ(never_called_marker, 0);
}

TEST(ProcessPoolFramingTest, OversizedArgumentsAreRefusedBeforeSending) {
  ProcessPoolExecutor pool(1, /*max_frame_size=*/1024);
  EXPECT_EQ(pool.max_frame_size(), 1024u);
  try {
    pool.submit(repeat, std::string(2000, 'x'), 1);
    ADD_FAILURE() << "not refused";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("largest frame"), std::string::npos) << e.what();
  }
  // The pool goes on; just under the limit is fine.
  EXPECT_EQ(pool.submit(repeat, std::string(900, 'x'), 1).result(10s).size(), 900u);
  EXPECT_EQ(pool.submit(cpu_bound, 3L).result(10s), 5);
}

TEST(ProcessPoolFramingTest, OversizedResultsFailTheirJob) {
  ProcessPoolExecutor pool(1, /*max_frame_size=*/1024);
  auto big = pool.submit(repeat, std::string("ab"), 1000);
  try {
    big.result(10s);
    ADD_FAILURE() << "not refused";
  } catch (const std::length_error& e) {
    EXPECT_NE(std::string(e.what()).find("result"), std::string::npos) << e.what();
  }
  // The same worker goes on.
  EXPECT_EQ(pool.submit(repeat, std::string("ab"), 3).result(10s), "ababab");
  EXPECT_THROW(ProcessPoolExecutor(1, ProcessPoolExecutor::kMinFrameSize - 1),
               std::invalid_argument);
}

}  // namespace
}  // namespace asyncio
