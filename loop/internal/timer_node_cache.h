// A per-thread cache of timer nodes (call_later / call_at), apart from the
// shared free lists of pool.h.
//
// The shared lists keep at most a few thousand blocks per size class, so a
// burst of 100k timers would take most of its nodes from malloc and give
// them back when they fire, every burst. This cache keeps as many nodes as
// this thread once had alive at the same time (its peak), so the next burst
// of that size reuses warm memory instead of malloc's bookkeeping per node.
// The loop gives back what lies unused beyond a floor when it goes to sleep
// with no timer left, or once it has held it a second (on_loop_sleep), so a
// burst does not pin its memory. Under sanitizers it is bypassed, as the
// pool is.
#pragma once

#include <algorithm>
#include <cstddef>
#include <limits>
#include <new>

#include "loop/internal/pool.h"

namespace asyncio::loop_internal {

class TimerNodeCache {
 public:
  // Blocks kept however long the loop idles (the shared lists' cap).
  static constexpr std::ptrdiff_t kFloor = static_cast<std::ptrdiff_t>(FreeLists::kMaxCached);
  // How long a loop with timers may hold a surplus before giving it back.
  static constexpr double kSurplusSeconds = 1.0;

  // Every block has the same size: the loop's timer node.
  void* allocate(std::size_t size) {
    if (++live_ > cap_) cap_ = live_;
    ++taken_;
    if (count_ > 0) {
      void* block = slots_[--count_];
      // The caller writes the block, cold after a burst: start the miss of
      // one a few calls ahead now, so that the misses overlap.
      if (count_ >= kPrefetchDistance) __builtin_prefetch(slots_[count_ - kPrefetchDistance], 1);
      return block;
    }
    return ::operator new(size);
  }

  void deallocate(void* p) noexcept {
    // Goes below zero on a thread that frees nodes others made: harmless,
    // it only sizes the cache.
    --live_;
    if (count_ < cap_ && count_ < capacity_) {
      slots_[count_++] = p;
      // A burst beyond the floor is back: sorted once per cache's worth of
      // allocations, not again and again while a few timers come and go.
      if (count_ == cap_ && cap_ > kFloor && taken_ >= count_) [[unlikely]]
        sort_by_page();
      return;
    }
    deallocate_slow(p);
  }

  // Called by a loop about to sleep, `now` on its clock, `timers_pending`
  // whether it still holds timers. Gives back the blocks beyond the floor
  // at once when the loop has no timer left; with timers, once it held them
  // kSurplusSeconds. Returns when the loop should wake to look again (it may
  // sleep longer otherwise), +infinity if it need not.
  double on_loop_sleep(double now, bool timers_pending) noexcept {
    if (count_ <= kFloor) {
      surplus_since_ = -1;
      return kNever;
    }
    if (!timers_pending) {
      trim();
      return kNever;
    }
    if (surplus_since_ < 0) surplus_since_ = now;
    if (now - surplus_since_ < kSurplusSeconds) return surplus_since_ + kSurplusSeconds;
    trim();
    return kNever;
  }

  // Frees the cached blocks beyond the floor; from then on the cache grows
  // up to the timers alive now (they come back as they fire).
  void trim() noexcept;
  // Frees every cached block and stops caching: called at thread exit (see
  // FreeLists::retire).
  void retire() noexcept;

  std::ptrdiff_t cached() const { return count_; }

 private:
  static constexpr double kNever = std::numeric_limits<double>::infinity();
  static constexpr std::ptrdiff_t kPrefetchDistance = 8;
  // Every block this thread had alive at its peak is back (a burst is over):
  // puts them in address order, page by page, so that the next burst writes
  // its nodes in a stream rather than one cold page after another (timers
  // come back in firing order, which is anything but address order).
  void sort_by_page() noexcept;
  // Keeps `p` if the cache may grow (the slot array grows by doubling),
  // frees it otherwise.
  void deallocate_slow(void* p) noexcept;

  // The cached blocks, in an array rather than a list threaded through them:
  // taking one reads the array, sequentially, never the cold block itself.
  void** slots_ = nullptr;
  void** sort_scratch_ = nullptr;  // capacity_ slots, for sort_by_page
  std::ptrdiff_t capacity_ = 0;    // of slots_
  std::ptrdiff_t count_ = 0;
  std::ptrdiff_t taken_ = 0;     // allocations since the last sort_by_page
  std::ptrdiff_t live_ = 0;      // allocated here minus freed here
  std::ptrdiff_t cap_ = kFloor;  // the floor, or the peak of live_ since the last trim
  double surplus_since_ = -1;
  bool retired_ = false;
};

inline TimerNodeCache& this_thread_timer_node_cache() {
  static constinit thread_local TimerNodeCache cache;
  return cache;
}

inline void* timer_node_allocate(std::size_t size) {
  if constexpr (!kPoolEnabled) return ::operator new(size);
  return this_thread_timer_node_cache().allocate(size);
}

inline void timer_node_deallocate(void* p) noexcept {
  if constexpr (!kPoolEnabled) return ::operator delete(p);
  this_thread_timer_node_cache().deallocate(p);
}

}  // namespace asyncio::loop_internal
