// Workers fed by an asyncio.Queue (asyncio docs, Queues):
//
//   async def worker1(queue):
//       print('aaaa')
//       a = await queue.get()
//       print(a)
//
//   async def worker2(queue):
//       await asyncio.sleep(2)
//       print('put to queue:')
//       await queue.put(3)
//
//   async def main():
//       queue = asyncio.Queue()
//       task1 = asyncio.create_task(worker1(queue))
//       task2 = asyncio.create_task(worker2(queue))
//       await task1
//       await task2
//
//   asyncio.run(main())
#include <chrono>
#include <iostream>

#include "examples/lib/examples.h"
#include "futures/futures.h"
#include "queues/queues.h"

namespace asyncio_examples {
namespace {

using namespace std::chrono_literals;

asyncio::Coro<void> worker1(asyncio::Queue<int>& queue) {
  std::cout << "aaaa\n";
  int a = co_await queue.get();
  std::cout << a << '\n';
}

asyncio::Coro<void> worker2(asyncio::Queue<int>& queue) {
  co_await asyncio::sleep(200ms);
  std::cout << "put to queue:\n";
  co_await queue.put(3);
}

asyncio::Coro<void> main_coro() {
  asyncio::Queue<int> queue;
  asyncio::Task<void> task1 = asyncio::create_task(worker1(queue));
  asyncio::Task<void> task2 = asyncio::create_task(worker2(queue));
  co_await task1;
  co_await task2;
}

}  // namespace

void run_queue_workers() {
  asyncio::run(main_coro());
  std::cout.flush();
}

}  // namespace asyncio_examples
