// The loop bridges: run_in_executor, to_thread, wrap_future,
// run_coroutine_threadsafe; exceptions and cancellation across each of them;
// loops that close or go away while threads wait on them.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "executors/executors.h"
#include "futures/futures.h"
#include "gtest/gtest.h"
#include "loop/loop.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;
using concurrent::ThreadPoolExecutor;

class Gate {
 public:
  void open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// An event loop running forever in its own thread.
class LoopThread {
 public:
  LoopThread() : loop_(new_event_loop()) {
    thread_ = std::thread([this] { loop_->run_forever(); });
  }
  ~LoopThread() {
    stop();
    loop_.reset();
  }
  EventLoop& loop() { return *loop_; }
  // Stops the loop and joins its thread (the loop stays open).
  void stop() {
    if (!thread_.joinable()) return;
    loop_->call_soon_threadsafe([this] { loop_->stop(); });
    thread_.join();
  }
  void close() {
    stop();
    loop_->close();
  }
  void destroy() {
    stop();
    loop_.reset();
  }

 private:
  std::unique_ptr<EventLoop> loop_;
  std::thread thread_;
};

class CustomError : public std::runtime_error {
 public:
  explicit CustomError(const std::string& what) : std::runtime_error(what) {}
};

// --- run_in_executor -------------------------------------------------------

Coro<void> default_executor_main(std::shared_ptr<Executor>* seen) {
  EventLoop& loop = get_running_loop();
  EXPECT_EQ(loop.default_executor(), nullptr);
  auto main_id = std::this_thread::get_id();
  std::thread::id id =
      co_await run_in_executor(loop, nullptr, [] { return std::this_thread::get_id(); });
  EXPECT_NE(id, main_id);
  EXPECT_NE(loop.default_executor(), nullptr);
  EXPECT_NE(dynamic_cast<ThreadPoolExecutor*>(loop.default_executor().get()), nullptr);
  *seen = loop.default_executor();
  // The same executor next time.
  int v = co_await run_in_executor(
      loop, nullptr, [](int a, int b) { return a + b; }, 2, 3);
  EXPECT_EQ(v, 5);
  EXPECT_EQ(loop.default_executor(), *seen);
}

TEST(RunInExecutorTest, DefaultExecutorMadeOnFirstUseAndShutDownByRun) {
  std::shared_ptr<Executor> executor;
  run(default_executor_main(&executor));
  ASSERT_NE(executor, nullptr);
  auto* pool = dynamic_cast<ThreadPoolExecutor*>(executor.get());
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->num_threads(), 0);  // joined
  EXPECT_THROW(pool->submit([] {}), std::runtime_error);
}

ContextVar<std::string> request_id("request_id");

Coro<void> context_main() {
  request_id.set("req-7");
  // The worker thread sees the caller's value; its own set stays there.
  std::string seen = co_await to_thread([] {
    std::string value = request_id.get("-");
    request_id.set("set by the worker");
    return value;
  });
  EXPECT_EQ(seen, "req-7");
  EXPECT_EQ(request_id.get(), "req-7");
  EXPECT_EQ(
      co_await run_in_executor(get_running_loop(), nullptr, [] { return request_id.get("-"); }),
      "req-7");
}

TEST(ToThreadTest, RunsTheFunctionInTheCallersContext) { run(context_main()); }

Coro<void> custom_pool_main(ThreadPoolExecutor* pool) {
  EventLoop& loop = get_running_loop();
  std::string s = co_await run_in_executor(
      loop, pool, [](std::string a) { return a + "!"; }, std::string("hi"));
  EXPECT_EQ(s, "hi!");
  co_await run_in_executor(loop, pool, [] {});
  EXPECT_EQ(loop.default_executor(), nullptr);  // not touched
  // Exceptions cross the bridge with their type.
  try {
    co_await run_in_executor(loop, pool, []() -> int { throw CustomError("from the pool"); });
    ADD_FAILURE() << "no exception";
  } catch (const CustomError& e) {
    EXPECT_STREQ(e.what(), "from the pool");
  }
}

TEST(RunInExecutorTest, CustomPoolResultsAndExceptions) {
  ThreadPoolExecutor pool(2);
  run(custom_pool_main(&pool));
}

