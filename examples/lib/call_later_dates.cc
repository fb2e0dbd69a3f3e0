// loop.call_later (asyncio docs, Event Loop, "Display the current date with
// call_later()"; times divided by ten):
//
//   def display_date(end_time, loop):
//       print(datetime.datetime.now())
//       if (loop.time() + 1.0) < end_time:
//           loop.call_later(1, display_date, end_time, loop)
//       else:
//           loop.stop()
//
//   loop = asyncio.get_event_loop()
//   end_time = loop.time() + 5.0
//   loop.call_soon(display_date, end_time, loop)
//   try:
//       loop.run_forever()
//   finally:
//       loop.close()
#include <chrono>
#include <iostream>

#include "examples/lib/examples.h"
#include "examples/lib/util.h"
#include "loop/loop.h"

namespace asyncio_examples {
namespace {

using namespace std::chrono_literals;

void display_date(double end_time, asyncio::EventLoop& loop) {
  std::cout << datetime_now() << '\n';
  if (loop.time() + 0.1 < end_time) {
    loop.call_later(100ms, [end_time, &loop] { display_date(end_time, loop); });
  } else {
    loop.stop();
  }
}

}  // namespace

void run_call_later_dates() {
  asyncio::EventLoop& loop = asyncio::get_event_loop();
  CloseLoopOnExit close_loop(loop);
  // Schedule the first call to display_date().
  const double end_time = loop.time() + 0.5;
  loop.call_soon([end_time, &loop] { display_date(end_time, loop); });
  // Blocking call interrupted by loop.stop().
  loop.run_forever();
  std::cout.flush();
}

}  // namespace asyncio_examples
