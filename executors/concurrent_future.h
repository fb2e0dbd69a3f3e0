// concurrent::Future<T>: the thread-safe future of concurrent.futures.
//
// A copyable handle to a shared state guarded by a mutex and a condition
// variable. Any thread may wait on it (result(), exception()) and any thread
// may complete it; done-callbacks run in the thread that completes it (or at
// once, in the caller's thread, when added to a future that is already done),
// as in Python.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "futures/future.h"

namespace asyncio::concurrent {

namespace executors_internal {
template <class T>
class FutureCore;
}  // namespace executors_internal

// A thread-safe future, as concurrent.futures.Future. Default-constructed
// futures are new and pending; copies share the state.
template <class T = void>
class Future {
  using Core = executors_internal::FutureCore<T>;

 public:
  using value_type = T;

  Future() : core_(std::make_shared<Core>()) {}

  // Blocks until done (or `timeout`: TimeoutError) and returns the result;
  // throws the stored exception, or CancelledError if cancelled.
  T result(std::optional<std::chrono::nanoseconds> timeout = std::nullopt) const {
    return core_->wait_result(timeout);
  }
  template <class Rep, class Period>
  T result(std::chrono::duration<Rep, Period> timeout) const {
    return result(std::optional<std::chrono::nanoseconds>(to_nanos(timeout)));
  }
  // Blocks as result() does; returns the exception (null on success), throws
  // CancelledError if cancelled.
  std::exception_ptr exception(
      std::optional<std::chrono::nanoseconds> timeout = std::nullopt) const {
    return core_->wait_exception(timeout);
  }
  template <class Rep, class Period>
  std::exception_ptr exception(std::chrono::duration<Rep, Period> timeout) const {
    return exception(std::optional<std::chrono::nanoseconds>(to_nanos(timeout)));
  }

  bool done() const { return core_->done(); }
  bool cancelled() const { return core_->cancelled(); }
  bool running() const { return core_->running(); }
  // Cancels unless running or finished (returns false then); runs the
  // callbacks in this thread.
  bool cancel() { return core_->cancel(core_); }

  // `cb(future)` runs in the thread that completes the future, or at once in
  // this thread if it is done already. `future` is the callback's own handle:
  // it may move it away (to post it to another thread, say). Exceptions it
  // throws are reported on stderr and ignored.
  void add_done_callback(absl::AnyInvocable<void(Future<T>&)> cb) {
    core_->add_done_callback(core_, std::move(cb));
  }

  // --- for executors (as in Python, public) ---------------------------------
  // PENDING -> RUNNING and true; CANCELLED -> false (the work must not run);
  // std::runtime_error in any other state.
  bool set_running_or_notify_cancel() { return core_->set_running_or_notify_cancel(); }
  // InvalidStateError if done.
  template <class U = T, class = std::enable_if_t<!std::is_void_v<U>>>
  void set_result(U value) {
    if (!core_->try_finish(core_, nullptr, std::move(value))) throw_done();
  }
  template <class U = T, class = std::enable_if_t<std::is_void_v<U>>>
  void set_result() {
    if (!core_->try_finish(core_, nullptr)) throw_done();
  }
  void set_exception(std::exception_ptr exc) {
    if (!exc) throw std::invalid_argument("set_exception: null exception");
    if (!core_->try_finish(core_, std::move(exc))) throw_done();
  }
  // As set_result / set_exception, but a future that is done already (a
  // racing cancel()) is left alone: returns false.
  template <class... V>
  bool try_set_result(V&&... value) {
    return core_->try_finish(core_, nullptr, std::forward<V>(value)...);
  }
  bool try_set_exception(std::exception_ptr exc) {
    return core_->try_finish(core_, std::move(exc));
  }
  // As try_set_result / try_set_exception, for a thread that completes the
  // future and is done with it: this handle's reference goes to the
  // done-callbacks and the handle is left empty. Once a callback has handed
  // the future to another thread, the completing thread holds no reference
  // to the outcome, so the last one (and the free of an exception) is never
  // dropped here behind the reader's back.
  template <class... V>
  bool try_set_result_and_release(V&&... value) && {
    Core& core = *core_;
    return core.try_finish(std::move(core_), nullptr, std::forward<V>(value)...);
  }
  bool try_set_exception_and_release(std::exception_ptr exc) && {
    Core& core = *core_;
    return core.try_finish(std::move(core_), std::move(exc));
  }

  friend bool operator==(const Future& a, const Future& b) { return a.core_ == b.core_; }

 private:
  friend Core;  // hands each done-callback a handle of its own
  explicit Future(std::shared_ptr<Core> core) noexcept : core_(std::move(core)) {}

  template <class Rep, class Period>
  static std::chrono::nanoseconds to_nanos(std::chrono::duration<Rep, Period> d) {
    if (d <= d.zero()) return std::chrono::nanoseconds(0);
    // Saturate huge timeouts (hours(1'000'000'000) does not fit).
    using Big = std::chrono::duration<double, std::nano>;
    if (Big(d).count() >= 9e18) return std::chrono::nanoseconds(std::chrono::hours(24 * 365 * 100));
    return std::chrono::ceil<std::chrono::nanoseconds>(d);
  }
  [[noreturn]] static void throw_done() { throw InvalidStateError("concurrent Future is done"); }

