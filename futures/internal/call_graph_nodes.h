// The done-callback nodes that say who awaits a future: a record of
// future_add_to_awaited_by, gather's node on each child, wait's node on each
// child. capture_call_graph reads them in process (call_graph.cc), and
// tools/gdb/asyncio_gdb.py reads them from memory: they are declared here,
// not inside their .cc files, so that //futures:gdb_types can describe their
// layout to gdb. Each is told apart by its `fire` function, whose symbol gdb
// matches by name: keep the names of the fire functions in step with
// asyncio_gdb.py.
#pragma once

#include <cstddef>

#include "futures/combinators.h"
#include "futures/future.h"
#include "futures/internal/core.h"
#include "loop/loop.h"

namespace asyncio::futures_internal {

// future_add_to_awaited_by's record: names the waiter and holds a reference
// to it. On completion the reference is dropped from the ready queue, not
// from the completing future's callback pass: dropping the last reference
// destroys a frame, which must not happen there.
struct AwaitedByNode final : CallbackNode, Runnable, Pooled {
  explicit AwaitedByNode(FutureStateBase* w)
      : CallbackNode(&AwaitedByNode::on_fire), Runnable(&AwaitedByNode::on_run), waiter(w) {
    waiter->add_ref();
  }
  static void on_fire(CallbackNode* self, FutureStateBase* future) {
    auto* node = static_cast<AwaitedByNode*>(self);
    if (future == nullptr) {  // discarded, or the future is being destroyed
      node->waiter->release();
      delete node;
      return;
    }
    future->loop().schedule(*node);
  }
  static void on_run(Runnable* self, bool) {
    auto* node = static_cast<AwaitedByNode*>(self);
    node->waiter->release();
    delete node;
  }
  static const AwaitedByNode* of(const CallbackNode& node) noexcept {
    return node.fire == &AwaitedByNode::on_fire ? static_cast<const AwaitedByNode*>(&node)
                                                : nullptr;
  }
  FutureStateBase* waiter;
};

// gather's node on each child; `owner` is gather's outer future (a
// GatherState, private to combinators.cc), which the gathering task awaits.
struct GatherChildNode : CallbackNode {
  GatherChildNode() : CallbackNode(&GatherChildNode::on_child_done) {}
  static void on_child_done(CallbackNode* self, FutureStateBase* child);  // combinators.cc
  FutureStateBase* owner = nullptr;
};

// wait()'s state, in the frame of the waiting coroutine: the task awaits
// `waiter`, which the nodes on the children complete.
struct WaitContext {
  Future<void> waiter;
  TimerHandle timer;
  size_t counter = 0;
  ReturnWhen when = ReturnWhen::ALL_COMPLETED;
};

// wait()'s node on each child.
struct WaitNode : CallbackNode {
  WaitNode() : CallbackNode(&WaitNode::on_done) {}
  WaitNode(WaitNode&&) noexcept : WaitNode() {}
  ~WaitNode() {
    if (linked()) child->remove_callback(this);
  }
  static void on_done(CallbackNode* self, FutureStateBase* future);  // combinators.cc
  WaitContext* context = nullptr;
  FutureStateBase* child = nullptr;
};

}  // namespace asyncio::futures_internal
