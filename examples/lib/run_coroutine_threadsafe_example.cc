// asyncio.run_coroutine_threadsafe(coro, loop) (asyncio docs, Coroutines and
// Tasks, "Scheduling From Other Threads"):
// "Submit a coroutine to the given event loop. Thread-safe. Return a
// concurrent.futures.Future to wait for the result from another OS thread."
// As in the Python documentation (times divided by ten):
//
//   future = asyncio.run_coroutine_threadsafe(coro, loop)
//   try:
//       result = future.result(timeout)
//   except TimeoutError:
//       print('The coroutine took too long, cancelling the task...')
//       future.cancel()
//   except Exception as exc:
//       print(f'The coroutine raised an exception: {exc!r}')
//   else:
//       print(f'The coroutine returned: {result!r}')
//
// main() runs the loop; a plain thread submits three coroutines to it (one
// returns, one is too slow and is cancelled, one raises) and main awaits the
// thread with to_thread(join).
#include <chrono>
#include <functional>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>

#include "examples/lib/examples.h"
#include "executors/executors.h"
#include "futures/futures.h"

namespace asyncio_examples {
namespace {

using namespace std::chrono_literals;

asyncio::Coro<int> add_after(std::chrono::milliseconds delay, int a, int b) {
  co_await asyncio::sleep(delay);
  co_return a + b;
}

asyncio::Coro<int> slow_task_cancelled(bool* cancelled) {
  try {
    co_await asyncio::sleep(10s);
  } catch (const asyncio::CancelledError&) {
    *cancelled = true;
    throw;
  }
  co_return 0;
}

asyncio::Coro<int> raises() {
  co_await asyncio::sleep(10ms);
  throw std::invalid_argument("bad input");
}

void submit(asyncio::concurrent::Future<int> future) {
  try {
    int result = future.result(100ms);
    std::cout << "The coroutine returned: " << result << "\n";
  } catch (const asyncio::TimeoutError&) {
    std::cout << "The coroutine took too long, cancelling the task...\n";
    future.cancel();
  } catch (const std::exception& exc) {
    std::cout << "The coroutine raised an exception: " << exc.what() << "\n";
  }
}

void plain_thread(asyncio::EventLoop& loop, bool* cancelled) {
  submit(asyncio::run_coroutine_threadsafe(add_after(50ms, 1, 2), loop));
  submit(asyncio::run_coroutine_threadsafe(slow_task_cancelled(cancelled), loop));
  submit(asyncio::run_coroutine_threadsafe(raises(), loop));
}

asyncio::Coro<void> main_coro() {
  asyncio::EventLoop& loop = asyncio::get_running_loop();
  bool cancelled = false;
  std::thread worker(plain_thread, std::ref(loop), &cancelled);
  co_await asyncio::to_thread([&worker] { worker.join(); });
  co_await asyncio::sleep(0s);  // the cancellation reaches the slow task
  std::cout << "main: the slow task saw CancelledError: " << (cancelled ? "True" : "False") << "\n";
}

}  // namespace

void run_run_coroutine_threadsafe_example() {
  asyncio::run(main_coro());
  std::cout.flush();
}

}  // namespace asyncio_examples
