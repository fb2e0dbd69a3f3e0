#include <stdexcept>

#include "queues/queues.h"

namespace asyncio::queues_internal {

void QueueBase::task_done() {
  if (unfinished_tasks_ == 0) throw std::invalid_argument("task_done() called too many times");
  if (--unfinished_tasks_ == 0) set_finished();
}

Coro<void> QueueBase::join() {
  if (unfinished_tasks_ == 0 || finished_) co_return;
  Future<void> fut = add_waiter(join_waiters_);
  try {
    co_await fut;
  } catch (...) {
    join_waiters_.remove(fut);
    throw;
  }
  join_waiters_.remove(fut);
}

Future<void> QueueBase::add_waiter(WaiterQueue& waiters) {
  Future<void> waiter = create_future<void>(loop_.get("Queue"));
  waiters.push_back(waiter);
  return waiter;
}

void QueueBase::drop_waiter(WaiterQueue& waiters, Future<void>& waiter, bool can_proceed) {
  waiter.cancel();  // in case it is not done yet
  // Already gone if wakeup_next() or shutdown() popped it.
  waiters.remove(waiter);
  // Woken for an item (or a free slot) that we will not take: the next in
  // line must have it, or it could wait forever.
  if (can_proceed && !waiter.cancelled()) wakeup_next(waiters);
}

void QueueBase::wakeup_next_slow(WaiterQueue& waiters) {
  while (!waiters.empty()) {
    Future<void> waiter = waiters.pop_front();
    if (!waiter.done()) {
      waiter.set_result();
      break;
    }
  }
}

void QueueBase::finish_shutdown(bool drained) {
  is_shutdown_ = true;
  if (drained && unfinished_tasks_ == 0) set_finished();
  // Every blocked getter and putter re-checks the queue and throws
  // QueueShutDown (a getter only once the queue is empty).
  for (WaiterQueue* waiters : {&getters_, &putters_}) {
    while (!waiters->empty()) {
      Future<void> waiter = waiters->pop_front();
      if (!waiter.done()) waiter.set_result();
    }
  }
}

void QueueBase::set_finished() {
  if (finished_) return;
  finished_ = true;
  for (size_t i = 0; i < join_waiters_.size(); ++i) {
    if (!join_waiters_[i].done()) join_waiters_[i].set_result();
  }
}

}  // namespace asyncio::queues_internal
