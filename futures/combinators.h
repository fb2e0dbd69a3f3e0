// gather, wait, wait_for, shield (asyncio 3.12 semantics) and as_completed
// (3.13: with next(), the async iteration that gives the futures themselves).
#pragma once

#include <chrono>
#include <cmath>
#include <deque>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "futures/coro.h"
#include "futures/future.h"
#include "futures/internal/core.h"
#include "futures/task.h"
#include "loop/loop.h"

namespace asyncio {

template <class A>
concept Awaitable = iscoroutine<A> || isfuture<A>;

// gather(return_exceptions, ...): failures become values instead of
// propagating.
struct ReturnExceptions {};
inline constexpr ReturnExceptions return_exceptions{};

// One result of gather(return_exceptions, ...): a value or an exception.
template <class R>
class Outcome {
 public:
  explicit Outcome(R value) : value_(std::move(value)) {}
  explicit Outcome(std::exception_ptr exc) : exception_(std::move(exc)) {}
  bool has_value() const noexcept { return exception_ == nullptr; }
  // The value; throws the exception if there is one.
  R& value() & {
    if (exception_) std::rethrow_exception(exception_);
    return *value_;
  }
  const R& value() const& {
    if (exception_) std::rethrow_exception(exception_);
    return *value_;
  }
  std::exception_ptr exception() const noexcept { return exception_; }

 private:
  std::optional<R> value_;
  std::exception_ptr exception_;
};

template <>
class Outcome<void> {
 public:
  Outcome() = default;
  explicit Outcome(std::exception_ptr exc) : exception_(std::move(exc)) {}
  bool has_value() const noexcept { return exception_ == nullptr; }
  void value() const {
    if (exception_) std::rethrow_exception(exception_);
  }
  std::exception_ptr exception() const noexcept { return exception_; }

