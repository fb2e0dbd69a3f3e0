// A TCP echo server and a client talking to it, in one program, built in a
// workspace of its own against @asyncio_cpp//streams.
#include <cstdint>
#include <iostream>
#include <string>

#include "futures/futures.h"
#include "streams/streams.h"

namespace {

asyncio::Coro<void> handle_echo(asyncio::StreamReader reader, asyncio::StreamWriter writer) {
  std::string line = co_await reader.readline();
  writer.write(line);
  co_await writer.drain();
  writer.close();
  co_await writer.wait_closed();
}

asyncio::Coro<int> main_coro() {
  asyncio::Server server = co_await asyncio::start_server(handle_echo, "127.0.0.1", 0);
  const uint16_t port = server.sockets().at(0).getsockname().port();
  auto [reader, writer] = co_await asyncio::open_connection("127.0.0.1", port);
  writer.write("hello from downstream\n");
  std::string echoed = co_await reader.readline();
  writer.close();
  co_await writer.wait_closed();
  server.close();
  co_await server.wait_closed();
  std::cout << "echoed: " << echoed;
  co_return echoed == "hello from downstream\n" ? 0 : 1;
}

}  // namespace

int main() { return asyncio::run(main_coro()); }
