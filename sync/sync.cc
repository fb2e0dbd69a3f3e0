// The primitives follow asyncio/locks.py (3.12) step by step; the comments
// say where C++ needs a different shape. Coroutines cannot co_await inside a
// catch block, so "finally" clauses that wait are written as: catch the
// exception, do the cleanup after the try, rethrow.
#include "sync/sync.h"

#include <cstdio>
#include <exception>
#include <stdexcept>
#include <utility>

namespace asyncio {

// ---------------------------------------------------------------------------
// Held

void sync_internal::report_release_error(std::exception_ptr error) noexcept {
  try {
    if (EventLoop* loop = running_loop_or_null()) {
      loop->call_exception_handler({"Releasing a held primitive failed", error, "", ""});
      return;
    }
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "Releasing a held primitive failed: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "Releasing a held primitive failed\n");
  }
}

// The guard is made only once acquire() returned: a cancelled or failed
// acquire holds nothing.
Coro<Held<Lock>> Lock::scoped() {
  co_await acquire();
  co_return Held<Lock>(*this);
}

Coro<Held<Condition>> Condition::scoped() {
  co_await acquire();
  co_return Held<Condition>(*this);
}

Coro<Held<Semaphore>> Semaphore::scoped() {
  co_await acquire();
  co_return Held<Semaphore>(*this);
}

// ---------------------------------------------------------------------------
// Lock

Coro<void> Lock::acquire() {
  // Fair: a newcomer only takes a free lock ahead of the queue when every
  // waiter in it has given up.
  if (!locked_ && !waiters_.any_of([](const Future<void>& w) { return !w.cancelled(); })) {
    locked_ = true;
    co_return;
  }
  Future<void> fut = create_future<void>(loop_.get("Lock"));
  waiters_.push_back(fut);
  try {
    co_await fut;
  } catch (const CancelledError&) {
    waiters_.remove(fut);
    // If the lock is free (we may even have been woken to take it), the next
    // waiter must be on its way, or it would wait forever.
    if (!locked_) wake_up_first();
    throw;
  } catch (...) {
    waiters_.remove(fut);
    throw;
  }
  waiters_.remove(fut);
  locked_ = true;
}

void Lock::release() {
  if (!locked_) throw std::runtime_error("Lock is not acquired.");
  locked_ = false;
  wake_up_first();
}

void Lock::wake_up_first() {
  if (waiters_.empty()) return;
  // Done means it is already woken (or cancelled, and about to leave and
  // wake the next one itself).
  Future<void>& fut = waiters_.front();
  if (!fut.done()) fut.set_result();
}

// ---------------------------------------------------------------------------
// Event

Coro<void> Event::wait() {
  if (value_) co_return;
  Future<void> fut = create_future<void>(loop_.get("Event"));
  waiters_.push_back(fut);
  try {
    co_await fut;
  } catch (...) {
    waiters_.remove(fut);
    throw;
  }
  waiters_.remove(fut);
}

void Event::set() {
  if (value_) return;
  value_ = true;
  // Setting a result only schedules the waiting task: nothing runs here that
  // could change the queue under the loop.
  for (size_t i = 0; i < waiters_.size(); ++i) {
    if (!waiters_[i].done()) waiters_[i].set_result();
  }
}

// ---------------------------------------------------------------------------
// Condition

Coro<void> Condition::wait() {
  if (!locked()) throw std::runtime_error("cannot wait on un-acquired lock");
  // Created before releasing, so that a loop mismatch leaves the lock held.
  Future<void> fut = create_future<void>(loop_.get("Condition"));
  release();
  std::exception_ptr error;
  waiters_.push_back(fut);
  try {
    co_await fut;
  } catch (...) {
    error = std::current_exception();
  }
  waiters_.remove(fut);

  // The lock must be held again on the way out, even if cancelled: retry
  // the acquire through cancellations and throw the last one afterwards.
  while (true) {
    try {
      co_await acquire();
      break;
    } catch (const CancelledError&) {
      error = std::current_exception();
    } catch (...) {
      notify_waiters(1);
      throw;
    }
  }
  if (error) {
    // We may have been notified before the failure: pass the notification
    // on (a spurious wake-up for someone is allowed, a lost one is not).
    notify_waiters(1);
    std::rethrow_exception(error);
  }
}

void Condition::notify(int n) {
  if (!locked()) throw std::runtime_error("cannot notify on un-acquired lock");
  notify_waiters(n > 0 ? static_cast<size_t>(n) : 0);
}

void Condition::notify_all() { notify(static_cast<int>(waiters_.size())); }

void Condition::notify_waiters(size_t n) {
  size_t woken = 0;
  for (size_t i = 0; i < waiters_.size() && woken < n; ++i) {
    if (!waiters_[i].done()) {
      ++woken;
      waiters_[i].set_result();
    }
  }
}

// ---------------------------------------------------------------------------
// Semaphore

Semaphore::Semaphore(int value) : value_(value) {
  if (value < 0) throw std::invalid_argument("Semaphore initial value must be >= 0");
}

bool Semaphore::locked() const {
  // Out of permits, or others queued first (FIFO: they must go before us).
  return value_ == 0 || waiters_.any_of([](const Future<void>& w) { return !w.cancelled(); });
}

Coro<void> Semaphore::acquire() {
  if (!locked()) {
    --value_;
    co_return;
  }
  Future<void> fut = create_future<void>(loop_.get("Semaphore"));
  waiters_.push_back(fut);
  std::exception_ptr error;
  try {
    co_await fut;
  } catch (const CancelledError&) {
    error = std::current_exception();
    // Woken (the permit was taken for us by wake_up_next) but cancelled
    // before we could use it: give the permit back.
    if (fut.done() && !fut.cancelled()) ++value_;
  } catch (...) {
    error = std::current_exception();
  }
  waiters_.remove(fut);
  // Newcomers may have queued behind us while permits were free (FIFO):
  // wake as many as there are permits.
  while (value_ > 0) {
    if (!wake_up_next()) break;
  }
  if (error) std::rethrow_exception(error);
}

void Semaphore::release() {
  ++value_;
  wake_up_next();
}

bool Semaphore::wake_up_next() {
  for (size_t i = 0; i < waiters_.size(); ++i) {
    Future<void>& fut = waiters_[i];
    if (!fut.done()) {
      // The permit is handed over now, so a newcomer cannot take it first.
      --value_;
      fut.set_result();
      return true;
    }
  }
  return false;
}

void BoundedSemaphore::release() {
  if (value_ >= bound_value_) {
    throw std::invalid_argument("BoundedSemaphore released too many times");
  }
  Semaphore::release();
}

// ---------------------------------------------------------------------------
// Barrier

Barrier::Barrier(int parties) : parties_(parties) {
  if (parties < 1) throw std::invalid_argument("parties must be >= 1");
}

Coro<int> Barrier::wait() {
  co_await cond_.acquire();
  // Condition::wait() holds the lock again whenever it returns or throws, so
  // the release below is always balanced.
  std::exception_ptr error;
  int index = 0;
  try {
    co_await block();  // while the barrier drains or resets
    index = count_++;
    try {
      if (index + 1 == parties_) {
        // The last to arrive releases the others.
        state_ = State::kDraining;
        cond_.notify_all();
      } else {
        co_await wait_released();
      }
    } catch (...) {
      error = std::current_exception();
    }
    --count_;
    exit();
  } catch (...) {
    error = std::current_exception();
  }
  cond_.release();
  if (error) std::rethrow_exception(error);
  co_return index;
}

Coro<void> Barrier::block() {
  co_await cond_.wait_for(
      [this] { return state_ != State::kDraining && state_ != State::kResetting; });
  if (state_ == State::kBroken) throw BrokenBarrierError("Barrier aborted");
}

Coro<void> Barrier::wait_released() {
  co_await cond_.wait_for([this] { return state_ != State::kFilling; });
  if (state_ == State::kBroken || state_ == State::kResetting) {
    throw BrokenBarrierError("Abort or reset of barrier");
  }
}

void Barrier::exit() {
  // The last task out of a draining or resetting barrier opens it for the
  // next round.
  if (count_ == 0) {
    if (state_ == State::kResetting || state_ == State::kDraining) state_ = State::kFilling;
    cond_.notify_all();
  }
}

Coro<void> Barrier::reset() {
  co_await cond_.acquire();
  if (count_ > 0) {
    // Waiters see the reset and leave with BrokenBarrierError; the last
    // one out refills the barrier.
    state_ = State::kResetting;
  } else {
    state_ = State::kFilling;
  }
  cond_.notify_all();
  cond_.release();
}

Coro<void> Barrier::abort() {
  co_await cond_.acquire();
  state_ = State::kBroken;
  cond_.notify_all();
  cond_.release();
}

}  // namespace asyncio
