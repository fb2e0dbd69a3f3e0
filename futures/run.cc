#include "futures/run.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "futures/futures.h"

namespace asyncio {
namespace futures_internal {
namespace {

// asyncio.runners._cancel_all_tasks: cancels what is left and runs the loop
// until it has all finished, reporting the failures nobody will see.
void cancel_all_tasks(EventLoop& loop) {
  TaskRegistry* registry = TaskRegistry::find(loop);
  if (registry == nullptr) return;
  std::vector<AnyTask> tasks = registry->pending_tasks();
  if (tasks.empty()) return;
  for (AnyTask& t : tasks) t.cancel();
  size_t remaining = tasks.size();
  for (AnyTask& t : tasks) {
    Access::as_future(t).add_done_callback([&remaining, &loop](Future<void>&) {
      if (--remaining == 0) loop.stop();
    });
  }
  loop.run_forever();
  for (AnyTask& t : tasks) {
    if (!t.done() || t.cancelled()) continue;
    if (std::exception_ptr exc = t.exception()) {
      loop.call_exception_handler(
          {"unhandled exception during asyncio.run() shutdown", exc, t.get_name(), ""});
    }
  }
}

// What the joining thread hands back to the loop. Shared by the coroutine,
// the thread and the callback it posts, which may run after the coroutine
// is gone (cancelled); the Future is only touched on the loop's thread.
struct ExecutorJoin {
  explicit ExecutorJoin(EventLoop& loop) : done(create_future<void>(loop)) {}
  Future<void> done;
  bool joined = false;
};

// Joins the thread on every way out of the coroutine: its wait is bounded by
// the timeout, and it refers to the loop.
struct JoinOnExit {
  std::thread& thread;
  ~JoinOnExit() { thread.join(); }
};

}  // namespace
}  // namespace futures_internal

Coro<void> shutdown_default_executor(std::optional<std::chrono::duration<double>> timeout) {
  using futures_internal::ExecutorJoin;
  EventLoop& loop = get_running_loop();
  std::shared_ptr<Executor> executor = loop.begin_default_executor_shutdown();
  if (!executor) co_return;
  auto state = std::make_shared<ExecutorJoin>(loop);
  const std::chrono::duration<double> wait =
      timeout ? *timeout : std::chrono::duration<double>::max();
  // asyncio joins on a thread too, so that the loop keeps running meanwhile.
  std::thread joiner([executor, state, wait, &loop] {
    const bool joined = executor->shutdown_with_timeout(wait);
    loop.call_soon_threadsafe([state, joined] {
      state->joined = joined;
      if (!state->done.done()) state->done.set_result();
    });
  });
  futures_internal::JoinOnExit join_on_exit{joiner};
  co_await state->done;
  if (!state->joined) {
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%g", wait.count());
    loop.call_exception_handler({std::string("The executor did not finishing joining its threads "
                                             "within ") +
                                     seconds + " seconds.",
                                 nullptr, "", ""});
  }
}

namespace futures_internal {

// The loop's own signal handling (add_signal_handler) delivers Ctrl-C: its
// callback runs on the loop, which polls the signal pipe only once a signal
// has come, so an idle SIGINT handler costs a busy loop nothing.
struct SigintHandling::State {
  State(EventLoop& l, AnyTask m) : loop(l), main(std::move(m)) {}

  // asyncio's Runner._on_sigint.
  void on_interrupt() {
    ++interrupts;
    if (interrupts == 1 && !main.done()) {
      main.cancel();
      return;
    }
    raise_now = true;
    loop.stop();
  }

  EventLoop& loop;
  AnyTask main;
  int interrupts = 0;
  bool raise_now = false;
};

SigintHandling::SigintHandling(EventLoop& loop, AnyTask main) {
  if (::gettid() != ::getpid()) return;  // not the main thread
  struct sigaction previous {};
  if (::sigaction(SIGINT, nullptr, &previous) != 0) return;
  if ((previous.sa_flags & SA_SIGINFO) || previous.sa_handler != SIG_DFL) return;
  auto state = std::make_shared<State>(loop, std::move(main));
  try {
    loop.add_signal_handler(SIGINT, [state = state.get()] { state->on_interrupt(); });
  } catch (const std::exception&) {
    // No descriptor left for the signal pipe: run without SIGINT handling,
    // as asyncio does where signal.signal fails.
    return;
  }
  state_ = std::move(state);
}

SigintHandling::~SigintHandling() {
  // Puts SIG_DFL back: it was the disposition before.
  if (state_ && !state_->loop.is_closed()) state_->loop.remove_signal_handler(SIGINT);
}

void SigintHandling::throw_if_interrupted() {
  if (!state_ || state_->interrupts == 0) return;
  if (state_->raise_now) throw KeyboardInterrupt();
  try {
    throw;
  } catch (const CancelledError&) {
    // Ours only if nobody else asked for it too (asyncio checks uncancel).
    if (state_->main.uncancel() == 0) throw KeyboardInterrupt();
  } catch (...) {
  }
}

}  // namespace futures_internal

Runner::Runner(RunOptions options) : options_(std::move(options)) {}

EventLoop& Runner::get_loop() {
  if (state_ == State::kClosed) throw std::runtime_error("Runner is closed");
  if (state_ == State::kInitialized) return *loop_;
  futures_internal::enable_debug_socket_from_environment();
  if (options_.loop_factory) {
    loop_ = options_.loop_factory();
    if (!loop_) throw std::invalid_argument("Runner: the loop factory returned no loop");
  } else {
    loop_ = new_event_loop();
    set_event_loop(loop_.get());
    set_event_loop_ = true;
  }
  if (options_.debug) loop_->set_debug(*options_.debug);
  state_ = State::kInitialized;
  return *loop_;
}

void Runner::close() noexcept {
  if (state_ != State::kInitialized) return;
  EventLoop& loop = *loop_;
  try {
    futures_internal::cancel_all_tasks(loop);
    run_until_complete(loop, shutdown_asyncgens(loop));
    run_until_complete(loop, shutdown_default_executor(options_.executor_shutdown_timeout));
  } catch (...) {
    loop.call_exception_handler(
        {"error while closing the asyncio Runner", std::current_exception(), "", ""});
  }
  if (set_event_loop_) set_event_loop(nullptr);
  try {
    loop.close();
  } catch (...) {
    loop.call_exception_handler(
        {"error while closing the asyncio Runner", std::current_exception(), "", ""});
  }
  state_ = State::kClosed;  // the loop object lives as long as the runner
}

}  // namespace asyncio
