// asyncio.wait (asyncio docs, Coroutines and Tasks, "Waiting Primitives"):
//
//   async def foo():
//       return 42
//
//   async def main():
//       task = asyncio.create_task(foo())
//       done, pending = await asyncio.wait({task})
//
//       if task in done:
//           # do something
//
//   asyncio.run(main(), debug=True)
//
// "do something" prints what wait() returned and the task's result.
#include <algorithm>
#include <iostream>
#include <vector>

#include "examples/lib/examples.h"
#include "futures/futures.h"

namespace asyncio_examples {
namespace {

asyncio::Coro<int> foo() { co_return 42; }

asyncio::Coro<void> main_coro() {
  asyncio::Task<int> task = asyncio::create_task(foo());
  std::vector<asyncio::Task<int>> tasks{task};
  auto [done, pending] = co_await asyncio::wait(std::move(tasks));

  const bool in_done = std::find(done.begin(), done.end(), task) != done.end();
  std::cout << "task in done: " << (in_done ? "True" : "False") << '\n';
  std::cout << "len(done) = " << done.size() << ", len(pending) = " << pending.size() << '\n';
  if (in_done) {
    std::cout << "task.result() = " << task.result() << '\n';
  }
}

}  // namespace

void run_wait_example() {
  asyncio::run(main_coro(), {.debug = true});
  std::cout.flush();
}

}  // namespace asyncio_examples
