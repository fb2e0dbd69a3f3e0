// asyncio.wait_for (asyncio docs, Coroutines and Tasks, "Timeouts"; times
// divided by ten):
//
//   async def eternity():
//       # Sleep for one hour
//       await asyncio.sleep(3600)
//       print('yay!')
//
//   async def main():
//       # Wait for at most 1 second
//       try:
//           await asyncio.wait_for(eternity(), timeout=1.0)
//       except asyncio.TimeoutError:
//           print('timeout!')
//
//   asyncio.run(main())
#include <chrono>
#include <iostream>

#include "examples/lib/examples.h"
#include "futures/futures.h"

namespace asyncio_examples {
namespace {

using namespace std::chrono_literals;

asyncio::Coro<void> eternity() {
  // Sleep for (a tenth of) one hour.
  co_await asyncio::sleep(360s);
  std::cout << "yay!\n";
}

asyncio::Coro<void> main_coro() {
  // Wait for at most 0.1 second.
  try {
    co_await asyncio::wait_for(eternity(), 100ms);
  } catch (const asyncio::TimeoutError&) {
    std::cout << "timeout!\n";
  }
}

}  // namespace

void run_wait_for_timeout() {
  asyncio::run(main_coro());
  std::cout.flush();
}

}  // namespace asyncio_examples
