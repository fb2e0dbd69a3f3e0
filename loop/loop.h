// //loop: the event loop core of asyncio for C++.
//
// An epoll loop with asyncio's semantics: call_soon / call_later / call_at,
// run_forever / stop ("finish the current batch"), readers and writers,
// signal handlers, the exception handler and debug mode.
//
// The ready queue holds intrusive Runnable nodes: tasks embed theirs, and
// call_soon takes its node from a per-thread free list, so scheduling
// allocates nothing in steady state. Timers sit in a 4-ary heap with lazy
// cancellation. A file descriptor stays registered with epoll until its last
// watcher is removed.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "contextvars/contextvars.h"
#include "loop/internal/callback_node.h"
#include "loop/internal/pool.h"
#include "loop/internal/timer_heap.h"

namespace asyncio {

class EventLoop;

// Handle returned by call_soon / call_soon_threadsafe: cancels the callback.
class Handle {
 public:
  Handle() = default;
  Handle(const Handle& other) noexcept : node_(other.node_) {
    if (node_ != nullptr) node_->ref();
  }
  Handle(Handle&& other) noexcept : node_(other.node_) { other.node_ = nullptr; }
  Handle& operator=(Handle other) noexcept {
    std::swap(node_, other.node_);
    return *this;
  }
  ~Handle() {
    if (node_ != nullptr) node_->unref();
  }

  // Cancels the callback; no effect if it already ran or was cancelled.
  // Releases the callback (and what it captured) at once.
  void cancel();
  bool cancelled() const;

 protected:
  friend class EventLoop;
  explicit Handle(loop_internal::CallbackNode* node) : node_(node) {}
  loop_internal::CallbackNode* node_ = nullptr;
};

// Handle returned by call_later / call_at.
class TimerHandle : public Handle {
 public:
  TimerHandle() = default;
  // The absolute time (EventLoop::time() clock) the callback is due.
  double when() const;

 private:
  friend class EventLoop;
  using Handle::Handle;
};

// What the exception handler is told.
struct ExceptionContext {
  std::string message;
  std::exception_ptr exception;  // may be null
  std::string task;              // the task involved, as repr(task), if any
  std::string callback;          // description of the callback involved, if any
};

// The interface of a pool that runs blocking work off the loop thread
// (//executors implements it). The loop only keeps the default one.
class Executor {
 public:
  virtual ~Executor() = default;
  // Runs `work` on some other thread, eventually.
  virtual void execute(absl::AnyInvocable<void()> work) = 0;
  virtual void shutdown(bool wait = true, bool cancel_futures = false) = 0;
  // shutdown(wait=true) that waits at most `timeout` for the threads to
  // finish their work (the wait of loop.shutdown_default_executor(timeout)).
  // Returns false if some were still busy then: they are left running, finish
  // on their own, and a later shutdown(wait=true) joins them. An infinite
  // timeout waits as long as it takes; so does this default, for executors
  // that cannot bound the wait.
  virtual bool shutdown_with_timeout(std::chrono::duration<double> timeout) {
    (void)timeout;
    shutdown(/*wait=*/true);
    return true;
  }
};

// Per-loop state owned by a higher layer (the task registry of //futures, a
// resolver, ...) without the loop knowing its type. Destroyed with the loop,
// after the loop has been closed.
class LoopExtension {
 public:
  virtual ~LoopExtension() = default;
  // Called by EventLoop::close() (on the thread closing the loop), after the
  // pending callbacks are dropped and before the default executor is shut
  // down: the place to fail what waits on this loop from other threads.
  virtual void on_close() noexcept {}
};

// An IPv4, IPv6 or Unix socket address.
class SocketAddress {
 public:
  SocketAddress();
  // `ip_literal` is "127.0.0.1", "::1", "fe80::1%lo", ...; throws
  // std::invalid_argument if it is not an IP literal (no name resolution).
  SocketAddress(std::string ip_literal, uint16_t port);
  static SocketAddress unix_path(std::string path);
  // Copies a kernel sockaddr (from accept, getsockname, recvfrom, ...).
  static SocketAddress from_sockaddr(const sockaddr* addr, socklen_t len);

  std::string host() const;       // IP literal; empty for AF_UNIX
  uint16_t port() const;          // 0 for AF_UNIX
  int family() const;             // AF_INET, AF_INET6, AF_UNIX
  std::string path() const;       // AF_UNIX only
  std::string to_string() const;  // "127.0.0.1:80", "[::1]:80", or the path

  const sockaddr* sockaddr_ptr() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  socklen_t sockaddr_len() const { return len_; }

  friend bool operator==(const SocketAddress& a, const SocketAddress& b);

