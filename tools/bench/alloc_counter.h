// Counts the bytes this thread asks of the global operator new (micro.cc
// replaces it). The library's per-thread pools (loop/internal/pool.h) take
// their blocks from ::operator new, so on a thread whose pools start empty
// the count is everything the library allocated there.
#pragma once

#include <cstdint>

namespace asyncio::bench {

// Bytes and calls of operator new on the calling thread so far.
int64_t thread_new_bytes();
int64_t thread_new_calls();

}  // namespace asyncio::bench
