#include "loop/loop.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <net/if.h>
#include <netdb.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <unordered_set>

#include "loop/internal/test_hooks.h"
#include "loop/posix.h"

namespace asyncio {

using loop_internal::CallbackNode;
using loop_internal::TestHooks;
using posix::describe_exception;
using posix::throw_errno;

std::atomic<TestHooks::Hook> TestHooks::threadsafe_post_checked{nullptr};
std::atomic<TestHooks::Hook> TestHooks::waiting_for_posters{nullptr};
std::atomic<TestHooks::Hook> TestHooks::loop_going_to_sleep{nullptr};

namespace {

thread_local EventLoop* t_running_loop = nullptr;
thread_local EventLoop* t_event_loop = nullptr;
thread_local std::unique_ptr<EventLoop> t_owned_loop;

std::mutex g_live_loops_mu;
std::unordered_set<const EventLoop*>& live_loops() {
  static auto* set = new std::unordered_set<const EventLoop*>();
  return *set;
}

constexpr int kMaxSignal = 65;
std::atomic<int> g_signal_fds[kMaxSignal];  // write end of the owning loop's pipe, or -1
std::once_flag g_signal_fds_init;
// Bumped by the handler after its byte is in the pipe: a busy loop, which
// skips epoll while it has no fd of its own to watch, polls once when this
// moved, so the signal pipe costs nothing until a signal comes.
std::atomic<uint64_t> g_signals_delivered{0};
static_assert(std::atomic<uint64_t>::is_always_lock_free, "used in a signal handler");

void on_signal(int sig) {
  int fd = (sig > 0 && sig < kMaxSignal) ? g_signal_fds[sig].load(std::memory_order_relaxed) : -1;
  if (fd < 0) return;
  int saved = errno;
  unsigned char byte = static_cast<unsigned char>(sig);
  ssize_t ignored = ::write(fd, &byte, 1);
  (void)ignored;
  g_signals_delivered.fetch_add(1, std::memory_order_release);
  errno = saved;
}

std::once_flag g_sigpipe_once;

constexpr size_t kMinTimersForCleanup = 100;
// epoll_pwait2 (Linux 5.11) answered ENOSYS: an older kernel, or a seccomp
// sandbox (containers, gVisor). From then on the loop waits with epoll_wait,
// in milliseconds.
std::atomic<bool> g_epoll_pwait2_refused{false};

// The longest single wait in epoll: a day.
constexpr double kMaxPollSeconds = 86400;

// The wait in epoll for a delay in seconds: -1 for +infinity (only timers
// that never fire), whole nanoseconds rounded up otherwise.
int64_t poll_timeout_ns(double delay) {
  if (delay <= 0) return 0;
  if (std::isinf(delay)) return -1;
  // Converting a larger delay to nanoseconds would overflow; waking up to
  // look again is harmless.
  if (delay >= kMaxPollSeconds) return static_cast<int64_t>(kMaxPollSeconds) * 1000000000;
  return static_cast<int64_t>(std::ceil(delay * 1e9));
}

// EventLoop::sleep_state_: how a thread calling call_soon_threadsafe wakes
// the loop. A loop that watches no descriptor sleeps on a futex, which costs
// both sides less than an eventfd through epoll; one that does sleeps in
// epoll. Awake, it needs no wake-up at all: it looks at the queue before it
// sleeps again.
enum SleepState : uint32_t { kAwake = 0, kSleepingOnFutex = 1, kSleepingInEpoll = 2 };

void futex_wait(std::atomic<uint32_t>& word, uint32_t expected, int64_t timeout_ns) {
  timespec ts{static_cast<time_t>(timeout_ns / 1000000000),
              static_cast<long>(timeout_ns % 1000000000)};
  // Returns on a wake-up, a timeout, a signal, or at once if the word
  // changed: the caller looks again in each case.
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected,
            timeout_ns < 0 ? nullptr : &ts, nullptr, 0);
}

void futex_wake_one(std::atomic<uint32_t>& word) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr,
            0);
}

}  // namespace

// ---------------------------------------------------------------------------
// Handles

void CallbackNode::invoke_node(Runnable* self, bool discard) {
  auto* node = static_cast<CallbackNode*>(self);
  if (!discard && !node->cancelled) node->loop->run_callback_node(node);
  if (node->drop_ref()) free_node(node);
}

void CallbackNode::invoke_timer_node(Runnable* self, bool discard) {
  auto* node = static_cast<CallbackNode*>(self);
  if (!discard && !node->cancelled) node->loop->run_callback_node(node);
  if (node->drop_ref()) free_timer_node(node);
}

void Handle::cancel() {
  if (node_ == nullptr || node_->cancelled) return;
  node_->cancelled = true;
  if (node_->in_heap) node_->loop->timer_cancelled();
  if (!node_->running) node_->callback = nullptr;
}