 private:
  sockaddr_storage storage_;
  socklen_t len_ = 0;
};

// Hints and results of name resolution, as socket.getaddrinfo's.
struct AddrInfoHints {
  int family = AF_UNSPEC;
  int socktype = 0;
  int protocol = 0;
  int flags = 0;
};
struct AddrInfo {
  int family = 0;
  int socktype = 0;
  int protocol = 0;
  std::string canonname;
  SocketAddress addr;
};

// A failed lookup, as socket.gaierror: code() is the EAI_* value (EAI_NONAME
// for a name that does not exist; a resolver timeout is a GaiError too).
class GaiError : public std::runtime_error {
 public:
  GaiError(int code, const std::string& message) : std::runtime_error(message), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

// How a loop resolves host names for the functions that take one
// (create_connection, open_connection, ...). //dns installs a c-ares one;
// without it, transports use the system getaddrinfo off the loop thread.
class NameResolver {
 public:
  using Done = absl::AnyInvocable<void(std::vector<AddrInfo> results, std::exception_ptr error)>;
  using LookupId = uint64_t;
  virtual ~NameResolver() = default;
  // Starts a lookup; `done` runs later on the loop thread, exactly once,
  // unless cancel(id) is called first.
  virtual LookupId getaddrinfo(std::string host, std::string port, AddrInfoHints hints,
                               Done done) = 0;
  // Abandons a lookup: its `done` will not run.
  virtual void cancel(LookupId id) = 0;
};

class EventLoop {
 public:
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // --- scheduling -----------------------------------------------------------
  //
  // A callback runs in the context (contextvars) that was current when it
  // was scheduled, or in `context` (Python's context= argument).
  Handle call_soon(absl::AnyInvocable<void()> cb);
  Handle call_soon(absl::AnyInvocable<void()> cb, const Context& context);
  // Safe from any thread, any number at once; wakes the loop.
  Handle call_soon_threadsafe(absl::AnyInvocable<void()> cb);
  Handle call_soon_threadsafe(absl::AnyInvocable<void()> cb, const Context& context);
  // A NaN delay or time throws std::invalid_argument; +infinity means never
  // (the callback waits until cancelled), -infinity means now.
  template <class Rep, class Period>
  TimerHandle call_later(std::chrono::duration<Rep, Period> delay, absl::AnyInvocable<void()> cb) {
    return call_at(time() + delay_seconds(delay), std::move(cb));
  }
  template <class Rep, class Period>
  TimerHandle call_later(std::chrono::duration<Rep, Period> delay, absl::AnyInvocable<void()> cb,
                         const Context& context) {
    return call_at(time() + delay_seconds(delay), std::move(cb), context);
  }
  TimerHandle call_at(double when, absl::AnyInvocable<void()> cb);
  TimerHandle call_at(double when, absl::AnyInvocable<void()> cb, const Context& context);
  // Seconds on the monotonic clock that call_at uses.
  double time() const;

  // Enqueues an intrusive node (loop thread only). For library layers; on a
  // closed loop the node is discarded.
  void schedule(Runnable& node) {
    if (closed_.load(std::memory_order_relaxed)) {
      node.invoke(&node, /*discard=*/true);
      return;
    }
    enqueue(&node);
  }
  // Runs `node` once the batch of callbacks in progress is done, before the
  // loop polls for I/O again (loop thread only; when the loop is not
  // running, at the end of its next iteration). Lets a layer coalesce what
  // several callbacks of one iteration did: transports send the writes of
  // one iteration with one syscall. On a closed loop the node is discarded.
  void schedule_at_end_of_iteration(Runnable& node) {
    if (closed_.load(std::memory_order_relaxed)) {
      node.invoke(&node, /*discard=*/true);
      return;
    }
    node.next_in_queue = nullptr;
    if (end_of_iteration_tail_ != nullptr) {
      end_of_iteration_tail_->next_in_queue = &node;
    } else {
      end_of_iteration_head_ = &node;
    }
    end_of_iteration_tail_ = &node;
  }

  // --- running --------------------------------------------------------------
  // Runs until stop(); the batch of callbacks in progress when stop() is
  // called completes first. Throws std::runtime_error if the loop is closed,
  // already running, or another loop runs in this thread.
  void run_forever();
  void stop();
  bool is_running() const { return running_; }
  bool is_closed() const { return closed_; }
  // Drops pending callbacks (those that other threads are posting at that
  // moment too), removes signal handlers, shuts down the default executor
  // without waiting. Throws std::runtime_error if running.
  void close();

