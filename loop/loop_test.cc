#include "loop/loop.h"

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "loop/internal/test_hooks.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;

TEST(EventLoopTest, CallSoonRunsInOrder) {
  auto loop = new_event_loop();
  std::vector<int> order;
  for (int i = 0; i < 5; ++i) loop->call_soon([&, i] { order.push_back(i); });
  loop->call_soon([&] { loop->stop(); });
  loop->run_forever();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
}

// A node scheduled at the end of the iteration runs after the whole batch
// and before anything the batch scheduled; one it schedules runs in the
// same pass.
struct RecordingNode : Runnable {
  RecordingNode(std::vector<std::string>* log, std::string name)
      : Runnable(&RecordingNode::fire), log(log), name(std::move(name)) {}
  static void fire(Runnable* self, bool discard) {
    auto* node = static_cast<RecordingNode*>(self);
    node->log->push_back(discard ? "discarded " + node->name : node->name);
    if (node->then != nullptr && !discard) node->loop->schedule_at_end_of_iteration(*node->then);
  }
  std::vector<std::string>* log;
  std::string name;
  EventLoop* loop = nullptr;
  RecordingNode* then = nullptr;
};

TEST(EventLoopTest, EndOfIterationNodesRunAfterTheBatch) {
  auto loop = new_event_loop();
  std::vector<std::string> seen;
  RecordingNode second(&seen, "end 2");
  RecordingNode first(&seen, "end 1");
  first.loop = loop.get();
  first.then = &second;
  loop->call_soon([&] {
    seen.push_back("a");
    loop->schedule_at_end_of_iteration(first);
    loop->call_soon([&] {
      seen.push_back("next batch");
      loop->stop();
    });
  });
  loop->call_soon([&] { seen.push_back("b"); });
  loop->run_forever();
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b", "end 1", "end 2", "next batch"}));
}

TEST(EventLoopTest, EndOfIterationNodeScheduledBeforeRunningRunsFirst) {
  auto loop = new_event_loop();
  std::vector<std::string> seen;
  RecordingNode node(&seen, "end");
  loop->schedule_at_end_of_iteration(node);
  // No callback and no timer: the loop would sleep forever if the node did
  // not run before it polls.
  loop->call_later(std::chrono::hours(1), [] {});
  loop->call_soon_threadsafe([&] { loop->stop(); });
  loop->run_forever();
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.front(), "end");
}

TEST(EventLoopTest, EndOfIterationNodesAreDiscardedOnClose) {
  auto loop = new_event_loop();
  std::vector<std::string> seen;
  RecordingNode node(&seen, "end");
  loop->schedule_at_end_of_iteration(node);
  loop->close();
  EXPECT_EQ(seen, (std::vector<std::string>{"discarded end"}));
  RecordingNode late(&seen, "late");
  loop->schedule_at_end_of_iteration(late);
  EXPECT_EQ(seen.back(), "discarded late");
}

TEST(EventLoopTest, StopFinishesTheCurrentBatchOnly) {
  auto loop = new_event_loop();
  std::vector<std::string> seen;
  loop->call_soon([&] {
    seen.push_back("a");
    loop->stop();
    // Scheduled during the batch: runs in the next run_forever, not this one.
    loop->call_soon([&] { seen.push_back("next-run"); });
  });
  loop->call_soon([&] { seen.push_back("b"); });  // same batch as "a"
  loop->run_forever();
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b"}));
  loop->call_soon([&] { loop->stop(); });
  loop->run_forever();
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b", "next-run"}));
}

TEST(EventLoopTest, StopBeforeRunRunsOneIteration) {
  auto loop = new_event_loop();
  int runs = 0;
  loop->call_soon([&] { ++runs; });
  loop->stop();
  loop->run_forever();
  EXPECT_EQ(runs, 1);
  EXPECT_FALSE(loop->is_running());
}

TEST(EventLoopTest, HandleCancelSkipsCallback) {
  auto loop = new_event_loop();
  bool ran = false;
  Handle h = loop->call_soon([&] { ran = true; });
  EXPECT_FALSE(h.cancelled());
  h.cancel();
  EXPECT_TRUE(h.cancelled());
  loop->call_soon([&] { loop->stop(); });
  loop->run_forever();
  EXPECT_FALSE(ran);
}

