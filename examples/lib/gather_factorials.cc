// asyncio.gather (asyncio docs, Coroutines and Tasks, "Running Tasks
// Concurrently"):
//
//   async def factorial(name, number):
//       f = 1
//       for i in range(2, number + 1):
//           print(f"Task {name}: Compute factorial({i})...")
//           await asyncio.sleep(1)
//           f *= i
//       print(f"Task {name}: factorial({number}) = {f}")
//
//   async def main():
//       # Schedule three calls *concurrently*:
//       await asyncio.gather(
//           factorial("A", 2),
//           factorial("B", 3),
//           factorial("C", 4),
//       )
//
//   asyncio.run(main())
#include <chrono>
#include <iostream>
#include <string>

#include "examples/lib/examples.h"
#include "futures/futures.h"

namespace asyncio_examples {
namespace {

using namespace std::chrono_literals;

asyncio::Coro<void> factorial(std::string name, int number) {
  long f = 1;
  for (int i = 2; i <= number; ++i) {
    std::cout << "Task " << name << ": Compute factorial(" << i << ")...\n";
    co_await asyncio::sleep(100ms);
    f *= i;
  }
  std::cout << "Task " << name << ": factorial(" << number << ") = " << f << '\n';
}

asyncio::Coro<void> main_coro() {
  // Schedule three calls *concurrently*:
  co_await asyncio::gather(factorial("A", 2), factorial("B", 3), factorial("C", 4));
}

}  // namespace

void run_gather_factorials() {
  asyncio::run(main_coro());
  std::cout.flush();
}

}  // namespace asyncio_examples
