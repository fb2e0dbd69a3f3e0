// Coro<T>: what every coroutine returns.
//
//   asyncio::Coro<int> answer() { co_await asyncio::sleep(10ms); co_return 42; }
//   asyncio::Coro<void> caller() { int v = co_await answer(); ... }
//
// A Coro is lazy and move-only: nothing runs until it is awaited (inline, in
// the awaiting task) or handed to create_task (concurrently, as a Task).
//
// A Coro dropped without ever being awaited or handed to create_task is a
// bug Python reports as "RuntimeWarning: coroutine 'f' was never awaited";
// so is this library, always, as Python does:
//
//   coroutine 'app::fetch' was never awaited
//
// to the running loop's exception handler if a loop runs on this thread
// (the default handler writes to stderr), else to stderr. The name is the
// symbol of the coroutine's body, as call graphs name frames. When the
// running loop is in debug mode, the report adds the stack where the Coro
// was dropped ("Coroutine dropped at"), symbolized: for the usual bug, a
// call whose Coro is discarded at the end of its statement, that is where it
// was made. Python shows where the coroutine was created instead; this
// library does not record that: it would cost every coroutine creation a
// check and a side table (the promise has no room for it), and finding the
// creating call needs a stack walk there. The cost when nothing is dropped:
// one test of the frame's parent link in ~Coro.
//
//   Python                                  C++
//   coro.close()  (never started: no        coro.close()
//     warning)
#pragma once

#include <coroutine>
#include <stdexcept>
#include <utility>

#include "futures/internal/core.h"

namespace asyncio {

namespace futures_internal {
// Reports a Coro frame dropped without being awaited (call_graph.cc).
void report_never_awaited(const void* frame) noexcept;
}  // namespace futures_internal

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
      drop();
      h_ = std::exchange(other.h_, {});
    }
    return *this;
  }
  ~Coro() { drop(); }

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
  // coroutine.close(): destroys a Coro not awaited without reporting it
  // (the library's own refusals do this, as asyncio's do), or one that has
  // finished. Closing a Coro while it is being awaited is a logic_error.
  void close() {
    if (!h_) return;
    if (h_.promise().link_ && !h_.done()) throw std::logic_error("Coro.close(): being awaited");
    std::exchange(h_, {}).destroy();
  }

 private:
  // A frame never awaited has no parent link: awaiting sets it, and a frame
  // handed to create_task is released.
  void drop() noexcept {
    if (!h_) return;
    if (!h_.promise().link_) [[unlikely]] {
      futures_internal::report_never_awaited(h_.address());
    }
    h_.destroy();
  }

  handle_type h_;
};

// ---------------------------------------------------------------------------
// Implementation details

template <class T>
Coro<T> futures_internal::Promise<T>::get_return_object() noexcept {
  return Coro<T>(std::coroutine_handle<Promise>::from_promise(*this));
}

}  // namespace asyncio
