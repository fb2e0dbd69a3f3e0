// loop.call_soon (asyncio docs, Event Loop, "Hello World with call_soon()"):
//
//   def hello_world(loop):
//       """A callback to print 'Hello World' and stop the event loop"""
//       print('Hello World')
//       loop.stop()
//
//   loop = asyncio.get_event_loop()
//   loop.call_soon(hello_world, loop)
//   try:
//       loop.run_forever()
//   finally:
//       loop.close()
#include <iostream>

#include "examples/lib/examples.h"
#include "examples/lib/util.h"
#include "loop/loop.h"

namespace asyncio_examples {
namespace {

// A callback to print "Hello World" and stop the event loop.
void hello_world(asyncio::EventLoop& loop) {
  std::cout << "Hello World\n";
  loop.stop();
}

}  // namespace

void run_call_soon_hello() {
  asyncio::EventLoop& loop = asyncio::get_event_loop();
  CloseLoopOnExit close_loop(loop);
  // Schedule a call to hello_world().
  loop.call_soon([&loop] { hello_world(loop); });
  // Blocking call interrupted by loop.stop().
  loop.run_forever();
  std::cout.flush();
}

}  // namespace asyncio_examples
