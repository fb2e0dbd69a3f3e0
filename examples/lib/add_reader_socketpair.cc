// Watching file descriptors with loop.add_reader (asyncio docs, Event Loop,
// "Watch a file descriptor for read events"):
//
//   rsock, wsock = socketpair()
//   loop = asyncio.get_event_loop()
//
//   def reader():
//       data = rsock.recv(100)
//       print("Received:", data.decode())
//       loop.remove_reader(rsock)
//       loop.stop()
//
//   loop.add_reader(rsock, reader)
//   loop.call_soon(wsock.send, 'abc'.encode())
//   try:
//       loop.run_forever()
//   finally:
//       rsock.close()
//       wsock.close()
//       loop.close()
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <iostream>
#include <string>
#include <system_error>

#include "examples/lib/examples.h"
#include "examples/lib/util.h"
#include "loop/loop.h"

namespace asyncio_examples {
namespace {

// Closes a file descriptor when it goes out of scope.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

void run_add_reader_socketpair() {
  // Create a pair of connected file descriptors.
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    throw std::system_error(errno, std::generic_category(), "socketpair");
  }
  // Declared before the loop's guard: closed after the loop, as in the Python version.
  Fd rsock(fds[0]);
  Fd wsock(fds[1]);

  asyncio::EventLoop& loop = asyncio::get_event_loop();
  CloseLoopOnExit close_loop(loop);

  auto reader = [&loop, &rsock] {
    char buf[100];
    ssize_t n = ::recv(rsock.get(), buf, sizeof buf, 0);
    if (n < 0) throw std::system_error(errno, std::generic_category(), "recv");
    std::cout << "Received: " << std::string(buf, static_cast<size_t>(n)) << '\n';
    // We are done: unregister the file descriptor.
    loop.remove_reader(rsock.get());
    // Stop the event loop.
    loop.stop();
  };
  // Register the file descriptor for read event.
  loop.add_reader(rsock.get(), reader);

  // Simulate the reception of data from the network.
  loop.call_soon([&wsock] {
    if (::send(wsock.get(), "abc", 3, MSG_NOSIGNAL) != 3) {
      throw std::system_error(errno, std::generic_category(), "send");
    }
  });

  // Run the event loop.
  loop.run_forever();
  std::cout.flush();
}

}  // namespace asyncio_examples
