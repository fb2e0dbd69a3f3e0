// The machinery under //futures: future states, the task core that lives in
// every coroutine promise, Coro<T>, Future<T>, Task<T> and AnyTask.
//
// One coroutine promise type serves both as an inline-awaited coroutine
// (Coro<T>) and as a task's root: create_task adopts the frame and the task's
// state (the shared future, cancellation, the ready-queue node) is already in
// it, so a task costs one allocation, taken from the per-thread free list.
#pragma once

#include <coroutine>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "loop/loop.h"

namespace asyncio {

// ---------------------------------------------------------------------------
// Errors

// The task or future was cancelled. Derives from std::exception only, so that
// `catch (const std::runtime_error&)` does not swallow cancellation.
class CancelledError : public std::exception {
 public:
  explicit CancelledError(std::string message = "")
      : message_(std::make_shared<const std::string>(std::move(message))) {}
  const char* what() const noexcept override {
    return message_->empty() ? "cancelled" : message_->c_str();
  }
  // The message given to cancel(), possibly empty.
  const std::string& message() const noexcept { return *message_; }

 private:
  std::shared_ptr<const std::string> message_;
};

class TimeoutError : public std::runtime_error {
 public:
  explicit TimeoutError(const std::string& what = "timed out") : std::runtime_error(what) {}
};

class InvalidStateError : public std::logic_error {
 public:
  explicit InvalidStateError(const std::string& what) : std::logic_error(what) {}
};

// Several exceptions at once (TaskGroup): as Python's ExceptionGroup.
class ExceptionGroup : public std::exception {
 public:
  ExceptionGroup(std::string message, std::vector<std::exception_ptr> exceptions);
  const char* what() const noexcept override { return what_->c_str(); }
  const std::string& message() const noexcept { return *message_; }
  const std::vector<std::exception_ptr>& exceptions() const noexcept { return *exceptions_; }

 private:
  std::shared_ptr<const std::string> message_;
  std::shared_ptr<const std::string> what_;
  std::shared_ptr<const std::vector<std::exception_ptr>> exceptions_;
};

template <class T>
class Coro;
template <class T>
class Future;
template <class T>
class Task;
class AnyTask;

using CallbackId = uint64_t;

namespace futures_internal {

class FutureStateBase;

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
  void mark_finished();  // the value (if any) is already stored
  // Stores a cancelled state with CancelledError(message) and fires callbacks.
  bool cancel_future(std::string_view message);
  // Marks the exception as retrieved (gather, wait, shield do this).
  void mark_retrieved() const noexcept { log_traceback_ = false; }
  // Throws InvalidStateError if done.
  void check_pending() const;
  const std::exception_ptr& stored_exception() const noexcept { return exception_; }
  uint16_t value_offset() const noexcept { return value_offset_; }

 protected:
  virtual ~FutureStateBase();
  // Called when the last reference goes.
  virtual void destroy() noexcept = 0;
  void fire_callbacks();
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

  // Makes this frame a task's root on `loop` and schedules its first step.
  void start_task(EventLoop& loop, std::string name, std::coroutine_handle<> root);
  bool is_task() const noexcept { return is_task_; }
  std::string name() const;
  void set_name(std::string name);
  int cancelling() const noexcept { return num_cancels_requested_; }
  int uncancel() noexcept {
    if (num_cancels_requested_ > 0) --num_cancels_requested_;
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

 protected:
  ~TaskCore() override;

 private:
  friend class TaskRegistry;
  static void step(Runnable* self, bool discard);
  [[noreturn]] void throw_pending_cancel();
  std::string cancel_message() const;
  void complete(Status status, std::exception_ptr exc) noexcept;
  void abandon() noexcept;  // the loop is going away while the task is pending

  FutureStateBase* waiting_on_ = nullptr;
  TaskCore* registry_prev_ = nullptr;  // the loop's list of pending tasks
  TaskCore* registry_next_ = nullptr;
  std::unique_ptr<std::string> extra_name_;  // set_name / create_task name
  std::unique_ptr<std::string> cancel_msg_;  // message of a pending cancel
  uint32_t id_ = 0;
  int32_t num_cancels_requested_ = 0;
  bool is_task_ = false;
  bool must_cancel_ = false;
  bool started_ = false;
};

class TaskRegistry;

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
  explicit TaskRegistry(EventLoop& loop) : loop_(loop) {}
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

