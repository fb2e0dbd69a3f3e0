// Teaches ThreadSanitizer about Debian's prebuilt (uninstrumented) Abseil
// synchronization primitives. See BUILD for why; linked only under
// --config=tsan, by the @com_google_absl targets that need it.
//
// Each function below has the signature of a public, out-of-line member of
// absl::Mutex, absl::CondVar, absl::Notification, absl::BlockingCounter or
// absl::Barrier. Being defined in the executable, these definitions interpose
// the ones in libabsl_synchronization.so (also for calls made from inside that
// library, which go through its PLT). Each one calls the real function, found
// with dlsym(RTLD_NEXT), wrapped in the same __tsan_mutex_* annotations that
// Abseil's mutex.cc emits when it is itself compiled with TSan. Memory accesses
// made inside lock/unlock (e.g. evaluating another thread's absl::Condition)
// are ignored by TSan between the pre_ and post_ annotations, as in Abseil.

#if defined(__SANITIZE_THREAD__)

#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "absl/base/options.h"
#include "absl/synchronization/barrier.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

#if !ABSL_OPTION_USE_INLINE_NAMESPACE
#error "absl_synchronization_tsan.cc assumes Abseil's inline namespace (mangled names)."
#endif

#define ABSL_TSAN_SHIM_STR2(x) #x
#define ABSL_TSAN_SHIM_STR(x) ABSL_TSAN_SHIM_STR2(x)

namespace {

// Finds the real definition. `prefix` is "_ZN" (or "_ZNK" for const members),
// `rest` is the mangled name after "absl::<inline namespace>::".
template <typename Fn>
Fn Real(const char* prefix, const char* rest) {
  const std::string ns = ABSL_TSAN_SHIM_STR(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  const std::string name = std::string(prefix) + "4absl" + std::to_string(ns.size()) + ns + rest;
  void* fn = dlsym(RTLD_NEXT, name.c_str());
  if (fn == nullptr) {
    std::fprintf(stderr, "absl_synchronization_tsan: cannot find %s in the loaded Abseil: %s\n",
                 name.c_str(), dlerror());
    std::abort();
  }
  return reinterpret_cast<Fn>(fn);
}

// Depth of shim calls on this thread. Some real functions call other public
// ones through the PLT (e.g. LockWhenWithTimeout -> LockWhenWithDeadline,
// Notification::Notify -> Mutex::Lock); those nested calls must be forwarded
// without annotating again, or TSan would count the lock twice.
thread_local int shim_depth = 0;

struct Nested {
  Nested() { ++shim_depth; }
  ~Nested() { --shim_depth; }
  Nested(const Nested&) = delete;
  Nested& operator=(const Nested&) = delete;
};

// Forwards straight to the real function when called from inside another
// shimmed call.
#define ABSL_TSAN_SHIM_FORWARD_IF_NESTED(...)   \
  if (shim_depth > 0) return real(__VA_ARGS__); \
  Nested nested

// absl::Mutex's writer bit (kMuWriter in absl/synchronization/mutex.cc).
constexpr intptr_t kMuWriter = 0x0008;

template <typename Call>
auto ReleaseAndReacquire(void* mu, const std::atomic<intptr_t>& state, Call call) {
  const unsigned how = (state.load(std::memory_order_relaxed) & kMuWriter)
                           ? 0u
                           : static_cast<unsigned>(__tsan_mutex_read_lock);
  __tsan_mutex_pre_unlock(mu, how);
  auto reacquire = [&] {
    __tsan_mutex_post_unlock(mu, how);
    __tsan_mutex_pre_lock(mu, how);
    __tsan_mutex_post_lock(mu, how, 0);
  };
  if constexpr (std::is_void_v<decltype(call())>) {
    call();
    reacquire();
  } else {
    auto result = call();
    reacquire();
    return result;
  }
}

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

// ---- absl::Mutex ---------------------------------------------------------

Mutex::~Mutex() {
  static const auto real = Real<void (*)(Mutex*)>("_ZN", "5MutexD1Ev");
  if (shim_depth == 0) __tsan_mutex_destroy(this, 0);
  real(this);
}

void Mutex::Lock() {
  static const auto real = Real<void (*)(Mutex*)>("_ZN", "5Mutex4LockEv");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this);
  __tsan_mutex_pre_lock(this, 0);
  real(this);
  __tsan_mutex_post_lock(this, 0, 0);
}

void Mutex::ReaderLock() {
  static const auto real = Real<void (*)(Mutex*)>("_ZN", "5Mutex10ReaderLockEv");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this);
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  real(this);
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
}