bool Handle::cancelled() const { return node_ != nullptr && node_->cancelled; }

double TimerHandle::when() const { return node_ != nullptr ? node_->when : 0.0; }

// ---------------------------------------------------------------------------
// SocketAddress

SocketAddress::SocketAddress() { std::memset(&storage_, 0, sizeof(storage_)); }

SocketAddress::SocketAddress(std::string ip_literal, uint16_t port) : SocketAddress() {
  addrinfo hints{};
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  hints.ai_family = AF_UNSPEC;
  addrinfo* res = nullptr;
  std::string service = std::to_string(port);
  // Accept the bracketed form "[::1]" too.
  if (ip_literal.size() > 2 && ip_literal.front() == '[' && ip_literal.back() == ']') {
    ip_literal = ip_literal.substr(1, ip_literal.size() - 2);
  }
  if (ip_literal.empty() || ::getaddrinfo(ip_literal.c_str(), service.c_str(), &hints, &res) != 0 ||
      res == nullptr) {
    throw std::invalid_argument("not an IP address literal: '" + ip_literal + "'");
  }
  std::memcpy(&storage_, res->ai_addr, res->ai_addrlen);
  len_ = res->ai_addrlen;
  ::freeaddrinfo(res);
}

SocketAddress SocketAddress::unix_path(std::string path) {
  SocketAddress a;
  auto* un = reinterpret_cast<sockaddr_un*>(&a.storage_);
  if (path.size() >= sizeof(un->sun_path)) {
    throw std::invalid_argument("AF_UNIX path too long: '" + path + "'");
  }
  un->sun_family = AF_UNIX;
  std::memcpy(un->sun_path, path.data(), path.size());
  a.len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() +
                                  (path.empty() || path[0] != '\0' ? 1 : 0));
  return a;
}

SocketAddress SocketAddress::from_sockaddr(const sockaddr* addr, socklen_t len) {
  SocketAddress a;
  if (len > sizeof(a.storage_)) throw std::invalid_argument("sockaddr too long");
  std::memcpy(&a.storage_, addr, len);
  a.len_ = len;
  return a;
}

int SocketAddress::family() const { return len_ == 0 ? AF_UNSPEC : storage_.ss_family; }

std::string SocketAddress::host() const {
  char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2] = {};
  if (family() == AF_INET || family() == AF_INET6) {
    if (::getnameinfo(sockaddr_ptr(), len_, buf, sizeof(buf), nullptr, 0, NI_NUMERICHOST) == 0) {
      return buf;
    }
  }
  return "";
}

uint16_t SocketAddress::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  if (family() == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  }
  return 0;
}

std::string SocketAddress::path() const {
  if (family() != AF_UNIX) return "";
  const auto* un = reinterpret_cast<const sockaddr_un*>(&storage_);
  size_t n = len_ - offsetof(sockaddr_un, sun_path);
  if (n > 0 && un->sun_path[0] != '\0') return std::string(un->sun_path, strnlen(un->sun_path, n));
  return std::string(un->sun_path, n);  // abstract namespace
}

std::string SocketAddress::to_string() const {
  switch (family()) {
    case AF_INET:
      return host() + ":" + std::to_string(port());
    case AF_INET6:
      return "[" + host() + "]:" + std::to_string(port());
    case AF_UNIX:
      return path();
    default:
      return "<unspecified address>";
  }
}

bool operator==(const SocketAddress& a, const SocketAddress& b) {
  return a.len_ == b.len_ && std::memcmp(&a.storage_, &b.storage_, a.len_) == 0;
}

// ---------------------------------------------------------------------------
// EventLoop

struct EventLoop::FdWatch {
  struct Side : Runnable {
    Side() : Runnable(&Side::invoke_side) {}
    static void invoke_side(Runnable* self, bool discard);
    FdWatch* watch = nullptr;
    absl::AnyInvocable<void()> cb;
    uint32_t generation = 0;  // bumped by add/remove: a running cb was replaced
    bool active = false;
    bool queued = false;
  };
  FdWatch(EventLoop* l, int f) : loop(l), fd(f) {
    reader.watch = this;
    writer.watch = this;
  }
  EventLoop* loop;
  int fd;
  uint32_t registered_events = 0;  // what epoll has for fd
  Side reader, writer;
};

void EventLoop::FdWatch::Side::invoke_side(Runnable* self, bool discard) {
  auto* side = static_cast<Side*>(self);
  side->queued = false;
  if (discard || !side->active) return;
  EventLoop* loop = side->watch->loop;
  const uint32_t generation = side->generation;
  auto cb = std::move(side->cb);
  try {
    cb();
  } catch (...) {
    loop->report_callback_exception(std::current_exception());
  }
  if (side->generation == generation) side->cb = std::move(cb);
}

