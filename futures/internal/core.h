// The machinery under //futures' public headers: future states, the task
// core that lives in every coroutine promise, the awaiters, and the one door
// (Access) through which the library's own layers reach the state behind a
// Future, Task or AnyTask. Nothing here is for users; see futures/future.h,
// futures/coro.h and futures/task.h for what they name.
//
// One coroutine promise type serves both as an inline-awaited coroutine
// (Coro<T>) and as a task's root: create_task adopts the frame and the task's
// state (the shared future, cancellation, the ready-queue node) is already in
// it, so a task costs one allocation, taken from the per-thread free list.
#pragma once

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <source_location>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "loop/loop.h"

namespace asyncio {

template <class T>
class Coro;
template <class T>
class Future;
template <class T>
class Task;
class AnyTask;
class AnyCoro;
struct TaskOptions;

namespace futures_internal {

class FutureStateBase;
class TaskRegistry;
struct TaskFactorySlot;

// A node in a future's list of done-callbacks. `fire` is called once, when
// the future completes, after the node is unlinked; it must only schedule
// work, never run user code. When the future is destroyed first, `fire` is
// called with a null future: the node must release itself.
struct CallbackNode {
  using FireFn = void (*)(CallbackNode* self, FutureStateBase* future);
  explicit CallbackNode(FireFn f = nullptr) : fire(f) {}
  CallbackNode* prev = nullptr;  // circular list; null when not linked
  CallbackNode* next = nullptr;
  FireFn fire;
  bool linked() const { return prev != nullptr; }
};

enum class Status : uint8_t { kPending, kFinished, kCancelled };

// The shared state behind Future<T> and Task<T>; refcounted, loop-affine.
class FutureStateBase {
 public:
  explicit FutureStateBase(EventLoop* loop) : loop_(loop) {}
  FutureStateBase(const FutureStateBase&) = delete;
  FutureStateBase& operator=(const FutureStateBase&) = delete;

  // Future.cancel(); a task overrides it with Task.cancel().
  virtual bool cancel(std::string_view message);
  // For reports: "Future" or the task's name.
  virtual std::string description() const;

  void add_ref() noexcept { ++refs_; }
  void release() noexcept {
    if (--refs_ == 0) destroy();
  }

  bool done() const noexcept { return status_ != Status::kPending; }
  bool cancelled() const noexcept { return status_ == Status::kCancelled; }
  EventLoop& loop() const noexcept { return *loop_; }

  // Fires at once if the future is done already.
  void add_callback(CallbackNode* node);
  void remove_callback(CallbackNode* node) noexcept;
  template <class Pred>
  size_t remove_callbacks_if(Pred pred);

  // Throws as Future.result() would if not done, cancelled or failed; marks
  // the exception retrieved.
  void rethrow_if_not_successful() const;
  // Future.exception().
  std::exception_ptr exception() const;
  // Completion; each throws InvalidStateError if already done.
  void set_exception(std::exception_ptr exc);
  void mark_finished() {  // the value (if any) is already stored
    check_pending();
    finish_checked();
  }
  // mark_finished after the caller's own check_pending (Future::set_result
  // checks before it stores the value).
  void finish_checked() {
    status_ = Status::kFinished;
    fire_callbacks();
  }
  // Stores a cancelled state with CancelledError(message) and fires callbacks.
  bool cancel_future(std::string_view message);
  // Marks the exception as retrieved (gather, wait, shield do this).
  void mark_retrieved() const noexcept { log_traceback_ = false; }
  // Throws InvalidStateError if done; in debug mode, std::runtime_error when
  // called from a thread other than the loop's.
  void check_pending() const {
    if (loop_ != nullptr) loop_->check_thread();
    if (done()) [[unlikely]]
      throw_not_pending();
  }
  const std::exception_ptr& stored_exception() const noexcept { return exception_; }
  uint16_t value_offset() const noexcept { return value_offset_; }
  // The first done-callback (a circular list), for capture_call_graph: who
  // awaits a future is read from its callbacks, so nothing is recorded on
  // the hot paths.
  const CallbackNode* first_callback() const noexcept { return callbacks_; }

