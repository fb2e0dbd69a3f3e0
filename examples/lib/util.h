// Helpers shared by the examples.
#pragma once

#include <string>

#include "loop/loop.h"

namespace asyncio_examples {

// time.strftime('%X') in the C locale: "HH:MM:SS", local time.
std::string strftime_x();
// str(datetime.datetime.now()): "YYYY-MM-DD HH:MM:SS.ffffff", local time.
std::string datetime_now();

// The `finally: loop.close()` of the low-level examples of the asyncio docs. It also
// forgets the thread's (now closed) loop, as asyncio.set_event_loop(None),
// so that the next get_event_loop() makes a fresh one: the tour runs several
// of these examples in one thread.
class CloseLoopOnExit {
 public:
  explicit CloseLoopOnExit(asyncio::EventLoop& loop) : loop_(loop) {}
  CloseLoopOnExit(const CloseLoopOnExit&) = delete;
  CloseLoopOnExit& operator=(const CloseLoopOnExit&) = delete;
  ~CloseLoopOnExit() {
    loop_.close();
    asyncio::set_event_loop(nullptr);
  }

 private:
  asyncio::EventLoop& loop_;
};

}  // namespace asyncio_examples