EventLoop::EventLoop() {
  std::call_once(g_sigpipe_once, [] {
    // A write to a closed pipe or socket must surface as EPIPE, never kill
    // the process.
    struct sigaction old {};
    if (::sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) {
      ::signal(SIGPIPE, SIG_IGN);
    }
  });
  std::call_once(g_signal_fds_init, [] {
    for (auto& fd : g_signal_fds) fd.store(-1);
  });
  if (const char* env = std::getenv("ASYNCIO_DEBUG"); env != nullptr && *env != '\0') {
    debug_ = std::string_view(env) != "0";
  }
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) throw_errno("epoll_create1");
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    int err = errno;
    ::close(epoll_fd_);
    throw_errno("eventfd", err);
  }
  // Edge-triggered: each write wakes epoll once and the loop never has to
  // read the counter back (a 64-bit counter does not overflow in practice).
  watch_internal_fd(wake_fd_, EPOLLIN | EPOLLET);
  std::lock_guard<std::mutex> lock(g_live_loops_mu);
  live_loops().insert(this);
}

EventLoop::~EventLoop() {
  if (!closed_.load()) {
    running_ = false;
    close();
  }
  // Extensions go first, newest last-in first-out, while the loop (closed)
  // is still a valid object they may talk to.
  for (int i = kMaxExtensions - 1; i >= 0; --i) extensions_[i].reset();
  discard_pending();  // anything an extension's teardown scheduled
  // A caller that found the loop closed may still be leaving
  // call_soon_threadsafe (its count is in this object).
  wait_for_posters();
  ::close(wake_fd_);
  if (t_event_loop == this) t_event_loop = nullptr;
  std::lock_guard<std::mutex> lock(g_live_loops_mu);
  live_loops().erase(this);
}

void EventLoop::wait_for_posters() {
  // Callers never block inside call_soon_threadsafe: this wait is short.
  while (remote_posters_.load(std::memory_order_seq_cst) != 0) {
    if (auto hook = TestHooks::waiting_for_posters.load(std::memory_order_relaxed)) hook();
    std::this_thread::yield();
  }
}

bool EventLoop::exists(const EventLoop* loop) {
  std::lock_guard<std::mutex> lock(g_live_loops_mu);
  return live_loops().count(loop) != 0;
}

int EventLoop::new_extension_slot() {
  static std::atomic<int> next{0};
  int slot = next.fetch_add(1);
  if (slot >= kMaxExtensions) throw std::logic_error("too many loop extension kinds");
  return slot;
}

void EventLoop::set_extension(int slot, std::unique_ptr<LoopExtension> ext) {
  extensions_[slot] = std::move(ext);
}

void EventLoop::check_open() const {
  if (closed_.load(std::memory_order_relaxed)) throw std::runtime_error("Event loop is closed");
}

