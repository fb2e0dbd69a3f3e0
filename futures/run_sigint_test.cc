// Runner.run's SIGINT handling (asyncio 3.11+). Every test leaves SIGINT's
// disposition as it found it: the default.
#include <signal.h>

#include <csignal>
#include <thread>

#include "futures/futures.h"
#include "gtest/gtest.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;

bool sigint_is_default() {
  struct sigaction current {};
  ::sigaction(SIGINT, nullptr, &current);
  return !(current.sa_flags & SA_SIGINFO) && current.sa_handler == SIG_DFL;
}

// Puts SIGINT back to the default when a test ends, whatever happened.
struct RestoreDefaultSigint {
  ~RestoreDefaultSigint() { ::signal(SIGINT, SIG_DFL); }
};

TEST(RunnerSigintTest, FirstInterruptCancelsMainAndRunRaisesKeyboardInterrupt) {
  RestoreDefaultSigint restore;
  ASSERT_TRUE(sigint_is_default());
  bool handled_while_running = false;
  bool cleaned_up = false;
  auto main_coro = [](bool& handled, bool& cleaned) -> Coro<void> {
    handled = !sigint_is_default();
    std::raise(SIGINT);
    try {
      co_await sleep(1h);
    } catch (const CancelledError&) {
      cleaned = true;  // the main task may clean up, then lets it go
      throw;
    }
  };
  EXPECT_THROW(run(main_coro(handled_while_running, cleaned_up)), KeyboardInterrupt);
  EXPECT_TRUE(handled_while_running);
  EXPECT_TRUE(cleaned_up);
  EXPECT_TRUE(sigint_is_default()) << "the previous disposition is back";
}

TEST(RunnerSigintTest, AMainThatSwallowsTheCancellationReturnsNormally) {
  RestoreDefaultSigint restore;
  Runner runner;
  auto main_coro = []() -> Coro<int> {
    std::raise(SIGINT);
    try {
      co_await sleep(1h);
    } catch (const CancelledError&) {
      co_return 7;
    }
    co_return 0;
  };
  EXPECT_EQ(runner.run(main_coro()), 7);
  EXPECT_TRUE(sigint_is_default());
  // The next run counts its interrupts afresh.
  EXPECT_THROW(runner.run([]() -> Coro<void> {
    std::raise(SIGINT);
    co_await sleep(1h);
  }()),
               KeyboardInterrupt);
  EXPECT_TRUE(sigint_is_default());
}

TEST(RunnerSigintTest, SecondInterruptRaisesAtOnce) {
  RestoreDefaultSigint restore;
  int cancellations = 0;
  auto main_coro = [](int& cancelled) -> Coro<void> {
    std::raise(SIGINT);
    try {
      co_await sleep(1h);
    } catch (const CancelledError&) {
      ++cancelled;  // ignores the first Ctrl-C
    }
    std::raise(SIGINT);
    try {
      co_await sleep(1h);
    } catch (const CancelledError&) {
      ++cancelled;  // cancelled again when the runner closes
      throw;
    }
  };
  EXPECT_THROW(run(main_coro(cancellations)), KeyboardInterrupt);
  EXPECT_EQ(cancellations, 2);
  EXPECT_TRUE(sigint_is_default());
}

int g_custom_handler_calls = 0;
void count_sigint(int) { ++g_custom_handler_calls; }

TEST(RunnerSigintTest, AHandlerInstalledBeforeIsLeftAlone) {
  RestoreDefaultSigint restore;
  ::signal(SIGINT, &count_sigint);
  g_custom_handler_calls = 0;
  EXPECT_EQ(run([]() -> Coro<int> {
              std::raise(SIGINT);
              co_await sleep(0s);
              co_return 1;
            }()),
            1);
  EXPECT_EQ(g_custom_handler_calls, 1);
  struct sigaction current {};
  ::sigaction(SIGINT, nullptr, &current);
  EXPECT_EQ(current.sa_handler, &count_sigint);
}

TEST(RunnerSigintTest, OnlyTheMainThreadHandlesSigint) {
  RestoreDefaultSigint restore;
  bool default_inside = false;
  std::thread other([&default_inside] {
    default_inside = run([]() -> Coro<bool> { co_return sigint_is_default(); }());
  });
  other.join();
  EXPECT_TRUE(default_inside);
}

}  // namespace
}  // namespace asyncio
