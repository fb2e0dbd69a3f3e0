// loop.run_in_executor with three pools (asyncio docs, Event Loop, "Executing
// code in thread or process pools"):
//
//   def blocking_io():
//       with open('/dev/urandom', 'rb') as f:
//           return f.read(100)
//
//   def cpu_bound():
//       return sum(i * i for i in range(10 ** 7))
//
//   async def main():
//       loop = asyncio.get_running_loop()
//       # 1. Run in the default loop's executor:
//       result = await loop.run_in_executor(None, blocking_io)
//       print('default thread pool', result)
//       # 2. Run in a custom thread pool:
//       with concurrent.futures.ThreadPoolExecutor() as pool:
//           result = await loop.run_in_executor(pool, blocking_io)
//           print('custom thread pool', result)
//       # 3. Run in a custom process pool:
//       with concurrent.futures.ProcessPoolExecutor() as pool:
//           result = await loop.run_in_executor(pool, cpu_bound)
//           print('custom process pool', result)
//
//   asyncio.run(main())
//
// The random bytes are shown as their count and the first eight in hex
// rather than as Python's bytes repr. The sum does not fit in 64 bits; the
// worker process computes it in 128.
#include <cstdio>
#include <iostream>
#include <stdexcept>
#include <string>

#include "examples/lib/examples.h"
#include "executors/executors.h"
#include "futures/futures.h"

namespace asyncio_examples {
namespace {

std::string blocking_io() {
  std::FILE* f = std::fopen("/dev/urandom", "rb");
  if (f == nullptr) throw std::runtime_error("cannot open /dev/urandom");
  std::string data(100, '\0');
  size_t n = std::fread(data.data(), 1, data.size(), f);
  std::fclose(f);
  data.resize(n);
  return data;
}

unsigned __int128 cpu_bound() {
  unsigned __int128 sum = 0;
  for (unsigned long i = 0; i < 10'000'000; ++i) sum += static_cast<unsigned __int128>(i) * i;
  return sum;
}

std::string describe_bytes(const std::string& data) {
  static const char kHex[] = "0123456789abcdef";
  std::string out = std::to_string(data.size()) + " bytes: ";
  for (size_t i = 0; i < data.size() && i < 8; ++i) {
    auto b = static_cast<unsigned char>(data[i]);
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out + "...";
}

std::string to_decimal(unsigned __int128 v) {
  if (v == 0) return "0";
  std::string digits;
  while (v > 0) {
    digits.insert(digits.begin(), static_cast<char>('0' + static_cast<int>(v % 10)));
    v /= 10;
  }
  return digits;
}

asyncio::Coro<void> main_coro() {
  asyncio::EventLoop& loop = asyncio::get_running_loop();

  // 1. Run in the default loop's executor:
  std::string result = co_await asyncio::run_in_executor(loop, nullptr, blocking_io);
  std::cout << "default thread pool " << describe_bytes(result) << "\n";

  // 2. Run in a custom thread pool:
  {
    asyncio::concurrent::ThreadPoolExecutor pool;
    std::string custom = co_await asyncio::run_in_executor(loop, &pool, blocking_io);
    std::cout << "custom thread pool " << describe_bytes(custom) << "\n";
  }

  // 3. Run in a custom process pool:
  {
    asyncio::concurrent::ProcessPoolExecutor pool;
    unsigned __int128 sum = co_await asyncio::run_in_executor(loop, &pool, cpu_bound);
    std::cout << "custom process pool " << to_decimal(sum) << "\n";
  }
}

}  // namespace

void run_run_in_executor_pools() {
  asyncio::run(main_coro());
  std::cout.flush();
}

}  // namespace asyncio_examples
