// The generator-based coroutine form of older asyncio (@asyncio.coroutine):
//
//   @asyncio.coroutine
//   def say_after(delay, what, task=0):
//       yield from asyncio.sleep(delay)
//       print(what)
//
//   @asyncio.coroutine
//   def main():
//       task1 = asyncio.create_task(say_after(1, 'hello'))
//       task2 = asyncio.create_task(say_after(2, 'world', task1))
//       print(f"started at {time.strftime('%X')}")
//       yield from task1
//       yield from task2
//       print(f"finished at {time.strftime('%X')}")
//       return 123
//
//   loop = asyncio.get_event_loop()
//   loop.run_until_complete(main())
//   loop.close()
//
// C++ has one kind of coroutine: `yield from` is `co_await`. The value that
// run_until_complete returns is printed as well.
#include <chrono>
#include <iostream>
#include <optional>
#include <string>

#include "examples/lib/examples.h"
#include "examples/lib/util.h"
#include "futures/futures.h"
#include "loop/loop.h"

namespace asyncio_examples {
namespace {

using namespace std::chrono_literals;

// `task` is unused, as in the Python version.
asyncio::Coro<void> say_after(std::chrono::milliseconds delay, std::string what,
                              std::optional<asyncio::Task<void>> task = std::nullopt) {
  (void)task;
  co_await asyncio::sleep(delay);
  std::cout << what << '\n';
}

asyncio::Coro<int> main_coro() {
  asyncio::Task<void> task1 = asyncio::create_task(say_after(100ms, "hello"));
  asyncio::Task<void> task2 = asyncio::create_task(say_after(200ms, "world", task1));
  std::cout << "started at " << strftime_x() << '\n';
  co_await task1;
  co_await task2;
  std::cout << "finished at " << strftime_x() << '\n';
  co_return 123;
}

}  // namespace

void run_generator_based() {
  int result = 0;
  {
    asyncio::EventLoop& loop = asyncio::get_event_loop();
    CloseLoopOnExit close_loop(loop);
    result = asyncio::run_until_complete(loop, main_coro());
  }
  std::cout << "run_until_complete returned " << result << '\n';
  std::cout.flush();
}

}  // namespace asyncio_examples
