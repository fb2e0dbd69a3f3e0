#include "loop/internal/pool.h"

namespace asyncio::loop_internal {
namespace {

// Retires this thread's free lists when the thread exits.
struct Reaper {
  ~Reaper() { this_thread_free_lists().retire(); }
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

}  // namespace asyncio::loop_internal
