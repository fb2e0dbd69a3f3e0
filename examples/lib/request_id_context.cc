// contextvars: a request id set by a server's handler appears in the log
// lines of every task and thread the request touches (asyncio docs,
// contextvars: "Asynchronous support").
//
//   request_id = contextvars.ContextVar("request_id", default="-")
//
//   def log(message):
//       print(f"[{request_id.get()}] {message}")
//
//   async def audit(line):
//       await asyncio.sleep(0)
//       log(f"audit: {line!r}")
//
//   def checksum(line):                     # runs in a worker thread
//       log("checksum in a thread")
//       return sum(line) % 251
//
//   async def handle(reader, writer):
//       request_id.set(f"req-{next(ids)}")
//       line = await reader.readline()
//       log(f"handling {len(line)} bytes")
//       await asyncio.create_task(audit(line))
//       writer.write(b"%d\n" % await asyncio.to_thread(checksum, line))
//       writer.close()
//
// Two clients, one after the other: every line of a request carries its id,
// and the server's own context never sees one.
#include <chrono>
#include <iostream>
#include <string>

#include "examples/lib/examples.h"
#include "executors/executors.h"
#include "futures/futures.h"
#include "streams/streams.h"

namespace asyncio_examples {
namespace {

asyncio::ContextVar<std::string> request_id("request_id", "-");
int next_id = 1;

void log(const std::string& message) {
  // One string, one write: lines from the worker thread stay whole.
  std::cout << ("[" + request_id.get() + "] " + message + "\n");
}

asyncio::Coro<void> audit(std::string line) {
  co_await asyncio::sleep(std::chrono::seconds(0));
  log("audit: " + std::to_string(line.size()) + " bytes");
}

int checksum(const std::string& line) {
  log("checksum in a thread");
  int sum = 0;
  for (unsigned char c : line) sum += c;
  return sum % 251;
}

asyncio::Coro<void> handle(asyncio::StreamReader reader, asyncio::StreamWriter writer) {
  request_id.set("req-" + std::to_string(next_id++));
  std::string line = co_await reader.readline();
  log("handling " + std::to_string(line.size()) + " bytes");
  co_await asyncio::create_task(audit(line));
  int sum = co_await asyncio::to_thread(checksum, line);
  writer.write(std::to_string(sum) + "\n");
  co_await writer.drain();
  writer.close();
}

asyncio::Coro<void> main_coro() {
  asyncio::Server server = co_await asyncio::start_server(handle, "127.0.0.1", 0);
  const uint16_t port = server.sockets()[0].getsockname().port();
  for (const char* text : {"first request\n", "second\n"}) {
    auto [reader, writer] = co_await asyncio::open_connection("127.0.0.1", port);
    writer.write(text);
    std::string answer = co_await reader.readline();
    log("client got checksum " + answer.substr(0, answer.size() - 1));
    writer.close();
    co_await writer.wait_closed();
  }
  server.close();
  co_await server.wait_closed();
}

}  // namespace

void run_request_id_context() {
  asyncio::run(main_coro());
  std::cout.flush();
}

}  // namespace asyncio_examples
