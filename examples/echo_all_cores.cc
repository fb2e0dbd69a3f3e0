// The TCP echo server of the asyncio docs (Streams), on every core: one
// event loop per CPU, each listening on the same port (SO_REUSEPORT), the
// kernel spreading the connections. The handler is the docs' own:
//
//   async def handle_echo(reader, writer):
//       data = await reader.read(100)
//       writer.write(data)
//       await writer.drain()
//       writer.close()
//       await writer.wait_closed()
//
//   async def main():
//       server = await asyncio.start_server(handle_echo, '127.0.0.1', 8888)
//       async with server:
//           await server.serve_forever()
//
//   asyncio.run(main())
//
// becomes `asyncio::run_sharded(serve)` with `serve` the main() above, given
// its shard. Ctrl-C cancels every shard (each server closes, with its
// clients) and prints how many connections each shard took.
//
//   bazel run //examples:echo_all_cores               # 127.0.0.1:8888 until Ctrl-C
//   bazel run //examples:echo_all_cores -- 9000       # another port
//   bazel run //examples:echo_all_cores -- --demo     # 20 clients, then stops itself
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include "shards/shards.h"

namespace {

asyncio::Coro<void> handle_echo(asyncio::StreamReader reader, asyncio::StreamWriter writer) {
  std::string data = co_await reader.read(100);
  writer.write(data);
  co_await writer.drain();
  writer.close();
  co_await writer.wait_closed();
}

asyncio::Coro<void> tcp_echo_client(std::string message, uint16_t port) {
  auto [reader, writer] = co_await asyncio::open_connection("127.0.0.1", port);
  writer.write(message);
  std::string data = co_await reader.read(100);
  if (data != message) std::cout << "unexpected echo: " << data << "\n";
  writer.close();
  co_await writer.wait_closed();
}

struct Settings {
  uint16_t port = 8888;
  bool demo = false;
};

// Every shard's main. In the demo, shard 0 waits until all shards listen,
// runs the clients, then interrupts the process as Ctrl-C would.
asyncio::Coro<void> serve(asyncio::Shard& shard, const Settings& settings,
                          asyncio::ShardQueue<size_t>& listening, std::string& stats) {
  asyncio::Server server = co_await shard.start_server(handle_echo, "127.0.0.1", settings.port);
  if (shard.index() == 0) {
    std::printf("Serving on 127.0.0.1:%u with %zu shards\n", settings.port, shard.count());
  }
  if (settings.demo) {
    listening.put_nowait(shard.index());
    if (shard.index() == 0) {
      for (size_t i = 0; i < shard.count(); ++i) co_await listening.get();
      for (int i = 0; i < 20; ++i) co_await tcp_echo_client("Hello World!", settings.port);
      ::kill(::getpid(), SIGINT);
    }
  }
  try {
    co_await server.serve_forever();
  } catch (const asyncio::CancelledError&) {
    if (shard.index() == 0) stats = shard.format_stats();
    throw;
  }
}

}  // namespace

int main(int argc, char** argv) {
  Settings settings;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--demo") == 0) {
      settings.demo = true;
    } else {
      settings.port = static_cast<uint16_t>(std::stoi(argv[i]));
    }
  }
  asyncio::ShardQueue<size_t> listening;  // the demo's "every shard listens"
  std::string stats;
  auto main_of_shard = [&](asyncio::Shard& shard) {
    return serve(shard, settings, listening, stats);
  };
  try {
    asyncio::run_sharded(main_of_shard);
  } catch (const asyncio::KeyboardInterrupt&) {
    std::printf("Interrupted; connections per shard:\n%s", stats.c_str());
  }
  return 0;
}
