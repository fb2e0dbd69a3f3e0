// Building blocks for primitives made of futures (//sync, //queues, and
// yours): WaiterQueue, the FIFO of waiter futures (collections.deque in
// asyncio), and LoopBinding (asyncio's _LoopBoundMixin).
//
// A ring buffer: an idle primitive costs four words and no allocation (a
// std::deque allocates at construction), popping and removing at either end
// moves nothing, and it only allocates when it grows.
#pragma once

#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "futures/future.h"
#include "loop/loop.h"

namespace asyncio {

class WaiterQueue {
 public:
  WaiterQueue() = default;
  WaiterQueue(const WaiterQueue&) = delete;
  WaiterQueue& operator=(const WaiterQueue&) = delete;

  bool empty() const noexcept { return size_ == 0; }
  size_t size() const noexcept { return size_; }

  // The i-th waiter, oldest first.
  Future<void>& operator[](size_t i) noexcept { return slots_[(head_ + i) & (capacity_ - 1)]; }
  const Future<void>& operator[](size_t i) const noexcept {
    return slots_[(head_ + i) & (capacity_ - 1)];
  }
  Future<void>& front() noexcept { return (*this)[0]; }

  void push_back(Future<void> waiter) {
    if (size_ == capacity_) grow();
    (*this)[size_] = std::move(waiter);
    ++size_;
  }

  Future<void> pop_front() noexcept {
    Future<void> waiter = std::move(front());
    head_ = (head_ + 1) & (capacity_ - 1);
    --size_;
    return waiter;
  }

  // Removes the first occurrence of `waiter` and keeps the others in order
  // (deque.remove); returns false if it is not there.
  bool remove(const Future<void>& waiter) noexcept {
    size_t i = 0;
    while (i < size_ && !((*this)[i] == waiter)) ++i;
    if (i == size_) return false;
    // Close the gap from the nearer end: a waiter that leaves from the head,
    // the usual case, moves nothing.
    if (i < size_ / 2) {
      for (size_t j = i; j > 0; --j) (*this)[j] = std::move((*this)[j - 1]);
      (*this)[0] = Future<void>();
      head_ = (head_ + 1) & (capacity_ - 1);
    } else {
      for (size_t j = i; j + 1 < size_; ++j) (*this)[j] = std::move((*this)[j + 1]);
      (*this)[size_ - 1] = Future<void>();
    }
    --size_;
    return true;
  }

  // True if some waiter satisfies `pred`.
  template <class Pred>
  bool any_of(Pred pred) const {
    for (size_t i = 0; i < size_; ++i) {
      if (pred((*this)[i])) return true;
    }
    return false;
  }

 private:
  void grow() {
    const size_t capacity = capacity_ == 0 ? 4 : capacity_ * 2;
    auto slots = std::make_unique<Future<void>[]>(capacity);
    for (size_t i = 0; i < size_; ++i) slots[i] = std::move((*this)[i]);
    slots_ = std::move(slots);
    capacity_ = capacity;
    head_ = 0;
  }

  std::unique_ptr<Future<void>[]> slots_;
  size_t capacity_ = 0;  // zero or a power of two
  size_t head_ = 0;
  size_t size_ = 0;
};

// The loop an object binds to the first time it needs one, to create a waiter
// (asyncio's _LoopBoundMixin): using it from another loop later is an error.
class LoopBinding {
 public:
  EventLoop& get(const char* owner) {
    EventLoop& running = get_running_loop();
    if (loop_ == nullptr) {
      loop_ = &running;
    } else if (loop_ != &running) {
      throw std::runtime_error(std::string(owner) + " is bound to a different event loop");
    }
    return running;
  }

 private:
  EventLoop* loop_ = nullptr;
};

}  // namespace asyncio
