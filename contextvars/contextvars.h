// Task-local context: Python's contextvars module.
//
//   Python                               C++
//   request_id = ContextVar("request_id")   asyncio::ContextVar<std::string>
//   request_id("request_id"); request_id.set("abc")                token = request_id.set("abc");
//   request_id.get()                     request_id.get()        (LookupError if unset)
//   request_id.get("none")               request_id.get("none")
//   request_id.reset(token)              request_id.reset(token);
//   ctx = contextvars.copy_context()     asyncio::Context ctx = asyncio::copy_context();
//   ctx.run(fn)                          ctx.run(fn);
//   ctx[var], var in ctx, len(ctx)       ctx.get(var), ctx.contains(var), ctx.size()
//
// As in asyncio, every task runs in its own copy of the context that was
// current when it was created (`create_task(coro, name, context)` takes
// another), callbacks run in the context that was current when they were
// scheduled (or the one passed to `call_soon`/`call_later`/`call_at`/
// `call_soon_threadsafe`), and `to_thread`/`run_in_executor` run the
// function in the caller's context. A value set inside a task is seen by the
// tasks and callbacks it starts, never by its creator.
//
// Cost: nothing is allocated until a variable is set. A context is a pointer
// to an immutable map shared by its copies (copy_context() is O(1)); set()
// copies the map (variables per program are few). Values are stored as
// std::shared_ptr<const T> and get() returns a copy of T: store a
// std::shared_ptr for large values.
#ifndef ASYNCIO_CONTEXTVARS_CONTEXTVARS_H_
#define ASYNCIO_CONTEXTVARS_CONTEXTVARS_H_

#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace asyncio {

// Python's LookupError (ContextVar.get() of a variable without a value).
class LookupError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace contextvars_internal {

// Set when the first ContextVar is made. Until then no context can hold a
// value, and the loop and tasks skip all context work: programs that do not
// use contextvars pay a load and a branch per callback and task step.
inline std::atomic<bool> g_vars_exist{false};
inline bool vars_exist() noexcept { return g_vars_exist.load(std::memory_order_relaxed); }

// A variable's identity; ContextVar<T> derives from it.
class VarBase {
 public:
  explicit VarBase(std::string name) : name_(std::move(name)) {
    g_vars_exist.store(true, std::memory_order_relaxed);
  }
  VarBase(const VarBase&) = delete;
  VarBase& operator=(const VarBase&) = delete;
  const std::string& name() const { return name_; }

 private:
  std::string name_;
};

// The immutable mapping of a context: variables sorted by address.
struct Map {
  std::vector<std::pair<const VarBase*, std::shared_ptr<const void>>> entries;
  const std::shared_ptr<const void>* find(const VarBase* var) const;
};

// The state a Context handle refers to. The map is replaced, never changed:
// copies share it. Used by one thread at a time (`entered` checks).
struct ContextData {
  std::shared_ptr<const Map> map;
  std::atomic<int> refs{1};
  bool entered = false;
};

// A counted reference to ContextData; null is the empty context.
class ContextRef {
 public:
  ContextRef() = default;
  explicit ContextRef(ContextData* data) noexcept : data_(data) {}
  ContextRef(const ContextRef& other) noexcept : data_(other.data_) { retain(); }
  ContextRef(ContextRef&& other) noexcept : data_(std::exchange(other.data_, nullptr)) {}
  ContextRef& operator=(ContextRef other) noexcept {
    std::swap(data_, other.data_);
    return *this;
  }
  ~ContextRef() { release(); }
  ContextData* get() const noexcept { return data_; }
  explicit operator bool() const noexcept { return data_ != nullptr; }

 private:
  void retain() noexcept {
    if (data_ != nullptr) data_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  void release() noexcept;
  ContextData* data_ = nullptr;
};

// Where the running code's context lives. A task's step, Context::run and a
// callback with a context each install a slot for their duration (on the
// stack); outside them the thread's own slot is current. A slot whose
// context is null holds the empty context: the first set() makes it
// ContextData, in `*context`, or, when that is null (a task that has no
// context yet), in the storage `provide(owner)` returns.
struct Slot {
  ContextRef* context = nullptr;
  ContextRef* (*provide)(void* owner) = nullptr;
  void* owner = nullptr;
};

// Installs `slot` as the current one until destroyed.
class SlotScope {
 public:
  explicit SlotScope(Slot& slot) noexcept;
  SlotScope(const SlotScope&) = delete;
  SlotScope& operator=(const SlotScope&) = delete;
  ~SlotScope();

 private:
  Slot* previous_;
};

// For tasks and callbacks: a copy of the current context, or null when it
// is empty (the common case: no allocation, one pointer).
ContextRef capture_current();
// True when no variable is set in the current context: callbacks capture
// the context only when it is not empty.
bool current_is_empty() noexcept;

std::shared_ptr<const void> lookup(const VarBase* var);
std::shared_ptr<const void> lookup_in(const ContextData* context, const VarBase* var);
// Sets (value) or removes (null) var in the current context; returns the
// previous value (null if none).
std::shared_ptr<const void> assign(const VarBase* var, std::shared_ptr<const void> value);
ContextData* current_data() noexcept;  // null while the current context is empty

// Runs fn with `context` (null: the empty context) current; a set() inside
// changes `context`.
template <class F>
decltype(auto) run_in(ContextRef& context, F&& fn) {
  Slot slot{&context};
  SlotScope scope(slot);
  return std::forward<F>(fn)();
}

}  // namespace contextvars_internal

// Python's contextvars.Context: a snapshot of variables that code can run in.
// Copies of a Context handle refer to the same context (Python object
// identity); copy() makes a new one with the same values.
class Context {
 public:
  Context();  // an empty context, as contextvars.Context()
  // Refers to `ref`'s context (null: a new empty one).
  explicit Context(contextvars_internal::ContextRef ref);

