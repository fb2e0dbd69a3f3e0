// The TCP echo client and server of the asyncio docs (Streams), in one run (the
// server on a free port, the client talking to it).
//
//   async def tcp_echo_client(message):
//       reader, writer = await asyncio.open_connection('127.0.0.1', 8888)
//       print(f'Send: {message!r}')
//       writer.write(message.encode())
//       data = await reader.read(100)
//       print(f'Received: {data.decode()!r}')
//       print('Close the connection')
//       writer.close()
//
//   async def handle_echo(reader, writer):
//       data = await reader.read(100)
//       message = data.decode()
//       addr = writer.get_extra_info('peername')
//       print(f"Received {message!r} from {addr!r}")
//       print(f"Send: {message!r}")
//       writer.write(data)
//       await writer.drain()
//       print("Close the connection")
//       writer.close()
//
//   async def main():
//       server = await asyncio.start_server(handle_echo, '127.0.0.1', 8888)
//       addr = server.sockets[0].getsockname()
//       print(f'Serving on {addr}')
//       async with server:
//           await server.serve_forever()
//
// Lines are prefixed with [server] or [client]; the server's serve_forever
// is cancelled once the client is done, which closes it.
//
// run_echo_tls is the same over TLS, as with Python's
//   ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
//   ssl_ctx.load_cert_chain('server.cert', 'server.key')
//   server = await asyncio.start_server(handle_echo, '127.0.0.1', 8888, ssl=ssl_ctx)
//   ...
//   client_ctx = ssl.create_default_context(cafile='ca.cert')
//   reader, writer = await asyncio.open_connection('127.0.0.1', 8888,
//                                                  ssl=client_ctx, server_hostname='localhost')
// with a throwaway CA and server certificate made for the run.
#include <iostream>
#include <optional>
#include <string>

#include "examples/lib/examples.h"
#include "futures/futures.h"
#include "streams/streams.h"
#include "tls/testing/certs.h"
#include "tls/tls.h"

namespace asyncio_examples {
namespace {

// repr() of a Python str (enough for these messages) and of an address.
std::string repr(const std::string& s) { return "'" + s + "'"; }
std::string repr(const asyncio::SocketAddress& a) {
  return "('" + a.host() + "', " + std::to_string(a.port()) + ")";
}

asyncio::Coro<void> handle_echo(asyncio::StreamReader reader, asyncio::StreamWriter writer) {
  std::string data = co_await reader.read(100);
  auto addr = std::any_cast<asyncio::SocketAddress>(writer.get_extra_info("peername"));
  std::cout << "[server] Received " << repr(data) << " from " << repr(addr) << "\n";
  std::cout << "[server] Send: " << repr(data) << "\n";
  writer.write(data);
  co_await writer.drain();
  std::cout << "[server] Close the connection\n";
  writer.close();
}

asyncio::Coro<void> tcp_echo_client(std::string message, uint16_t port,
                                    asyncio::StreamOptions options) {
  auto [reader, writer] = co_await asyncio::open_connection("127.0.0.1", port, options);
  if (options.ssl) {
    auto cipher = std::any_cast<asyncio::tls::CipherInfo>(writer.get_extra_info("cipher"));
    auto cert = std::any_cast<asyncio::tls::PeerCertificate>(writer.get_extra_info("peercert"));
    std::cout << "[client] " << cipher.protocol << " with a verified certificate for "
              << cert.subject << "\n";
  }
  std::cout << "[client] Send: " << repr(message) << "\n";
  writer.write(message);
  std::string data = co_await reader.read(100);
  std::cout << "[client] Received: " << repr(data) << "\n";
  std::cout << "[client] Close the connection\n";
  writer.close();
  co_await writer.wait_closed();
}

asyncio::Coro<void> serve(asyncio::Server server) { co_await server.serve_forever(); }

asyncio::Coro<void> main_coro(asyncio::StreamOptions server_options,
                              asyncio::StreamOptions client_options) {
  asyncio::Server server =
      co_await asyncio::start_server(handle_echo, "127.0.0.1", 0, server_options);
  asyncio::SocketAddress addr = server.sockets()[0].getsockname();
  std::cout << "[server] Serving on " << repr(addr) << (server_options.ssl ? " (TLS)" : "") << "\n";
  asyncio::Task<void> serving = asyncio::create_task(serve(server));
  co_await tcp_echo_client("Hello World!", addr.port(), client_options);
  serving.cancel();
  try {
    co_await serving;
  } catch (const asyncio::CancelledError&) {
    std::cout << "[server] serve_forever() cancelled: the server is closed\n";
  }
}

}  // namespace

void run_echo_tcp() {
  asyncio::run(main_coro({}, {}));
  std::cout.flush();
}

void run_echo_tls() {
  const asyncio::tls_testing::TestCerts& certs = asyncio::tls_testing::test_certs();
  asyncio::StreamOptions server_options;
  server_options.ssl = asyncio::tls::Context::server(certs.server.cert, certs.server.key);
  asyncio::tls::Context client_ctx = asyncio::tls::Context::client();
  client_ctx.load_verify_locations(certs.ca_file);
  asyncio::StreamOptions client_options;
  client_options.ssl = client_ctx;
  client_options.server_hostname = "localhost";
  asyncio::run(main_coro(server_options, client_options));
  std::cout.flush();
}

}  // namespace asyncio_examples
