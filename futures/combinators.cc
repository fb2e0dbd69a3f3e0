#include <unordered_map>

#include "futures/futures.h"
#include "futures/internal/call_graph_nodes.h"

namespace asyncio {
namespace futures_internal {
namespace {

// The outer future of gather (asyncio's _GatheringFuture).
class GatherState final : public FutureStateBase, public Pooled {
 public:
  GatherState(EventLoop& loop, std::vector<FutureStateBase*> children, bool return_exceptions)
      : FutureStateBase(&loop),
        children_(std::move(children)),
        nodes_(children_.size()),
        return_exceptions_(return_exceptions) {
    for (FutureStateBase* child : children_) child->add_ref();
  }
  using Pooled::operator new;
  using Pooled::operator delete;

  // Registers on the children; some may be done and fire at once.
  void watch_children() {
    for (size_t i = 0; i < children_.size(); ++i) {
      nodes_[i].owner = this;
      children_[i]->add_callback(&nodes_[i]);
    }
  }

  bool cancel(std::string_view message) override {
    if (done()) return false;
    bool any = false;
    for (FutureStateBase* child : children_) any = child->cancel(message) || any;
    // The outer future completes (with CancelledError) once every child has.
    if (any) cancel_requested_ = true;
    return any;
  }

  // A child is done (GatherChildNode's fire).
  void child_done(FutureStateBase* child);

 private:
  ~GatherState() override {
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (nodes_[i].linked()) children_[i]->remove_callback(&nodes_[i]);
    }
    for (FutureStateBase* child : children_) child->release();
  }
  void destroy() noexcept override { delete this; }

  std::vector<FutureStateBase*> children_;
  std::vector<GatherChildNode> nodes_;
  size_t finished_ = 0;
  bool return_exceptions_;
  bool cancel_requested_ = false;
};

void GatherState::child_done(FutureStateBase* child) {
  ++finished_;
  if (done()) {
    if (!child->cancelled()) child->mark_retrieved();
    return;
  }
  if (!return_exceptions_) {
    if (child->cancelled()) {
      set_exception(child->stored_exception());
      return;
    }
    if (child->stored_exception()) {
      child->mark_retrieved();
      set_exception(child->stored_exception());
      return;
    }
  }
  if (finished_ == children_.size()) {
    if (cancel_requested_) {
      set_exception(child->cancelled() ? child->stored_exception()
                                       : std::make_exception_ptr(CancelledError()));
    } else {
      mark_finished();
    }
  }
}

}  // namespace

void GatherChildNode::on_child_done(CallbackNode* self, FutureStateBase* child) {
  if (child == nullptr) return;
  static_cast<GatherState*>(static_cast<GatherChildNode*>(self)->owner)->child_done(child);
}

void WaitNode::on_done(CallbackNode* self, FutureStateBase* future) {
  if (future == nullptr) return;
  WaitContext& ctx = *static_cast<WaitNode*>(self)->context;
  --ctx.counter;
  bool failed = false;
  if (ctx.when == ReturnWhen::FIRST_EXCEPTION && !future->cancelled() &&
      future->stored_exception()) {
    future->mark_retrieved();
    failed = true;
  }
  if (ctx.counter == 0 || ctx.when == ReturnWhen::FIRST_COMPLETED || failed) {
    ctx.timer.cancel();
    if (!ctx.waiter.done()) ctx.waiter.set_result();
  }
}

FutureStateBase* combinator_future(const CallbackNode& node) noexcept {
  if (node.fire == &GatherChildNode::on_child_done) {
    return static_cast<const GatherChildNode&>(node).owner;
  }
  if (node.fire == &WaitNode::on_done) {
    return Access::state(static_cast<const WaitNode&>(node).context->waiter);
  }
  return nullptr;
}

Future<void> gather_children(EventLoop& loop, std::vector<FutureStateBase*> children,
                             bool return_exceptions) {
  for (FutureStateBase* child : children) check_same_loop(*child, loop);
  auto* state = new GatherState(loop, std::move(children), return_exceptions);
  Future<void> outer = Access::adopt_future<void>(state);
  state->watch_children();
  return outer;
}

Coro<void> wait_children(std::vector<FutureStateBase*> children, std::optional<double> timeout,
                         ReturnWhen when) {
  EventLoop& loop = get_running_loop();
  for (FutureStateBase* child : children) check_same_loop(*child, loop);
  WaitContext ctx;
  ctx.waiter = create_future<void>(loop);
  ctx.counter = children.size();
  ctx.when = when;
  if (timeout) {
    ctx.timer =
        loop.call_later(std::chrono::duration<double>(*timeout), [waiter = ctx.waiter]() mutable {
          if (!waiter.done()) waiter.set_result();
        });
  }
  // Nodes unlink themselves when this frame goes, however it goes.
  std::vector<WaitNode> nodes(children.size());
  for (size_t i = 0; i < children.size(); ++i) {
    nodes[i].context = &ctx;
    nodes[i].child = children[i];
  }
  for (size_t i = 0; i < children.size(); ++i) children[i]->add_callback(&nodes[i]);
  CancelTimerOnExit guard{ctx.timer};
  co_await ctx.waiter;
}

Coro<void> sleep_seconds(double seconds) {
  check_timeout_not_nan(seconds, "sleep");
  if (!(seconds > 0)) {
    co_await YieldAwaiter{};
    co_return;
  }
  EventLoop& loop = get_running_loop();
  Future<void> done = create_future<void>(loop);
  TimerHandle timer = loop.call_later(std::chrono::duration<double>(seconds), [done]() mutable {
    if (!done.done()) done.set_result();
  });
  CancelTimerOnExit guard{timer};
  co_await done;
}

// ---------------------------------------------------------------------------
// TaskGroup

struct TaskGroupState {
  EventLoop* loop = nullptr;
  std::optional<AnyTask> parent;
  std::unordered_map<TaskCore*, AnyTask> tasks;
  std::vector<std::exception_ptr> errors;
  std::optional<Future<void>> on_completed;
  bool exiting = false;
  bool aborting = false;
  bool parent_cancel_requested = false;
  bool joined = false;