bool Mutex::TryLock() {
  static const auto real = Real<bool (*)(Mutex*)>("_ZN", "5Mutex7TryLockEv");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this);
  __tsan_mutex_pre_lock(this, __tsan_mutex_try_lock);
  const bool locked = real(this);
  __tsan_mutex_post_lock(
      this, locked ? __tsan_mutex_try_lock : __tsan_mutex_try_lock | __tsan_mutex_try_lock_failed,
      0);
  return locked;
}

bool Mutex::ReaderTryLock() {
  static const auto real = Real<bool (*)(Mutex*)>("_ZN", "5Mutex13ReaderTryLockEv");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this);
  constexpr unsigned kFlags = __tsan_mutex_read_lock | __tsan_mutex_try_lock;
  __tsan_mutex_pre_lock(this, kFlags);
  const bool locked = real(this);
  __tsan_mutex_post_lock(this, locked ? kFlags : kFlags | __tsan_mutex_try_lock_failed, 0);
  return locked;
}

void Mutex::Unlock() {
  static const auto real = Real<void (*)(Mutex*)>("_ZN", "5Mutex6UnlockEv");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this);
  __tsan_mutex_pre_unlock(this, 0);
  real(this);
  __tsan_mutex_post_unlock(this, 0);
}

void Mutex::ReaderUnlock() {
  static const auto real = Real<void (*)(Mutex*)>("_ZN", "5Mutex12ReaderUnlockEv");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this);
  __tsan_mutex_pre_unlock(this, __tsan_mutex_read_lock);
  real(this);
  __tsan_mutex_post_unlock(this, __tsan_mutex_read_lock);
}

// LockWhen* / ReaderLockWhen*: acquire the mutex (always, even on timeout).
void Mutex::LockWhen(const Condition& cond) {
  static const auto real =
      Real<void (*)(Mutex*, const Condition&)>("_ZN", "5Mutex8LockWhenERKNS0_9ConditionE");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this, cond);
  __tsan_mutex_pre_lock(this, 0);
  real(this, cond);
  __tsan_mutex_post_lock(this, 0, 0);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  static const auto real =
      Real<void (*)(Mutex*, const Condition&)>("_ZN", "5Mutex14ReaderLockWhenERKNS0_9ConditionE");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this, cond);
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  real(this, cond);
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, absl::Duration)>(
      "_ZN", "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this, cond, timeout);
  __tsan_mutex_pre_lock(this, 0);
  const bool result = real(this, cond, timeout);
  __tsan_mutex_post_lock(this, 0, 0);
  return result;
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, absl::Duration)>(
      "_ZN", "5Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this, cond, timeout);
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  const bool result = real(this, cond, timeout);
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
  return result;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, absl::Time)>(
      "_ZN", "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this, cond, deadline);
  __tsan_mutex_pre_lock(this, 0);
  const bool result = real(this, cond, deadline);
  __tsan_mutex_post_lock(this, 0, 0);
  return result;
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, absl::Time)>(
      "_ZN", "5Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this, cond, deadline);
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  const bool result = real(this, cond, deadline);
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
  return result;
}

// Await* and CondVar::Wait*: the mutex is held on entry and on return but
// released in between, in whichever mode it is held. `state` is its mu_ word.
void Mutex::Await(const Condition& cond) {
  static const auto real =
      Real<void (*)(Mutex*, const Condition&)>("_ZN", "5Mutex5AwaitERKNS0_9ConditionE");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this, cond);
  ReleaseAndReacquire(this, mu_, [&] { real(this, cond); });
}

