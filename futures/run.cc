#include "futures/run.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <string>
#include <system_error>
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
namespace {

// What the SIGINT handler sees. At most one SigintHandling is active: only
// the main thread installs one, and runs do not nest on a thread.
std::atomic<int> g_sigint_write_fd{-1};
std::atomic<int> g_sigint_count{0};
struct sigaction g_previous_sigint;  // set before the handler is installed

// Async-signal-safe: counts, and wakes the forwarding thread. From the
// second Ctrl-C on, the previous disposition is back, so that a third one
// still stops a program whose loop is blocked.
void on_sigint(int) {
  const int saved_errno = errno;
  if (g_sigint_count.fetch_add(1) >= 1) ::sigaction(SIGINT, &g_previous_sigint, nullptr);
  const int fd = g_sigint_write_fd.load();
  if (fd >= 0) {
    const char signalled = 's';
    (void)!::write(fd, &signalled, 1);
  }
  errno = saved_errno;
}

bool sigint_is_ours() {
  struct sigaction current {};
  return ::sigaction(SIGINT, nullptr, &current) == 0 && !(current.sa_flags & SA_SIGINFO) &&
         current.sa_handler == &on_sigint;
}

}  // namespace

// A signal handler may not touch the loop (call_soon_threadsafe locks and
// allocates), and a descriptor watched by the loop would cost every busy
// iteration a poll; so a thread, blocked on a pipe, forwards each Ctrl-C to
// the loop with call_soon_threadsafe, which the loop drains anyway.
struct SigintHandling::State {
  State(EventLoop& l, AnyTask m) : loop(l), main(std::move(m)) {}

  // On the loop: asyncio's Runner._on_sigint.
  void on_interrupt() {
    if (!active) return;  // posted as the run ended
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
  bool active = true;
  int interrupts = 0;
  bool raise_now = false;
  int read_fd = -1;
  int write_fd = -1;
  std::thread forwarder;
};

SigintHandling::SigintHandling(EventLoop& loop, AnyTask main) {
  if (::gettid() != ::getpid()) return;  // not the main thread
  struct sigaction previous {};
  if (::sigaction(SIGINT, nullptr, &previous) != 0) return;
  if ((previous.sa_flags & SA_SIGINFO) || previous.sa_handler != SIG_DFL) return;
  if (g_sigint_write_fd.load() >= 0) return;
  int fds[2];
  // Without a pipe (no descriptor left), run without SIGINT handling, as
  // asyncio does where signal.signal fails.
  if (::pipe2(fds, O_CLOEXEC) != 0) return;
  // The handler must never block; the forwarder does, on the read end.
  ::fcntl(fds[1], F_SETFL, ::fcntl(fds[1], F_GETFL) | O_NONBLOCK);
  auto state = std::make_shared<State>(loop, std::move(main));
  state->read_fd = fds[0];
  state->write_fd = fds[1];
  // The loop outlives the run: `weak` turns a post that runs after it into
  // nothing. The thread itself ends before the state (the destructor joins).
  try {
    state->forwarder =
        std::thread([&loop = state->loop, read_fd = fds[0], weak = std::weak_ptr<State>(state)] {
          char byte;
          while (true) {
            const ssize_t n = ::read(read_fd, &byte, 1);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0 || byte == 'q') return;
            loop.call_soon_threadsafe([weak] {
              if (std::shared_ptr<State> s = weak.lock()) s->on_interrupt();
            });
          }
        });
  } catch (const std::system_error&) {  // no thread to be had: as without a pipe
    ::close(fds[0]);
    ::close(fds[1]);
    return;
  }
  g_previous_sigint = previous;
  g_sigint_count.store(0);
  g_sigint_write_fd.store(fds[1]);
  struct sigaction ours {};
  ours.sa_handler = &on_sigint;
  sigemptyset(&ours.sa_mask);
  ours.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &ours, nullptr);
  state_ = std::move(state);
}

SigintHandling::~SigintHandling() {
  if (!state_) return;
  state_->active = false;
  if (sigint_is_ours()) ::sigaction(SIGINT, &g_previous_sigint, nullptr);
  g_sigint_write_fd.store(-1);
  const char quit = 'q';
  while (::write(state_->write_fd, &quit, 1) < 0 && errno == EINTR) {
  }
  state_->forwarder.join();
  ::close(state_->read_fd);
  ::close(state_->write_fd);
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
