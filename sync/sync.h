// //sync: asyncio's synchronization primitives (asyncio/locks.py, 3.12).
//
//   asyncio::Lock lock;
//   co_await lock.acquire();
//   ... critical section ...
//   lock.release();
//
// Python's `async with lock:` is `auto held = co_await lock.scoped();` here
// (also for Semaphore, BoundedSemaphore and Condition): the Held guard
// releases when it goes out of scope, so an exception between acquire and
// release cannot leave later waiters stuck. C++ has no `async with`, and
// only the acquiring half needs to wait, so a guard object fits.
//
// None of them is thread-safe: they coordinate tasks of one event loop. Each
// binds to the running loop the first time it has to make a task wait, and
// throws std::runtime_error if later used from another loop. Waiting is fair:
// waiters are served in the order they started waiting. The objects are
// neither copyable nor movable (waiting tasks refer to them).
#pragma once

#include <exception>
#include <stdexcept>
#include <string>
#include <utility>

#include "futures/futures.h"

namespace asyncio {

namespace sync_internal {
// To the running loop's exception handler (or stderr without a loop).
void report_release_error(std::exception_ptr error) noexcept;
}  // namespace sync_internal

// What `async with primitive:` holds: a Lock, a Condition's lock or a
// Semaphore permit, released when the guard is destroyed (or by release(),
// to leave early). Movable, not copyable; an empty (moved-from) guard does
// nothing. If the primitive was released behind the guard's back, the error
// of that second release goes to the running loop's exception handler, as a
// destructor cannot throw.
template <class Primitive>
class [[nodiscard]] Held {
 public:
  explicit Held(Primitive& primitive) noexcept : primitive_(&primitive) {}
  Held(Held&& other) noexcept : primitive_(std::exchange(other.primitive_, nullptr)) {}
  Held& operator=(Held&& other) noexcept {
    if (this != &other) {
      release_quietly();
      primitive_ = std::exchange(other.primitive_, nullptr);
    }
    return *this;
  }
  ~Held() { release_quietly(); }

  // Whether the guard still holds the primitive.
  explicit operator bool() const noexcept { return primitive_ != nullptr; }
  // Releases now (the end of the `async with` block); throws as the
  // primitive's release() does.
  void release() { std::exchange(primitive_, nullptr)->release(); }

 private:
  void release_quietly() noexcept {
    if (primitive_ == nullptr) return;
    try {
      release();
    } catch (...) {
      sync_internal::report_release_error(std::current_exception());
    }
  }

  Primitive* primitive_;
};

// A mutex for tasks, not owned by the task that acquired it: any task may
// release it. Fair: acquire() is served first come, first served.
class Lock {
 public:
  Lock() = default;
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

  // Waits until the lock is free and takes it.
  Coro<void> acquire();
  // `async with lock:` acquires, and the guard releases at the end of its
  // scope. Cancelled while waiting: nothing is held.
  Coro<Held<Lock>> scoped();
  // Frees the lock and lets the first waiter take it; throws
  // std::runtime_error("Lock is not acquired.") if it is not locked.
  void release();
  bool locked() const { return locked_; }

 private:
  void wake_up_first();

  WaiterQueue waiters_;
  LoopBinding loop_;
  bool locked_ = false;
};

// A flag that tasks can wait for.
class Event {
 public:
  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  // Returns at once if the flag is set, else waits until set() is called.
  Coro<void> wait();
  // Sets the flag and wakes every waiter.
  void set();
  void clear() { value_ = false; }
  bool is_set() const { return value_; }

 private:
  WaiterQueue waiters_;
  LoopBinding loop_;
  bool value_ = false;
};

// A condition variable over a Lock (its own, or one that is shared).
class Condition {
 public:
  // With nullptr the condition makes its own lock; otherwise `lock` must
  // outlive it.
  explicit Condition(Lock* lock = nullptr) : lock_(lock != nullptr ? lock : &own_lock_) {}
  Condition(const Condition&) = delete;
  Condition& operator=(const Condition&) = delete;

  Coro<void> acquire() { return lock_->acquire(); }
  // `async with cond:` holds the lock for the guard's scope; wait() may be
  // called inside it.
  Coro<Held<Condition>> scoped();
  void release() { lock_->release(); }
  bool locked() const { return lock_->locked(); }

  // Releases the lock, waits for notify() and takes the lock again before
  // returning or throwing — even when cancelled. May wake spuriously.
  // Throws std::runtime_error if the lock is not held.
  Coro<void> wait();
  // Waits until `pred()` is true (checked with the lock held).
  template <class P>
  Coro<void> wait_for(P pred) {
    while (!pred()) co_await wait();
  }
  // Wakes up to `n` waiters, oldest first; throws std::runtime_error if the
  // lock is not held. The woken tasks return once they get the lock.
  void notify(int n = 1);
  void notify_all();

 private:
  void notify_waiters(size_t n);

  Lock own_lock_;
  Lock* lock_;
  WaiterQueue waiters_;
  LoopBinding loop_;
};

// A counter of permits: acquire() takes one, waiting while there are none;
// release() gives one back. Fair: a newcomer does not overtake waiters.
class Semaphore {
 public:
  // Throws std::invalid_argument if `value` < 0.
  explicit Semaphore(int value = 1);
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;
  virtual ~Semaphore() = default;

  Coro<void> acquire();
  // `async with sem:` takes a permit for the guard's scope (a
  // BoundedSemaphore's release() is the one the guard calls).
  Coro<Held<Semaphore>> scoped();
  virtual void release();
  // True if acquire() would have to wait.
  bool locked() const;

 protected:
  int value_;

 private:
  bool wake_up_next();

  WaiterQueue waiters_;
  LoopBinding loop_;
};

// A Semaphore whose release() throws std::invalid_argument instead of
// raising the counter above its initial value.
class BoundedSemaphore : public Semaphore {
 public:
  explicit BoundedSemaphore(int value = 1) : Semaphore(value), bound_value_(value) {}
  void release() override;

 private:
  int bound_value_;
};

// Barrier::wait() on a barrier that is broken (abort()) or reset while the
// task waited.
class BrokenBarrierError : public std::runtime_error {
 public:
  explicit BrokenBarrierError(const std::string& what = "Barrier aborted")
      : std::runtime_error(what) {}
};

// Lets `parties` tasks meet: each wait() blocks until that many are waiting,
// then all return together. Reusable (asyncio 3.11+ semantics).
class Barrier {
 public:
  // Throws std::invalid_argument if `parties` < 1.
  explicit Barrier(int parties);
  Barrier(const Barrier&) = delete;
  Barrier& operator=(const Barrier&) = delete;

  // Returns the arrival index, 0 .. parties() - 1, once all have arrived.
  // Throws BrokenBarrierError if the barrier is or gets broken or reset.
  Coro<int> wait();
  // Back to the empty state; tasks waiting get BrokenBarrierError.
  Coro<void> reset();
  // Breaks the barrier: current and future wait() calls throw
  // BrokenBarrierError until reset().
  Coro<void> abort();

  int parties() const { return parties_; }
  // Tasks waiting for the barrier to fill (0 while it drains).
  int n_waiting() const { return state_ == State::kFilling ? count_ : 0; }
  bool broken() const { return state_ == State::kBroken; }

 private:
  enum class State { kFilling, kDraining, kResetting, kBroken };

  Coro<void> block();
  Coro<void> wait_released();
  void exit();

  Condition cond_;
  int parties_;
  int count_ = 0;  // tasks inside wait()
  State state_ = State::kFilling;
};

}  // namespace asyncio