double EventLoop::time() const {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

namespace {
// Set while a call_soon/call_later/call_at/call_soon_threadsafe given a
// context schedules its bound callback through the plain form, whose capture
// of the current context must not wrap it a second time. Read only when a
// ContextVar exists, so the plain forms pay nothing for it.
thread_local bool t_callback_bound = false;

struct BoundCallbackScope {
  BoundCallbackScope() { t_callback_bound = true; }
  ~BoundCallbackScope() { t_callback_bound = false; }
  BoundCallbackScope(const BoundCallbackScope&) = delete;
  BoundCallbackScope& operator=(const BoundCallbackScope&) = delete;
};
}  // namespace

absl::AnyInvocable<void()> EventLoop::in_context(absl::AnyInvocable<void()> cb,
                                                 const Context& context) {
  return [context, cb = std::move(cb)]() mutable { context.run(cb); };
}

void EventLoop::capture_nonempty_context(absl::AnyInvocable<void()>& cb) {
  if (t_callback_bound || contextvars_internal::current_is_empty()) return;
  cb = [context = contextvars_internal::capture_current(), cb = std::move(cb)]() mutable {
    contextvars_internal::run_in(context, cb);
  };
}

Handle EventLoop::call_soon(absl::AnyInvocable<void()> cb, const Context& context) {
  BoundCallbackScope bound;
  return call_soon(in_context(std::move(cb), context));
}

Handle EventLoop::call_soon_threadsafe(absl::AnyInvocable<void()> cb, const Context& context) {
  BoundCallbackScope bound;
  return call_soon_threadsafe(in_context(std::move(cb), context));
}

TimerHandle EventLoop::call_at(double when, absl::AnyInvocable<void()> cb, const Context& context) {
  BoundCallbackScope bound;
  return call_at(when, in_context(std::move(cb), context));
}

Handle EventLoop::call_soon(absl::AnyInvocable<void()> cb) {
  check_open();
  check_thread();
  capture_context(cb);
  auto* node = new CallbackNode(this, std::move(cb), /*shared_refs=*/false);
  enqueue(node);
  return Handle(node);
}

Handle EventLoop::call_soon_threadsafe(absl::AnyInvocable<void()> cb) {
  // The callback may end the loop's life (stop it, and its thread destroys
  // it) before this call returns, and close() must not miss a node pushed
  // after it drained the queue: both wait for in-flight callers. Sequentially
  // consistent, with close()'s store of closed_ and its reading of the count:
  // either close() sees this caller, or this caller sees the loop closed.
  struct InFlight {
    std::atomic<int>& n;
    explicit InFlight(std::atomic<int>& count) : n(count) {
      n.fetch_add(1, std::memory_order_seq_cst);
    }
    ~InFlight() { n.fetch_sub(1, std::memory_order_release); }
  } in_flight(remote_posters_);
  if (closed_.load(std::memory_order_seq_cst)) throw std::runtime_error("Event loop is closed");
  if (auto hook = TestHooks::threadsafe_post_checked.load(std::memory_order_relaxed)) hook();
  capture_context(cb);
  auto* node = new CallbackNode(this, std::move(cb), /*shared_refs=*/true);
  CallbackNode* head = remote_head_.load(std::memory_order_relaxed);
  do {
    node->next_in_queue = head;
    // Sequentially consistent, as the loop's saying it sleeps and its last
    // look at this queue (sleep_until_work): either it sees this node, or
    // this caller sees it asleep.
  } while (!remote_head_.compare_exchange_weak(head, node, std::memory_order_seq_cst,
                                               std::memory_order_relaxed));
  if (head == nullptr) {
    // First node since the loop last drained: wake it if it sleeps. Later
    // pushers see a non-empty stack and know the loop will come.
    switch (sleep_state_.exchange(kAwake, std::memory_order_seq_cst)) {
      case kSleepingOnFutex:
        futex_wake_one(sleep_state_);
        break;
      case kSleepingInEpoll: {
        uint64_t one = 1;
        ssize_t ignored = ::write(wake_fd_, &one, sizeof(one));
        (void)ignored;
        break;
      }
      default:
        break;
    }
  }
  return Handle(node);
}

void EventLoop::drain_remote_queue() {
  if (remote_head_.load(std::memory_order_relaxed) == nullptr) return;
  CallbackNode* stack = remote_head_.exchange(nullptr, std::memory_order_acquire);
  // The stack is newest-first; reverse it to keep each thread's order.
  Runnable* fifo = nullptr;
  while (stack != nullptr) {
    auto* next = static_cast<CallbackNode*>(stack->next_in_queue);
    stack->next_in_queue = fifo;
    fifo = stack;
    stack = next;
  }
  while (fifo != nullptr) {
    Runnable* next = fifo->next_in_queue;
    enqueue(fifo);
    fifo = next;
  }
}

TimerHandle EventLoop::call_at(double when, absl::AnyInvocable<void()> cb) {
  check_open();
  // NaN compares false with everything: it would break the heap's order.
  if (std::isnan(when)) throw std::invalid_argument("call_at: the time is NaN");
  check_thread();
  capture_context(cb);
  auto* node = CallbackNode::new_timer(this, std::move(cb), ++timer_seq_);
  node->when = when;
  node->in_heap = true;
  timers_.push({when, node});
  return TimerHandle(node);
}

void EventLoop::timer_cancelled() {
  ++cancelled_timers_;
  if (timers_.size() > kMinTimersForCleanup && cancelled_timers_ * 2 > timers_.size()) {
    // Rebuild without the cancelled entries, as asyncio does. Due timers
    // waiting to run in this batch are not in the heap but still counted.
    timers_.remove_if([this](const TimerHeap::Entry& e) {
      if (!e.node->cancelled) return false;
      e.node->in_heap = false;
      --cancelled_timers_;
      e.node->unref();
      return true;
    });
  }
}

void EventLoop::pop_due_timers() {
  if (timers_.empty()) return;
  // Only the heap is read here: the nodes are touched once, when they run.
  timers_.pop_due(time() + 1e-9, due_timers_);
}

void EventLoop::run_due_timers() {
  // From the array rather than the ready queue: a burst of due timers is
  // mostly cold nodes, and the array tells which come next, so that their
  // cache misses overlap instead of following each other down a list.
  constexpr size_t kPrefetchDistance = 8;
  const size_t due = due_timers_.size();
  for (size_t i = 0; i < due; ++i) {
    if (i + kPrefetchDistance < due) {
      const char* ahead = reinterpret_cast<const char*>(due_timers_[i + kPrefetchDistance]);
      __builtin_prefetch(ahead, 1);
      __builtin_prefetch(ahead + sizeof(CallbackNode) - 1, 1);  // it may straddle two lines
    }
    CallbackNode* node = due_timers_[i];
    node->in_heap = false;
    // Cancelled ones, also by a callback earlier in this batch, are dropped
    // here as asyncio drops them on reaching the head of the heap.
    if (node->cancelled) --cancelled_timers_;
    if (debug_) {
      run_timed(node);
    } else {
      CallbackNode::invoke_timer_node(node, /*discard=*/false);  // releases the heap's reference
    }
  }
  due_timers_.clear();
}

void EventLoop::run_callback_node(CallbackNode* node) {
  node->running = true;
  try {
    node->callback();
  } catch (...) {
    report_callback_exception(std::current_exception());
  }
  node->running = false;
  // It never runs again: release what it captured now, not when the last
  // Handle goes (a Handle kept in the captured state would be a cycle).
  node->callback = nullptr;
}

void EventLoop::report_callback_exception(std::exception_ptr exc) {
  call_exception_handler({"Exception in callback", std::move(exc), "", ""});
}

void EventLoop::run_forever() {
  check_open();
  if (running_) throw std::runtime_error("This event loop is already running");
  if (t_running_loop != nullptr) {
    throw std::runtime_error("Cannot run the event loop while another loop is running");
  }
  running_ = true;
  t_running_loop = this;
  running_thread_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  struct Reset {
    EventLoop* loop;
    ~Reset() {
      loop->stopping_ = false;
      loop->running_ = false;
      loop->running_thread_.store(std::thread::id(), std::memory_order_relaxed);
      t_running_loop = nullptr;
    }
  } reset{this};
  while (true) {
    run_once();
    if (stopping_) break;
  }
}

void EventLoop::stop() { stopping_ = true; }

void EventLoop::check_thread_in_debug_mode() const {
  const std::thread::id running = running_thread_.load(std::memory_order_relaxed);
  if (running != std::thread::id() && running != std::this_thread::get_id()) {
    throw std::runtime_error(
        "Non-thread-safe operation invoked on an event loop other than the current one");
  }
}

void EventLoop::run_once() {
  // Scheduled while the loop was not running: before it may sleep.
  if (end_of_iteration_head_ != nullptr) run_end_of_iteration(/*discard=*/false);
  drain_remote_queue();
  // Drop cancelled timers at the head so they do not shorten the wait (when
  // there are any: reading the node is a cache miss).
  while (cancelled_timers_ > 0 && !timers_.empty() && timers_.front().node->cancelled) {
    CallbackNode* node = timers_.front().node;
    timers_.pop_front();
    node->in_heap = false;
    --cancelled_timers_;
    node->unref();
  }
  int64_t timeout_ns = 0;
  if (ready_head_ == nullptr && !stopping_) {
    // About to sleep: when the timer node cache may give back its surplus.
    auto& node_cache = loop_internal::this_thread_timer_node_cache();
    if (timers_.empty()) {
      node_cache.on_loop_sleep(0, /*timers_pending=*/false);
      timeout_ns = -1;
    } else {
      const double now = time();
      const double wake_at =
          std::min(timers_.front().when, node_cache.on_loop_sleep(now, /*timers_pending=*/true));
      timeout_ns = poll_timeout_ns(wake_at - now);
    }
  }
  if (timeout_ns != 0) {
    sleep_until_work(timeout_ns);
  } else if (user_watch_count_ > 0 || signal_arrived()) {
    poll_io(0);
  }
  // (With work already queued and no fd to watch, no syscall: threadsafe
  // callbacks are drained straight from their queue.)
  drain_remote_queue();
  pop_due_timers();

  // Run the batch queued so far, then the due timers (asyncio appends them
  // to the ready queue); what the batch schedules waits for the next one.
  Runnable* node = ready_head_;
  ready_head_ = ready_tail_ = nullptr;
  if (debug_) {
    run_batch_timed(node);
  } else {
    while (node != nullptr) {
      Runnable* next = node->next_in_queue;
      // Its miss overlaps this callback (a burst of timers is cold nodes).
      __builtin_prefetch(next);
      node->invoke(node, /*discard=*/false);
      node = next;
    }
  }
  if (!due_timers_.empty()) run_due_timers();
  if (end_of_iteration_head_ != nullptr) run_end_of_iteration(/*discard=*/false);
}

void EventLoop::sleep_until_work(int64_t timeout_ns) {
  // Signals reach the loop through their pipe, in epoll, like descriptors.
  const bool on_futex = user_watch_count_ == 0 && signal_read_fd_ < 0;
  const SleepState sleeping = on_futex ? kSleepingOnFutex : kSleepingInEpoll;
  sleep_state_.store(sleeping, std::memory_order_seq_cst);
  // A callback posted since the queue was drained, whose poster may have
  // seen the loop awake and not woken it.
  if (remote_head_.load(std::memory_order_seq_cst) != nullptr) timeout_ns = 0;
  if (auto hook = TestHooks::loop_going_to_sleep.load(std::memory_order_relaxed)) hook();
  if (!on_futex) {
    poll_io(timeout_ns);
  } else if (timeout_ns != 0) {
    // Returns at once if a poster has set the word back to kAwake.
    futex_wait(sleep_state_, sleeping, timeout_ns);
  }
  sleep_state_.store(kAwake, std::memory_order_relaxed);
}

void EventLoop::run_end_of_iteration(bool discard) {
  // A node may schedule others (a flush that wakes a protocol that writes
  // elsewhere): they run in this same pass.
  while (end_of_iteration_head_ != nullptr) {
    Runnable* node = end_of_iteration_head_;
    end_of_iteration_head_ = node->next_in_queue;
    if (end_of_iteration_head_ == nullptr) end_of_iteration_tail_ = nullptr;
    node->invoke(node, discard);
  }
}

namespace {
std::atomic<const EventLoop::RunnableInspector*> g_runnable_inspector{nullptr};
}  // namespace

void EventLoop::set_runnable_inspector(const RunnableInspector* inspector) {
  g_runnable_inspector.store(inspector, std::memory_order_release);
}

void EventLoop::run_batch_timed(Runnable* node) {
  while (node != nullptr) {
    Runnable* next = node->next_in_queue;
    run_timed(node);
    node = next;
  }
}

void EventLoop::run_timed(Runnable* node) {
  const RunnableInspector* inspector = g_runnable_inspector.load(std::memory_order_acquire);
  // Taken before the run: the node (a finished task) may be gone after it;
  // given back however this ends (an exception handler may throw).
  struct Retained {
    const RunnableInspector* inspector;
    void* token;
    ~Retained() {
      if (token != nullptr) inspector->release(token);
    }
  } retained{inspector, inspector != nullptr ? inspector->retain(node) : nullptr};
  const double start = time();
  node->invoke(node, /*discard=*/false);
  const double took = time() - start;
  if (took >= slow_callback_duration_) {
    char msg[96];
    std::snprintf(msg, sizeof(msg), "Executing %s took %.3f seconds",
                  retained.token != nullptr ? "a task step" : "a callback", took);
    call_exception_handler(
        {msg, nullptr, retained.token != nullptr ? inspector->describe(retained.token) : "", ""});
  }
}

void EventLoop::poll_io(int64_t timeout_ns) {
  constexpr int kMaxEvents = 256;
  epoll_event events[kMaxEvents];
  int n = -1;
  bool polled = false;
  if (timeout_ns >= 0 && !g_epoll_pwait2_refused.load(std::memory_order_relaxed)) {
    timespec ts{static_cast<time_t>(timeout_ns / 1000000000),
                static_cast<long>(timeout_ns % 1000000000)};
    n = ::epoll_pwait2(epoll_fd_, events, kMaxEvents, &ts, nullptr);
    polled = n >= 0 || errno != ENOSYS;
    if (!polled) g_epoll_pwait2_refused.store(true, std::memory_order_relaxed);
  }
  if (!polled) {
    // Whole milliseconds, rounded up: a timer may fire late, never early.
    const int timeout_ms =
        timeout_ns < 0 ? -1
                       : static_cast<int>(std::min<int64_t>((timeout_ns + 999999) / 1000000,
                                                            std::numeric_limits<int>::max()));
    n = ::epoll_wait(epoll_fd_, events, kMaxEvents, timeout_ms);
  }
  if (n < 0) {
    if (errno == EINTR) return;
    throw_errno("epoll_wait");
  }
  for (int i = 0; i < n; ++i) {
    const int fd = events[i].data.fd;
    const uint32_t ev = events[i].events;
    if (fd == wake_fd_) continue;  // drained right after polling
    if (fd == signal_read_fd_) {
      dispatch_signals();
      continue;
    }
    if (fd < 0 || static_cast<size_t>(fd) >= fd_watches_.size() || !fd_watches_[fd]) continue;
    FdWatch& w = *fd_watches_[fd];
    constexpr uint32_t kIn = EPOLLIN, kOut = EPOLLOUT;
    // As CPython's selectors: anything but "writable" wakes the reader (error
    // and hang-up included), anything but "readable" wakes the writer.
    if ((ev & ~kOut) && w.reader.active && !w.reader.queued) {
      w.reader.queued = true;
      enqueue(&w.reader);
    }
    if ((ev & ~kIn) && w.writer.active && !w.writer.queued) {
      w.writer.queued = true;
      enqueue(&w.writer);
    }
  }
}

EventLoop::FdWatch& EventLoop::watch_for(int fd) {
  if (fd < 0) throw std::invalid_argument("invalid file descriptor " + std::to_string(fd));
  if (static_cast<size_t>(fd) >= fd_watches_.size()) fd_watches_.resize(fd + 1);
  if (!fd_watches_[fd]) fd_watches_[fd] = std::make_unique<FdWatch>(this, fd);
  return *fd_watches_[fd];
}

void EventLoop::update_interest(int fd, FdWatch& w) {
  uint32_t want =
      (w.reader.active ? uint32_t{EPOLLIN} : 0u) | (w.writer.active ? uint32_t{EPOLLOUT} : 0u);
  if (want == w.registered_events) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.fd = fd;
  int rc;
  if (want == 0) {
    rc = ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    if (rc < 0 && (errno == ENOENT || errno == EBADF)) rc = 0;  // fd closed behind our back
  } else if (w.registered_events == 0) {
    rc = ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
    if (rc < 0 && errno == EEXIST) rc = ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
  } else {
    rc = ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
    // The fd number was closed and reused since it was registered.
    if (rc < 0 && errno == ENOENT) rc = ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
  }
  if (rc < 0) throw_errno("epoll_ctl");
  if ((w.registered_events == 0) != (want == 0)) {
    if (want == 0) {
      --user_watch_count_;
    } else {
      ++user_watch_count_;
    }
  }
  w.registered_events = want;
}

void EventLoop::watch_internal_fd(int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) < 0) throw_errno("epoll_ctl");
}

