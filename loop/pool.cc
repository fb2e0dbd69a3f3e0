#include "loop/internal/pool.h"

#include <algorithm>
#include <cstdlib>

#include "loop/internal/timer_node_cache.h"

namespace asyncio::loop_internal {
namespace {

// Retires this thread's free lists when the thread exits.
struct Reaper {
  ~Reaper() { this_thread_free_lists().retire(); }
};

// The same for its timer node cache.
struct TimerNodeReaper {
  ~TimerNodeReaper() { this_thread_timer_node_cache().retire(); }
};

}  // namespace

void FreeLists::arm_reaper() {
  static thread_local Reaper reaper;
  (void)&reaper;  // odr-use: constructs it, registering its destructor
  reaper_armed_ = true;
}

void FreeLists::retire() noexcept {
  for (std::size_t cls = 0; cls < kClasses; ++cls) {
    while (Block* b = heads_[cls]) {
      heads_[cls] = b->next;
      ::operator delete(b);
    }
    counts_[cls] = 0;
  }
  retired_ = true;
}

void TimerNodeCache::deallocate_slow(void* p) noexcept {
  if (count_ < cap_ && !retired_) {
    if (slots_ == nullptr) {
      static thread_local TimerNodeReaper reaper;
      (void)&reaper;  // odr-use: constructs it, registering its destructor
    }
    const std::ptrdiff_t grown = std::max<std::ptrdiff_t>(2 * capacity_, 1024);
    if (void* more = std::realloc(slots_, static_cast<std::size_t>(grown) * sizeof(void*))) {
      slots_ = static_cast<void**>(more);
      capacity_ = grown;
      slots_[count_++] = p;
      return;
    }
  }
  ::operator delete(p);
}

void TimerNodeCache::trim() noexcept {
  while (count_ > kFloor) ::operator delete(slots_[--count_]);
  if (capacity_ > 2 * kFloor) {
    if (void* fewer = std::realloc(slots_, static_cast<std::size_t>(kFloor) * sizeof(void*))) {
      slots_ = static_cast<void**>(fewer);
      capacity_ = kFloor;
    }
  }
  cap_ = std::max(kFloor, live_);
  surplus_since_ = -1;
}

void TimerNodeCache::retire() noexcept {
  while (count_ > 0) ::operator delete(slots_[--count_]);
  std::free(slots_);
  slots_ = nullptr;
  capacity_ = 0;
  retired_ = true;
}

}  // namespace asyncio::loop_internal