Coro<void> cancel_unstarted_main(ThreadPoolExecutor* pool, Gate* gate, std::atomic<bool>* ran) {
  EventLoop& loop = get_running_loop();
  Future<void> blocker = run_in_executor(loop, pool, [gate] { gate->wait(); });
  Future<void> queued = run_in_executor(loop, pool, [ran] { *ran = true; });
  co_await sleep(10ms);
  EXPECT_TRUE(queued.cancel());
  try {
    co_await queued;
    ADD_FAILURE() << "not cancelled";
  } catch (const CancelledError&) {
  }
  // wait_for's timeout cancels the job too, when it has not started.
  std::atomic<bool>* ran2 = ran;
  try {
    co_await wait_for(run_in_executor(loop, pool, [ran2] { *ran2 = true; }), 10ms);
    ADD_FAILURE() << "no timeout";
  } catch (const TimeoutError&) {
  }
  gate->open();
  co_await blocker;
  co_await run_in_executor(loop, pool, [] {});  // the queue has drained
}

TEST(RunInExecutorTest, CancellingTheFutureCancelsTheUnstartedJob) {
  ThreadPoolExecutor pool(1);
  Gate gate;
  std::atomic<bool> ran{false};
  run(cancel_unstarted_main(&pool, &gate, &ran));
  pool.shutdown();
  EXPECT_FALSE(ran.load());
}

Coro<void> cancel_running_main(ThreadPoolExecutor* pool, Gate* gate, std::atomic<bool>* finished) {
  EventLoop& loop = get_running_loop();
  // Set on the loop's thread once the job runs: the job is known to have
  // started before it is cancelled.
  Future<void> started = create_future<void>(loop);
  Future<int> running = run_in_executor(loop, pool, [&loop, &started, gate, finished] {
    loop.call_soon_threadsafe([&started] { started.set_result(); });
    gate->wait();
    *finished = true;
    return 1;
  });
  co_await started;
  // Already running: the job goes on, the asyncio future is cancelled.
  EXPECT_TRUE(running.cancel());
  gate->open();
  try {
    co_await running;
    ADD_FAILURE() << "not cancelled";
  } catch (const CancelledError&) {
  }
}

TEST(RunInExecutorTest, CancellingARunningJobLetsItFinish) {
  ThreadPoolExecutor pool(1);
  Gate gate;
  std::atomic<bool> finished{false};
  run(cancel_running_main(&pool, &gate, &finished));
  pool.shutdown();
  EXPECT_TRUE(finished.load());
}

TEST(RunInExecutorTest, ClosedLoopOrShutDownExecutor) {
  auto loop = new_event_loop();
  ThreadPoolExecutor pool(1);
  pool.shutdown();
  EXPECT_THROW(run_in_executor(*loop, &pool, [] {}), std::runtime_error);
  loop->close();
  ThreadPoolExecutor open_pool(1);
  EXPECT_THROW(run_in_executor(*loop, &open_pool, [] {}), std::runtime_error);
}