  // --- I/O readiness (level-triggered, as asyncio's selector loop) ----------
  // Replaces any reader (writer) already registered for fd.
  void add_reader(int fd, absl::AnyInvocable<void()> cb);
  bool remove_reader(int fd);
  void add_writer(int fd, absl::AnyInvocable<void()> cb);
  bool remove_writer(int fd);

  // --- signals --------------------------------------------------------------
  // The callback runs on the loop, not in the signal handler. A signal has at
  // most one handler process-wide: the last loop to add one wins.
  void add_signal_handler(int sig, absl::AnyInvocable<void()> cb);
  bool remove_signal_handler(int sig);

  // --- errors and debugging -------------------------------------------------
  using ExceptionHandler = std::function<void(EventLoop&, const ExceptionContext&)>;
  // nullptr restores the default handler.
  void set_exception_handler(ExceptionHandler handler);
  const ExceptionHandler& get_exception_handler() const { return exception_handler_; }
  // Calls the handler; a handler that throws is reported by the default one.
  void call_exception_handler(const ExceptionContext& context);
  // Writes the context to stderr.
  void default_exception_handler(const ExceptionContext& context);
  // Debug mode starts on when the environment variable ASYNCIO_DEBUG is set
  // to a non-empty value other than "0" (Python: PYTHONASYNCIODEBUG).
  void set_debug(bool enabled) { debug_ = enabled; }
  bool get_debug() const { return debug_; }
  // In debug mode, as asyncio's: an operation that is not thread-safe
  // (call_soon, call_later, call_at, create_task, completing a Future, a
  // transport's write) called from a thread other than the one running the
  // loop throws std::runtime_error instead of racing. Library layers call it
  // on their own such operations; a load and a branch when debug is off.
  void check_thread() const {
    if (debug_) [[unlikely]]
      check_thread_in_debug_mode();
  }
  // In debug mode, callbacks slower than this (seconds) are reported.
  // Throws std::invalid_argument for NaN.
  void set_slow_callback_duration(double seconds) {
    if (std::isnan(seconds)) throw std::invalid_argument("slow_callback_duration is NaN");
    slow_callback_duration_ = seconds;
  }
  double slow_callback_duration() const { return slow_callback_duration_; }
  // For library layers whose nodes the ready queue runs (tasks): lets the
  // slow-callback report name the node. `retain` is called before a node
  // runs in debug mode and returns a token (null: not one of this layer's);
  // `describe` is called on it only when the run was slow; `release` always.
  struct RunnableInspector {
    void* (*retain)(Runnable* node);
    std::string (*describe)(void* token);
    void (*release)(void* token);
  };
  static void set_runnable_inspector(const RunnableInspector* inspector);

  // --- executor slot --------------------------------------------------------
  void set_default_executor(std::shared_ptr<Executor> executor);
  const std::shared_ptr<Executor>& default_executor() const { return default_executor_; }
  // asyncio's _executor_shutdown_called: set by shutdown_default_executor
  // (//futures, through begin_default_executor_shutdown) and by close(). From
  // then on the default executor may not be used: run_in_executor(nullptr)
  // and to_thread raise std::runtime_error("Executor shutdown has been
  // called"), even after set_default_executor, as in asyncio.
  bool executor_shutdown_called() const { return executor_shutdown_called_; }
  // Sets executor_shutdown_called() and returns the default executor for the
  // caller to shut down (null if none was ever made).
  std::shared_ptr<Executor> begin_default_executor_shutdown() {
    executor_shutdown_called_ = true;
    return default_executor_;
  }

  // --- name resolution ------------------------------------------------------
  // Null: none installed (transports then use the system resolver).
  void set_name_resolver(std::shared_ptr<NameResolver> resolver) {
    name_resolver_ = std::move(resolver);
  }
  const std::shared_ptr<NameResolver>& name_resolver() const { return name_resolver_; }

  // --- extensions for higher layers -----------------------------------------
  static constexpr int kMaxExtensions = 8;
  // A process-wide slot number for one kind of extension; call once per kind.
  static int new_extension_slot();
  LoopExtension* extension(int slot) const { return extensions_[slot].get(); }
  void set_extension(int slot, std::unique_ptr<LoopExtension> ext);

  // True while `loop` is a live EventLoop (used when reporting from objects
  // that may outlive their loop).
  static bool exists(const EventLoop* loop);

 private:
  friend class Handle;
  friend class TimerHandle;
  friend struct loop_internal::CallbackNode;
  struct FdWatch;
  using TimerHeap = loop_internal::TimerHeap<loop_internal::CallbackNode>;

