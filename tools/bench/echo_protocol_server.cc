// Echo server on our Protocol API: data_received -> transport->write(data).
//
//   echo_protocol_server [--tls CERT KEY | --lines] [port]    # port 0: any free port
//
// --lines: request/response instead, one write per complete line received
// (for pipelined load: echo_load --pipeline).
//
// --tls: serve TLS (ServerOptions.ssl) with the PEM certificate chain CERT
// and key KEY.
//
// Prints the port it listens on (127.0.0.1) as stdout's first line, then
// serves until killed. Used by echo_compare.sh.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "futures/futures.h"
#include "loop/loop.h"
#include "tls/tls.h"
#include "tools/bench/echo_protocol.h"
#include "transports/transports.h"

namespace {

using asyncio_bench::EchoProtocol;

// One write per line; a partial line waits for the rest.
class LinesProtocol final : public asyncio_bench::ConnectedProtocol {
 public:
  void data_received(std::string_view data) override {
    while (!data.empty()) {
      const size_t end = data.find('\n');
      if (end == std::string_view::npos) {
        partial_ += data;
        return;
      }
      if (partial_.empty()) {
        transport_->write(data.substr(0, end + 1));
      } else {
        partial_ += data.substr(0, end + 1);
        transport_->write(partial_);
        partial_.clear();
      }
      data.remove_prefix(end + 1);
    }
  }

 private:
  std::string partial_;
};

bool lines = false;

asyncio::Coro<void> Serve(uint16_t port, asyncio::ServerOptions options) {
  asyncio::EventLoop& loop = asyncio::get_running_loop();
  // Built outside the co_await expression (GCC 12, see streams.cc).
  asyncio::ProtocolFactory factory = [] {
    return lines ? std::shared_ptr<asyncio::Protocol>(std::make_shared<LinesProtocol>())
                 : std::make_shared<EchoProtocol>();
  };
  asyncio::Server server =
      co_await asyncio::create_server(loop, factory, "127.0.0.1", port, options);
  std::printf("%u\n", static_cast<unsigned>(server.sockets().at(0).getsockname().port()));
  std::fflush(stdout);
  co_await server.serve_forever();
}

}  // namespace

int main(int argc, char** argv) {
  auto usage = [&] {
    std::fprintf(stderr, "usage: %s [--tls CERT KEY | --lines] [port]\n", argv[0]);
    return 2;
  };
  asyncio::ServerOptions options;
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
  if (port < 0 || port > 65535 || argc > arg + 1) return usage();
  asyncio::run(Serve(static_cast<uint16_t>(port), options));
  return 0;
}
