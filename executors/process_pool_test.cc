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
#include <cstdlib>
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
bool no_children() {
  errno = 0;
  return ::waitpid(-1, nullptr, WNOHANG) == -1 && errno == ECHILD;
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

}  // namespace
}  // namespace asyncio