// One implementation for both sides of a descriptor's watch.
void EventLoop::add_watch(int fd, bool writer, absl::AnyInvocable<void()> cb) {
  check_open();
  FdWatch& w = watch_for(fd);
  FdWatch::Side& side = writer ? w.writer : w.reader;
  const bool was_active = side.active;
  side.active = true;
  try {
    update_interest(fd, w);
  } catch (...) {
    side.active = was_active;
    throw;
  }
  side.cb = std::move(cb);
  ++side.generation;
}

bool EventLoop::remove_watch(int fd, bool writer) {
  if (closed_.load() || fd < 0 || static_cast<size_t>(fd) >= fd_watches_.size() ||
      !fd_watches_[fd]) {
    return false;
  }
  FdWatch& w = *fd_watches_[fd];
  FdWatch::Side& side = writer ? w.writer : w.reader;
  if (!side.active) return false;
  side.active = false;
  side.cb = nullptr;
  ++side.generation;
  update_interest(fd, w);
  return true;
}

void EventLoop::add_reader(int fd, absl::AnyInvocable<void()> cb) {
  add_watch(fd, /*writer=*/false, std::move(cb));
}
bool EventLoop::remove_reader(int fd) { return remove_watch(fd, /*writer=*/false); }
void EventLoop::add_writer(int fd, absl::AnyInvocable<void()> cb) {
  add_watch(fd, /*writer=*/true, std::move(cb));
}
bool EventLoop::remove_writer(int fd) { return remove_watch(fd, /*writer=*/true); }