// A user's executor implementing only the //loop interface.
class InlineThreadExecutor : public Executor {
 public:
  ~InlineThreadExecutor() override { shutdown(); }
  void execute(absl::AnyInvocable<void()> work) override {
    threads_.emplace_back([w = std::move(work)]() mutable { w(); });
  }
  void shutdown(bool = true, bool = false) override {
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 private:
  std::vector<std::thread> threads_;
};

Coro<void> user_executor_main(Executor* ex) {
  int v = co_await run_in_executor(get_running_loop(), ex, [] { return 99; });
  EXPECT_EQ(v, 99);
}

TEST(RunInExecutorTest, AnyExecutor) {
  InlineThreadExecutor ex;
  run(user_executor_main(&ex));
}

Coro<void> set_default_main(std::shared_ptr<ThreadPoolExecutor> pool) {
  EventLoop& loop = get_running_loop();
  loop.set_default_executor(pool);
  co_await run_in_executor(loop, nullptr, [] {});
  EXPECT_EQ(pool->num_threads(), 1);
}

TEST(RunInExecutorTest, SetDefaultExecutor) {
  auto pool = std::make_shared<ThreadPoolExecutor>(2);
  run(set_default_main(pool));
  EXPECT_THROW(pool->submit([] {}), std::runtime_error);  // shut down by run
}

// --- to_thread ---------------------------------------------------------------

int add(int a, int b) { return a + b; }

Coro<void> to_thread_main() {
  auto main_id = std::this_thread::get_id();
  std::thread::id id = co_await to_thread([] { return std::this_thread::get_id(); });
  EXPECT_NE(id, main_id);
  EXPECT_EQ(co_await to_thread(add, 20, 22), 42);
  co_await to_thread([] { std::this_thread::sleep_for(1ms); });
  try {
    co_await to_thread([] { throw CustomError("in to_thread"); });
    ADD_FAILURE() << "no exception";
  } catch (const CustomError& e) {
    EXPECT_STREQ(e.what(), "in to_thread");
  }
  // Several at once, not blocking the loop: four jobs that each wait for all
  // four to have started only finish if they run concurrently.
  auto arrived = std::make_shared<std::atomic<int>>(0);
  std::vector<Coro<bool>> calls;
  for (int i = 0; i < 4; ++i) {
    calls.push_back(to_thread([arrived] {
      arrived->fetch_add(1);
      auto deadline = std::chrono::steady_clock::now() + 10s;
      while (arrived->load() < 4 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(100us);
      }
      return arrived->load() == 4;
    }));
  }
  bool ticked = false;
  asyncio::Task<void> ticker = create_task([](bool* t) -> Coro<void> {
    co_await sleep(1ms);
    *t = true;
  }(&ticked));
  std::vector<bool> results = co_await gather(std::move(calls));
  co_await ticker;
  EXPECT_TRUE(ticked);
  EXPECT_EQ(results, (std::vector<bool>{true, true, true, true}));
}

TEST(ToThreadTest, RunsOffTheLoopThread) { run(to_thread_main()); }

TEST(ToThreadTest, UnderRunUntilComplete) {
  auto loop = new_event_loop();
  EXPECT_EQ(run_until_complete(*loop, to_thread([] { return 7; })), 7);
  EXPECT_NE(loop->default_executor(), nullptr);
  loop->close();  // shuts the default executor down
}

// A job that blocks until the test releases it. Its captures are destroyed
// by the pool thread once the job is done, which opens `finished`.
struct StuckJob {
  Gate started;
  Gate release;
  Gate finished;
};
class FinishesWhenDestroyed {
 public:
  explicit FinishesWhenDestroyed(std::shared_ptr<StuckJob> job) : job_(std::move(job)) {}
  FinishesWhenDestroyed(FinishesWhenDestroyed&&) noexcept = default;
  ~FinishesWhenDestroyed() {
    if (job_) job_->finished.open();
  }
  StuckJob& job() const { return *job_; }

