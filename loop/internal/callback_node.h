// The node behind Handle and TimerHandle; in a header so that creating and
// dropping a Handle (every call_soon) inlines.
#pragma once

#include <atomic>
#include <cstdint>
#include <new>

#include "absl/functional/any_invocable.h"
#include "loop/internal/pool.h"
#include "loop/internal/timer_node_cache.h"

namespace asyncio {

class EventLoop;

// The unit of the ready queue.
//
// Higher layers (tasks, future callbacks) embed a Runnable and hand it to
// EventLoop::schedule(): no allocation. `invoke(self, discard)` runs the node,
// or, with discard == true, releases it without running (the loop is closing).
struct Runnable {
  using InvokeFn = void (*)(Runnable* self, bool discard);
  explicit Runnable(InvokeFn fn = nullptr) : invoke(fn) {}
  Runnable* next_in_queue = nullptr;
  InvokeFn invoke;
};

namespace loop_internal {

// A callback scheduled with call_soon, call_soon_threadsafe, call_later or
// call_at. Owned jointly by the queue (or timer heap) and the Handles.
struct CallbackNode : Runnable, Pooled {
  CallbackNode(EventLoop* l, absl::AnyInvocable<void()> cb, bool shared_refs)
      : Runnable(&CallbackNode::invoke_node),
        callback(std::move(cb)),
        loop(l),
        shared(shared_refs) {}

  // Runs the node (unless discarded or cancelled) and drops the queue's
  // reference: call_soon's nodes and call_at's, each knowing its allocator.
  static void invoke_node(Runnable* self, bool discard);
  static void invoke_timer_node(Runnable* self, bool discard);

  // Loop-thread nodes count references with plain loads and stores; only
  // call_soon_threadsafe's nodes, touched by two threads, pay for atomics.
  void ref() {
    if (shared) {
      refs.fetch_add(1, std::memory_order_relaxed);
    } else {
      refs.store(refs.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }
  }
  // True when that was the last reference.
  bool drop_ref() {
    uint32_t left;
    if (shared) {
      left = refs.fetch_sub(1, std::memory_order_acq_rel) - 1;
    } else {
      left = refs.load(std::memory_order_relaxed) - 1;
      refs.store(left, std::memory_order_relaxed);
    }
    return left == 0;
  }
  void unref() {
    if (drop_ref()) destroy(this);
  }

  // Timer nodes live in a cache of their own (timer_node_cache.h); they are
  // the ones with a timer_seq, which call_at numbers from 1.
  bool is_timer() const { return timer_seq != 0; }
  static CallbackNode* new_timer(EventLoop* l, absl::AnyInvocable<void()>&& cb, uint64_t seq) {
    auto* node = ::new (timer_node_allocate(sizeof(CallbackNode)))
        CallbackNode(l, std::move(cb), /*shared_refs=*/false);
    node->invoke = &CallbackNode::invoke_timer_node;
    node->timer_seq = seq;
    return node;
  }
  static void destroy(CallbackNode* node) noexcept {
    if (node->is_timer()) {
      free_timer_node(node);
    } else {
      free_node(node);
    }
  }
  static void free_node(CallbackNode* node) noexcept {
    node->~CallbackNode();
    pool_deallocate(node, sizeof(CallbackNode));
  }
  static void free_timer_node(CallbackNode* node) noexcept {
    node->~CallbackNode();
    timer_node_deallocate(node);
  }

  absl::AnyInvocable<void()> callback;
  EventLoop* loop;
  double when = 0;
  uint64_t timer_seq = 0;         // call_at order from 1: breaks ties between equal `when`
  std::atomic<uint32_t> refs{2};  // the queue's and the Handle's
  const bool shared;              // refs touched from several threads
  bool cancelled = false;
  bool running = false;
  bool in_heap = false;  // a timer still counted by the loop's heap
};

}  // namespace loop_internal
}  // namespace asyncio