bool Mutex::AwaitWithTimeout(const Condition& cond, absl::Duration timeout) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, absl::Duration)>(
      "_ZN", "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this, cond, timeout);
  return ReleaseAndReacquire(this, mu_, [&] { return real(this, cond, timeout); });
}

bool Mutex::AwaitWithDeadline(const Condition& cond, absl::Time deadline) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, absl::Time)>(
      "_ZN", "5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this, cond, deadline);
  return ReleaseAndReacquire(this, mu_, [&] { return real(this, cond, deadline); });
}

// ---- absl::CondVar (a friend of Mutex, so it may read mu->mu_) -------------

void CondVar::Wait(Mutex* mu) {
  static const auto real = Real<void (*)(CondVar*, Mutex*)>("_ZN", "7CondVar4WaitEPNS0_5MutexE");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this, mu);
  ReleaseAndReacquire(mu, mu->mu_, [&] { real(this, mu); });
}

bool CondVar::WaitWithTimeout(Mutex* mu, absl::Duration timeout) {
  static const auto real = Real<bool (*)(CondVar*, Mutex*, absl::Duration)>(
      "_ZN", "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this, mu, timeout);
  return ReleaseAndReacquire(mu, mu->mu_, [&] { return real(this, mu, timeout); });
}

bool CondVar::WaitWithDeadline(Mutex* mu, absl::Time deadline) {
  static const auto real = Real<bool (*)(CondVar*, Mutex*, absl::Time)>(
      "_ZN", "7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this, mu, deadline);
  return ReleaseAndReacquire(mu, mu->mu_, [&] { return real(this, mu, deadline); });
}

// ---- absl::Notification ------------------------------------------------------
// The flag is stored by uninstrumented code and may be read by the (inlined,
// instrumented) HasBeenNotified() without taking the mutex: publish on the
// flag's address, which is where TSan keys instrumented atomic accesses.

void Notification::Notify() {
  static const auto real = Real<void (*)(Notification*)>("_ZN", "12Notification6NotifyEv");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this);
  __tsan_release(&notified_yet_);
  real(this);
}

void Notification::WaitForNotification() const {
  static const auto real =
      Real<void (*)(const Notification*)>("_ZNK", "12Notification19WaitForNotificationEv");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this);
  real(this);
  __tsan_acquire(const_cast<std::atomic<bool>*>(&notified_yet_));
}

bool Notification::WaitForNotificationWithTimeout(absl::Duration timeout) const {
  static const auto real = Real<bool (*)(const Notification*, absl::Duration)>(
      "_ZNK", "12Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this, timeout);
  const bool notified = real(this, timeout);
  if (notified) __tsan_acquire(const_cast<std::atomic<bool>*>(&notified_yet_));
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(absl::Time deadline) const {
  static const auto real = Real<bool (*)(const Notification*, absl::Time)>(
      "_ZNK", "12Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this, deadline);
  const bool notified = real(this, deadline);
  if (notified) __tsan_acquire(const_cast<std::atomic<bool>*>(&notified_yet_));
  return notified;
}

// ---- absl::BlockingCounter and absl::Barrier -------------------------------

bool BlockingCounter::DecrementCount() {
  static const auto real =
      Real<bool (*)(BlockingCounter*)>("_ZN", "15BlockingCounter14DecrementCountEv");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this);
  __tsan_release(this);
  return real(this);
}

void BlockingCounter::Wait() {
  static const auto real = Real<void (*)(BlockingCounter*)>("_ZN", "15BlockingCounter4WaitEv");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this);
  real(this);
  __tsan_acquire(this);
}

bool Barrier::Block() {
  static const auto real = Real<bool (*)(Barrier*)>("_ZN", "7Barrier5BlockEv");
  ABSL_TSAN_SHIM_FORWARD_IF_NESTED(this);
  __tsan_release(this);
  const bool result = real(this);
  __tsan_acquire(this);
  return result;
}

ABSL_NAMESPACE_END
}  // namespace absl

#endif  // defined(__SANITIZE_THREAD__)
