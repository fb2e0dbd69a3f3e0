// //queues: asyncio's queues (asyncio/queues.py, 3.13) for tasks of one loop.
//
//   asyncio::Queue<std::string> q(16);          // at most 16 items
//   co_await q.put("job");                      // waits while full
//   std::string job = co_await q.get();         // waits while empty
//   q.task_done();                              // join() returns when all are done
//
// Queue<T> is FIFO, LifoQueue<T> LIFO, PriorityQueue<T, Compare> hands out
// the smallest item first. Getters and putters are served in the order they
// started waiting. shutdown() makes put() throw QueueShutDown at once, and
// get() once the queue is empty (at once with immediate = true). A queue
// binds to the running loop the first time a task has to wait on it.
// Queues are neither copyable nor movable (waiting tasks refer to them).
#pragma once

#include <algorithm>
#include <cstddef>
#include <deque>
#include <functional>
#include <stdexcept>
#include <utility>

#include "futures/futures.h"
#include "queues/internal/queue_base.h"

namespace asyncio {

// get_nowait() on an empty queue.
class QueueEmpty : public std::runtime_error {
 public:
  QueueEmpty() : std::runtime_error("Queue is empty") {}
};

// put_nowait() on a full queue.
class QueueFull : public std::runtime_error {
 public:
  QueueFull() : std::runtime_error("Queue is full") {}
};

// put() or get() on a queue that was shut down.
class QueueShutDown : public std::runtime_error {
 public:
  QueueShutDown() : std::runtime_error("Queue is shut down") {}
};

template <class T>
class Queue : public queues_internal::QueueBase {
 public:
  // maxsize 0: unbounded.
  explicit Queue(size_t maxsize = 0) : QueueBase(maxsize) {}
  virtual ~Queue() = default;

  // Waits while the queue is full, then adds `item`. Throws QueueShutDown.
  Coro<void> put(T item) {
    while (full()) {
      if (is_shutdown_) throw QueueShutDown();
      Future<void> putter = add_waiter(putters_);
      try {
        co_await putter;
      } catch (...) {
        drop_waiter(putters_, putter, !full());
        throw;
      }
    }
    put_nowait(std::move(item));
  }

  // Waits while the queue is empty, then removes and returns an item.
  // Throws QueueShutDown once the queue is shut down and empty.
  Coro<T> get() {
    while (empty()) {
      if (is_shutdown_) throw QueueShutDown();
      Future<void> getter = add_waiter(getters_);
      try {
        co_await getter;
      } catch (...) {
        drop_waiter(getters_, getter, !empty());
        throw;
      }
    }
    co_return get_nowait();
  }

  // Throws QueueFull if the queue is full, QueueShutDown if shut down.
  void put_nowait(T item) {
    if (is_shutdown_) throw QueueShutDown();
    if (full()) throw QueueFull();
    put_item(std::move(item));
    item_added();
  }

  // Throws QueueEmpty if the queue is empty (QueueShutDown if it is also
  // shut down).
  T get_nowait() {
    if (empty()) {
      if (is_shutdown_) throw QueueShutDown();
      throw QueueEmpty();
    }
    T item = get_item();
    wakeup_next(putters_);
    return item;
  }

  size_t qsize() const { return queue_.size(); }
  bool empty() const { return queue_.empty(); }
  bool full() const { return maxsize_ > 0 && queue_.size() >= maxsize_; }

  // Makes put() throw QueueShutDown, and get() too once the queue is empty.
  // With `immediate`, the items left are dropped (and count as done for
  // join()), so get() throws at once. Blocked getters and putters wake up
  // and throw.
  void shutdown(bool immediate = false) {
    is_shutdown_ = true;
    if (immediate) {
      while (!empty()) {
        (void)get_item();
        item_drained();
      }
    }
    finish_shutdown(immediate);
  }

 protected:
  // The storage policy (asyncio's _put and _get); FIFO here.
  virtual void put_item(T&& item) { queue_.push_back(std::move(item)); }
  virtual T get_item() {
    T item = std::move(queue_.front());
    queue_.pop_front();
    return item;
  }

  std::deque<T> queue_;
};

// Hands out the most recently added item first.
template <class T>
class LifoQueue : public Queue<T> {
 public:
  using Queue<T>::Queue;

 protected:
  T get_item() override {
    T item = std::move(this->queue_.back());
    this->queue_.pop_back();
    return item;
  }
};

// Hands out the smallest item first by `Compare` (a binary heap, as heapq:
// equal items come out in no particular order).
template <class T, class Compare = std::less<T>>
class PriorityQueue : public Queue<T> {
 public:
  explicit PriorityQueue(size_t maxsize = 0, Compare compare = Compare())
      : Queue<T>(maxsize), after_{std::move(compare)} {}

 protected:
  void put_item(T&& item) override {
    this->queue_.push_back(std::move(item));
    std::push_heap(this->queue_.begin(), this->queue_.end(), after_);
  }
  T get_item() override {
    std::pop_heap(this->queue_.begin(), this->queue_.end(), after_);
    T item = std::move(this->queue_.back());
    this->queue_.pop_back();
    return item;
  }

 private:
  // The std heap algorithms keep the largest item on top; ordering by
  // "comes after" puts the smallest there.
  struct After {
    Compare compare;
    bool operator()(const T& a, const T& b) const { return compare(b, a); }
  };
  After after_;
};

}  // namespace asyncio