 protected:
  virtual ~FutureStateBase();
  // Called when the last reference goes.
  virtual void destroy() noexcept = 0;
  void fire_callbacks();
  [[noreturn]] void throw_not_pending() const;
  void report_unretrieved(const char* message, const std::string& task_name) noexcept;

  EventLoop* loop_;
  CallbackNode* callbacks_ = nullptr;
  std::exception_ptr exception_;  // the failure, or the CancelledError
  uint32_t refs_ = 1;
  Status status_ = Status::kPending;
  mutable bool log_traceback_ = false;  // an exception nobody retrieved yet
  uint16_t value_offset_ = 0;           // where the ValueSlot<T> sits
};

template <class Pred>
size_t FutureStateBase::remove_callbacks_if(Pred pred) {
  size_t removed = 0;
  if (callbacks_ == nullptr) return 0;
  std::vector<CallbackNode*> matches;
  CallbackNode* n = callbacks_;
  do {
    if (pred(n)) matches.push_back(n);
    n = n->next;
  } while (n != callbacks_);
  for (CallbackNode* m : matches) {
    remove_callback(m);
    m->fire(m, nullptr);  // releases the node
    ++removed;
  }
  return removed;
}

template <class T>
struct ValueSlot {
  std::optional<T> value;
};
template <>
struct ValueSlot<void> {};

template <class T>
ValueSlot<T>& value_slot(const FutureStateBase* state) {
  return *reinterpret_cast<ValueSlot<T>*>(const_cast<char*>(reinterpret_cast<const char*>(state)) +
                                          state->value_offset());
}

template <class Derived, class T>
void set_value_offset(Derived* self, uint16_t& offset) {
  offset = static_cast<uint16_t>(reinterpret_cast<char*>(static_cast<ValueSlot<T>*>(self)) -
                                 reinterpret_cast<char*>(static_cast<FutureStateBase*>(self)));
}

// The state of create_future<T>().
template <class T>
class PlainFutureState final : public FutureStateBase, public ValueSlot<T>, public Pooled {
 public:
  explicit PlainFutureState(EventLoop* loop) : FutureStateBase(loop) {
    set_value_offset<PlainFutureState, T>(this, value_offset_);
  }
  using Pooled::operator new;
  using Pooled::operator delete;

 private:
  ~PlainFutureState() override = default;
  void destroy() noexcept override { delete this; }
};

// Task state and coroutine links; present in every coroutine promise.
class TaskCore : public FutureStateBase, public Runnable {
 public:
  TaskCore() : FutureStateBase(nullptr), Runnable(&TaskCore::step) {}

  bool cancel(std::string_view message) override;  // Task.cancel()
  std::string description() const override;

  // Makes this frame a task's root on `registry`'s loop and schedules its
  // first step, or, when `eager` and the loop is running, runs that step now.
  // The task runs in `context`, or, when null, in a copy of the current one.
  // In debug mode the task keeps `created_at` (create_task's caller) for
  // its repr and the loop's reports.
  void start_task(TaskRegistry& registry, std::string&& name, std::coroutine_handle<> root,
                  bool eager, const Context* context = nullptr,
                  std::source_location created_at = {});
  bool is_task() const noexcept { return is_task_; }
  std::string name() const;
  void set_name(std::string name);
  int cancelling() const noexcept { return num_cancels_requested_; }
  // As 3.13: the last uncancel also rescinds a cancellation not delivered
  // yet (a timeout that fired just as its body finished).
  int uncancel() noexcept {
    if (num_cancels_requested_ > 0 && --num_cancels_requested_ == 0) must_cancel_ = false;
    return num_cancels_requested_;
  }

