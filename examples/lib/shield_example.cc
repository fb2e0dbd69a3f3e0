// asyncio.shield (asyncio docs, Coroutines and Tasks, "Shielding From
// Cancellation"):
//
//   res = await shield(something())
//
// "If the task awaiting the shield is cancelled, something() is not": here
// a waiter task awaits shield(something()) and main cancels the waiter while
// something() is half-way. The waiter sees CancelledError; something() runs
// on and finishes (main finds it with all_tasks() and awaits it).
#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include "examples/lib/examples.h"
#include "futures/futures.h"

namespace asyncio_examples {
namespace {

using namespace std::chrono_literals;

asyncio::Coro<std::string> something() {
  std::cout << "something(): started\n";
  co_await asyncio::sleep(200ms);
  std::cout << "something(): finished\n";
  co_return "something's result";
}

asyncio::Coro<void> waiter() {
  try {
    std::string res = co_await asyncio::shield(something());
    std::cout << "waiter: res = " << res << '\n';  // not reached: cancelled first
  } catch (const asyncio::CancelledError&) {
    std::cout << "waiter: cancelled while awaiting shield(something())\n";
    throw;
  }
}

asyncio::Coro<void> main_coro() {
  asyncio::Task<void> outer = asyncio::create_task(waiter());
  co_await asyncio::sleep(100ms);

  std::cout << "main: cancelling the waiter\n";
  outer.cancel();
  try {
    co_await outer;
  } catch (const asyncio::CancelledError&) {
  }
  std::cout << "main: waiter cancelled: " << (outer.cancelled() ? "True" : "False") << '\n';

  // The shielded something() is still running: the only task besides main.
  std::vector<asyncio::AnyTask> others;
  const std::optional<asyncio::AnyTask> me = asyncio::current_task();
  for (const asyncio::AnyTask& task : asyncio::all_tasks()) {
    if (!me || !(task == *me)) others.push_back(task);
  }
  std::cout << "main: tasks still running besides main: " << others.size() << '\n';
  for (const asyncio::AnyTask& task : others) {
    co_await task;
    std::cout << "main: shielded task done: " << (task.done() ? "True" : "False")
              << ", cancelled: " << (task.cancelled() ? "True" : "False") << '\n';
  }
}

}  // namespace

void run_shield_example() {
  asyncio::run(main_coro());
  std::cout.flush();
}

}  // namespace asyncio_examples
