// Coroutines and tasks (asyncio docs, Coroutines and Tasks, "Coroutines"):
//
//   async def say_after(delay, what):
//       await asyncio.sleep(delay)
//       print(what)
//
//   async def main():
//       task1 = asyncio.create_task(say_after(1, 'hello'))
//       task2 = asyncio.create_task(say_after(2, 'world'))
//       print(f"started at {time.strftime('%X')}")
//       await task1
//       await task2
//       print(f"finished at {time.strftime('%X')}")
//
//   asyncio.run(main(), debug=True)
#include <chrono>
#include <iostream>
#include <string>

#include "examples/lib/examples.h"
#include "examples/lib/util.h"
#include "futures/futures.h"

namespace asyncio_examples {
namespace {

using namespace std::chrono_literals;

asyncio::Coro<void> say_after(std::chrono::milliseconds delay, std::string what) {
  co_await asyncio::sleep(delay);
  std::cout << what << '\n';
}

asyncio::Coro<void> main_coro() {
  asyncio::Task<void> task1 = asyncio::create_task(say_after(100ms, "hello"));
  asyncio::Task<void> task2 = asyncio::create_task(say_after(200ms, "world"));

  std::cout << "started at " << strftime_x() << '\n';

  co_await task1;
  co_await task2;
  std::cout << "finished at " << strftime_x() << '\n';
}

}  // namespace

void run_hello_world_tasks() {
  asyncio::run(main_coro(), {.debug = true});
  std::cout.flush();
}

}  // namespace asyncio_examples