 private:
  std::shared_ptr<StuckJob> job_;
};

TEST(ToThreadTest, CloseDoesNotWaitForAStuckJob) {
  auto stuck = std::make_shared<StuckJob>();
  auto loop = new_event_loop();
  Task<int> task = create_task(*loop, to_thread([guard = FinishesWhenDestroyed(stuck)] {
    guard.job().started.open();
    guard.job().release.wait();
    return 1;
  }));
  run_until_complete(*loop, sleep(0s));  // the task's first step submits the job
  stuck->started.wait();
  loop->close();  // shutdown(wait=false) of the default executor: returns at once
  EXPECT_TRUE(loop->is_closed());
  EXPECT_FALSE(task.done());
  stuck->release.open();
  // The job ends on its own; the closed loop drops what it posts back.
  stuck->finished.wait();
}

// --- wrap_future -------------------------------------------------------------

Coro<void> wrap_future_main() {
  EventLoop& loop = get_running_loop();
  concurrent::Future<std::string> cf;
  std::thread t([cf]() mutable {
    std::this_thread::sleep_for(10ms);
    cf.set_result("wrapped");
  });
  Future<std::string> f = wrap_future(cf, loop);
  EXPECT_EQ(co_await f, "wrapped");
  t.join();

  // Already done.
  concurrent::Future<int> done;
  done.set_exception(std::make_exception_ptr(CustomError("early")));
  try {
    co_await wrap_future(done, loop);
    ADD_FAILURE() << "no exception";
  } catch (const CustomError&) {
  }

  // Cancelled on the concurrent side.
  concurrent::Future<int> cancelled;
  Future<int> w = wrap_future(cancelled, loop);
  cancelled.cancel();
  try {
    co_await w;
    ADD_FAILURE() << "not cancelled";
  } catch (const CancelledError&) {
  }
  EXPECT_TRUE(w.cancelled());

  // Cancelled on the loop side: the concurrent future is cancelled too.
  concurrent::Future<void> source;
  Future<void> dest = wrap_future(source, loop);
  dest.cancel();
  co_await sleep(0s);
  co_await sleep(0s);
  EXPECT_TRUE(source.cancelled());
}

TEST(WrapFutureTest, AllOutcomes) { run(wrap_future_main()); }

TEST(WrapFutureTest, LoopClosedBeforeTheSourceCompletes) {
  auto loop = new_event_loop();
  concurrent::Future<int> cf;
  {
    Future<int> f = wrap_future(cf, *loop);
    EXPECT_FALSE(f.done());
  }
  loop->close();
  cf.set_result(1);  // posts to a closed loop: dropped, nothing leaks
  loop.reset();
  concurrent::Future<int> later;
  auto loop2 = new_event_loop();
  Future<int> f2 = wrap_future(later, *loop2);
  loop2.reset();  // destroyed with the link registered
  later.set_result(2);
}

// --- run_coroutine_threadsafe --------------------------------------------------

Coro<int> add_later(int a, int b) {
  co_await sleep(1ms);
  co_return a + b;
}

Coro<std::string> fails_later() {
  co_await sleep(1ms);
  throw CustomError("coroutine failed");
}

Coro<void> waits_forever(std::atomic<bool>* cancelled) {
  Future<void> never = create_future<void>(get_running_loop());
  try {
    co_await never;
  } catch (const CancelledError&) {
    *cancelled = true;
    throw;
  }
}

Coro<void> check_thread(std::thread::id* where) {
  *where = std::this_thread::get_id();
  co_return;
}

TEST(RunCoroutineThreadsafeTest, ResultFromAPlainThread) {
  LoopThread lt;
  auto f = run_coroutine_threadsafe(add_later(2, 3), lt.loop());
  EXPECT_EQ(f.result(5s), 5);
  std::thread::id where;
  run_coroutine_threadsafe(check_thread(&where), lt.loop()).result(5s);
  EXPECT_NE(where, std::this_thread::get_id());
}

TEST(RunCoroutineThreadsafeTest, ExceptionsCrossTheBridge) {
  LoopThread lt;
  auto f = run_coroutine_threadsafe(fails_later(), lt.loop());
  try {
    f.result(5s);
    ADD_FAILURE() << "no exception";
  } catch (const CustomError& e) {
    EXPECT_STREQ(e.what(), "coroutine failed");
  }
  ASSERT_NE(f.exception(), nullptr);
}

TEST(RunCoroutineThreadsafeTest, CancellingTheFutureCancelsTheTask) {
  LoopThread lt;
  std::atomic<bool> cancelled{false};
  auto f = run_coroutine_threadsafe(waits_forever(&cancelled), lt.loop());
  EXPECT_THROW(f.result(20ms), TimeoutError);
  EXPECT_TRUE(f.cancel());
  EXPECT_THROW(f.result(), CancelledError);
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!cancelled.load() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_TRUE(cancelled.load());
}

Coro<void> cancels_itself() {
  co_await sleep(1ms);
  current_task()->cancel();
  co_await sleep(1ms);
}

TEST(RunCoroutineThreadsafeTest, TaskCancelledOnTheLoopCancelsTheFuture) {
  LoopThread lt;
  auto f = run_coroutine_threadsafe(cancels_itself(), lt.loop());
  EXPECT_THROW(f.result(5s), CancelledError);
  EXPECT_TRUE(f.cancelled());
}

TEST(RunCoroutineThreadsafeTest, CancelledBeforeItStarts) {
  auto loop = new_event_loop();  // not running yet
  std::atomic<bool> cancelled{false};
  auto f = run_coroutine_threadsafe(waits_forever(&cancelled), *loop);
  EXPECT_TRUE(f.cancel());
  run_until_complete(*loop, sleep(1ms));
  EXPECT_FALSE(cancelled.load());  // never started
}

TEST(RunCoroutineThreadsafeTest, ClosedLoopFailsTheFuture) {
  auto loop = new_event_loop();
  loop->close();
  testing::internal::CaptureStderr();
  auto f = run_coroutine_threadsafe(add_later(1, 1), *loop);
  EXPECT_TRUE(f.done());
  EXPECT_THROW(f.result(), std::runtime_error);
  // As asyncio, the coroutine that never ran is reported as never awaited.
  EXPECT_NE(testing::internal::GetCapturedStderr().find("add_later' was never awaited"),
            std::string::npos);
}

TEST(RunCoroutineThreadsafeTest, LoopClosedBeforeTheTaskStartsFailsTheFuture) {
  auto loop = new_event_loop();
  testing::internal::CaptureStderr();
  auto f = run_coroutine_threadsafe(add_later(1, 1), *loop);
  loop->close();  // the starter is dropped
  EXPECT_THROW(f.result(1s), std::runtime_error);
  // As asyncio, the coroutine that never ran is reported as never awaited.
  EXPECT_NE(testing::internal::GetCapturedStderr().find("add_later' was never awaited"),
            std::string::npos);
}

TEST(RunCoroutineThreadsafeTest, LoopClosedWhileTheTaskIsPendingFailsTheFuture) {
  LoopThread lt;
  std::atomic<bool> cancelled{false};
  auto f = run_coroutine_threadsafe(waits_forever(&cancelled), lt.loop());
  EXPECT_THROW(f.result(20ms), TimeoutError);
  std::atomic<bool> failed{false};
  std::thread waiter([f, &failed] {
    try {
      f.result();
    } catch (const std::runtime_error&) {
      failed = true;
    }
  });
  lt.close();  // stopped, then closed: the waiter must not block forever
  waiter.join();
  EXPECT_TRUE(failed.load());
  // Stopping alone is not closing (the loop could run again).
  LoopThread lt2;
  auto g = run_coroutine_threadsafe(waits_forever(&cancelled), lt2.loop());
  EXPECT_THROW(g.result(10ms), TimeoutError);
  lt2.stop();
  EXPECT_FALSE(g.done());
  lt2.destroy();  // destroyed: closed first
  EXPECT_THROW(g.result(1s), std::runtime_error);
}

Coro<void> run_main_with_pending(EventLoop** loop_out, Gate* started,
                                 std::atomic<bool>* submitted) {
  *loop_out = &get_running_loop();
  started->open();
  while (!submitted->load()) co_await sleep(1ms);
  co_await sleep(5ms);  // the bridged task starts and waits
}

TEST(RunCoroutineThreadsafeTest, RunCancelsPendingBridgedTasksAtExit) {
  EventLoop* loop = nullptr;
  Gate started;
  std::atomic<bool> submitted{false};
  std::atomic<bool> cancelled{false};
  concurrent::Future<void> f;
  std::thread submitter([&] {
    started.wait();
    f = run_coroutine_threadsafe(waits_forever(&cancelled), *loop);
    submitted = true;
  });
  run(run_main_with_pending(&loop, &started, &submitted));
  submitter.join();
  // run() cancelled the task: the concurrent future is cancelled.
  EXPECT_TRUE(f.cancelled());
  EXPECT_TRUE(cancelled.load());
}

Coro<int> identity(int i) { co_return i; }

TEST(RunCoroutineThreadsafeTest, TenThousandCallsFromFourThreads) {
  LoopThread lt;
  constexpr int kThreads = 4;
  constexpr int kCalls = 2500;
  std::atomic<long> total{0};
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<concurrent::Future<int>> futures;
      futures.reserve(kCalls);
      for (int i = 0; i < kCalls; ++i) {
        futures.push_back(run_coroutine_threadsafe(identity(t * kCalls + i), lt.loop()));
      }
      for (int i = 0; i < kCalls; ++i) {
        int v = futures[i].result(30s);
        if (v != t * kCalls + i) wrong.fetch_add(1);
        total.fetch_add(v);
      }
    });
  }
  for (auto& th : threads) th.join();
  const long n = kThreads * kCalls;
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(total.load(), n * (n - 1) / 2);
}