  // Runs fn with this context current: its set() calls change this context.
  // Throws std::logic_error (Python: RuntimeError) when the context is
  // already entered (by this or another thread).
  template <class F>
  decltype(auto) run(F&& fn) const {
    contextvars_internal::ContextData* data = ref_.get();
    if (data->entered) {
      throw std::logic_error("cannot enter context: the context is already entered");
    }
    data->entered = true;
    contextvars_internal::ContextRef current = ref_;
    contextvars_internal::Slot slot{&current};
    contextvars_internal::SlotScope scope(slot);
    struct Leave {
      contextvars_internal::ContextData* data;
      ~Leave() { data->entered = false; }
    } leave{data};
    return std::forward<F>(fn)();
  }

  Context copy() const;
  size_t size() const;
  bool contains(const contextvars_internal::VarBase& var) const;
  bool operator==(const Context& other) const { return ref_.get() == other.ref_.get(); }

  const contextvars_internal::ContextRef& ref() const { return ref_; }

 private:
  contextvars_internal::ContextRef ref_;  // never null
};

// Python's contextvars.copy_context().
Context copy_context();

template <class T>
class ContextVar;

// Python's contextvars.Token: what set() returns, for reset().
template <class T>
class Token {
 public:
  // The value the variable had before set(), or nullopt (Token.MISSING).
  std::optional<T> old_value() const {
    if (!old_) return std::nullopt;
    return *static_cast<const T*>(old_.get());
  }
  const ContextVar<T>& var() const { return *var_; }

 private:
  friend class ContextVar<T>;
  Token(const ContextVar<T>* var, std::shared_ptr<const void> old,
        contextvars_internal::ContextData* context)
      : var_(var), old_(std::move(old)), context_(retained(context)) {}
  static contextvars_internal::ContextRef retained(contextvars_internal::ContextData* data) {
    data->refs.fetch_add(1, std::memory_order_relaxed);
    return contextvars_internal::ContextRef(data);
  }
  const ContextVar<T>* var_;
  std::shared_ptr<const void> old_;
  contextvars_internal::ContextRef context_;  // held: its address is its identity
  std::shared_ptr<bool> used_ = std::make_shared<bool>(false);
};

// Python's contextvars.ContextVar. Declare variables at namespace scope, so
// that they exist before the first task starts (tasks and callbacks keep a
// context only once a variable exists) and outlive every context holding a
// value for them.
template <class T>
class ContextVar : public contextvars_internal::VarBase {
 public:
  explicit ContextVar(std::string name) : VarBase(std::move(name)) {}
  ContextVar(std::string name, T default_value)
      : VarBase(std::move(name)), default_(std::move(default_value)) {}

  // The value in the current context, else the variable's default; throws
  // LookupError when there is neither.
  T get() const {
    std::shared_ptr<const void> value = contextvars_internal::lookup(this);
    if (value) return *static_cast<const T*>(value.get());
    if (default_) return *default_;
    throw LookupError("ContextVar '" + name() + "' has no value");
  }
  // The value in the current context, else `fallback` (not the default).
  T get(T fallback) const {
    std::shared_ptr<const void> value = contextvars_internal::lookup(this);
    if (value) return *static_cast<const T*>(value.get());
    return fallback;
  }

  Token<T> set(T value) const {
    std::shared_ptr<const void> old =
        contextvars_internal::assign(this, std::make_shared<const T>(std::move(value)));
    return Token<T>(this, std::move(old), contextvars_internal::current_data());
  }

  // Restores the value the variable had before the set() that returned
  // `token`. Throws std::logic_error (Python: RuntimeError) when the token
  // was used already, std::invalid_argument (ValueError) when it belongs to
  // another variable or was made in another context.
  void reset(const Token<T>& token) const {
    if (*token.used_) throw std::logic_error("Token has already been used once");
    if (token.var_ != this) {
      throw std::invalid_argument("Token was created by a different ContextVar");
    }
    if (token.context_.get() != contextvars_internal::current_data()) {
      throw std::invalid_argument("Token was created in a different Context");
    }
    *token.used_ = true;
    contextvars_internal::assign(this, token.old_);
  }

  // The value in `context` (Python: context[var]); LookupError when unset.
  T get_in(const Context& context) const {
    std::shared_ptr<const void> value = contextvars_internal::lookup_in(context.ref().get(), this);
    if (!value) throw LookupError("ContextVar '" + name() + "' has no value in this Context");
    return *static_cast<const T*>(value.get());
  }

 private:
  std::optional<T> default_;
};

}  // namespace asyncio

#endif  // ASYNCIO_CONTEXTVARS_CONTEXTVARS_H_