  // --- used by awaiters, on the current task -------------------------------
  // The task suspends at `resume_at` until `future` completes (a callback
  // that schedules the task is already registered on it).
  void suspend_on(FutureStateBase* future, std::coroutine_handle<> resume_at);
  // The task suspends at `resume_at` for one loop iteration (sleep(0)).
  void suspend_yield(std::coroutine_handle<> resume_at);
  // Called first thing after a suspension: throws CancelledError if a
  // cancellation is pending, as Task.__step does.
  void resumed() {
    waiting_on_ = nullptr;
    if (must_cancel_) throw_pending_cancel();
  }
  // Completion of a task's root coroutine (from final_suspend).
  void finish_root() noexcept;

  // For nested frames: the awaiting parent; for a task root: where to resume.
  std::coroutine_handle<> link_;
#ifdef ASYNCIO_AWAIT_LOCATIONS
  // The co_await this frame last reached (file, line), for call graphs. Off
  // by default: a store per co_await and a pointer per frame (measured: +1.8%
  // instructions on the task switch); `bazel ... --config=await_locations`.
  std::source_location awaited_at_;
#endif

  // --- introspection (get_stack, repr); cold paths --------------------------
  FutureStateBase* waiting_on() const noexcept { return waiting_on_; }
  bool started() const noexcept { return started_; }
  bool cancel_requested() const noexcept { return must_cancel_ || num_cancels_requested_ > 0; }
  Context context();  // Task.get_context()
  // The task a ready-queue node is, or null (for the loop's debug reports).
  static TaskCore* task_of(Runnable* node) noexcept {
    return node->invoke == &TaskCore::step ? static_cast<TaskCore*>(node) : nullptr;
  }
  // Where create_task was called, when the loop was in debug mode then.
  const std::source_location* created_at() const noexcept {
    return extras_ && extras_->created_at ? &*extras_->created_at : nullptr;
  }

 protected:
  ~TaskCore() override;

 private:
  friend class TaskRegistry;
  static void step(Runnable* self, bool discard);
  void step_eagerly();
  [[noreturn]] void throw_pending_cancel();
  std::string cancel_message() const;
  void complete(Status status, std::exception_ptr exc) noexcept;
  void abandon() noexcept;  // the loop is going away while the task is pending

  FutureStateBase* waiting_on_ = nullptr;
  TaskCore* registry_prev_ = nullptr;  // the loop's list of pending tasks
  TaskCore* registry_next_ = nullptr;
  // What most tasks never have, in one allocation made on first use.
  struct Extras {
    std::optional<std::string> name;                 // set_name / create_task name
    std::string cancel_msg;                          // message of a pending cancel
    contextvars_internal::ContextRef context;        // null: the empty context
    std::optional<std::source_location> created_at;  // debug mode only
  };
  Extras& extras();
  static contextvars_internal::ContextRef* context_storage(void* task);
  // Runs the task's next step with its context current.
  void resume_in_context();
  // start_task's rare part: a given context, a copy of a non-empty one, and
  // in debug mode where the task was created.
  void keep_context_and_origin(const Context* context, std::source_location created_at);

  std::unique_ptr<Extras> extras_;
  uint32_t id_ = 0;
  int32_t num_cancels_requested_ = 0;
  bool is_task_ = false;
  bool must_cancel_ = false;
  bool started_ = false;

