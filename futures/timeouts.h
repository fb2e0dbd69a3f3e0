// timeout, timeout_at and Timeout: one deadline over a block of awaits, as
// asyncio.timeout (CPython 3.13's Lib/asyncio/timeouts.py).
//
//   Python                                    C++
//   async with asyncio.timeout(5):            co_await asyncio::timeout(5s, body());
//       await body()
//   async with asyncio.timeout(None) as cm:   co_await asyncio::timeout(std::nullopt,
//       cm.reschedule(loop.time() + 1)            [&](asyncio::Timeout& cm) -> Coro<void> {
//       await body()                                cm.reschedule(loop.time() + 1);
//                                                   co_await body();
//                                                 });
//   async with asyncio.timeout_at(when):      co_await asyncio::timeout_at(when, body());
//   cm = asyncio.Timeout(when)                asyncio::Timeout cm(when);
//   async with cm: await body()               co_await cm.run(body());
//
// C++ has no `async with`, and a destructor cannot co_await or tell an
// exception from cancellation, so the block is passed in as its body: an
// awaitable (Coro, Future, Task), or a callable returning one, called with
// the Timeout (to reschedule it or ask expired()) or with nothing. The
// callable is kept alive until its coroutine finishes, so a capturing lambda
// is safe. The result is the body's.
//
// When the deadline passes, the task running the block is cancelled; the
// CancelledError that comes out of the body is turned into TimeoutError at
// the block's boundary. Nested timeouts count with cancelling()/uncancel():
// a block only claims a cancellation as its own timeout when no one else
// asked for one meanwhile, so a cancel from outside the task always gets
// through as CancelledError, even when the deadline passed at the same time.
#pragma once

#include <cmath>
#include <concepts>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "futures/combinators.h"
#include "futures/coro.h"
#include "futures/future.h"
#include "futures/internal/core.h"
#include "futures/task.h"
#include "loop/loop.h"

namespace asyncio {

class Timeout;

namespace futures_internal {

// What a timeout's body produces once invoked: the body itself if it is an
// awaitable, else what calling it returns.
template <class Body>
decltype(auto) invoke_timeout_body(Body& body, Timeout& cm);

template <class Body>
using TimeoutBodyAwaitable = std::remove_cvref_t<decltype(invoke_timeout_body(
    std::declval<Body&>(), std::declval<Timeout&>()))>;

}  // namespace futures_internal

// asyncio.Timeout: a deadline (loop.time() clock, nullopt for never) for the
// body given to run(). Not copyable or movable: its timer points at it.
class Timeout {
 public:
  // asyncio.Timeout(when). A NaN `when` throws std::invalid_argument.
  explicit Timeout(std::optional<double> when) : when_(when) {
    if (when) futures_internal::check_timeout_not_nan(*when, "Timeout");
  }
  Timeout(const Timeout&) = delete;
  Timeout& operator=(const Timeout&) = delete;
  ~Timeout() { timer_.cancel(); }

  // The deadline, or nullopt if there is none.
  std::optional<double> when() const noexcept { return when_; }

  // Moves the deadline (nullopt: no deadline); a deadline in the past expires
  // at the next loop iteration. Only while the body runs: otherwise
  // std::runtime_error, as Python's RuntimeError.
  void reschedule(std::optional<double> when);

  // Whether the deadline passed while the body ran (the body may have seen
  // the cancellation and finished anyway).
  bool expired() const noexcept { return state_ == State::kExpiring || state_ == State::kExpired; }

  // repr(cm): "<Timeout [active] when=12.5>", "<Timeout [expired]>", ...
  std::string repr() const;

  // `async with cm: ...`: runs `body` under this deadline, once. Throws
  // std::runtime_error if entered before or awaited outside a task.
  template <class Body>
  Coro<await_result_t<futures_internal::TimeoutBodyAwaitable<Body>>> run(Body body);

 private:
  enum class State { kCreated, kEntered, kExpiring, kExpired, kExited };

  void enter();
  // __aexit__; `cancelled`: the body ended with CancelledError. Throws
  // TimeoutError when that cancellation was this timeout's own.
  void exit(bool cancelled);
  void on_timeout();

  std::optional<double> when_;
  Handle timer_;
  futures_internal::TaskCore* task_ = nullptr;
  int cancelling_at_enter_ = 0;
  State state_ = State::kCreated;
};

// asyncio.timeout(delay): runs `body` with a deadline `delay` from now (when
// the block starts). nullopt or +infinity: no deadline, yet reschedule() can
// set one; zero or less: expires at the first suspension. NaN throws
// std::invalid_argument.
template <class Body>
Coro<await_result_t<futures_internal::TimeoutBodyAwaitable<Body>>> timeout(OptionalTimeout delay,
                                                                           Body body);

// asyncio.timeout_at(when): the same with an absolute deadline on the
// loop.time() clock; nullopt: no deadline.
template <class Body>
Coro<await_result_t<futures_internal::TimeoutBodyAwaitable<Body>>> timeout_at(
    std::optional<double> when, Body body);

// ---------------------------------------------------------------------------
// Implementation details

template <class Body>
decltype(auto) futures_internal::invoke_timeout_body(Body& body, Timeout& cm) {
  if constexpr (Awaitable<Body>) {
    return std::move(body);
  } else if constexpr (std::invocable<Body&, Timeout&>) {
    return body(cm);
  } else {
    static_assert(std::invocable<Body&>,
                  "a timeout's body is an awaitable or a callable returning one");
    return body();
  }
}

namespace futures_internal {
// A Coro body refused before it runs is closed, not reported as never
// awaited: in Python the body's coroutine would not have been made yet.
template <class Body>
void close_refused(Body& body) {
  if constexpr (iscoroutine<Body>) body.close();
}
}  // namespace futures_internal

template <class Body>
Coro<await_result_t<futures_internal::TimeoutBodyAwaitable<Body>>> Timeout::run(Body body) {
  using R = await_result_t<futures_internal::TimeoutBodyAwaitable<Body>>;
  try {
    enter();
  } catch (...) {
    futures_internal::close_refused(body);
    throw;
  }
  std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> result{};
  std::exception_ptr failure;
  bool cancelled = false;
  try {
    // Awaited in place: a Coro body runs inline in this task, as in Python.
    auto awaitable = futures_internal::invoke_timeout_body(body, *this);
    if constexpr (std::is_void_v<R>) {
      co_await std::move(awaitable);
    } else {
      result.emplace(co_await std::move(awaitable));
    }
  } catch (const CancelledError&) {
    cancelled = true;
    failure = std::current_exception();
  } catch (...) {
    failure = std::current_exception();
  }
  exit(cancelled);  // throws TimeoutError when the cancellation was ours
  if (failure) std::rethrow_exception(failure);
  if constexpr (!std::is_void_v<R>) co_return std::move(*result);
}

template <class Body>
Coro<await_result_t<futures_internal::TimeoutBodyAwaitable<Body>>> timeout_at(
    std::optional<double> when, Body body) {
  Timeout cm(when);
  co_return co_await cm.run(std::move(body));
}

template <class Body>
Coro<await_result_t<futures_internal::TimeoutBodyAwaitable<Body>>> timeout(OptionalTimeout delay,
                                                                           Body body) {
  std::optional<double> when;
  if (delay) {
    const double seconds = delay->count();
    if (std::isnan(seconds)) futures_internal::close_refused(body);
    futures_internal::check_timeout_not_nan(seconds, "timeout");
    if (!(std::isinf(seconds) && seconds > 0)) when = get_running_loop().time() + seconds;
  }
  co_return co_await timeout_at(when, std::move(body));
}

}  // namespace asyncio