TEST(RunCoroutineThreadsafeTest, CancelRacesWithCompletion) {
  LoopThread lt;
  int cancelled = 0;
  int completed = 0;
  for (int i = 0; i < 500; ++i) {
    auto f = run_coroutine_threadsafe(identity(i), lt.loop());
    if (i % 3 == 0) std::this_thread::yield();
    bool c = f.cancel();
    try {
      EXPECT_EQ(f.result(5s), i);
      EXPECT_FALSE(c);
      ++completed;
    } catch (const CancelledError&) {
      EXPECT_TRUE(c);
      ++cancelled;
    }
  }
  EXPECT_EQ(cancelled + completed, 500);
}

// A coroutine submitted from a thread that itself uses run_in_executor: both
// bridges in one call.
Coro<int> nested(ThreadPoolExecutor* pool, int x) {
  int doubled = co_await run_in_executor(get_running_loop(), pool, [x] { return 2 * x; });
  co_return doubled + 1;
}

TEST(BridgesTest, BothBridgesInOneCall) {
  ThreadPoolExecutor pool(2);
  LoopThread lt;
  std::vector<concurrent::Future<int>> futures;
  for (int i = 0; i < 100; ++i)
    futures.push_back(run_coroutine_threadsafe(nested(&pool, i), lt.loop()));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(futures[i].result(10s), 2 * i + 1);
}

}  // namespace
}  // namespace asyncio
