// Echo server on our streams: read(65536) -> write -> drain, until EOF.
//
//   echo_streams_server [--tls CERT KEY | --lines] [port [read_size]]   # port 0: any free port
//
// --lines: request/response instead, readuntil("\n") -> write, one write
// per line (for pipelined load: echo_load --pipeline).
//
// read_size (default 65536, as the Python server) is what each read() asks
// for: a message longer than it is echoed in several writes. --tls: serve
// TLS (StreamOptions.ssl) with the PEM certificate chain CERT and key KEY.
//
// Prints the port it listens on (127.0.0.1) as stdout's first line, then
// serves until killed. Used by echo_compare.sh.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <system_error>

#include "futures/futures.h"
#include "loop/loop.h"
#include "streams/streams.h"
#include "tls/tls.h"

namespace {

ssize_t read_size = 65536;

asyncio::Coro<void> Echo(asyncio::StreamReader reader, asyncio::StreamWriter writer) {
  try {
    while (true) {
      std::string data = co_await reader.read(read_size);
      if (data.empty()) break;
      writer.write(data);
      co_await writer.drain();
    }
  } catch (const std::system_error&) {
    // A reset connection, as the Python server's ConnectionError: not news.
  }
  writer.close();
}

asyncio::Coro<void> EchoLines(asyncio::StreamReader reader, asyncio::StreamWriter writer) {
  try {
    while (true) writer.write(co_await reader.readuntil("\n"));
  } catch (const asyncio::IncompleteReadError&) {
    // EOF
  } catch (const std::system_error&) {
  }
  writer.close();
}

bool lines = false;

asyncio::Coro<void> Serve(uint16_t port, asyncio::StreamOptions options) {
  asyncio::ClientConnected cb = lines ? EchoLines : Echo;  // not inside co_await (GCC 12)
  asyncio::Server server = co_await asyncio::start_server(cb, "127.0.0.1", port, options);
  std::printf("%u\n", static_cast<unsigned>(server.sockets().at(0).getsockname().port()));
  std::fflush(stdout);
  co_await server.serve_forever();
}

}  // namespace

int main(int argc, char** argv) {
  auto usage = [&] {
    std::fprintf(stderr, "usage: %s [--tls CERT KEY | --lines] [port [read_size]]\n", argv[0]);
    return 2;
  };
  asyncio::StreamOptions options;
  int arg = 1;
  if (argc > 1 && std::string_view(argv[1]) == "--tls") {
    if (argc < 4) return usage();
    options.ssl = asyncio::tls::Context::server(argv[2], argv[3]);
    arg = 4;
  } else if (argc > 1 && std::string_view(argv[1]) == "--lines") {
    lines = true;
    arg = 2;
  }
  const int port = argc > arg ? std::atoi(argv[arg]) : 0;
  if (argc > arg + 1) read_size = std::atol(argv[arg + 1]);
  if (port < 0 || port > 65535 || read_size <= 0 || argc > arg + 2) return usage();
  asyncio::run(Serve(static_cast<uint16_t>(port), options));
  return 0;
}