 public:
  // A nested frame awaited by a coroutine whose promise is not a TaskCore (an
  // async generator's, another library's): the walk of get_stack stops here.
  // Set only on that rare path, never cleared: a Coro is awaited once. Kept
  // with the flags above, where it costs no padding.
  bool parent_unknown_ = false;
};

// Defined with the introspection functions (introspection.cc): repr(task),
// also used by the loop's reports; get_coro()'s identity.
std::string describe_task(const TaskCore& core);
const void* coroutine_identity(const TaskCore& core);

// An async generator's frame as its loop sees it: shutdown_asyncgens and the
// loop's teardown close it through this. Owned by the AsyncGenerator.
struct GeneratorControl : Pooled {
  void close() noexcept;  // destroys the frame unless it is running
  std::coroutine_handle<> frame;
  GeneratorControl* prev = nullptr;
  GeneratorControl* next = nullptr;
  TaskRegistry* registry = nullptr;
  bool running = false;
};

// Per-loop list of pending tasks (all_tasks) and live async generators.
class TaskRegistry final : public LoopExtension {
 public:
  explicit TaskRegistry(EventLoop& loop);
  ~TaskRegistry() override;
  static TaskRegistry& of(EventLoop& loop);    // created on first use
  static TaskRegistry* find(EventLoop& loop);  // or null
  void add(TaskCore* task);
  void remove(TaskCore* task);
  std::vector<AnyTask> pending_tasks() const;
  void add_generator(GeneratorControl* gen);
  void remove_generator(GeneratorControl* gen) noexcept;
  void close_generators();
  EventLoop& loop() const { return loop_; }
  // get_stack's view of frames that are not Coro frames.
  bool is_generator_frame(const void* frame) const noexcept;
  void note_foreign_resume_point(const TaskCore* task, const void* frame);
  bool is_foreign_resume_point(const TaskCore* task, const void* frame) const noexcept;
  // set_task_factory's factory, or null: the one check create_task pays.
  TaskFactorySlot* task_factory() const noexcept { return task_factory_.get(); }
  void set_task_factory(std::unique_ptr<TaskFactorySlot> factory) noexcept;

  // The process's live registries, for task dumps taken from another thread
  // (futures/debug_dump.h) and for gdb (tools/gdb/asyncio_gdb.py). Calls
  // visit(registry, context) for each under the lock that a registry's
  // creation and destruction take, so each stays alive during its visit.
  static void for_each_live(void (*visit)(TaskRegistry&, void*), void* context);
  // 1 for the process's first registry, then 2, ...: names a loop in dumps.
  uint64_t serial() const noexcept { return serial_; }