TEST(EventLoopTest, CancelReleasesCapturedState) {
  auto loop = new_event_loop();
  auto token = std::make_shared<int>(1);
  Handle h = loop->call_soon([token] {});
  EXPECT_EQ(token.use_count(), 2);
  h.cancel();
  EXPECT_EQ(token.use_count(), 1);
}

TEST(EventLoopTest, CallbackThatRanReleasesItsCapturesWhileAHandleRemains) {
  auto loop = new_event_loop();
  auto token = std::make_shared<int>(1);
  TimerHandle h = loop->call_later(1ms, [token, &loop] { loop->stop(); });
  loop->run_forever();
  EXPECT_EQ(token.use_count(), 1);
  EXPECT_FALSE(h.cancelled());
}

TEST(EventLoopTest, TimersFireInTimeOrderAndTiesInScheduleOrder) {
  auto loop = new_event_loop();
  std::vector<int> order;
  const double t0 = loop->time();
  loop->call_at(t0 + 0.03, [&] { order.push_back(3); });
  loop->call_at(t0 + 0.01, [&] { order.push_back(1); });
  loop->call_at(t0 + 0.02, [&] { order.push_back(20); });
  loop->call_at(t0 + 0.02, [&] { order.push_back(21); });
  loop->call_at(t0 + 0.02, [&] { order.push_back(22); });
  loop->call_at(t0 + 0.04, [&] { loop->stop(); });
  loop->run_forever();
  EXPECT_EQ(order, (std::vector<int>{1, 20, 21, 22, 3}));
  EXPECT_GE(loop->time() - t0, 0.04);
}

TEST(EventLoopTest, CallLaterWaitsAtLeastTheDelay) {
  auto loop = new_event_loop();
  const double start = loop->time();
  double fired = 0;
  TimerHandle h = loop->call_later(20ms, [&] {
    fired = loop->time();
    loop->stop();
  });
  EXPECT_NEAR(h.when(), start + 0.02, 0.005);
  loop->run_forever();
  EXPECT_GE(fired - start, 0.02);
}

TEST(EventLoopTest, NanTimesAreRejected) {
  auto loop = new_event_loop();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  bool ran = false;
  EXPECT_THROW(loop->call_at(nan, [&] { ran = true; }), std::invalid_argument);
  EXPECT_THROW(loop->call_later(std::chrono::duration<double>(nan), [&] { ran = true; }),
               std::invalid_argument);
  EXPECT_THROW(loop->set_slow_callback_duration(nan), std::invalid_argument);
  // Nothing reached the heap: the loop still orders its timers.
  std::vector<int> order;
  loop->call_later(2ms, [&] { order.push_back(2); });
  loop->call_later(1ms, [&] { order.push_back(1); });
  loop->call_later(3ms, [&] { loop->stop(); });
  loop->run_forever();
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_FALSE(ran);
}

TEST(EventLoopTest, InfiniteTimesMeanNeverAndNow) {
  auto loop = new_event_loop();
  const double inf = std::numeric_limits<double>::infinity();
  bool never_ran = false;
  bool now_ran = false;
  TimerHandle never =
      loop->call_later(std::chrono::duration<double>(inf), [&] { never_ran = true; });
  loop->call_at(inf, [&] { never_ran = true; });
  loop->call_later(std::chrono::duration<double>(1e300), [&] { never_ran = true; });
  EXPECT_EQ(never.when(), inf);
  loop->call_later(std::chrono::duration<double>(-inf), [&] { now_ran = true; });
  std::thread waker;
  loop->call_at(-inf, [&] {
    // Only timers that never fire are left: the loop must block until woken,
    // not spin and not overflow computing the wait.
    waker = std::thread([&] { loop->call_soon_threadsafe([&] { loop->stop(); }); });
  });
  loop->run_forever();
  waker.join();
  EXPECT_TRUE(now_ran);
  EXPECT_FALSE(never_ran);
}

TEST(EventLoopTest, CancelledTimersDoNotRunAndAreCleanedUp) {
  auto loop = new_event_loop();
  int ran = 0;
  std::vector<TimerHandle> handles;
  for (int i = 0; i < 1000; ++i) handles.push_back(loop->call_later(1ms, [&] { ++ran; }));
  for (int i = 0; i < 1000; i += 2) handles[i].cancel();
  loop->call_later(5ms, [&] { loop->stop(); });
  loop->run_forever();
  EXPECT_EQ(ran, 500);
}