 private:
  std::exception_ptr exception_;
};

enum class ReturnWhen { FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED };

// An optional timeout in (fractional) seconds; any std::chrono::duration
// converts to it.
using OptionalTimeout = std::optional<std::chrono::duration<double>>;

namespace futures_internal {

// NaN compares false with everything: as a timeout it would never expire, or
// break the timer heap's order.
inline void check_timeout_not_nan(double seconds, const char* function) {
  if (std::isnan(seconds)) throw std::invalid_argument(std::string(function) + ": timeout is NaN");
}

// void results become std::monostate in gather's tuple.
template <class R>
using GatherValue = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

template <class F>
auto result_or_monostate(const F& future) {
  if constexpr (std::is_void_v<typename F::value_type>) {
    future.result();
    return std::monostate{};
  } else {
    return future.result();
  }
}

template <class F>
auto outcome_of(const F& future) {
  using R = typename F::value_type;
  FutureStateBase* state = Access::state(future);
  if (state->cancelled()) return Outcome<R>(state->stored_exception());
  if (std::exception_ptr exc = future.exception()) return Outcome<R>(exc);
  if constexpr (std::is_void_v<R>) {
    return Outcome<void>();
  } else {
    return Outcome<R>(future.result());
  }
}

// The outer future of gather: completes when the children do (or at the
// first failure without return_exceptions); cancelling it cancels them.
Future<void> gather_children(EventLoop& loop, std::vector<FutureStateBase*> children,
                             bool return_exceptions);

// Waits (on the running loop) as asyncio.wait's _wait does.
Coro<void> wait_children(std::vector<FutureStateBase*> children, std::optional<double> timeout,
                         ReturnWhen when);

template <class F>
std::vector<FutureStateBase*> states_of(const std::vector<F>& futures) {
  std::vector<FutureStateBase*> states;
  states.reserve(futures.size());
  for (const F& f : futures) states.push_back(Access::state(f));
  return states;
}

template <class... F>
Coro<std::tuple<GatherValue<typename F::value_type>...>> gather_tuple(std::tuple<F...> futures) {
  if constexpr (sizeof...(F) > 0) {
    std::vector<FutureStateBase*> states = std::apply(
        [](auto&... f) { return std::vector<FutureStateBase*>{Access::state(f)...}; }, futures);
    co_await gather_children(get_running_loop(), std::move(states), false);
  }
  co_return std::apply(
      [](auto&... f) {
        return std::tuple<GatherValue<typename F::value_type>...>{result_or_monostate(f)...};
      },
      futures);
}

template <class... F>
Coro<std::tuple<Outcome<typename F::value_type>...>> gather_tuple_outcomes(
    std::tuple<F...> futures) {
  if constexpr (sizeof...(F) > 0) {
    std::vector<FutureStateBase*> states = std::apply(
        [](auto&... f) { return std::vector<FutureStateBase*>{Access::state(f)...}; }, futures);
    co_await gather_children(get_running_loop(), std::move(states), true);
  }
  co_return std::apply(
      [](auto&... f) { return std::tuple<Outcome<typename F::value_type>...>{outcome_of(f)...}; },
      futures);
}

template <class R, class F>
Coro<std::vector<R>> gather_vector(std::vector<F> futures) {
  if (!futures.empty()) {
    co_await gather_children(get_running_loop(), states_of(futures), false);
  }
  std::vector<R> results;
  results.reserve(futures.size());
  for (const F& f : futures) results.push_back(f.result());
  co_return results;
}

template <class F>
Coro<void> gather_vector_void(std::vector<F> futures) {
  if (!futures.empty()) {
    co_await gather_children(get_running_loop(), states_of(futures), false);
  }
  for (const F& f : futures) f.result();
}

template <class R, class F>
Coro<std::vector<Outcome<R>>> gather_vector_outcomes(std::vector<F> futures) {
  if (!futures.empty()) {
    co_await gather_children(get_running_loop(), states_of(futures), true);
  }
  std::vector<Outcome<R>> results;
  results.reserve(futures.size());
  for (const F& f : futures) results.push_back(outcome_of(f));
  co_return results;
}

template <class A>
auto ensure_futures(std::vector<A> awaitables) {
  using F = decltype(ensure_future(std::declval<A>()));
  std::vector<F> futures;
  futures.reserve(awaitables.size());
  for (A& a : awaitables) futures.push_back(ensure_future(std::move(a)));
  return futures;
}

}  // namespace futures_internal

// ---------------------------------------------------------------------------
// gather: runs the awaitables concurrently (coroutines become tasks now, in
// order) and returns their results in order. The first failure propagates
// (the others keep running); cancelling the gather cancels every child.
template <Awaitable... A>
auto gather(A&&... aws) {
  using Tuple = std::tuple<decltype(ensure_future(std::forward<A>(aws)))...>;
  return futures_internal::gather_tuple(Tuple{ensure_future(std::forward<A>(aws))...});
}

template <Awaitable... A>
auto gather(ReturnExceptions, A&&... aws) {
  using Tuple = std::tuple<decltype(ensure_future(std::forward<A>(aws)))...>;
  return futures_internal::gather_tuple_outcomes(Tuple{ensure_future(std::forward<A>(aws))...});
}

// gather over a vector: Coro<std::vector<R>>, or Coro<void> for void results.
template <Awaitable A>
auto gather(std::vector<A> aws) {
  using R = await_result_t<A>;
  auto futures = futures_internal::ensure_futures(std::move(aws));
  if constexpr (std::is_void_v<R>) {
    return futures_internal::gather_vector_void(std::move(futures));
  } else {
    return futures_internal::gather_vector<R>(std::move(futures));
  }
}

template <Awaitable A>
auto gather(ReturnExceptions, std::vector<A> aws) {
  using R = await_result_t<A>;
  return futures_internal::gather_vector_outcomes<R>(
      futures_internal::ensure_futures(std::move(aws)));
}

// ---------------------------------------------------------------------------
// wait: waits until `when` (or the timeout) and returns {done, pending}, in
// the order given. Never raises the tasks' exceptions, never cancels them.
template <class F>
requires isfuture<F> Coro<std::pair<std::vector<F>, std::vector<F>>> wait(
    std::vector<F> futures, OptionalTimeout timeout = {},
    ReturnWhen when = ReturnWhen::ALL_COMPLETED) {
  if (futures.empty()) throw std::invalid_argument("Set of Tasks/Futures is empty.");
  std::optional<double> seconds;
  if (timeout) {
    seconds = timeout->count();
    futures_internal::check_timeout_not_nan(*seconds, "wait");
  }
  co_await futures_internal::wait_children(futures_internal::states_of(futures), seconds, when);
  std::pair<std::vector<F>, std::vector<F>> result;
  for (F& f : futures) (f.done() ? result.first : result.second).push_back(std::move(f));
  co_return result;
}

// ---------------------------------------------------------------------------
// wait_for: awaits `aw` for at most `timeout`; on timeout cancels it, waits
// for the cancellation to finish and throws TimeoutError.
namespace futures_internal {

struct CancelTimerOnExit {
  TimerHandle& timer;
  ~CancelTimerOnExit() { timer.cancel(); }
};

template <class A>
Coro<await_result_t<A>> wait_for_impl(A aw, double timeout) {
  using R = await_result_t<A>;
  if (std::isinf(timeout) && timeout > 0) {  // never expires, as wait_for(aw, None)
    co_return co_await std::move(aw);
  }
  if (timeout <= 0) {
    auto future = ensure_future(std::move(aw));
    if (!future.done()) {
      future.cancel();
      std::vector<decltype(future)> one{future};
      co_await wait(std::move(one));
      try {
        future.result();
      } catch (const CancelledError&) {
        throw TimeoutError();
      }
    }
    co_return future.result();
  }
  TaskCore& task = current_task_core_or_throw();
  const int cancelling_at_enter = task.cancelling();
  bool expired = false;
  TimerHandle timer =
      task.loop().call_later(std::chrono::duration<double>(timeout), [&expired, t = &task] {
        expired = true;
        t->cancel("");
      });
  CancelTimerOnExit guard{timer};
  try {
    if constexpr (std::is_void_v<R>) {
      co_await std::move(aw);
      timer.cancel();
      if (expired) task.uncancel();
      co_return;
    } else {
      R result = co_await std::move(aw);
      timer.cancel();
      if (expired) task.uncancel();
      co_return result;
    }
  } catch (const CancelledError&) {
    timer.cancel();
    // The timeout's own cancellation, and no one else's: that is a timeout.
    if (expired && task.uncancel() <= cancelling_at_enter) throw TimeoutError();
    throw;
  } catch (...) {
    timer.cancel();
    if (expired) task.uncancel();
    throw;
  }
}

}  // namespace futures_internal

// A NaN timeout throws std::invalid_argument (and leaves `aw` alone); +infinity
// never expires; zero or less times out unless `aw` is already done.
template <Awaitable A, class Rep, class Period>
Coro<await_result_t<A>> wait_for(A&& aw, std::chrono::duration<Rep, Period> timeout) {
  const double seconds = std::chrono::duration<double>(timeout).count();
  futures_internal::check_timeout_not_nan(seconds, "wait_for");
  return futures_internal::wait_for_impl<std::remove_cvref_t<A>>(std::forward<A>(aw), seconds);
}

// ---------------------------------------------------------------------------
// shield: the returned future can be cancelled without cancelling `aw`,
// which keeps running; its outcome is passed on unless the outer future was
// cancelled first.
template <Awaitable A>
Future<await_result_t<A>> shield(A&& aw) {
  using R = await_result_t<A>;
  Future<R> inner = ensure_future(std::forward<A>(aw));
  if (inner.done()) return inner;
  Future<R> outer = create_future<R>(inner.get_loop());
  // As 3.14: the task calling shield awaits `inner` (capture_call_graph).
  if (futures_internal::TaskCore* awaiting = futures_internal::current_task_core()) {
    futures_internal::add_awaited_by(futures_internal::Access::state(inner), awaiting);
  }
  CallbackId inner_cb = inner.add_done_callback([outer](Future<R>& in) mutable {
    if (outer.cancelled()) {
      if (!in.cancelled()) (void)in.exception();  // retrieved: nobody else will
      return;
    }
    if (in.cancelled()) {
      outer.cancel();
    } else if (std::exception_ptr exc = in.exception()) {
      outer.set_exception(exc);
    } else if constexpr (std::is_void_v<R>) {
      outer.set_result();
    } else {
      outer.set_result(in.result());
    }
  });
  outer.add_done_callback([inner, inner_cb](Future<R>&) mutable {
    if (!inner.done()) inner.remove_done_callback(inner_cb);
  });
  return outer;
}

// ---------------------------------------------------------------------------
// as_completed: the awaitables in the order they finish. Two ways to iterate,
// as in asyncio 3.13:
//
//   for next in asyncio.as_completed(aws):    for (auto next : asyncio::as_completed(aws)) {
//       r = await next                            R r = co_await next;
//                                             }
//   async for t in asyncio.as_completed(ts):  auto completed = asyncio::as_completed(ts);
//       r = t.result()                        while (auto t = co_await completed.next()) {
//                                               R r = t->result();
//                                             }
//
// The first (as before 3.13) gives, each step, a new coroutine with the next
// result. The second (`async for`, which C++ lacks: next() plays __anext__)
// gives the future or task that finished, the very one passed in, so it can
// be told apart from the others; for a coroutine, the task made for it.
// With a timeout, whichever step comes after it throws TimeoutError.
namespace futures_internal {

// F: the future type handed back, Future<R> or Task<R>.
template <class R, class F = Future<R>>
struct AsCompletedState {
  std::vector<std::pair<F, CallbackId>> todo;
  std::deque<std::optional<F>> done;  // nullopt: the timeout
  std::deque<Future<void>> getters;
  TimerHandle timeout;
  size_t left = 0;  // steps next() may still take

