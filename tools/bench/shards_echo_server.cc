// An echo server on N shards (//shards), for shards_compare.sh.
//
//   shards_echo_server [--shards N] [--streams | --cross] [--pin] [port]   # port 0: any free port
//
// Default: a Protocol echo (data_received -> write) on each shard, listening
// with reuse_port on the same port. --streams: a streams echo (read, write).
// --cross: the streams echo in which every
// request first makes a cross-shard call (Shard::call to the next shard)
// before its answer is written: the cost and tail latency of a request that
// needs another shard's data. Prints the port (127.0.0.1) as stdout's first
// line once every shard listens, then serves until SIGTERM/SIGINT.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shards/shards.h"
#include "tools/bench/echo_protocol.h"

namespace {

using asyncio_bench::EchoProtocol;

// Echoes what it reads; with `cross`, after a cross-shard call per request.
asyncio::Coro<void> streams_echo(asyncio::Shard& shard, bool cross, asyncio::StreamReader reader,
                                 asyncio::StreamWriter writer) {
  const size_t other = (shard.index() + 1) % shard.count();
  uint64_t looked_up = 0;
  auto lookup = [&looked_up] { return ++looked_up; };
  while (true) {
    std::string data = co_await reader.read(65536);
    if (data.empty()) break;
    if (cross) co_await shard.call(other, lookup);
    shard.count_request();
    writer.write(data);
  }
  writer.close();
}

struct Settings {
  size_t shards = 1;
  bool cross = false;
  bool streams = false;
  uint16_t port = 0;
};

// Shard 0 listens first (on a free port if 0), hands the port to each other
// shard through its own queue, and prints it once all of them listen.
asyncio::Coro<void> serve(asyncio::Shard& shard, const Settings& settings,
                          std::vector<std::unique_ptr<asyncio::ShardQueue<uint16_t>>>& ports,
                          asyncio::ShardQueue<int>& listening) {
  uint16_t port = settings.port;
  if (shard.index() != 0) port = co_await ports[shard.index()]->get();
  std::optional<asyncio::Server> server;
  if (settings.streams || settings.cross) {
    const bool cross = settings.cross;
    asyncio::ClientConnected handler = [&shard, cross](asyncio::StreamReader r,
                                                       asyncio::StreamWriter w) {
      return streams_echo(shard, cross, std::move(r), std::move(w));
    };
    server = co_await shard.start_server(handler, "127.0.0.1", port);
  } else {
    asyncio::ProtocolFactory factory = [] { return std::make_shared<EchoProtocol>(); };
    server = co_await shard.create_server(factory, "127.0.0.1", port);
  }
  if (shard.index() != 0) {
    listening.put_nowait(1);
  } else {
    port = server->sockets().at(0).getsockname().port();
    for (size_t i = 1; i < shard.count(); ++i) ports[i]->put_nowait(port);
    for (size_t i = 1; i < shard.count(); ++i) co_await listening.get();
    std::printf("%u\n", port);
    std::fflush(stdout);
  }
  co_await server->serve_forever();
}

}  // namespace

int main(int argc, char** argv) {
  Settings settings;
  asyncio::ShardedOptions options;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--shards") == 0 && i + 1 < argc) {
      settings.shards = std::strtoul(argv[++i], nullptr, 10);
    } else if (std::strcmp(argv[i], "--cross") == 0) {
      settings.cross = true;
    } else if (std::strcmp(argv[i], "--streams") == 0) {
      settings.streams = true;
    } else if (std::strcmp(argv[i], "--pin") == 0) {
      options.pin_threads = true;
    } else {
      settings.port = static_cast<uint16_t>(std::atoi(argv[i]));
    }
  }
  std::vector<std::unique_ptr<asyncio::ShardQueue<uint16_t>>> ports;
  for (size_t i = 0; i < settings.shards; ++i) {
    ports.push_back(std::make_unique<asyncio::ShardQueue<uint16_t>>());
  }
  asyncio::ShardQueue<int> listening;
  auto main_of_shard = [&](asyncio::Shard& shard) {
    return serve(shard, settings, ports, listening);
  };
  try {
    asyncio::run_sharded(settings.shards, main_of_shard, options);
  } catch (const asyncio::KeyboardInterrupt&) {
  }
  return 0;
}