TEST(EventLoopTest, TimerCancelledFromAnotherCallbackOfTheSameBatch) {
  auto loop = new_event_loop();
  bool second_ran = false;
  TimerHandle second;
  const double when = loop->time() + 0.005;
  loop->call_at(when, [&] { second.cancel(); });
  second = loop->call_at(when, [&] { second_ran = true; });
  loop->call_later(15ms, [&] { loop->stop(); });
  loop->run_forever();
  EXPECT_FALSE(second_ran);
}

TEST(EventLoopTest, ABurstOfDueTimersFiresInTimeOrderAndTiesInScheduleOrder) {
  // Thousands due at once, deadlines from a few values: the loop takes a
  // burst off its heap in one pass, which must keep the same order.
  auto loop = new_event_loop();
  constexpr int kTimers = 5000;
  const double t0 = loop->time() - 1;  // all in the past: due together
  std::vector<std::pair<double, int>> expected;
  std::vector<std::pair<double, int>> fired;
  for (int i = 0; i < kTimers; ++i) {
    const double when = t0 + static_cast<double>((i * 7919) % 13) * 1e-3;
    expected.emplace_back(when, i);
    loop->call_at(when, [&fired, when, i] { fired.emplace_back(when, i); });
  }
  loop->call_later(1ms, [&] { loop->stop(); });
  loop->run_forever();
  // By deadline, ties in scheduling order (i). Not std::stable_sort: with
  // libstdc++ 12 it fails Clang's -Werror (deprecated get_temporary_buffer).
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(fired, expected);
}

TEST(EventLoopTest, TimersCancelledByADueTimerWhileTheHeapIsCompacted) {
  // The first due timer cancels the other due ones (popped, not yet run) and
  // most of the pending ones, which compacts the heap mid-batch.
  auto loop = new_event_loop();
  const double now = loop->time();
  std::vector<TimerHandle> due;
  std::vector<TimerHandle> pending;
  int due_ran = 0;
  std::vector<int> pending_ran;
  loop->call_at(now - 1, [&] {
    for (TimerHandle& h : due) h.cancel();
    for (size_t i = 0; i < pending.size(); ++i) {
      if (i % 4 != 0) pending[i].cancel();
    }
  });
  for (int i = 0; i < 150; ++i) due.push_back(loop->call_at(now - 1, [&] { ++due_ran; }));
  for (int i = 0; i < 400; ++i) {
    pending.push_back(loop->call_at(now + 0.001 + i * 1e-5, [&, i] { pending_ran.push_back(i); }));
  }
  loop->call_at(now + 0.01, [&] { loop->stop(); });
  loop->run_forever();
  EXPECT_EQ(due_ran, 0);
  std::vector<int> expected;
  for (int i = 0; i < 400; i += 4) expected.push_back(i);
  EXPECT_EQ(pending_ran, expected);
  // The bookkeeping of cancelled timers survived: cancelling most of a new
  // set compacts again and the rest still fire, in order.
  std::vector<TimerHandle> more;
  std::vector<int> more_ran;
  const double later = loop->time();
  for (int i = 0; i < 300; ++i) {
    more.push_back(loop->call_at(later + i * 1e-5, [&, i] { more_ran.push_back(i); }));
  }
  for (int i = 0; i < 300; ++i) {
    if (i % 3 != 0) more[i].cancel();
    EXPECT_EQ(more[i].cancelled(), i % 3 != 0);
  }
  loop->call_at(later + 0.01, [&] { loop->stop(); });
  loop->run_forever();
  std::vector<int> expected_more;
  for (int i = 0; i < 300; i += 3) expected_more.push_back(i);
  EXPECT_EQ(more_ran, expected_more);
}

// Makes epoll_pwait2 fail with ENOSYS in this process from now on, as older
// kernels and seccomp sandboxes (containers, gVisor) do. False if seccomp is
// not available here.
bool refuse_epoll_pwait2() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_epoll_pwait2, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program) != 0) return false;
  epoll_event event;
  timespec zero{};
  return ::epoll_pwait2(-1, &event, 1, &zero, nullptr) < 0 && errno == ENOSYS;
}

