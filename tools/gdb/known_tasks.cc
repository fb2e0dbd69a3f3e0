// A program whose tasks reach a known state, for the tests of
// tools/asyncio_ps and tools/gdb/asyncio_gdb.py:
//
//   main's TaskGroup holds fetch-a, which awaits parse, and fetch-b; parse
//   and fetch-b are inside read_reply(), awaiting a future that is resolved
//   only at the end. The group also holds gatherer, which awaits
//   gather(gather-1, gather-2), and waiter, which awaits wait([waited])
//   under wait_for: the combinators' tasks are seen through to their
//   children. gather-1, gather-2 and waited are inside read_reply() too.
//
// With --break it calls asyncio_debug_breakpoint() in that state (from a
// loop callback: no task is running), then lets every task finish and
// exits. With --wait it prints "ready" once in that state and waits forever:
// run it with ASYNCIO_DEBUG_SOCKET=1 and ask it with tools/asyncio_ps.
#include <cstdio>
#include <cstring>
#include <vector>

#include "futures/futures.h"

// For gdb to stop at; its empty asm keeps the call from being optimized away.
extern "C" __attribute__((noinline)) void asyncio_debug_breakpoint() { asm volatile(""); }

namespace app {

using asyncio::Coro;
using asyncio::Future;

Coro<void> read_reply(Future<void> gate) { co_await gate; }

Coro<void> parse(Future<void> gate) { co_await read_reply(gate); }

Coro<void> fetch_a(Future<void> gate) {
  // A named local, not a temporary inside the co_await: GCC 12 mishandles
  // the TaskOptions temporary's string there.
  asyncio::Task<void> child = asyncio::create_task(parse(gate), {.name = "parse"});
  co_await child;
}

Coro<void> fetch_b(Future<void> gate) { co_await read_reply(gate); }

Coro<void> gather_both(Future<void> gate) {
  asyncio::Task<void> one = asyncio::create_task(read_reply(gate), {.name = "gather-1"});
  asyncio::Task<void> two = asyncio::create_task(read_reply(gate), {.name = "gather-2"});
  co_await asyncio::gather(one, two);
}

Coro<void> wait_one(Future<void> gate) {
  asyncio::Task<void> child = asyncio::create_task(read_reply(gate), {.name = "waited"});
  std::vector<asyncio::Task<void>> children{child};
  auto waiting = asyncio::wait(std::move(children));
  co_await asyncio::wait_for(std::move(waiting), std::chrono::hours(1));
}

Coro<void> main_task(bool wait) {
  asyncio::current_task()->set_name("main");
  asyncio::EventLoop& loop = asyncio::get_running_loop();
  Future<void> gate = asyncio::create_future<void>(loop);
  asyncio::TaskGroup group;
  group.create_task(fetch_a(gate), "fetch-a");
  group.create_task(fetch_b(gate), "fetch-b");
  group.create_task(gather_both(gate), "gatherer");
  group.create_task(wait_one(gate), "waiter");
  co_await asyncio::sleep(std::chrono::seconds(0));  // fetch-a and fetch-b start
  co_await asyncio::sleep(std::chrono::seconds(0));  // their children start
  if (wait) {
    // Asked after this, the loop answers once main is suspended below.
    std::printf("ready\n");
    std::fflush(stdout);
  } else {
    // Runs once main is suspended in join(): every task is waiting.
    loop.call_soon([gate]() mutable {
      asyncio_debug_breakpoint();
      gate.set_result();
    });
  }
  co_await group.join();
}

}  // namespace app

int main(int argc, char** argv) {
  const bool wait = argc > 1 && std::strcmp(argv[1], "--wait") == 0;
  asyncio::run(app::main_task(wait));
  return 0;
}