 private:
  EventLoop& loop_;
  TaskCore* head_ = nullptr;
  GeneratorControl* generators_ = nullptr;
};

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
  void await_suspend(std::coroutine_handle<> h) {
    TaskCore& task = current_task_core_or_throw();
    // Neither would ever wake the task: its own completion, or a future whose
    // callbacks run on another loop's thread.
    if (state == &task || &state->loop() != &task.loop()) [[unlikely]] {
      throw_bad_await(task, *state);
    }
    node.task = &task;
    state->add_callback(&node);
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
  void await_suspend(std::coroutine_handle<> h) {
    task = &current_task_core_or_throw();
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

}  // namespace futures_internal

// ---------------------------------------------------------------------------
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
      if (h_) h_.destroy();
      h_ = std::exchange(other.h_, {});
    }
    return *this;
  }
  ~Coro() {
    if (h_) h_.destroy();
  }

  struct Awaiter {
    handle_type h;
    bool await_ready() const {
      if (!h || h.done()) throw std::logic_error("Coro awaited twice or empty");
      return false;
    }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> parent) noexcept {
      h.promise().link_ = parent;
      return h;
    }
    T await_resume() { return h.promise().take_result(); }
  };
  Awaiter operator co_await() const& noexcept { return Awaiter{h_}; }

  bool valid() const noexcept { return static_cast<bool>(h_); }
  // Gives up ownership of the frame (create_task adopts it).
  handle_type release() noexcept { return std::exchange(h_, {}); }

 private:
  handle_type h_;
};

template <class T>
Coro<T> futures_internal::Promise<T>::get_return_object() noexcept {
  return Coro<T>(std::coroutine_handle<Promise>::from_promise(*this));
}

// ---------------------------------------------------------------------------
// Future<T>: a copyable handle to a shared, loop-affine result.
template <class T = void>
class Future {
 public:
  using value_type = T;

  Future() = default;
  Future(const Future& other) noexcept : state_(other.state_) {
    if (state_ != nullptr) state_->add_ref();
  }
  Future(Future&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  Future& operator=(Future other) noexcept {
    std::swap(state_, other.state_);
    return *this;
  }
  ~Future() {
    if (state_ != nullptr) state_->release();
  }

  bool valid() const noexcept { return state_ != nullptr; }
  bool done() const { return state()->done(); }
  bool cancelled() const { return state()->cancelled(); }

  // Throws InvalidStateError if not done, CancelledError if cancelled, or the
  // stored exception.
  T result() const {
    state()->rethrow_if_not_successful();
    if constexpr (!std::is_void_v<T>) return *futures_internal::value_slot<T>(state_).value;
  }
  std::exception_ptr exception() const { return state()->exception(); }

  template <class U = T, class = std::enable_if_t<!std::is_void_v<U>>>
  void set_result(U value) {
    auto* s = state();
    s->check_pending();
    futures_internal::value_slot<T>(s).value.emplace(std::move(value));
    s->mark_finished();
  }
  template <class U = T, class = std::enable_if_t<std::is_void_v<U>>>
  void set_result() {
    state()->mark_finished();
  }
  void set_exception(std::exception_ptr exc) { state()->set_exception(std::move(exc)); }
  bool cancel(std::string message = "") { return state()->cancel(message); }

  // Schedules `cb(future)` with call_soon when the future is done.
  CallbackId add_done_callback(absl::AnyInvocable<void(Future<T>&)> cb);
  // Removes every callback added with this id that has not been scheduled;
  // returns how many.
  size_t remove_done_callback(CallbackId id);

  EventLoop& get_loop() const { return state()->loop(); }

  futures_internal::FutureAwaiter<T> operator co_await() const noexcept {
    return futures_internal::FutureAwaiter<T>(state_);
  }

  friend bool operator==(const Future& a, const Future& b) { return a.state_ == b.state_; }

  // For library layers: the shared state (not owned).
  futures_internal::FutureStateBase* state_ptr() const noexcept { return state_; }
  // Adopts one reference to `state`.
  explicit Future(futures_internal::FutureStateBase* state) noexcept : state_(state) {}

 protected:
  futures_internal::FutureStateBase* state() const {
    if (state_ == nullptr) throw InvalidStateError("empty Future");
    return state_;
  }
  futures_internal::FutureStateBase* state_ = nullptr;
};

template <class T = void>
Future<T> create_future(EventLoop& loop) {
  return Future<T>(new futures_internal::PlainFutureState<T>(&loop));
}

namespace futures_internal {

// A done-callback added with add_done_callback: runs on the loop via the
// ready queue, one iteration after completion, as in asyncio.
template <class T>
struct UserCallback final : CallbackNode, Runnable, Pooled {
  UserCallback(absl::AnyInvocable<void(Future<T>&)> f, CallbackId i)
      : CallbackNode(&UserCallback::on_fire),
        Runnable(&UserCallback::on_run),
        cb(std::move(f)),
        id(i) {}
  static void on_fire(CallbackNode* self, FutureStateBase* future) {
    auto* node = static_cast<UserCallback*>(self);
    if (future == nullptr) {
      delete node;
      return;
    }
    future->add_ref();
    node->future = Future<T>(future);
    future->loop().schedule(*node);
  }
  static void on_run(Runnable* self, bool discard) {
    auto* node = static_cast<UserCallback*>(self);
    if (!discard) {
      try {
        node->cb(node->future);
      } catch (...) {
        node->future.get_loop().call_exception_handler(
            {"Exception in callback of a Future", std::current_exception(), "", ""});
      }
    }
    delete node;
  }
  absl::AnyInvocable<void(Future<T>&)> cb;
  CallbackId id;
  Future<T> future;
};

CallbackId next_callback_id() noexcept;

}  // namespace futures_internal

template <class T>
CallbackId Future<T>::add_done_callback(absl::AnyInvocable<void(Future<T>&)> cb) {
  CallbackId id = futures_internal::next_callback_id();
  state()->add_callback(new futures_internal::UserCallback<T>(std::move(cb), id));
  return id;
}

template <class T>
size_t Future<T>::remove_done_callback(CallbackId id) {
  return state()->remove_callbacks_if([id](futures_internal::CallbackNode* n) {
    return n->fire == &futures_internal::UserCallback<T>::on_fire &&
           static_cast<futures_internal::UserCallback<T>*>(n)->id == id;
  });
}

// ---------------------------------------------------------------------------
// Task<T>: a Future<T> driven by a coroutine.
template <class T = void>
class Task : public Future<T> {
 public:
  Task() = default;
  // Adopts one reference to the task's root promise.
  explicit Task(futures_internal::TaskCore* core) noexcept : Future<T>(core) {}

