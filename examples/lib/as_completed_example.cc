// asyncio.as_completed (asyncio docs, Coroutines and Tasks, "Running Tasks
// Concurrently"): three coroutines with different
// delays; the results come in the order they finish.
//
//   async def work(name, delay):
//       await asyncio.sleep(delay)
//       return f"{name} finished after {delay} s"
//
//   async def main():
//       aws = [work("slow", 0.3), work("fast", 0.1), work("medium", 0.2)]
//       for next_done in asyncio.as_completed(aws):
//           print(await next_done)
//
//   asyncio.run(main())
#include <chrono>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "examples/lib/examples.h"
#include "futures/futures.h"

namespace asyncio_examples {
namespace {

using namespace std::chrono_literals;

asyncio::Coro<std::string> work(std::string name, std::chrono::milliseconds delay) {
  co_await asyncio::sleep(delay);
  std::ostringstream out;
  out << name << " finished after " << delay.count() / 1000.0 << " s";
  co_return out.str();
}

asyncio::Coro<void> main_coro() {
  std::vector<asyncio::Coro<std::string>> aws;
  aws.push_back(work("slow", 300ms));
  aws.push_back(work("fast", 100ms));
  aws.push_back(work("medium", 200ms));
  for (auto next_done : asyncio::as_completed(std::move(aws))) {
    std::string result = co_await std::move(next_done);
    std::cout << result << '\n';
  }
}

}  // namespace

void run_as_completed_example() {
  asyncio::run(main_coro());
  std::cout.flush();
}

}  // namespace asyncio_examples