// ---------------------------------------------------------------------------
// Signals

void EventLoop::add_signal_handler(int sig, absl::AnyInvocable<void()> cb) {
  check_open();
  if (sig <= 0 || sig >= kMaxSignal) {
    throw std::invalid_argument("signal number out of range: " + std::to_string(sig));
  }
  if (sig == SIGKILL || sig == SIGSTOP) {
    throw std::invalid_argument("signal " + std::to_string(sig) + " cannot be caught");
  }
  if (signal_read_fd_ < 0) {
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) throw_errno("pipe2");
    signal_read_fd_ = fds[0];
    signal_write_fd_ = fds[1];
    watch_internal_fd(signal_read_fd_, EPOLLIN);
  }
  if (signal_handlers_.size() < static_cast<size_t>(kMaxSignal))
    signal_handlers_.resize(kMaxSignal);
  struct sigaction sa {};
  sa.sa_handler = &on_signal;
  sigfillset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  g_signal_fds[sig].store(signal_write_fd_);
  if (::sigaction(sig, &sa, nullptr) < 0) {
    g_signal_fds[sig].store(-1);
    throw_errno("sigaction");
  }
  signal_handlers_[sig] = std::make_shared<absl::AnyInvocable<void()>>(std::move(cb));
}

bool EventLoop::remove_signal_handler(int sig) {
  if (sig <= 0 || sig >= kMaxSignal || static_cast<size_t>(sig) >= signal_handlers_.size() ||
      !signal_handlers_[sig]) {
    return false;
  }
  signal_handlers_[sig] = nullptr;
  restore_signal(sig);
  return true;
}

