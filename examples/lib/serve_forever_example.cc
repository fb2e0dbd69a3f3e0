// Server.serve_forever() (asyncio docs, Event Loop, "Server Objects"):
//
//   async def client_connected(reader, writer):
//       # Communicate with the client with
//       # reader/writer streams.  For example:
//       await reader.readline()
//
//   async def main(host, port):
//       srv = await asyncio.start_server(client_connected, host, port)
//       await srv.serve_forever()
//
//   asyncio.run(main('127.0.0.1', 0))
//
// The Python runs until interrupted; here a client sends one line and then
// serve_forever() is cancelled, which closes the server.
#include <iostream>
#include <string>

#include "examples/lib/examples.h"
#include "futures/futures.h"
#include "streams/streams.h"

namespace asyncio_examples {
namespace {

asyncio::Coro<void> client_connected(asyncio::StreamReader reader, asyncio::StreamWriter writer) {
  std::string line = co_await reader.readline();
  std::cout << "client_connected: read a line of " << line.size() << " bytes\n";
  writer.close();
}

asyncio::Coro<void> serve(asyncio::Server server) { co_await server.serve_forever(); }

asyncio::Coro<void> main_coro(std::string host, uint16_t port) {
  asyncio::Server srv = co_await asyncio::start_server(client_connected, host, port);
  std::cout << "serving on a free port: " << (srv.sockets()[0].getsockname().port() != 0) << "\n";
  asyncio::Task<void> serving = asyncio::create_task(serve(srv));
  auto [reader, writer] =
      co_await asyncio::open_connection(host, srv.sockets()[0].getsockname().port());
  writer.write("hello, server\n");
  co_await reader.read();  // until the server closes the connection
  writer.close();
  serving.cancel();
  try {
    co_await serving;
  } catch (const asyncio::CancelledError&) {
  }
  std::cout << "serve_forever() cancelled; is_serving() = " << srv.is_serving() << "\n";
}

}  // namespace

void run_serve_forever_example() {
  asyncio::run(main_coro("127.0.0.1", 0));
  std::cout.flush();
}

}  // namespace asyncio_examples
