// The seam between the transports and a TLS implementation: what the
// connection and server functions and start_tls call to put TLS between a
// socket transport and the application's protocol. //tls implements it over
// OpenSSL (tls::Context converts to a std::shared_ptr<TlsLayer>, the type of
// the `ssl` options); //transports itself names no TLS library, so a program
// without TLS links none, and one that sets `ssl` has made a layer, so it
// links its implementation too.
#pragma once

#include <memory>
#include <optional>

#include "futures/futures.h"
#include "loop/loop.h"
#include "transports/transports.h"

namespace asyncio {

class TlsLayer {
 public:
  virtual ~TlsLayer() = default;

  struct Session {
    // The protocol to put on the socket's transport: it runs the handshake,
    // then drives `app` through `transport`.
    std::shared_ptr<BaseProtocol> wire;
    // The transport the application writes to (asyncio's app transport).
    std::shared_ptr<Transport> transport;
  };
  // A TLS session over a transport that is yet to call wire's
  // connection_made. After the handshake, app->connection_made(transport)
  // when `call_connection_made`; `waiter` (if any) gets the handshake's
  // outcome. A failed handshake closes the underlying transport.
  virtual Session new_session(EventLoop& loop, std::shared_ptr<BaseProtocol> app,
                              const TlsOptions& options, bool call_connection_made,
                              std::optional<Future<void>> waiter) = 0;
  // For the checks made before connecting or listening: a client needs a
  // client layer, a server a server one, and a client whose layer checks
  // host names needs a name to check.
  virtual bool is_server() const = 0;
  virtual bool check_hostname() const = 0;
};

}  // namespace asyncio
