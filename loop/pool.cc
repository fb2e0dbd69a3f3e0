#include "loop/internal/pool.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

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
      std::free(sort_scratch_);  // too small now: made again when needed
      sort_scratch_ = nullptr;
      slots_[count_++] = p;
      return;
    }
  }
  ::operator delete(p);
}

void TimerNodeCache::sort_by_page() noexcept {
  constexpr int kPageBits = 12;
  constexpr int kDigitBits = 11;
  constexpr std::size_t kBuckets = std::size_t{1} << kDigitBits;
  taken_ = 0;
  if (count_ < 2 * static_cast<std::ptrdiff_t>(kBuckets)) return;  // small: not worth it
  if (sort_scratch_ == nullptr) {
    sort_scratch_ =
        static_cast<void**>(std::malloc(static_cast<std::size_t>(capacity_) * sizeof(void*)));
    if (sort_scratch_ == nullptr) return;
  }
  const auto page = [](void* p) { return reinterpret_cast<std::uintptr_t>(p) >> kPageBits; };
  std::uintptr_t low = page(slots_[0]), high = low;
  for (std::ptrdiff_t i = 1; i < count_; ++i) {
    low = std::min(low, page(slots_[i]));
    high = std::max(high, page(slots_[i]));
  }
  // A least-significant-digit radix sort of the page numbers, relative to
  // the lowest: one or two passes for the few megabytes of a burst.
  void** from = slots_;
  void** to = sort_scratch_;
  for (int shift = 0; shift == 0 || ((high - low) >> shift) != 0; shift += kDigitBits) {
    std::uint32_t offsets[kBuckets] = {};
    for (std::ptrdiff_t i = 0; i < count_; ++i)
      ++offsets[((page(from[i]) - low) >> shift) & (kBuckets - 1)];
    std::uint32_t sum = 0;
    for (std::uint32_t& offset : offsets) {
      const std::uint32_t n = offset;
      offset = sum;
      sum += n;
    }
    for (std::ptrdiff_t i = 0; i < count_; ++i)
      to[offsets[((page(from[i]) - low) >> shift) & (kBuckets - 1)]++] = from[i];
    std::swap(from, to);
  }
  // Allocation takes from the end: a burst walks down through memory, which
  // the hardware prefetches as well as the other way.
  if (from != slots_) std::memcpy(slots_, from, static_cast<std::size_t>(count_) * sizeof(void*));
}

void TimerNodeCache::trim() noexcept {
  while (count_ > kFloor) ::operator delete(slots_[--count_]);
  std::free(sort_scratch_);
  sort_scratch_ = nullptr;
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
  std::free(sort_scratch_);
  slots_ = sort_scratch_ = nullptr;
  capacity_ = 0;
  retired_ = true;
}

}  // namespace asyncio::loop_internal
