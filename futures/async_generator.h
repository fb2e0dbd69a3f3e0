// AsyncGenerator<T>: a coroutine that co_yields values and may co_await.
//
//   asyncio::AsyncGenerator<int> ticks(int n) {
//     for (int i = 0; i < n; ++i) { co_await asyncio::sleep(10ms); co_yield i; }
//   }
//   auto gen = ticks(3);
//   while (std::optional<int> v = co_await gen.next()) use(*v);
#pragma once

#include <coroutine>
#include <exception>
#include <optional>
#include <stdexcept>
#include <utility>

#include "futures/coro.h"
#include "futures/internal/core.h"
#include "loop/loop.h"

namespace asyncio {

template <class T>
class AsyncGenerator {
 public:
  class promise_type {
   public:
    using asyncio_async_generator_promise = void;  // for get_stack
    static void* operator new(std::size_t size) { return pool_allocate(size); }
    static void operator delete(void* p, std::size_t size) noexcept { pool_deallocate(p, size); }

    AsyncGenerator get_return_object() {
      auto* control = new futures_internal::GeneratorControl();
      control->frame = std::coroutine_handle<promise_type>::from_promise(*this);
      control_ = control;
      return AsyncGenerator(control);
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }

    struct HandBack {  // gives control back to whoever called next()
      bool await_ready() const noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> h) noexcept {
        promise_type& p = h.promise();
        p.control_->running = false;
        return p.consumer_;
      }
      void await_resume() const noexcept {}
    };
    template <class U = T>
    HandBack yield_value(U&& value) {
      current_.emplace(std::forward<U>(value));
      return {};
    }
    HandBack final_suspend() const noexcept { return {}; }
    void return_void() const noexcept {}
    void unhandled_exception() noexcept { exception_ = std::current_exception(); }

   private:
    friend class AsyncGenerator;
    std::optional<T> current_;
    std::exception_ptr exception_;
    std::coroutine_handle<> consumer_;
    futures_internal::GeneratorControl* control_ = nullptr;
  };
  using handle_type = std::coroutine_handle<promise_type>;

  AsyncGenerator(AsyncGenerator&& other) noexcept
      : control_(std::exchange(other.control_, nullptr)) {}
  AsyncGenerator& operator=(AsyncGenerator&& other) noexcept {
    if (this != &other) {
      reset();
      control_ = std::exchange(other.control_, nullptr);
    }
    return *this;
  }
  ~AsyncGenerator() { reset(); }

  class NextAwaiter {
   public:
    explicit NextAwaiter(futures_internal::GeneratorControl* control) : control_(control) {}
    bool await_ready() const {
      if (control_ != nullptr && control_->running) {
        throw std::runtime_error("asynchronous generator is already running");
      }
      return control_ == nullptr || !control_->frame || control_->frame.done();
    }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> consumer) {
      handle_type h = handle_type::from_address(control_->frame.address());
      if (control_->registry == nullptr) {
        if (EventLoop* loop = running_loop_or_null()) {
          futures_internal::TaskRegistry::of(*loop).add_generator(control_);
        }
      }
      promise_type& p = h.promise();
      p.consumer_ = consumer;
      p.current_.reset();
      control_->running = true;
      return h;
    }
    std::optional<T> await_resume() {
      if (control_ == nullptr || !control_->frame) return std::nullopt;
      handle_type h = handle_type::from_address(control_->frame.address());
      promise_type& p = h.promise();
      if (p.exception_) std::rethrow_exception(std::exchange(p.exception_, nullptr));
      if (h.done()) return std::nullopt;
      return std::exchange(p.current_, std::nullopt);
    }

   private:
    futures_internal::GeneratorControl* control_;
  };

  // The next value, or nullopt once the generator has finished (or was
  // closed). Exceptions thrown by the generator propagate here.
  NextAwaiter next() { return NextAwaiter(control_); }

  // Destroys the generator's frame: its locals' destructors run (the C++
  // form of `finally`). Further next() calls give nullopt.
  Coro<void> aclose() {
    close_now();
    co_return;
  }

 private:
  explicit AsyncGenerator(futures_internal::GeneratorControl* control) : control_(control) {}

  void close_now() {
    if (control_ == nullptr) return;
    if (control_->running) throw std::runtime_error("asynchronous generator is already running");
    if (control_->registry != nullptr) control_->registry->remove_generator(control_);
    control_->close();
  }
  void reset() noexcept {
    if (control_ == nullptr) return;
    if (control_->registry != nullptr) control_->registry->remove_generator(control_);
    control_->close();
    delete control_;
    control_ = nullptr;
  }

  futures_internal::GeneratorControl* control_ = nullptr;
};

// Closes every async generator of `loop` that is not running (asyncio.run
// calls this on its way out).
Coro<void> shutdown_asyncgens(EventLoop& loop);

}  // namespace asyncio
