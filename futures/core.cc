#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>

#include "futures/futures.h"

namespace asyncio {

ExceptionGroup::ExceptionGroup(std::string message, std::vector<std::exception_ptr> exceptions)
    : message_(std::make_shared<const std::string>(message)),
      what_(std::make_shared<const std::string>(message + " (" + std::to_string(exceptions.size()) +
                                                " sub-exception" +
                                                (exceptions.size() == 1 ? "" : "s") + ")")),
      exceptions_(std::make_shared<const std::vector<std::exception_ptr>>(std::move(exceptions))) {}

namespace futures_internal {
namespace {

thread_local TaskCore* t_current_task = nullptr;
std::atomic<uint32_t> g_task_counter{0};

bool is_cancelled_error(const std::exception_ptr& exc) {
  try {
    std::rethrow_exception(exc);
  } catch (const CancelledError&) {
    return true;
  } catch (...) {
    return false;
  }
}

}  // namespace

CallbackId next_callback_id() noexcept {
  static thread_local CallbackId next = 0;
  return ++next;
}

TaskCore* current_task_core() noexcept { return t_current_task; }

TaskCore& current_task_core_or_throw() {
  if (t_current_task == nullptr) {
    throw std::runtime_error("a coroutine can only suspend inside a task (use asyncio::run)");
  }
  return *t_current_task;
}

// ---------------------------------------------------------------------------
// FutureStateBase

FutureStateBase::~FutureStateBase() {
  if (log_traceback_) report_unretrieved("Future exception was never retrieved", "");
  // Callbacks of a future that never completed: nothing will fire them.
  while (callbacks_ != nullptr) {
    CallbackNode* n = callbacks_;
    remove_callback(n);
    n->fire(n, nullptr);
  }
}

void FutureStateBase::report_unretrieved(const char* message,
                                         const std::string& task_name) noexcept {
  if (!log_traceback_ || !exception_ || loop_ == nullptr) return;
  log_traceback_ = false;
  if (!EventLoop::exists(loop_)) return;
  try {
    loop_->call_exception_handler({message, exception_, task_name, ""});
  } catch (...) {
  }
}

void FutureStateBase::add_callback(CallbackNode* node) {
  if (done()) {
    node->fire(node, this);
    return;
  }
  if (callbacks_ == nullptr) {
    node->prev = node->next = node;
    callbacks_ = node;
    return;
  }
  CallbackNode* tail = callbacks_->prev;
  node->prev = tail;
  node->next = callbacks_;
  tail->next = node;
  callbacks_->prev = node;
}

void FutureStateBase::remove_callback(CallbackNode* node) noexcept {
  if (!node->linked()) return;
  if (node->next == node) {
    callbacks_ = nullptr;
  } else {
    node->prev->next = node->next;
    node->next->prev = node->prev;
    if (callbacks_ == node) callbacks_ = node->next;
  }
  node->prev = node->next = nullptr;
}

void FutureStateBase::fire_callbacks() {
  // Detach the whole list first: a callback may add others (they fire at
  // once, the future being done) or release its own node.
  CallbackNode* head = std::exchange(callbacks_, nullptr);
  if (head == nullptr) return;
  head->prev->next = nullptr;  // break the circle
  while (head != nullptr) {
    CallbackNode* next = head->next;
    head->prev = head->next = nullptr;
    head->fire(head, this);
    head = next;
  }
}

void FutureStateBase::throw_not_pending() const {
  throw InvalidStateError(cancelled() ? "invalid state: the future is cancelled"
                                      : "invalid state: the future is already done");
}

void FutureStateBase::rethrow_if_not_successful() const {
  if (status_ == Status::kCancelled) std::rethrow_exception(exception_);
  if (status_ != Status::kFinished) throw InvalidStateError("Result is not ready.");
  if (exception_) {
    log_traceback_ = false;
    std::rethrow_exception(exception_);
  }
}

std::exception_ptr FutureStateBase::exception() const {
  if (status_ == Status::kCancelled) std::rethrow_exception(exception_);
  if (status_ != Status::kFinished) throw InvalidStateError("Exception is not set.");
  log_traceback_ = false;
  return exception_;
}

void FutureStateBase::set_exception(std::exception_ptr exc) {
  if (!exc) throw std::invalid_argument("set_exception: null exception_ptr");
  check_pending();
  exception_ = std::move(exc);
  status_ = Status::kFinished;
  log_traceback_ = true;
  fire_callbacks();
}

bool FutureStateBase::cancel_future(std::string_view message) {
  if (loop_ != nullptr) loop_->check_thread();
  log_traceback_ = false;
  if (done()) return false;
  exception_ = std::make_exception_ptr(CancelledError(std::string(message)));
  status_ = Status::kCancelled;
  fire_callbacks();
  return true;
}

bool FutureStateBase::cancel(std::string_view message) { return cancel_future(message); }

void throw_bad_await(const TaskCore& task, const FutureStateBase& future) {
  if (&future == &task) {
    throw std::runtime_error("Task cannot await on itself: " + task.description());
  }
  throw std::runtime_error("Task " + task.description() + " got " + future.description() +
                           " attached to a different loop");
}

void check_same_loop(const FutureStateBase& future, const EventLoop& loop) {
  if (&future.loop() != &loop) [[unlikely]] {
    throw std::invalid_argument(
        "The future belongs to a different loop than the one specified as the loop argument");
  }
}

void WakeNode::wake(CallbackNode* self, FutureStateBase* future) {
  if (future == nullptr) return;  // embedded in an awaiter; nothing to free
  TaskCore* task = static_cast<WakeNode*>(self)->task;
  task->loop().schedule(*task);
}

// ---------------------------------------------------------------------------
// The per-loop registry of pending tasks (all_tasks) and async generators.

int registry_slot() {
  static const int slot = EventLoop::new_extension_slot();
  return slot;
}

TaskRegistry& TaskRegistry::of(EventLoop& loop) {
  const int slot = registry_slot();
  auto* registry = static_cast<TaskRegistry*>(loop.extension(slot));
  if (registry == nullptr) {
    auto owned = std::make_unique<TaskRegistry>(loop);
    registry = owned.get();
    loop.set_extension(slot, std::move(owned));
  }
  return *registry;
}

struct TaskFactorySlot {
  explicit TaskFactorySlot(TaskFactory f) : factory(std::move(f)) {
    using Fn = AnyTask (*)(EventLoop&, AnyCoro, TaskOptions);
    const Fn* fn = factory.target<Fn>();
    is_eager_task_factory = fn != nullptr && *fn == &eager_task_factory;
  }
  TaskFactory factory;
  // eager_task_factory itself: create_task does what it would without the
  // calls through std::function, AnyCoro and AnyTask.
  bool is_eager_task_factory;
};

namespace {
// Names the task behind a slow step in debug mode's report (its repr, with
// where it was created). A reference keeps it alive through the step.
void* retain_if_task(Runnable* node) {
  TaskCore* task = TaskCore::task_of(node);
  if (task != nullptr) task->add_ref();
  return task;
}
std::string describe_retained_task(void* token) {
  return describe_task(*static_cast<TaskCore*>(token));
}
void release_retained_task(void* token) { static_cast<TaskCore*>(token)->release(); }

constexpr EventLoop::RunnableInspector kTaskInspector{&retain_if_task, &describe_retained_task,
                                                      &release_retained_task};

// Guards TaskRegistry::live_head_ and the registries' live_prev_/live_next_;
// taken only when a registry is made or destroyed, and by task dumps.
std::mutex g_live_registries_mu;
uint64_t g_last_registry_serial = 0;
}  // namespace

TaskRegistry* TaskRegistry::live_head_ = nullptr;

TaskRegistry::TaskRegistry(EventLoop& loop) : loop_(loop) {
  static const bool installed = (EventLoop::set_runnable_inspector(&kTaskInspector), true);
  (void)installed;
  std::lock_guard<std::mutex> lock(g_live_registries_mu);
  serial_ = ++g_last_registry_serial;
  live_next_ = live_head_;
  if (live_head_ != nullptr) live_head_->live_prev_ = this;
  live_head_ = this;
}

void TaskRegistry::for_each_live(void (*visit)(TaskRegistry&, void*), void* context) {
  std::lock_guard<std::mutex> lock(g_live_registries_mu);
  for (TaskRegistry* r = live_head_; r != nullptr; r = r->live_next_) visit(*r, context);
}

void TaskRegistry::set_task_factory(std::unique_ptr<TaskFactorySlot> factory) noexcept {
  task_factory_ = std::move(factory);
}

TaskRegistry* TaskRegistry::find(EventLoop& loop) {
  return static_cast<TaskRegistry*>(loop.extension(registry_slot()));
}

void TaskRegistry::add(TaskCore* task) {
  task->registry_prev_ = nullptr;
  task->registry_next_ = head_;
  if (head_ != nullptr) head_->registry_prev_ = task;
  head_ = task;
}

void TaskRegistry::remove(TaskCore* task) {
  if (task->registry_prev_ != nullptr) {
    task->registry_prev_->registry_next_ = task->registry_next_;
  } else if (head_ == task) {
    head_ = task->registry_next_;
  } else {
    return;  // not registered
  }
  if (task->registry_next_ != nullptr) task->registry_next_->registry_prev_ = task->registry_prev_;
  task->registry_prev_ = task->registry_next_ = nullptr;
}

std::vector<AnyTask> TaskRegistry::pending_tasks() const {
  std::vector<AnyTask> tasks;
  for (TaskCore* t = head_; t != nullptr; t = t->registry_next_)
    tasks.push_back(Access::any_task(t));
  // Oldest first, as creation order is what people expect to read.
  std::reverse(tasks.begin(), tasks.end());
  return tasks;
}

void TaskRegistry::add_generator(GeneratorControl* gen) {
  gen->prev = nullptr;
  gen->next = generators_;
  if (generators_ != nullptr) generators_->prev = gen;
  generators_ = gen;
  gen->registry = this;
}

void TaskRegistry::remove_generator(GeneratorControl* gen) noexcept {
  if (gen->registry != this) return;
  if (gen->prev != nullptr) {
    gen->prev->next = gen->next;
  } else {
    generators_ = gen->next;
  }
  if (gen->next != nullptr) gen->next->prev = gen->prev;
  gen->prev = gen->next = nullptr;
  gen->registry = nullptr;
}

void TaskRegistry::close_generators() {
  while (generators_ != nullptr) {
    GeneratorControl* gen = generators_;
    remove_generator(gen);
    gen->close();
  }
}

TaskRegistry::~TaskRegistry() {
  {
    std::lock_guard<std::mutex> lock(g_live_registries_mu);
    if (live_prev_ != nullptr) {
      live_prev_->live_next_ = live_next_;
    } else {
      live_head_ = live_next_;
    }
    if (live_next_ != nullptr) live_next_->live_prev_ = live_prev_;
  }
  close_generators();
  // Tasks still pending when their loop is destroyed can never run again.
  // Report them, as asyncio does, and release their frames.
  while (head_ != nullptr) {
    TaskCore* task = head_;
    remove(task);
    task->abandon();
  }
}

void GeneratorControl::close() noexcept {
  if (frame && !running) {
    auto h = std::exchange(frame, {});
    h.destroy();
  }
}

// ---------------------------------------------------------------------------
// TaskCore

TaskCore::~TaskCore() {
  // Checked first: describing the task on every destruction is costly.
  if (is_task_ && log_traceback_) {
    report_unretrieved("Task exception was never retrieved", describe_task(*this));
  }
}

std::string FutureStateBase::description() const { return "Future"; }

TaskCore::Extras& TaskCore::extras() {
  if (!extras_) extras_ = std::make_unique<Extras>();
  return *extras_;
}

contextvars_internal::ContextRef* TaskCore::context_storage(void* task) {
  return &static_cast<TaskCore*>(task)->extras().context;
}

Context TaskCore::context() {
  contextvars_internal::ContextRef& context = extras().context;
  if (!context) context = Context().ref();  // the handle and the task share it from now on
  return Context(context);
}

void TaskCore::keep_context_and_origin(const Context* context, std::source_location created_at) {
  if (created_at.line() != 0 && loop_->get_debug()) extras().created_at = created_at;
  // As asyncio: the task runs in a copy of its creator's context (nothing
  // to copy, and nothing allocated, while no variable is set).
  if (context != nullptr) {
    extras().context = context->ref();
  } else if (!contextvars_internal::current_is_empty()) {
    extras().context = contextvars_internal::capture_current();
  }
}

void TaskCore::resume_in_context() {
  contextvars_internal::Slot slot{extras_ ? &extras_->context : nullptr, &context_storage, this};
  contextvars_internal::SlotScope scope(slot);
  link_.resume();  // the task may be gone after this: only the slot is used
}

std::string TaskCore::name() const {
  if (extras_ && extras_->name) return *extras_->name;
  return "Task-" + std::to_string(id_);
}

void TaskCore::set_name(std::string name) { extras().name = std::move(name); }

std::string TaskCore::description() const { return is_task_ ? name() : "Future"; }

void TaskCore::start_task(TaskRegistry& registry, std::string&& name, std::coroutine_handle<> root,
                          bool eager, const Context* context, std::source_location created_at) {
  EventLoop& loop = registry.loop();
  loop_ = &loop;
  is_task_ = true;
  link_ = root;
  id_ = g_task_counter.fetch_add(1, std::memory_order_relaxed) + 1;
  if (!name.empty()) extras().name = std::move(name);
  if (context != nullptr || contextvars_internal::vars_exist() || loop.get_debug()) [[unlikely]] {
    keep_context_and_origin(context, created_at);
  }
  refs_ = 2;  // the returned Task handle, and the task's own until it completes
  registry.add(this);
  // As Python: a loop that is not running has nowhere to come back to.
  if (eager && loop.is_running()) [[unlikely]] {
    step_eagerly();
    return;
  }
  loop.schedule(*this);
}

void TaskCore::step_eagerly() {
  started_ = true;
  // The task's own reference keeps the frame alive through the step; the
  // creator's task becomes current again after it, done or suspended.
  TaskCore* previous = std::exchange(t_current_task, this);
  if (contextvars_internal::vars_exist()) [[unlikely]] {
    resume_in_context();
  } else {
    link_.resume();
  }
  t_current_task = previous;
}

bool TaskCore::cancel(std::string_view message) {
  if (!is_task_) return cancel_future(message);
  log_traceback_ = false;
  if (done()) return false;
  ++num_cancels_requested_;
  // Never a task itself: cancelling would recurse forever (awaiting oneself
  // is refused, this is the last line of defence).
  if (waiting_on_ != nullptr && waiting_on_ != this && waiting_on_->cancel(message)) return true;
  // The task is running or about to: it sees CancelledError at its next
  // suspension point.
  must_cancel_ = true;
  extras().cancel_msg = std::string(message);
  return true;
}

std::string TaskCore::cancel_message() const { return extras_ ? extras_->cancel_msg : ""; }

void TaskCore::throw_pending_cancel() {
  must_cancel_ = false;
  throw CancelledError(cancel_message());
}

void TaskCore::suspend_on(FutureStateBase* future, std::coroutine_handle<> resume_at) {
  waiting_on_ = future;
  link_ = resume_at;
  if (must_cancel_ && future->cancel(cancel_message())) must_cancel_ = false;
}

void TaskCore::suspend_yield(std::coroutine_handle<> resume_at) {
  waiting_on_ = nullptr;
  link_ = resume_at;
  loop_->schedule(*this);
}

void TaskCore::step(Runnable* self, bool discard) {
  if (discard) return;  // the loop is closing; the registry releases the task
  auto* task = static_cast<TaskCore*>(self);
  if (!task->started_) {
    task->started_ = true;
    if (task->must_cancel_) {
      // Cancelled before its first step: the body never runs.
      task->must_cancel_ = false;
      task->complete(Status::kCancelled,
                     std::make_exception_ptr(CancelledError(task->cancel_message())));
      return;
    }
  }
  TaskCore* previous = t_current_task;
  t_current_task = task;
  // The task may be gone after this.
  if (contextvars_internal::vars_exist()) [[unlikely]] {
    task->resume_in_context();
  } else {
    task->link_.resume();
  }
  t_current_task = previous;
}

void TaskCore::finish_root() noexcept {
  if (exception_) {
    if (is_cancelled_error(exception_)) {
      complete(Status::kCancelled, exception_);
    } else {
      complete(Status::kFinished, exception_);
    }
  } else if (must_cancel_) {
    // Cancelled right as the coroutine returned: asyncio reports it cancelled.
    must_cancel_ = false;
    complete(Status::kCancelled, std::make_exception_ptr(CancelledError(cancel_message())));
  } else {
    complete(Status::kFinished, nullptr);
  }
}

void TaskCore::complete(Status status, std::exception_ptr exc) noexcept {
  if (TaskRegistry* registry = TaskRegistry::find(*loop_)) registry->remove(this);
  exception_ = std::move(exc);
  status_ = status;
  log_traceback_ = status == Status::kFinished && exception_ != nullptr;
  waiting_on_ = nullptr;
  fire_callbacks();
  release();  // the task's own reference: the frame may be destroyed here
}

void TaskCore::abandon() noexcept {
  try {
    loop_->call_exception_handler(
        {"Task was destroyed but it is pending!", nullptr, describe_task(*this), ""});
  } catch (...) {
  }
  complete(Status::kCancelled, std::make_exception_ptr(CancelledError("task abandoned")));
}

// ---------------------------------------------------------------------------
// Starting tasks, task factories

namespace {

TaskCore* start_through_factory(TaskRegistry& registry, TaskCore& core,
                                std::coroutine_handle<> root, TaskOptions options) {
  // A copy: the factory may replace itself (set_task_factory) while it runs.
  TaskFactory factory = registry.task_factory()->factory;
  AnyTask task = factory(registry.loop(), Access::any_coro(root, &core), std::move(options));
  if (Access::core(task) != &core) {
    throw std::logic_error("the task factory must return the task made from the coroutine it got");
  }
  return Access::release(std::move(task));
}

}  // namespace

TaskCore* start_new_task(EventLoop& loop, TaskCore& core, std::coroutine_handle<> root,
                         std::string&& name, std::optional<bool> eager_start,
                         const Context* context, std::source_location created_at) {
  TaskRegistry& registry = TaskRegistry::of(loop);
  if (TaskFactorySlot* factory = registry.task_factory()) [[unlikely]] {
    if (!factory->is_eager_task_factory) {
      TaskOptions options{std::move(name), eager_start};
      if (context != nullptr) options.context = *context;
      return start_through_factory(registry, core, root, std::move(options));
    }
    eager_start = eager_start.value_or(true);
  }
  core.start_task(registry, std::move(name), root, eager_start.value_or(false), context,
                  created_at);
  return &core;
}

}  // namespace futures_internal

AnyTask::AnyTask(AnyCoro coro, EventLoop& loop, TaskOptions options) : core_(nullptr) {
  if (loop.is_closed()) throw std::runtime_error("Event loop is closed");
  if (!coro.valid()) throw std::invalid_argument("Task: empty coroutine");
  loop.check_thread();
  auto [root, core] = futures_internal::Access::release(std::move(coro));
  // start_task leaves one reference for this handle.
  core->start_task(futures_internal::TaskRegistry::of(loop), std::move(options.name), root,
                   options.eager_start.value_or(false),
                   options.context ? &*options.context : nullptr);
  core_ = core;
}

void set_task_factory(EventLoop& loop, TaskFactory factory) {
  auto& registry = futures_internal::TaskRegistry::of(loop);
  if (!factory) {
    registry.set_task_factory(nullptr);
    return;
  }
  registry.set_task_factory(
      std::make_unique<futures_internal::TaskFactorySlot>(std::move(factory)));
}

TaskFactory get_task_factory(EventLoop& loop) {
  auto* registry = futures_internal::TaskRegistry::find(loop);
  if (registry == nullptr || registry->task_factory() == nullptr) return nullptr;
  return registry->task_factory()->factory;
}

AnyTask eager_task_factory(EventLoop& loop, AnyCoro coro, TaskOptions options) {
  if (!options.eager_start) options.eager_start = true;
  return AnyTask(std::move(coro), loop, std::move(options));
}

TaskFactory create_eager_task_factory(TaskConstructor custom_task_constructor) {
  return [construct = std::move(custom_task_constructor)](EventLoop& loop, AnyCoro coro,
                                                          TaskOptions options) {
    if (!options.eager_start) options.eager_start = true;
    return construct(std::move(coro), loop, std::move(options));
  };
}

// ---------------------------------------------------------------------------
// Current and all tasks

std::optional<AnyTask> current_task() {
  futures_internal::TaskCore* core = futures_internal::current_task_core();
  if (core == nullptr) return std::nullopt;
  return futures_internal::Access::any_task(core);
}

std::vector<AnyTask> all_tasks() {
  EventLoop& loop = get_running_loop();
  auto* registry = futures_internal::TaskRegistry::find(loop);
  if (registry == nullptr) return {};
  return registry->pending_tasks();
}

}  // namespace asyncio