void EventLoop::restore_signal(int sig) {
  int mine = signal_write_fd_;
  if (mine >= 0 && g_signal_fds[sig].compare_exchange_strong(mine, -1)) {
    ::signal(sig, SIG_DFL);
  }
}

bool EventLoop::signal_arrived() {
  if (signal_read_fd_ < 0) return false;
  const uint64_t delivered = g_signals_delivered.load(std::memory_order_acquire);
  if (delivered == signals_seen_) return false;
  signals_seen_ = delivered;
  return true;
}

void EventLoop::dispatch_signals() {
  unsigned char buf[256];
  while (true) {
    ssize_t n = ::read(signal_read_fd_, buf, sizeof(buf));
    if (n <= 0) break;
    for (ssize_t i = 0; i < n; ++i) {
      const int sig = buf[i];
      if (static_cast<size_t>(sig) >= signal_handlers_.size() || !signal_handlers_[sig]) continue;
      // Runs in the next batch, as asyncio's _handle_signal does; the handler
      // is looked up then, so one removed meanwhile does not run.
      call_soon([handler = signal_handlers_[sig]] { (*handler)(); });
    }
  }
}

// ---------------------------------------------------------------------------
// Closing

void EventLoop::discard_pending() {
  // Nodes may schedule others while being discarded: repeat until empty.
  while (ready_head_ != nullptr || remote_head_.load() != nullptr || !timers_.empty() ||
         end_of_iteration_head_ != nullptr) {
    drain_remote_queue();
    run_end_of_iteration(/*discard=*/true);
    Runnable* node = ready_head_;
    ready_head_ = ready_tail_ = nullptr;
    while (node != nullptr) {
      Runnable* next = node->next_in_queue;
      node->invoke(node, /*discard=*/true);
      node = next;
    }
    std::vector<TimerHeap::Entry> timers;
    timers_.take_all(timers);
    cancelled_timers_ = 0;
    for (TimerHeap::Entry& e : timers) {
      e.node->in_heap = false;
      e.node->unref();
    }
  }
}

