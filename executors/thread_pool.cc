#include "executors/thread_pool.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <typeinfo>

#include "loop/posix.h"

namespace asyncio::concurrent {

namespace executors_internal {

void report_callback_exception(std::exception_ptr exc) noexcept {
  std::string what = posix::describe_exception(exc);
  std::fprintf(stderr,
               "asyncio: exception calling callback for a concurrent Future\n  exception: %s\n",
               what.c_str());
  std::fflush(stderr);
}

}  // namespace executors_internal

namespace {

int default_thread_workers() {
  unsigned n = std::thread::hardware_concurrency();
  if (n == 0) n = 1;
  return static_cast<int>(std::min(32u, n + 4));
}

}  // namespace

ThreadPoolExecutor::ThreadPoolExecutor(int max_workers)
    : max_workers_(max_workers == 0 ? default_thread_workers() : max_workers),
      state_(std::make_shared<State>()) {
  if (max_workers < 0) throw std::invalid_argument("max_workers must be greater than 0");
}

ThreadPoolExecutor::~ThreadPoolExecutor() {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->shutdown) threads.swap(state_->threads);
  }
  if (threads.empty()) {
    shutdown(/*wait=*/true);
    return;
  }
  // Shut down before, without waiting: the threads own the shared state.
  for (std::thread& t : threads) t.detach();
}

int ThreadPoolExecutor::num_threads() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return static_cast<int>(state_->threads.size());
}

void ThreadPoolExecutor::execute(absl::AnyInvocable<void()> work) {
  State& s = *state_;
  std::unique_lock<std::mutex> lock(s.mu);
  if (s.shutdown) {
    lock.unlock();
    work = nullptr;  // a dropped work item cancels its future
    throw std::runtime_error("cannot schedule new futures after shutdown");
  }
  s.queue.push_back(std::move(work));
  // Start a thread unless an idle one will take the job (as Python's
  // _adjust_thread_count).
  if (static_cast<size_t>(s.idle) < s.queue.size() &&
      s.threads.size() < static_cast<size_t>(max_workers_)) {
    s.threads.emplace_back([state = state_] { worker_main(*state); });
    ++s.running;
  }
  if (s.idle > 0) s.cv.notify_one();
}

void ThreadPoolExecutor::worker_main(State& s) {
  std::unique_lock<std::mutex> lock(s.mu);
  while (true) {
    while (s.queue.empty() && !s.shutdown) {
      ++s.idle;
      s.cv.wait(lock);
      --s.idle;
    }
    if (s.queue.empty()) {  // shut down and drained
      --s.running;
      s.exited.notify_all();
      return;
    }
    absl::AnyInvocable<void()> work = std::move(s.queue.front());
    s.queue.pop_front();
    lock.unlock();
    work();
    work = nullptr;  // release what the job captured, outside the lock
    lock.lock();
  }
}

bool ThreadPoolExecutor::shutdown_with_timeout(std::chrono::duration<double> timeout) {
  State& s = *state_;
  {
    std::unique_lock<std::mutex> lock(s.mu);
    s.shutdown = true;
    s.cv.notify_all();
    // Called from one of our own jobs: that thread cannot exit while it waits.
    const auto self = std::this_thread::get_id();
    const int own = static_cast<int>(
        std::count_if(s.threads.begin(), s.threads.end(),
                      [self](const std::thread& t) { return t.get_id() == self; }));
    const auto all_exited = [&s, own] { return s.running == own; };
    // Beyond a few years the wait is as good as unbounded, and the deadline
    // arithmetic would overflow.
    constexpr std::chrono::duration<double> kUnbounded(1e8);
    if (!(timeout < kUnbounded)) {
      s.exited.wait(lock, all_exited);
    } else if (!s.exited.wait_for(lock,
                                  std::chrono::duration_cast<std::chrono::nanoseconds>(
                                      std::max(timeout, decltype(timeout)::zero())),
                                  all_exited)) {
      return false;
    }
  }
  shutdown(/*wait=*/true);  // every thread is out of worker_main: joins at once
  return true;
}

void ThreadPoolExecutor::shutdown(bool wait, bool cancel_futures) {
  State& s = *state_;
  std::deque<absl::AnyInvocable<void()>> dropped;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.shutdown = true;
    if (cancel_futures) dropped.swap(s.queue);
    s.cv.notify_all();
  }
  dropped.clear();  // cancels the futures of the dropped work items
  if (!wait) return;
  std::lock_guard<std::mutex> join_lock(join_mu_);
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    threads.swap(s.threads);
  }
  const auto self = std::this_thread::get_id();
  for (std::thread& t : threads) {
    if (t.get_id() == self) {
      t.detach();  // shut down from one of our own jobs: it cannot join itself
    } else {
      t.join();
    }
  }
}

}  // namespace asyncio::concurrent