  void put(std::optional<F> f) {
    done.push_back(std::move(f));
    while (!getters.empty()) {
      Future<void> getter = std::move(getters.front());
      getters.pop_front();
      if (!getter.done()) {
        getter.set_result();
        break;
      }
    }
  }
  void on_completion(Future<R>& f) {
    if (todo.empty()) return;  // the timeout came first
    for (auto it = todo.begin(); it != todo.end(); ++it) {
      if (it->first == f) {
        F original = std::move(it->first);
        todo.erase(it);
        put(std::move(original));
        break;
      }
    }
    if (todo.empty()) timeout.cancel();
  }
  void on_timeout() {
    for (auto& [f, id] : todo) {
      f.remove_done_callback(id);
      put(std::nullopt);
    }
    todo.clear();
  }
  // The next future to finish; TimeoutError for the timeout's sentinel.
  Coro<F> wait_for_one() {
    while (done.empty()) {
      Future<void> getter = create_future<void>(get_running_loop());
      getters.push_back(getter);
      co_await getter;
    }
    std::optional<F> f = std::move(done.front());
    done.pop_front();
    if (!f) throw TimeoutError();
    co_return std::move(*f);
  }
};

template <class R, class F>
Coro<R> next_completed(std::shared_ptr<AsCompletedState<R, F>> state) {
  F f = co_await state->wait_for_one();
  co_return f.result();
}

template <class R, class F>
Coro<std::optional<F>> next_completed_future(std::shared_ptr<AsCompletedState<R, F>> state) {
  if (state->left == 0) co_return std::nullopt;  // StopAsyncIteration
  --state->left;
  co_return co_await state->wait_for_one();
}

}  // namespace futures_internal

template <class R, class F = Future<R>>
class AsCompleted {
 public:
  class iterator {
   public:
    iterator(std::shared_ptr<futures_internal::AsCompletedState<R, F>> state, size_t index)
        : state_(std::move(state)), index_(index) {}
    Coro<R> operator*() const { return futures_internal::next_completed<R>(state_); }
    iterator& operator++() {
      ++index_;
      return *this;
    }
    bool operator==(const iterator& other) const { return index_ == other.index_; }