void EventLoop::close() {
  if (running_) throw std::runtime_error("Cannot close a running event loop");
  if (closed_.exchange(true)) return;
  // Callers of call_soon_threadsafe that got past the closed check push
  // their nodes first, so that they are discarded too (a
  // run_coroutine_threadsafe caller would otherwise wait forever). Those
  // that come later find the loop closed.
  wait_for_posters();
  discard_pending();
  for (auto& ext : extensions_) {
    if (ext) ext->on_close();
  }
  for (size_t sig = 0; sig < signal_handlers_.size(); ++sig) {
    if (signal_handlers_[sig]) {
      signal_handlers_[sig] = nullptr;
      restore_signal(static_cast<int>(sig));
    }
  }
  for (auto& w : fd_watches_) {
    if (w) {
      w->reader.cb = nullptr;
      w->writer.cb = nullptr;
      w->reader.active = w->writer.active = false;
    }
  }
  // The wake-up eventfd stays open until the destructor: another thread may
  // be inside call_soon_threadsafe right now, and must never write to a
  // descriptor number that was closed and reused.
  for (int* fd : {&signal_read_fd_, &signal_write_fd_, &epoll_fd_}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
  executor_shutdown_called_ = true;
  if (auto executor = std::move(default_executor_)) executor->shutdown(/*wait=*/false);
  name_resolver_.reset();
}

// ---------------------------------------------------------------------------
// Errors

void EventLoop::set_exception_handler(ExceptionHandler handler) {
  exception_handler_ = std::move(handler);
}

void EventLoop::call_exception_handler(const ExceptionContext& context) {
  if (!exception_handler_) {
    default_exception_handler(context);
    return;
  }
  try {
    exception_handler_(*this, context);
  } catch (...) {
    default_exception_handler(
        {"Unhandled error in exception handler", std::current_exception(), context.task, ""});
    default_exception_handler(context);
  }
}

void EventLoop::default_exception_handler(const ExceptionContext& context) {
  std::string text = "asyncio: " + (context.message.empty() ? "Unhandled exception in event loop"
                                                            : context.message);
  if (!context.task.empty()) text += "\n  task: " + context.task;
  if (!context.callback.empty()) text += "\n  callback: " + context.callback;
  if (context.exception) text += "\n  exception: " + describe_exception(context.exception);
  text += "\n";
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

void EventLoop::set_default_executor(std::shared_ptr<Executor> executor) {
  default_executor_ = std::move(executor);
}

// ---------------------------------------------------------------------------
// Thread's loops

std::unique_ptr<EventLoop> new_event_loop() { return std::make_unique<EventLoop>(); }

EventLoop* running_loop_or_null() { return t_running_loop; }

EventLoop& get_running_loop() {
  if (t_running_loop == nullptr) throw std::runtime_error("no running event loop");
  return *t_running_loop;
}

EventLoop& get_event_loop() {
  if (t_running_loop != nullptr) return *t_running_loop;
  if (t_event_loop != nullptr) return *t_event_loop;
  if (!t_owned_loop || t_owned_loop->is_closed()) t_owned_loop = new_event_loop();
  t_event_loop = t_owned_loop.get();
  return *t_event_loop;
}

void set_event_loop(EventLoop* loop) { t_event_loop = loop; }

}  // namespace asyncio