// Exit status of the child: 0 when every timer fired, none early.
int run_timers_without_epoll_pwait2() {
  if (!refuse_epoll_pwait2()) return 77;
  try {
    auto loop = new_event_loop();
    int fired = 0, early = 0;
    for (double delay : {0.0015, 0.0001, 0.003, 0.0005}) {
      auto when = std::make_shared<double>();
      *when = loop->call_later(std::chrono::duration<double>(delay),
                               [&, when] {
                                 if (loop->time() < *when) ++early;
                                 ++fired;
                               })
                  .when();
    }
    loop->call_later(4ms, [&] { loop->stop(); });
    loop->run_forever();
    // Again, now that the fallback is known.
    loop->call_later(1ms, [&] { loop->stop(); });
    loop->run_forever();
    return fired == 4 && early == 0 ? 0 : 1;
  } catch (...) {
    return 2;
  }
}

TEST(EventLoopTest, TimersWorkWhereEpollPwait2IsRefused) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(run_timers_without_epoll_pwait2());
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "child status " << status;
  if (WEXITSTATUS(status) == 77) GTEST_SKIP() << "seccomp filters are not available here";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: a timer did not fire or fired early, 2: the loop threw";
}

TEST(EventLoopTest, ThreadsafeCallsFromManyThreadsAllRunInPerThreadOrder) {
  auto loop = new_event_loop();
  constexpr int kThreads = 4;
  constexpr int kPerThread = 5000;
  std::vector<std::vector<int>> seen(kThreads);
  std::atomic<int> total{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        loop->call_soon_threadsafe([&, t, i] {
          seen[t].push_back(i);
          if (++total == kThreads * kPerThread) loop->stop();
        });
      }
    });
  }
  loop->run_forever();
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(seen[t].size(), static_cast<size_t>(kPerThread));
    for (int i = 0; i < kPerThread; ++i) ASSERT_EQ(seen[t][i], i);
  }
}

TEST(EventLoopTest, ThreadsafeCallWakesASleepingLoop) {
  auto loop = new_event_loop();
  std::atomic<bool> ran{false};
  std::thread waker;
  loop->call_soon([&] {
    // The loop is about to block with nothing to do: only the wake-up fd can
    // get it out.
    waker = std::thread([&] {
      loop->call_soon_threadsafe([&] {
        ran = true;
        loop->stop();
      });
    });
  });
  loop->run_forever();
  waker.join();
  EXPECT_TRUE(ran);
}

// A call posted in the last moment before the loop's sleep: after the loop
// said it sleeps and looked at the queue, before the syscall. The wake-up
// must not be lost (the loop would sleep forever, there being no timer).
EventLoop* g_loop_going_to_sleep = nullptr;
void post_stop_from_another_thread() {
  EventLoop* loop = std::exchange(g_loop_going_to_sleep, nullptr);
  if (loop == nullptr) return;  // once
  std::thread([loop] { loop->call_soon_threadsafe([loop] { loop->stop(); }); }).join();
}

void expect_a_call_posted_while_going_to_sleep_wakes_the_loop(EventLoop& loop) {
  g_loop_going_to_sleep = &loop;
  loop_internal::TestHooks::loop_going_to_sleep.store(&post_stop_from_another_thread);
  loop.run_forever();
  loop_internal::TestHooks::loop_going_to_sleep.store(nullptr);
  EXPECT_EQ(g_loop_going_to_sleep, nullptr);
}

TEST(EventLoopTest, ThreadsafeCallWhileTheLoopGoesToSleepWakesIt) {
  // No descriptor to watch: the loop sleeps on its futex.
  auto loop = new_event_loop();
  expect_a_call_posted_while_going_to_sleep_wakes_the_loop(*loop);
}