  std::string get_name() const { return core()->name(); }
  void set_name(std::string name) { core()->set_name(std::move(name)); }
  // Number of pending cancellation requests (cancel() minus uncancel()).
  int cancelling() const { return core()->cancelling(); }
  int uncancel() { return core()->uncancel(); }

  // A task's result comes from its coroutine only.
  template <class U>
  void set_result(U) = delete;
  void set_result() = delete;
  void set_exception(std::exception_ptr) = delete;

  futures_internal::TaskCore* core() const {
    return static_cast<futures_internal::TaskCore*>(this->state());
  }
};

// A Task of any result type: cancel, inspect, await (the result is dropped).
class AnyTask {
 public:
  template <class T>
  AnyTask(const Task<T>& task) : core_(task.core()) {  // NOLINT: implicit by design
    core_->add_ref();
  }
  explicit AnyTask(futures_internal::TaskCore* core) noexcept : core_(core) { core_->add_ref(); }
  AnyTask(const AnyTask& other) noexcept : core_(other.core_) { core_->add_ref(); }
  AnyTask& operator=(AnyTask other) noexcept {
    std::swap(core_, other.core_);
    return *this;
  }
  ~AnyTask() {
    if (core_ != nullptr) core_->release();
  }

  bool done() const { return core_->done(); }
  bool cancelled() const { return core_->cancelled(); }
  bool cancel(std::string message = "") { return core_->cancel(message); }
  std::string get_name() const { return core_->name(); }
  void set_name(std::string name) { core_->set_name(std::move(name)); }
  int cancelling() const { return core_->cancelling(); }
  int uncancel() { return core_->uncancel(); }
  std::exception_ptr exception() const { return core_->exception(); }
  EventLoop& get_loop() const { return core_->loop(); }

  futures_internal::FutureAwaiter<void> operator co_await() const noexcept {
    return futures_internal::FutureAwaiter<void>(core_);
  }
  friend bool operator==(const AnyTask& a, const AnyTask& b) { return a.core_ == b.core_; }
  futures_internal::TaskCore* core() const noexcept { return core_; }

 private:
  futures_internal::TaskCore* core_;
};

// ---------------------------------------------------------------------------
// Traits

namespace futures_internal {
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
}  // namespace futures_internal

template <class T>
constexpr bool iscoroutine = futures_internal::IsCoro<std::remove_cvref_t<T>>::value;
template <class T>
constexpr bool isfuture = futures_internal::IsFuture<std::remove_cvref_t<T>>::value;

// The result type of awaiting a Coro<T>, Future<T> or Task<T>.
template <class A>
using await_result_t = typename futures_internal::AwaitResult<std::remove_cvref_t<A>>::type;

}  // namespace asyncio
