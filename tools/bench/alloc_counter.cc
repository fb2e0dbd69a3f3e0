// Replaces the global operator new with a thread-local byte counter in front
// of malloc. Kept alone in its translation unit so that no new/delete pair is
// inlined next to it.
#include "tools/bench/alloc_counter.h"

#include <cstdlib>
#include <new>

namespace {
thread_local int64_t t_new_bytes = 0;
thread_local int64_t t_new_calls = 0;
}  // namespace

void* operator new(std::size_t size) {
  t_new_bytes += static_cast<int64_t>(size);
  ++t_new_calls;
  if (void* p = std::malloc(size != 0 ? size : 1)) return p;
  throw std::bad_alloc();
}

void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace asyncio::bench {

int64_t thread_new_bytes() { return t_new_bytes; }
int64_t thread_new_calls() { return t_new_calls; }

}  // namespace asyncio::bench
