// Per-thread free lists for the library's small, short-lived blocks:
// coroutine frames, future states, callback and timer nodes.
//
// Blocks are grouped into 16-byte size classes. A freed block goes to the
// free list of the thread that frees it (no locking, no sharing); each list
// is capped so that a producer/consumer pair of threads cannot grow it
// without bound. Under AddressSanitizer the pool is bypassed so that
// use-after-free is still caught.
#pragma once

#include <cstddef>
#include <new>

namespace asyncio::loop_internal {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kPoolEnabled = false;
#else
inline constexpr bool kPoolEnabled = true;
#endif

class FreeLists {
 public:
  static constexpr std::size_t kGranule = 16;
  static constexpr std::size_t kClasses = 64;  // blocks up to 1 KiB
  static constexpr std::size_t kMaxCached = 4096;

  void* allocate(std::size_t size) {
    const std::size_t cls = (size + kGranule - 1) / kGranule;
    if (cls < kClasses) {
      if (Block* b = heads_[cls]) {
        heads_[cls] = b->next;
        // Walking a list of cold blocks is a chain of dependent cache
        // misses: start the next one now, while the caller fills this one.
        __builtin_prefetch(b->next, 1);
        --counts_[cls];
        return b;
      }
      return ::operator new(cls* kGranule);
    }
    return ::operator new(size);
  }

  void deallocate(void* p, std::size_t size) noexcept {
    const std::size_t cls = (size + kGranule - 1) / kGranule;
    if (cls < kClasses && counts_[cls] < kMaxCached && !retired_) {
      if (!reaper_armed_) arm_reaper();
      Block* b = static_cast<Block*>(p);
      b->next = heads_[cls];
      heads_[cls] = b;
      ++counts_[cls];
      return;
    }
    ::operator delete(p);
  }

 public:
  // Frees every cached block and stops caching: called at thread exit. The
  // object itself is trivially destructible, so blocks freed by thread-local
  // destructors that run later still find it and go straight to the heap.
  void retire() noexcept;

 private:
  struct Block {
    Block* next;
  };
  void arm_reaper();

  Block* heads_[kClasses] = {};
  std::size_t counts_[kClasses] = {};
  bool reaper_armed_ = false;
  bool retired_ = false;
};

inline FreeLists& this_thread_free_lists() {
  static constinit thread_local FreeLists lists;
  return lists;
}

}  // namespace asyncio::loop_internal

namespace asyncio {

// Allocates `size` bytes from this thread's free lists. Used by every package
// of the library for frames and nodes; exported so that they share one pool.
inline void* pool_allocate(std::size_t size) {
  if constexpr (!loop_internal::kPoolEnabled) return ::operator new(size);
  return loop_internal::this_thread_free_lists().allocate(size);
}

// Returns a block obtained from pool_allocate (from any thread).
inline void pool_deallocate(void* p, std::size_t size) noexcept {
  if constexpr (!loop_internal::kPoolEnabled) return ::operator delete(p);
  loop_internal::this_thread_free_lists().deallocate(p, size);
}

// Mix-in giving a class pooled operator new/delete.
struct Pooled {
  static void* operator new(std::size_t size) { return pool_allocate(size); }
  static void operator delete(void* p, std::size_t size) noexcept { pool_deallocate(p, size); }
};

}  // namespace asyncio
