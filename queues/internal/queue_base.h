// The part of Queue<T> that does not depend on T: waiter bookkeeping, the
// unfinished-task count behind task_done()/join(), and the shutdown flag.
// Included by queues/queues.h.
#pragma once

#include <cstddef>

#include "futures/futures.h"

namespace asyncio::queues_internal {

class QueueBase {
 public:
  QueueBase(const QueueBase&) = delete;
  QueueBase& operator=(const QueueBase&) = delete;

  size_t maxsize() const { return maxsize_; }

  // Marks one item taken with get() as processed; throws
  // std::invalid_argument when there is no unfinished item.
  void task_done();
  // Waits until every item put has been marked done.
  Coro<void> join();

 protected:
  explicit QueueBase(size_t maxsize) : maxsize_(maxsize) {}
  ~QueueBase() = default;

  // A new waiter on the running loop, queued at the back of `waiters`.
  Future<void> add_waiter(WaiterQueue& waiters);
  // Cleanup after `co_await waiter` threw (cancellation): asyncio's except
  // clause in get() and put(). `can_proceed`: whether the queue would let
  // the next waiter through (not empty for getters, not full for putters).
  void drop_waiter(WaiterQueue& waiters, Future<void>& waiter, bool can_proceed);
  // Wakes the first waiter that is not done, and removes it (and those
  // before it) from the queue.
  void wakeup_next(WaiterQueue& waiters) {
    if (!waiters.empty()) wakeup_next_slow(waiters);
  }
  // Bookkeeping for an item that went in.
  void item_added() {
    ++unfinished_tasks_;
    finished_ = false;
    wakeup_next(getters_);
  }
  // An item dropped by shutdown(immediate=true) counts as done.
  void item_drained() {
    if (unfinished_tasks_ > 0) --unfinished_tasks_;
  }
  // The end of shutdown(): wakes join() if nothing is unfinished (when
  // `drained`), and every getter and putter, so they see the shutdown.
  void finish_shutdown(bool drained);

  WaiterQueue getters_;
  WaiterQueue putters_;
  size_t maxsize_;
  bool is_shutdown_ = false;

 private:
  void wakeup_next_slow(WaiterQueue& waiters);
  void set_finished();

  WaiterQueue join_waiters_;  // the _finished Event's waiters
  LoopBinding loop_;
  size_t unfinished_tasks_ = 0;
  bool finished_ = true;  // the _finished Event's flag
};

}  // namespace asyncio::queues_internal
