// Future<T>, asyncio's loop-affine future, and the exceptions of //futures.
//
//   asyncio::Future<int> f = asyncio::create_future<int>(loop);
//   loop.call_soon([f]() mutable { f.set_result(42); });
//   int v = co_await f;  // in a task on `loop`
//
// A Future is a copyable handle; its copies share one result. It belongs to
// its loop's thread: for a future other threads can complete, see
// concurrent::Future in //executors.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "futures/internal/core.h"
#include "loop/loop.h"

namespace asyncio {

// ---------------------------------------------------------------------------
// Errors

// The task or future was cancelled. Derives from std::exception only, so that
// `catch (const std::runtime_error&)` does not swallow cancellation.
class CancelledError : public std::exception {
 public:
  explicit CancelledError(std::string message = "")
      : message_(std::make_shared<const std::string>(std::move(message))) {}
  const char* what() const noexcept override {
    return message_->empty() ? "cancelled" : message_->c_str();
  }
  // The message given to cancel(), possibly empty.
  const std::string& message() const noexcept { return *message_; }

 private:
  std::shared_ptr<const std::string> message_;
};

// An operation ran out of time (wait_for, as_completed, a concurrent
// future's result(timeout)).
class TimeoutError : public std::runtime_error {
 public:
  explicit TimeoutError(const std::string& what = "timed out") : std::runtime_error(what) {}
};

// The future's state does not allow the call: result() before it is done,
// set_result() on one that is done already.
class InvalidStateError : public std::logic_error {
 public:
  explicit InvalidStateError(const std::string& what) : std::logic_error(what) {}
};

// Several exceptions at once (TaskGroup): as Python's ExceptionGroup.
class ExceptionGroup : public std::exception {
 public:
  ExceptionGroup(std::string message, std::vector<std::exception_ptr> exceptions);
  const char* what() const noexcept override { return what_->c_str(); }
  const std::string& message() const noexcept { return *message_; }
  const std::vector<std::exception_ptr>& exceptions() const noexcept { return *exceptions_; }

 private:
  std::shared_ptr<const std::string> message_;
  std::shared_ptr<const std::string> what_;
  std::shared_ptr<const std::vector<std::exception_ptr>> exceptions_;
};

// Identifies a callback added with Future::add_done_callback.
using CallbackId = uint64_t;

// ---------------------------------------------------------------------------
// Future<T>: a copyable handle to a shared, loop-affine result.
template <class T = void>
class Future {
 public:
  using value_type = T;

  Future() = default;
  Future(const Future& other) noexcept : state_(other.state_) {
    if (state_ != nullptr) state_->add_ref();
  }
  Future(Future&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  Future& operator=(Future other) noexcept {
    std::swap(state_, other.state_);
    return *this;
  }
  ~Future() {
    if (state_ != nullptr) state_->release();
  }

  bool valid() const noexcept { return state_ != nullptr; }
  bool done() const { return state()->done(); }
  bool cancelled() const { return state()->cancelled(); }

  // Throws InvalidStateError if not done, CancelledError if cancelled, or the
  // stored exception.
  T result() const {
    state()->rethrow_if_not_successful();
    if constexpr (!std::is_void_v<T>) return *futures_internal::value_slot<T>(state_).value;
  }
  std::exception_ptr exception() const { return state()->exception(); }

  template <class U = T, class = std::enable_if_t<!std::is_void_v<U>>>
  void set_result(U value) {
    auto* s = state();
    s->check_pending();
    futures_internal::value_slot<T>(s).value.emplace(std::move(value));
    s->finish_checked();
  }
  template <class U = T, class = std::enable_if_t<std::is_void_v<U>>>
  void set_result() {
    state()->mark_finished();
  }
  void set_exception(std::exception_ptr exc) { state()->set_exception(std::move(exc)); }
  bool cancel(std::string message = "") { return state()->cancel(message); }

  // Schedules `cb(future)` with call_soon when the future is done.
  CallbackId add_done_callback(absl::AnyInvocable<void(Future<T>&)> cb);
  // Removes every callback added with this id that has not been scheduled;
  // returns how many.
  size_t remove_done_callback(CallbackId id);

  EventLoop& get_loop() const { return state()->loop(); }

  futures_internal::FutureAwaiter<T> operator co_await() const noexcept {
    return futures_internal::FutureAwaiter<T>(state_);
  }

  friend bool operator==(const Future& a, const Future& b) { return a.state_ == b.state_; }

 protected:
  friend struct futures_internal::Access;
  // Adopts one reference to `state`.
  explicit Future(futures_internal::FutureStateBase* state) noexcept : state_(state) {}
  futures_internal::FutureStateBase* state() const {
    if (state_ == nullptr) throw InvalidStateError("empty Future");
    return state_;
  }
  futures_internal::FutureStateBase* state_ = nullptr;
};

// A new pending Future on `loop` (loop.create_future()).
template <class T = void>
Future<T> create_future(EventLoop& loop) {
  return futures_internal::Access::adopt_future<T>(
      new futures_internal::PlainFutureState<T>(&loop));
}

// ---------------------------------------------------------------------------
// Implementation details

namespace futures_internal {

// A done-callback added with add_done_callback: runs on the loop via the
// ready queue, one iteration after completion, as in asyncio.
template <class T>
struct UserCallback final : CallbackNode, Runnable, Pooled {
  UserCallback(absl::AnyInvocable<void(Future<T>&)> f, CallbackId i)
      : CallbackNode(&UserCallback::on_fire),
        Runnable(&UserCallback::on_run),
        cb(std::move(f)),
        id(i) {}
  static void on_fire(CallbackNode* self, FutureStateBase* future) {
    auto* node = static_cast<UserCallback*>(self);
    if (future == nullptr) {
      delete node;
      return;
    }
    future->add_ref();
    node->future = Access::adopt_future<T>(future);
    future->loop().schedule(*node);
  }
  static void on_run(Runnable* self, bool discard) {
    auto* node = static_cast<UserCallback*>(self);
    if (!discard) {
      try {
        node->cb(node->future);
      } catch (...) {
        node->future.get_loop().call_exception_handler(
            {"Exception in callback of a Future", std::current_exception(), "", ""});
      }
    }
    delete node;
  }
  absl::AnyInvocable<void(Future<T>&)> cb;
  CallbackId id;
  Future<T> future;
};

CallbackId next_callback_id() noexcept;

}  // namespace futures_internal

template <class T>
CallbackId Future<T>::add_done_callback(absl::AnyInvocable<void(Future<T>&)> cb) {
  CallbackId id = futures_internal::next_callback_id();
  state()->add_callback(new futures_internal::UserCallback<T>(std::move(cb), id));
  return id;
}

template <class T>
size_t Future<T>::remove_done_callback(CallbackId id) {
  return state()->remove_callbacks_if([id](futures_internal::CallbackNode* n) {
    return n->fire == &futures_internal::UserCallback<T>::on_fire &&
           static_cast<futures_internal::UserCallback<T>*>(n)->id == id;
  });
}

}  // namespace asyncio
