// The OpenSSL side of tls::Context, and OpenSSL's errors as exceptions.
#pragma once

#include <openssl/ssl.h>

#include <exception>
#include <memory>
#include <optional>
#include <string>

#include "futures/futures.h"
#include "loop/loop.h"
#include "tls/tls.h"
#include "transports/tls_layer.h"
#include "transports/transports.h"

namespace asyncio::tls_internal {

class OpenSslContext final : public TlsLayer, public std::enable_shared_from_this<OpenSslContext> {
 public:
  explicit OpenSslContext(bool server_side);
  ~OpenSslContext() override;
  OpenSslContext(const OpenSslContext&) = delete;
  OpenSslContext& operator=(const OpenSslContext&) = delete;

  Session new_session(EventLoop& loop, std::shared_ptr<BaseProtocol> app, const TlsOptions& options,
                      bool call_connection_made, std::optional<Future<void>> waiter) override;

  bool is_server() const override { return server_side; }
  bool check_hostname() const override { return check_peer_hostname; }

  SSL_CTX* ctx() const { return ctx_; }
  void apply_verify_mode();

  const bool server_side;
  bool verify_peer;
  bool check_peer_hostname;
  std::string alpn_wire;  // the ALPN list in wire format (length-prefixed)

 private:
  SSL_CTX* ctx_;
};

// OpenSSL's last error on this thread as an SSLError ("[lib] reason"),
// prefixed by `what`; clears the thread's error queue.
tls::SSLError ssl_error_from_queue(const std::string& what);

// The SSL error of a failed handshake: a CertificateError when the peer's
// certificate did not verify (naming `server_hostname` on a name mismatch),
// else OpenSSL's reason.
std::exception_ptr handshake_error(SSL* ssl, int ssl_error, const std::string& server_hostname);

}  // namespace asyncio::tls_internal