  void abort() {
    aborting = true;
    for (auto& [core, task] : tasks) {
      if (!task.done()) task.cancel();
    }
  }

  void on_task_done(const AnyTask& task) {
    tasks.erase(Access::core(task));
    if (on_completed && tasks.empty() && !on_completed->done()) on_completed->set_result();
    if (task.cancelled()) return;
    std::exception_ptr exc = task.exception();
    if (!exc) return;
    errors.push_back(exc);
    if (parent->done()) {
      loop->call_exception_handler({"Task has errored out but its parent task is already completed",
                                    exc, task.get_name(), ""});
      return;
    }
    if (!aborting && !parent_cancel_requested) {
      // The parent must stop what it does (typically, wait in join()).
      abort();
      parent_cancel_requested = true;
      parent->cancel();
    }
  }
};

void track_in_group(const std::shared_ptr<TaskGroupState>& group, AnyTask task,
                    Future<void> completion) {
  group->tasks.emplace(Access::core(task), task);
  // As 3.14: the group's parent awaits its tasks (capture_call_graph).
  add_awaited_by(Access::core(task), Access::core(*group->parent));
  completion.add_done_callback([group, task](Future<void>&) { group->on_task_done(task); });
}

EventLoop& group_loop(const TaskGroupState& group) { return *group.loop; }

void check_group_accepts_tasks(const TaskGroupState& group) {
  if (group.exiting && group.tasks.empty()) throw std::runtime_error("TaskGroup is finished");
  if (group.aborting) throw std::runtime_error("TaskGroup is shutting down");
}

}  // namespace futures_internal

TaskGroup::TaskGroup() : state_(std::make_shared<futures_internal::TaskGroupState>()) {
  futures_internal::TaskCore* parent = futures_internal::current_task_core();
  if (parent == nullptr) throw std::runtime_error("TaskGroup must be created inside a task");
  state_->parent.emplace(futures_internal::Access::any_task(parent));
  state_->loop = &parent->loop();
}

TaskGroup::~TaskGroup() {
  if (!state_->joined && !state_->tasks.empty()) state_->abort();
}

Coro<void> TaskGroup::join(std::exception_ptr body_exception) {
  std::shared_ptr<futures_internal::TaskGroupState> g = state_;
  g->exiting = true;
  std::exception_ptr propagate_cancellation;
  bool body_cancelled = false;
  if (body_exception) {
    try {
      std::rethrow_exception(body_exception);
    } catch (const CancelledError&) {
      body_cancelled = true;
      propagate_cancellation = body_exception;
    } catch (...) {
    }
    if (!g->aborting) g->abort();
  }
  while (!g->tasks.empty()) {
    if (!g->on_completed) g->on_completed = create_future<void>(*g->loop);
    bool cancelled = false;
    try {
      co_await *g->on_completed;
    } catch (const CancelledError&) {
      cancelled = true;
      if (!g->aborting) propagate_cancellation = std::current_exception();
    }
    if (cancelled && !g->aborting) g->abort();
    g->on_completed.reset();
  }
  // As in CPython 3.13 (a fix of 3.12): uncancel the parent only after the
  // children are done, so that a cancellation caused by a failing child
  // during join() is taken back too.
  if (g->parent_cancel_requested && g->parent->uncancel() == 0) propagate_cancellation = nullptr;
  g->joined = true;
  if (propagate_cancellation && g->errors.empty()) std::rethrow_exception(propagate_cancellation);
  if (body_exception && !body_cancelled) g->errors.push_back(body_exception);
  if (!g->errors.empty()) {
    // As 3.13: the errors win over a cancellation from outside, yet that
    // cancellation must not be lost. The CancelledError join() absorbed is
    // re-armed (uncancel + cancel keeps the count), so the parent sees it
    // at its next await.
    futures_internal::TaskCore* parent = futures_internal::Access::core(*g->parent);
    if (parent->cancelling() > 0) {
      parent->uncancel();
      parent->cancel("");
    }
    std::vector<std::exception_ptr> errors = std::move(g->errors);
    g->errors.clear();
    throw ExceptionGroup("unhandled errors in a TaskGroup", std::move(errors));
  }
}

// ---------------------------------------------------------------------------

Coro<void> shutdown_asyncgens(EventLoop& loop) {
  if (futures_internal::TaskRegistry* registry = futures_internal::TaskRegistry::find(loop)) {
    registry->close_generators();
  }
  co_return;
}

}  // namespace asyncio