  template <class Rep, class Period>
  static double delay_seconds(std::chrono::duration<Rep, Period> delay) {
    const double seconds = std::chrono::duration<double>(delay).count();
    if (std::isnan(seconds)) throw std::invalid_argument("call_later: the delay is NaN");
    return seconds;
  }
  // cb, run in `context` (Python's Handle: context.run(callback)).
  static absl::AnyInvocable<void()> in_context(absl::AnyInvocable<void()> cb,
                                               const Context& context);
  // cb, run in a copy of the current context when that is not empty (as
  // asyncio's Handle copies it); cb itself otherwise, at the cost of a check.
  static void capture_context(absl::AnyInvocable<void()>& cb) {
    if (contextvars_internal::vars_exist()) [[unlikely]]
      capture_nonempty_context(cb);
  }
  static void capture_nonempty_context(absl::AnyInvocable<void()>& cb);

  void check_thread_in_debug_mode() const;
  void run_once();
  void run_end_of_iteration(bool discard);
  void run_batch_timed(Runnable* batch);  // debug mode: reports slow callbacks
  void run_timed(Runnable* node);
  void check_open() const;
  void enqueue(Runnable* node) {
    node->next_in_queue = nullptr;
    if (ready_tail_ != nullptr) {
      ready_tail_->next_in_queue = node;
    } else {
      ready_head_ = node;
    }
    ready_tail_ = node;
  }
  void drain_remote_queue();
  void poll_io(int64_t timeout_ns);  // -1: no timeout
  void pop_due_timers();             // into due_timers_
  void run_due_timers();
  void timer_cancelled();
  void discard_pending();
  void wait_for_posters();  // until no thread is inside call_soon_threadsafe
  FdWatch& watch_for(int fd);
  void add_watch(int fd, bool writer, absl::AnyInvocable<void()> cb);
  bool remove_watch(int fd, bool writer);
  void update_interest(int fd, FdWatch& w);
  void watch_internal_fd(int fd, uint32_t events);
  void dispatch_signals();
  bool signal_arrived();  // since the last call, in any loop's handler
  void run_callback_node(loop_internal::CallbackNode* node);
  void report_callback_exception(std::exception_ptr exc);
  void restore_signal(int sig);

  // Ready queue (loop thread).
  Runnable* ready_head_ = nullptr;
  Runnable* ready_tail_ = nullptr;
  // Nodes to run after the batch (schedule_at_end_of_iteration).
  Runnable* end_of_iteration_head_ = nullptr;
  Runnable* end_of_iteration_tail_ = nullptr;
  // Lock-free stack of nodes pushed by other threads.
  std::atomic<loop_internal::CallbackNode*> remote_head_{nullptr};
  std::atomic<int> remote_posters_{0};  // threads inside call_soon_threadsafe
  // Whether and how the loop sleeps, for call_soon_threadsafe to wake it
  // (SleepState in loop.cc); the word of a futex.
  std::atomic<uint32_t> sleep_state_{0};
  void sleep_until_work(int64_t timeout_ns);

  TimerHeap timers_;
  uint64_t timer_seq_ = 0;
  size_t cancelled_timers_ = 0;
  // Popped by pop_due_timers, earliest first, to run after the ready batch.
  // Still counted in cancelled_timers_ (in_heap) until they run.
  std::vector<loop_internal::CallbackNode*> due_timers_;

  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // eventfd for call_soon_threadsafe
  int signal_read_fd_ = -1, signal_write_fd_ = -1;
  std::vector<std::unique_ptr<FdWatch>> fd_watches_;
  size_t user_watch_count_ = 0;  // fds with a reader or writer
  uint64_t signals_seen_ = 0;    // g_signals_delivered when last polled for them
  std::vector<std::shared_ptr<absl::AnyInvocable<void()>>> signal_handlers_;  // by signal number

  bool running_ = false;
  bool stopping_ = false;
  std::atomic<bool> closed_{false};
  bool debug_ = false;
  // The thread in run_forever (none while not running), for check_thread.
  std::atomic<std::thread::id> running_thread_{};
  double slow_callback_duration_ = 0.1;

  ExceptionHandler exception_handler_;
  std::shared_ptr<Executor> default_executor_;
  bool executor_shutdown_called_ = false;
  std::shared_ptr<NameResolver> name_resolver_;
  std::array<std::unique_ptr<LoopExtension>, kMaxExtensions> extensions_;
};

// A new loop (not set as this thread's loop).
std::unique_ptr<EventLoop> new_event_loop();
// The loop running in this thread; throws std::runtime_error("no running
// event loop") if none.
EventLoop& get_running_loop();
// The running loop, else this thread's loop (set_event_loop), else a loop
// created for this thread on demand and owned by it.
EventLoop& get_event_loop();
void set_event_loop(EventLoop* loop);
// The running loop or nullptr.
EventLoop* running_loop_or_null();

}  // namespace asyncio
