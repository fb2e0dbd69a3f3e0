// Coro<T>: what every coroutine returns.
//
//   asyncio::Coro<int> answer() { co_await asyncio::sleep(10ms); co_return 42; }
//   asyncio::Coro<void> caller() { int v = co_await answer(); ... }
//
// A Coro is lazy and move-only: nothing runs until it is awaited (inline, in
// the awaiting task) or handed to create_task (concurrently, as a Task).
#pragma once

#include <coroutine>
#include <stdexcept>
#include <utility>

#include "futures/internal/core.h"

namespace asyncio {

// Coro<T>: the return type of every coroutine. Lazy and move-only;
// `co_await coro` runs it inline in the awaiting task.
template <class T = void>
class [[nodiscard]] Coro {
 public:
  using promise_type = futures_internal::Promise<T>;
  using value_type = T;
  using handle_type = std::coroutine_handle<promise_type>;

  Coro() = default;
  explicit Coro(handle_type h) noexcept : h_(h) {}
  Coro(Coro&& other) noexcept : h_(std::exchange(other.h_, {})) {}
  Coro& operator=(Coro&& other) noexcept {
    if (this != &other) {
      if (h_) h_.destroy();
      h_ = std::exchange(other.h_, {});
    }
    return *this;
  }
  ~Coro() {
    if (h_) h_.destroy();
  }

  struct Awaiter {
    handle_type h;
    bool await_ready() const {
      if (!h || h.done()) throw std::logic_error("Coro awaited twice or empty");
      return false;
    }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> parent) noexcept {
      h.promise().link_ = parent;
      if constexpr (!futures_internal::is_coro_promise<P>) h.promise().parent_unknown_ = true;
      return h;
    }
    T await_resume() { return h.promise().take_result(); }
  };
  Awaiter operator co_await() const& noexcept { return Awaiter{h_}; }

  bool valid() const noexcept { return static_cast<bool>(h_); }
  // Gives up ownership of the frame (create_task adopts it).
  handle_type release() noexcept { return std::exchange(h_, {}); }

 private:
  handle_type h_;
};

// ---------------------------------------------------------------------------
// Implementation details

template <class T>
Coro<T> futures_internal::Promise<T>::get_return_object() noexcept {
  return Coro<T>(std::coroutine_handle<Promise>::from_promise(*this));
}

}  // namespace asyncio