TEST(EventLoopTest, ThreadsafeCallWhileTheLoopGoesToSleepInEpollWakesIt) {
  // A descriptor to watch (that never becomes readable): it sleeps in epoll.
  auto loop = new_event_loop();
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  loop->add_reader(fds[0], [] {});
  expect_a_call_posted_while_going_to_sleep_wakes_the_loop(*loop);
  loop->remove_reader(fds[0]);
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(EventLoopTest, ReaderAndWriterOnSocketpair) {
  auto loop = new_event_loop();
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
  std::string received;
  loop->add_writer(fds[1], [&] {
    ASSERT_EQ(::write(fds[1], "abc", 3), 3);
    EXPECT_TRUE(loop->remove_writer(fds[1]));
  });
  loop->add_reader(fds[0], [&] {
    char buf[16];
    ssize_t n = ::read(fds[0], buf, sizeof(buf));
    received.append(buf, n);
    EXPECT_TRUE(loop->remove_reader(fds[0]));
    loop->stop();
  });
  loop->run_forever();
  EXPECT_EQ(received, "abc");
  EXPECT_FALSE(loop->remove_reader(fds[0]));
  EXPECT_FALSE(loop->remove_writer(fds[1]));
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(EventLoopTest, ReaderCanReplaceItselfWhileRunning) {
  auto loop = new_event_loop();
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  ASSERT_EQ(::write(fds[1], "xy", 2), 2);
  std::vector<std::string> calls;
  loop->add_reader(fds[0], [&] {
    char c;
    ASSERT_EQ(::read(fds[0], &c, 1), 1);
    calls.push_back(std::string("first:") + c);
    loop->add_reader(fds[0], [&] {
      char d;
      ASSERT_EQ(::read(fds[0], &d, 1), 1);
      calls.push_back(std::string("second:") + d);
      loop->remove_reader(fds[0]);
      loop->stop();
    });
  });
  loop->run_forever();
  EXPECT_EQ(calls, (std::vector<std::string>{"first:x", "second:y"}));
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(EventLoopTest, AddReaderOnBadFdThrows) {
  auto loop = new_event_loop();
  EXPECT_THROW(loop->add_reader(-1, [] {}), std::invalid_argument);
  int fd = ::open("/dev/null", O_RDONLY);
  ::close(fd);
  EXPECT_THROW(loop->add_reader(fd, [] {}), std::system_error);
  EXPECT_FALSE(loop->remove_reader(fd));
}

TEST(EventLoopTest, SignalHandlerRunsOnTheLoop) {
  auto loop = new_event_loop();
  int count = 0;
  loop->add_signal_handler(SIGUSR1, [&] {
    ++count;
    loop->stop();
  });
  loop->call_soon([] { ::kill(::getpid(), SIGUSR1); });
  loop->run_forever();
  EXPECT_EQ(count, 1);
  EXPECT_TRUE(loop->remove_signal_handler(SIGUSR1));
  EXPECT_FALSE(loop->remove_signal_handler(SIGUSR1));
  EXPECT_THROW(loop->add_signal_handler(SIGKILL, [] {}), std::invalid_argument);
  EXPECT_THROW(loop->add_signal_handler(0, [] {}), std::invalid_argument);
}

// A busy loop with no fd of its own skips epoll; a signal must still reach
// its handler on the next iteration (the signal pipe is not polled until a
// signal has come).
TEST(EventLoopTest, SignalReachesABusyLoopWithNoFdsToWatch) {
  auto loop = new_event_loop();
  bool handled = false;
  loop->add_signal_handler(SIGUSR2, [&] { handled = true; });
  int iterations_after_kill = 0;
  std::function<void()> spin = [&] {
    if (handled || iterations_after_kill > 100) {
      loop->stop();
      return;
    }
    ++iterations_after_kill;
    loop->call_soon(spin);
  };
  loop->call_soon([&] {
    ::kill(::getpid(), SIGUSR2);
    loop->call_soon(spin);
  });
  loop->run_forever();
  EXPECT_TRUE(handled);
  EXPECT_LE(iterations_after_kill, 2);
  EXPECT_TRUE(loop->remove_signal_handler(SIGUSR2));
}

TEST(EventLoopTest, ExceptionInCallbackGoesToHandlerAndLoopContinues) {
  auto loop = new_event_loop();
  std::vector<std::string> messages;
  loop->set_exception_handler([&](EventLoop&, const ExceptionContext& ctx) {
    std::string what;
    try {
      std::rethrow_exception(ctx.exception);
    } catch (const std::exception& e) {
      what = e.what();
    }
    messages.push_back(ctx.message + "|" + what);
  });
  bool after = false;
  loop->call_soon([] { throw std::runtime_error("boom"); });
  loop->call_soon([&] {
    after = true;
    loop->stop();
  });
  loop->run_forever();
  EXPECT_TRUE(after);
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0], "Exception in callback|boom");
}

TEST(EventLoopTest, ThrowingExceptionHandlerDoesNotStopTheLoop) {
  auto loop = new_event_loop();
  loop->set_exception_handler(
      [](EventLoop&, const ExceptionContext&) { throw std::runtime_error("handler broke"); });
  bool after = false;
  loop->call_soon([] { throw std::runtime_error("boom"); });
  loop->call_soon([&] {
    after = true;
    loop->stop();
  });
  testing::internal::CaptureStderr();
  loop->run_forever();
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(after);
  EXPECT_NE(err.find("Unhandled error in exception handler"), std::string::npos);
  EXPECT_NE(err.find("boom"), std::string::npos);
  loop->set_exception_handler(nullptr);
  EXPECT_FALSE(loop->get_exception_handler());
}

TEST(EventLoopTest, DebugModeReportsSlowCallbacks) {
  auto loop = new_event_loop();
  loop->set_debug(true);
  EXPECT_TRUE(loop->get_debug());
  loop->set_slow_callback_duration(0.01);
  std::vector<std::string> messages;
  loop->set_exception_handler(
      [&](EventLoop&, const ExceptionContext& ctx) { messages.push_back(ctx.message); });
  loop->call_soon([] {
    const auto until = std::chrono::steady_clock::now() + 20ms;
    while (std::chrono::steady_clock::now() < until) {
    }
  });
  loop->call_soon([&] { loop->stop(); });
  loop->run_forever();
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_NE(messages[0].find("took"), std::string::npos);
}

TEST(EventLoopTest, ClosedLoopRefusesWork) {
  auto loop = new_event_loop();
  loop->close();
  EXPECT_TRUE(loop->is_closed());
  EXPECT_THROW(loop->call_soon([] {}), std::runtime_error);
  EXPECT_THROW(loop->call_later(1ms, [] {}), std::runtime_error);
  EXPECT_THROW(loop->call_soon_threadsafe([] {}), std::runtime_error);
  EXPECT_THROW(loop->run_forever(), std::runtime_error);
  loop->close();  // idempotent
}

TEST(EventLoopTest, CloseWhileRunningAndNestedRunThrow) {
  auto loop = new_event_loop();
  bool close_threw = false, nested_threw = false, other_threw = false;
  auto other = new_event_loop();
  loop->call_soon([&] {
    try {
      loop->close();
    } catch (const std::runtime_error&) {
      close_threw = true;
    }
    try {
      loop->run_forever();
    } catch (const std::runtime_error&) {
      nested_threw = true;
    }
    try {
      other->run_forever();
    } catch (const std::runtime_error&) {
      other_threw = true;
    }
    loop->stop();
  });
  loop->run_forever();
  EXPECT_TRUE(close_threw);
  EXPECT_TRUE(nested_threw);
  EXPECT_TRUE(other_threw);
}

TEST(EventLoopTest, CloseDropsPendingCallbacksAndTheirCaptures) {
  auto loop = new_event_loop();
  auto token = std::make_shared<int>(0);
  loop->call_soon([token] {});
  loop->call_later(1s, [token] {});
  EXPECT_EQ(token.use_count(), 3);
  loop->close();
  EXPECT_EQ(token.use_count(), 1);
}

// A call_soon_threadsafe caller paused past its closed check while the loop
// is destroyed: its node must still be discarded (its captures released), not
// pushed after the last look at the queue.
std::atomic<bool> g_poster_paused{false};
std::atomic<bool> g_closer_waiting{false};

TEST(EventLoopTest, CallbackPostedWhileTheLoopIsDestroyedIsReleased) {
  using loop_internal::TestHooks;
  TestHooks::threadsafe_post_checked = [] {
    g_poster_paused = true;
    while (!g_closer_waiting) std::this_thread::yield();
  };
  TestHooks::waiting_for_posters = [] { g_closer_waiting = true; };
  auto loop = new_event_loop();
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> released = token;
  bool ran = false;
  std::thread poster([raw = loop.get(), token = std::move(token), &ran]() mutable {
    raw->call_soon_threadsafe([token = std::move(token), &ran] { ran = true; });
  });
  while (!g_poster_paused) std::this_thread::yield();
  loop.reset();
  poster.join();
  TestHooks::threadsafe_post_checked = nullptr;
  TestHooks::waiting_for_posters = nullptr;
  EXPECT_FALSE(ran);
  EXPECT_TRUE(released.expired()) << "the node was pushed after the loop's last look";
}

TEST(EventLoopTest, RunningAndThreadLoops) {
  EXPECT_THROW(get_running_loop(), std::runtime_error);
  auto loop = new_event_loop();
  EventLoop* seen = nullptr;
  loop->call_soon([&] {
    seen = &get_running_loop();
    EXPECT_EQ(&get_event_loop(), loop.get());
    loop->stop();
  });
  loop->run_forever();
  EXPECT_EQ(seen, loop.get());
  set_event_loop(loop.get());
  EXPECT_EQ(&get_event_loop(), loop.get());
  set_event_loop(nullptr);
  // Another thread gets a loop of its own on demand.
  EventLoop* from_thread = nullptr;
  std::thread([&] { from_thread = &get_event_loop(); }).join();
  EXPECT_NE(from_thread, nullptr);
  EXPECT_NE(from_thread, loop.get());
}

TEST(EventLoopTest, ExistsTracksLiveLoops) {
  auto loop = new_event_loop();
  EventLoop* raw = loop.get();
  EXPECT_TRUE(EventLoop::exists(raw));
  loop.reset();
  EXPECT_FALSE(EventLoop::exists(raw));
}

TEST(SocketAddressTest, ParsesLiteralsAndFormats) {
  SocketAddress v4("127.0.0.1", 8888);
  EXPECT_EQ(v4.family(), AF_INET);
  EXPECT_EQ(v4.host(), "127.0.0.1");
  EXPECT_EQ(v4.port(), 8888);
  EXPECT_EQ(v4.to_string(), "127.0.0.1:8888");
  SocketAddress v6("::1", 80);
  EXPECT_EQ(v6.family(), AF_INET6);
  EXPECT_EQ(v6.to_string(), "[::1]:80");
  EXPECT_EQ(SocketAddress("[::1]", 80), v6);
  EXPECT_THROW(SocketAddress("localhost", 80), std::invalid_argument);
  EXPECT_THROW(SocketAddress("", 80), std::invalid_argument);
  SocketAddress un = SocketAddress::unix_path("/tmp/x.sock");
  EXPECT_EQ(un.family(), AF_UNIX);
  EXPECT_EQ(un.path(), "/tmp/x.sock");
  EXPECT_EQ(un.to_string(), "/tmp/x.sock");
  EXPECT_THROW(SocketAddress::unix_path(std::string(200, 'x')), std::invalid_argument);
}

// Debug mode, as asyncio's _check_thread: a non-thread-safe call from
// another thread while the loop runs throws instead of racing.
TEST(DebugModeTest, NonThreadSafeCallsFromAnotherThreadThrow) {
  EventLoop loop;
  loop.set_debug(true);
  std::thread other;
  bool threw_soon = false;
  bool threw_later = false;
  loop.call_soon([&] {
    other = std::thread([&] {
      try {
        loop.call_soon([] {});
      } catch (const std::runtime_error& e) {
        threw_soon = std::string(e.what()).find("Non-thread-safe operation") != std::string::npos;
      }
      try {
        loop.call_later(std::chrono::seconds(1), [] {});
      } catch (const std::runtime_error&) {
        threw_later = true;
      }
      loop.call_soon_threadsafe([&loop] { loop.stop(); });  // the thread-safe one works
    });
  });
  loop.run_forever();
  other.join();
  EXPECT_TRUE(threw_soon);
  EXPECT_TRUE(threw_later);
  // From the loop's own thread, and while it is not running, no check.
  loop.call_soon([] {});
  loop.close();
}

TEST(DebugModeTest, TheEnvironmentVariableTurnsItOn) {
  ::setenv("ASYNCIO_DEBUG", "1", 1);
  EventLoop on;
  EXPECT_TRUE(on.get_debug());
  ::setenv("ASYNCIO_DEBUG", "0", 1);
  EventLoop off;
  EXPECT_FALSE(off.get_debug());
  ::unsetenv("ASYNCIO_DEBUG");
  EventLoop unset;
  EXPECT_FALSE(unset.get_debug());
}

}  // namespace
}  // namespace asyncio