 private:
  // Head of the list of live registries (newest first), guarded by a mutex
  // in core.cc; gdb reads it by this name.
  static TaskRegistry* live_head_;
  TaskRegistry* live_prev_ = nullptr;
  TaskRegistry* live_next_ = nullptr;
  uint64_t serial_ = 0;
  EventLoop& loop_;
  std::unique_ptr<TaskFactorySlot> task_factory_;
  TaskCore* head_ = nullptr;
  GeneratorControl* generators_ = nullptr;
  // The last frame of another coroutine library each task suspended in (rare;
  // a stale entry only makes get_stack stop early).
  std::unordered_map<const TaskCore*, const void*> foreign_resume_points_;
};

// Whether a coroutine whose promise is P is a Coro frame (a TaskCore at the
// promise's usual place: get_stack reads its link_), an async generator's
// (the registry knows those) or something else.
template <class P>
consteval bool coro_promise_check() {
  if constexpr (std::is_base_of_v<TaskCore, P>) {
    return alignof(P) <= alignof(std::max_align_t);
  } else {
    return false;  // also P = void: a type-erased handle
  }
}
template <class P>
constexpr bool is_coro_promise = coro_promise_check<P>();
template <class P>
constexpr bool is_generator_promise = requires {
  typename P::asyncio_async_generator_promise;
};

// Suspensions in a frame that is neither (rare) are noted for get_stack.
template <class P>
void note_resume_point(TaskCore& task, std::coroutine_handle<P> h) {
  if constexpr (!is_coro_promise<P> && !is_generator_promise<P>) {
    TaskRegistry::of(task.loop()).note_foreign_resume_point(&task, h.address());
  }
}

// The task whose step is running on this thread, or null.
TaskCore* current_task_core() noexcept;
// As above; throws std::runtime_error if a coroutine awaits outside a task.
TaskCore& current_task_core_or_throw();

// Registers a waiting task on a future and schedules it when it completes.
struct WakeNode : CallbackNode {
  WakeNode() : CallbackNode(&WakeNode::wake) {}
  static void wake(CallbackNode* self, FutureStateBase* future);
  TaskCore* task = nullptr;
};

// future_add_to_awaited_by / future_discard_from_awaited_by (call_graph.h):
// a node on `future`'s callback list names `waiter`; it goes when `future`
// completes. Library code that awaits by callback registers its parent task.
void add_awaited_by(FutureStateBase* future, FutureStateBase* waiter);
void discard_awaited_by(FutureStateBase* future, FutureStateBase* waiter);
// The future that a combinator's callback on a child stands for (gather's
// outer future, wait's waiter), or null if `node` is none of theirs.
FutureStateBase* combinator_future(const CallbackNode& node) noexcept;
// Whether `node` is a task's wake-up on the future it awaits; its task.
TaskCore* waking_task(const CallbackNode& node) noexcept;

// RuntimeError as asyncio's Task.__step raises for a task awaiting itself or
// a future of another loop.
[[noreturn]] void throw_bad_await(const TaskCore& task, const FutureStateBase& future);
// ValueError as asyncio's ensure_future(future, loop=loop) raises: the future
// belongs to a loop other than `loop`.
void check_same_loop(const FutureStateBase& future, const EventLoop& loop);

// co_await on a Future<T> / Task<T>.
template <class T>
struct FutureAwaiter {
  explicit FutureAwaiter(FutureStateBase* s) : state(s) {}
  FutureAwaiter(const FutureAwaiter&) = delete;
  ~FutureAwaiter() {
    if (node.linked()) state->remove_callback(&node);
  }
  bool await_ready() const noexcept { return state->done(); }
  template <class P>
  void await_suspend(std::coroutine_handle<P> h) {
    TaskCore& task = current_task_core_or_throw();
    // Neither would ever wake the task: its own completion, or a future whose
    // callbacks run on another loop's thread.
    if (state == &task || &state->loop() != &task.loop()) [[unlikely]] {
      throw_bad_await(task, *state);
    }
    node.task = &task;
    state->add_callback(&node);
    note_resume_point(task, h);
    task.suspend_on(state, h);
  }
  T await_resume() {
    if (node.task != nullptr) node.task->resumed();
    state->rethrow_if_not_successful();
    if constexpr (!std::is_void_v<T>) return *value_slot<T>(state).value;
  }

  FutureStateBase* state;
  WakeNode node;
};

// co_await asyncio::sleep(0): gives up the loop for one iteration.
struct YieldAwaiter {
  bool await_ready() const noexcept { return false; }
  template <class P>
  void await_suspend(std::coroutine_handle<P> h) {
    task = &current_task_core_or_throw();
    note_resume_point(*task, h);
    task->suspend_yield(h);
  }
  void await_resume() { task->resumed(); }
  TaskCore* task = nullptr;
};

template <class T>
class Promise;

template <class T>
struct ReturnMixin : ValueSlot<T> {
  template <class U = T>
  void return_value(U&& v) {
    this->value.emplace(std::forward<U>(v));
  }
};
template <>
struct ReturnMixin<void> : ValueSlot<void> {
  void return_void() noexcept {}
};

struct FinalAwaiter {
  bool await_ready() const noexcept { return false; }
  template <class P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
    TaskCore& core = h.promise();
    if (!core.is_task()) return core.link_ ? core.link_ : std::noop_coroutine();
    core.finish_root();  // may destroy the frame
    return std::noop_coroutine();
  }
  void await_resume() const noexcept {}
};

template <class T>
class Promise final : public TaskCore, public ReturnMixin<T> {
 public:
  Promise() { set_value_offset<Promise, T>(this, value_offset_); }
  static void* operator new(std::size_t size) { return pool_allocate(size); }
  static void operator delete(void* p, std::size_t size) noexcept { pool_deallocate(p, size); }

