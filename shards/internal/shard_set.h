// The state run_sharded shares between its shards and the thread that
// called it. Nothing here is for users; see shards/shards.h.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "futures/futures.h"
#include "loop/loop.h"
#include "transports/transports.h"

namespace asyncio {
class Shard;
}  // namespace asyncio

namespace asyncio::shards_internal {

// One shard's counters: written by its own thread only (a plain load and
// store, no locked instruction on the request path), read by any thread.
struct alignas(64) ShardCounters {
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> open{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> calls{0};

  static void add(std::atomic<uint64_t>& counter, uint64_t n = 1) {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  static void sub(std::atomic<uint64_t>& counter) {
    counter.store(counter.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  }
};

// The loops, as the shards' threads made them. Written before the start
// latch, read-only afterwards.
struct ShardLoops {
  std::vector<EventLoop*> loops;
  std::vector<ShardCounters> counters;
  explicit ShardLoops(size_t n) : loops(n, nullptr), counters(n) {}
};

// Throws if `target` is no shard or has no loop.
EventLoop& loop_of(const ShardLoops& set, size_t target);

// A server the shard closes when its main is done (shard thread only).
void track_server(Shard& shard, const Server& server);

}  // namespace asyncio::shards_internal