   private:
    std::shared_ptr<futures_internal::AsCompletedState<R, F>> state_;
    size_t index_;
  };

  AsCompleted(std::shared_ptr<futures_internal::AsCompletedState<R, F>> state, size_t count)
      : state_(std::move(state)), count_(count) {}
  iterator begin() const { return iterator(state_, 0); }
  iterator end() const { return iterator(state_, count_); }
  size_t size() const { return count_; }

  // `async for`'s step (__anext__): the next future or task to finish, as
  // given (a coroutine's own task); nullopt once every one was handed out.
  Coro<std::optional<F>> next() const { return futures_internal::next_completed_future(state_); }

 private:
  std::shared_ptr<futures_internal::AsCompletedState<R, F>> state_;
  size_t count_;
};

template <Awaitable A>
auto as_completed(std::vector<A> aws, OptionalTimeout timeout = {}) {
  using R = await_result_t<A>;
  using F = decltype(ensure_future(std::declval<A>()));
  if (timeout) futures_internal::check_timeout_not_nan(timeout->count(), "as_completed");
  auto state = std::make_shared<futures_internal::AsCompletedState<R, F>>();
  if constexpr (isfuture<A>) {
    // As asyncio: every future on one loop (the running one, if any), checked
    // before anything starts.
    if (!aws.empty()) {
      EventLoop* running = running_loop_or_null();
      const EventLoop& loop = running != nullptr ? *running : aws[0].get_loop();
      for (const A& a : aws)
        futures_internal::check_same_loop(*futures_internal::Access::state(a), loop);
    }
  }
  for (A& a : aws) {
    F f = ensure_future(std::move(a));
    bool duplicate = false;
    for (auto& [g, id] : state->todo) duplicate = duplicate || g == f;
    if (!duplicate) state->todo.emplace_back(std::move(f), CallbackId{});
  }
  const size_t count = state->todo.size();
  state->left = count;
  futures_internal::TaskCore* awaiting = futures_internal::current_task_core();
  for (auto& [f, id] : state->todo) {
    id = f.add_done_callback([state](Future<R>& done) { state->on_completion(done); });
    // The task iterating awaits each one (capture_call_graph).
    if (awaiting != nullptr) {
      futures_internal::add_awaited_by(futures_internal::Access::state(f), awaiting);
    }
  }
  if (count > 0 && timeout) {
    state->timeout = get_running_loop().call_later(*timeout, [state] { state->on_timeout(); });
  }
  return AsCompleted<R, F>(std::move(state), count);
}

}  // namespace asyncio