  Coro<T> get_return_object() noexcept;
  std::suspend_always initial_suspend() const noexcept { return {}; }
  FinalAwaiter final_suspend() const noexcept { return {}; }
  void unhandled_exception() noexcept { exception_ = std::current_exception(); }
#ifdef ASYNCIO_AWAIT_LOCATIONS
  // Every co_await in a Coro goes through here; the default argument is
  // evaluated at the co_await, in the awaiting coroutine.
  template <class A>
  A&& await_transform(A&& awaitable,
                      std::source_location where = std::source_location::current()) noexcept {
    awaited_at_ = where;
    return static_cast<A&&>(awaitable);
  }
#endif

  // The outcome of an inline-awaited coroutine, for its parent.
  T take_result() {
    if (exception_) std::rethrow_exception(std::exchange(exception_, nullptr));
    if constexpr (!std::is_void_v<T>) return std::move(*this->value);
  }

 private:
  void destroy() noexcept override {
    std::coroutine_handle<Promise>::from_promise(*this).destroy();
  }
};

// The public handles keep their shared state private; the library's own
// layers (combinators, task groups, run, the executors' bridges) reach it
// through here.
struct Access {
  // The shared state (not owned); null for an empty Future.
  template <class T>
  static FutureStateBase* state(const Future<T>& future) noexcept {
    return future.state_;
  }
  // InvalidStateError if `task` is empty.
  template <class T>
  static TaskCore* core(const Task<T>& task) {
    return task.core();
  }
  static TaskCore* core(const AnyTask& task) noexcept;
  // Adopts one reference to `state`.
  template <class T>
  static Future<T> adopt_future(FutureStateBase* state) noexcept {
    return Future<T>(state);
  }
  // Adopts one reference to `core`.
  template <class T>
  static Task<T> adopt_task(TaskCore* core) noexcept {
    return Task<T>(core);
  }
  // Takes a new reference to `core`.
  static AnyTask any_task(TaskCore* core) noexcept;
  // A new reference to `task`, as a Future<void> (its result type erased).
  static Future<void> as_future(const AnyTask& task) noexcept;
  // Gives up `task`'s reference to its core (the caller adopts it).
  static TaskCore* release(AnyTask&& task) noexcept;
  // Takes ownership of a coroutine frame that is not a task yet.
  static AnyCoro any_coro(std::coroutine_handle<> frame, TaskCore* core) noexcept;
  // Gives up `coro`'s frame; null core if it was empty.
  static std::pair<std::coroutine_handle<>, TaskCore*> release(AnyCoro&& coro) noexcept;
};

// Traits behind iscoroutine, isfuture and await_result_t.
template <class T>
struct IsCoro : std::false_type {};
template <class T>
struct IsCoro<Coro<T>> : std::true_type {};
template <class T>
struct IsFuture : std::false_type {};
template <class T>
struct IsFuture<Future<T>> : std::true_type {};
template <class T>
struct IsFuture<Task<T>> : std::true_type {};

template <class A>
struct AwaitResult;
template <class T>
struct AwaitResult<Coro<T>> {
  using type = T;
};
template <class T>
struct AwaitResult<Future<T>> {
  using type = T;
};
template <class T>
struct AwaitResult<Task<T>> {
  using type = T;
};

Coro<void> sleep_seconds(double seconds);

// create_task's work after its checks: hands the frame to the loop's task
// factory if one is set, else makes it a task (eagerly if asked). Returns the
// task's core with one reference for the caller's handle.
// The name is taken by rvalue reference all the way down: moving strings
// around is a measurable part of a task's creation.
TaskCore* start_new_task(EventLoop& loop, TaskCore& core, std::coroutine_handle<> root,
                         std::string&& name, std::optional<bool> eager_start,
                         const Context* context, std::source_location created_at);

}  // namespace futures_internal
}  // namespace asyncio