  std::shared_ptr<Core> core_;
};
// ---------------------------------------------------------------------------
// Implementation details

namespace executors_internal {

// concurrent.futures' states; CANCELLED_AND_NOTIFIED is CANCELLED once a
// worker has seen it (set_running_or_notify_cancel).
enum class State : uint8_t { kPending, kRunning, kCancelled, kCancelledAndNotified, kFinished };

// Reports an exception thrown by a done-callback (Python logs it and goes on).
void report_callback_exception(std::exception_ptr exc) noexcept;

// The part of the shared state that does not depend on T.
class FutureCoreBase {
 public:
  FutureCoreBase() = default;
  FutureCoreBase(const FutureCoreBase&) = delete;
  FutureCoreBase& operator=(const FutureCoreBase&) = delete;

  bool done() const {
    std::lock_guard<std::mutex> lock(mu_);
    return is_done();
  }
  bool cancelled() const {
    std::lock_guard<std::mutex> lock(mu_);
    return is_cancelled();
  }
  bool running() const {
    std::lock_guard<std::mutex> lock(mu_);
    return state_ == State::kRunning;
  }

 protected:
  bool is_cancelled() const {
    return state_ == State::kCancelled || state_ == State::kCancelledAndNotified;
  }
  bool is_done() const { return is_cancelled() || state_ == State::kFinished; }

  // Blocks until done or until `timeout` passes; throws TimeoutError then.
  // Called with `lock` held.
  void wait_done(std::unique_lock<std::mutex>& lock,
                 const std::optional<std::chrono::nanoseconds>& timeout) {
    if (is_done()) return;
    if (!timeout) {
      cv_.wait(lock, [this] { return is_done(); });
      return;
    }
    auto deadline = std::chrono::steady_clock::now() + *timeout;
    if (!cv_.wait_until(lock, deadline, [this] { return is_done(); })) throw TimeoutError();
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  State state_ = State::kPending;
  std::exception_ptr exception_;
};

template <class T>
struct ValueHolder {
  std::optional<T> value;
};
template <>
struct ValueHolder<void> {};

template <class T>
class FutureCore final : public FutureCoreBase, public ValueHolder<T> {
 public:
  using Callback = absl::AnyInvocable<void(Future<T>&)>;

  // cancel(): false if running or finished.
  bool cancel(const std::shared_ptr<FutureCore>& self) {
    std::vector<Callback> callbacks;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (state_ == State::kRunning || state_ == State::kFinished) return false;
      if (is_cancelled()) return true;
      state_ = State::kCancelled;
      exception_ = std::make_exception_ptr(CancelledError());
      callbacks.swap(callbacks_);
      cv_.notify_all();
    }
    invoke(self, callbacks);
    return true;
  }

  bool set_running_or_notify_cancel() {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ == State::kCancelled) {
      state_ = State::kCancelledAndNotified;
      return false;
    }
    if (state_ == State::kPending) {
      state_ = State::kRunning;
      return true;
    }
    throw std::runtime_error("Future in unexpected state");
  }

  // Completes the future unless it is done already; returns false then.
  // `self` is the caller's reference, handed on to the callbacks: a caller
  // that moves its own in keeps none once the callbacks have run.
  template <class... V>
  bool try_finish(std::shared_ptr<FutureCore> self, std::exception_ptr exc, V&&... value) {
    std::vector<Callback> callbacks;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (is_done()) return false;
      if (exc) {
        exception_ = std::move(exc);
      } else if constexpr (sizeof...(V) > 0) {
        this->value.emplace(std::forward<V>(value)...);
      }
      state_ = State::kFinished;
      callbacks.swap(callbacks_);
      cv_.notify_all();
    }
    invoke(std::move(self), callbacks);
    return true;
  }

  void add_done_callback(const std::shared_ptr<FutureCore>& self, Callback cb) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!is_done()) {
        callbacks_.push_back(std::move(cb));
        return;
      }
    }
    std::vector<Callback> one;
    one.push_back(std::move(cb));
    invoke(self, one);
  }

  // Waits, then returns the stored exception (CancelledError if cancelled).
  std::exception_ptr wait_exception(const std::optional<std::chrono::nanoseconds>& timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    wait_done(lock, timeout);
    if (is_cancelled()) std::rethrow_exception(exception_);
    return exception_;
  }

  // Waits, then returns a copy of the value or throws.
  T wait_result(const std::optional<std::chrono::nanoseconds>& timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    wait_done(lock, timeout);
    if (exception_) std::rethrow_exception(exception_);
    if constexpr (!std::is_void_v<T>) return *this->value;
  }

 private:
  static void invoke(std::shared_ptr<FutureCore> self, std::vector<Callback>& callbacks);

  std::vector<Callback> callbacks_;
};

}  // namespace executors_internal

template <class T>
void executors_internal::FutureCore<T>::invoke(std::shared_ptr<FutureCore> self,
                                               std::vector<Callback>& callbacks) {
  for (size_t i = 0; i < callbacks.size(); ++i) {
    // Each callback gets a handle of its own, which it may move away; the
    // last one gets `self`, so that a bridge posting the future to another
    // thread leaves this thread no reference to it.
    Future<T> handle = i + 1 < callbacks.size() ? Future<T>(self) : Future<T>(std::move(self));
    std::exception_ptr failure;
    try {
      callbacks[i](handle);
    } catch (...) {
      failure = std::current_exception();
    }
    if (failure) report_callback_exception(std::move(failure));
  }
}

}  // namespace asyncio::concurrent
