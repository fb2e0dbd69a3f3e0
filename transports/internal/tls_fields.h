// The checks of the TLS options, and the session options a connection's
// TLS fields give.
#pragma once

#include <chrono>
#include <sstream>
#include <stdexcept>
#include <string>

#include "transports/tls_layer.h"
#include "transports/transports.h"

namespace asyncio::transports_internal {

// Throws std::invalid_argument unless both timeouts are positive numbers
// (asyncio's ValueError): zero would abort every handshake at once, NaN would
// never time out.
inline void check_tls_timeouts(std::chrono::duration<double> handshake,
                               std::chrono::duration<double> shutdown) {
  auto check = [](const char* name, std::chrono::duration<double> timeout) {
    if (timeout.count() > 0) return;  // false for NaN too
    std::ostringstream message;
    message << name << " should be a positive number, got " << timeout.count();
    throw std::invalid_argument(message.str());
  };
  check("ssl_handshake_timeout", handshake);
  check("ssl_shutdown_timeout", shutdown);
}

// Before connecting or listening. The TLS timeouts are checked with `ssl`;
// without it, changing them is a mistake (asyncio: "... is only meaningful
// with ssl"; a default value given explicitly cannot be told apart and
// passes). `host`: what a client checks the certificate against when
// server_hostname is not given (none for a Unix socket or a given socket).
inline void check_tls_fields(const TlsFields& tls, bool server_side, const std::string& host) {
  if (tls.ssl) {
    check_tls_timeouts(tls.ssl_handshake_timeout, tls.ssl_shutdown_timeout);
  } else if (tls.ssl_handshake_timeout != kDefaultSslHandshakeTimeout) {
    throw std::invalid_argument("ssl_handshake_timeout is only meaningful with ssl");
  } else if (tls.ssl_shutdown_timeout != kDefaultSslShutdownTimeout) {
    throw std::invalid_argument("ssl_shutdown_timeout is only meaningful with ssl");
  }
  if (!tls.server_hostname.empty()) {
    if (server_side) throw std::invalid_argument("server_hostname is only meaningful for a client");
    if (!tls.ssl) throw std::invalid_argument("server_hostname is only meaningful with ssl");
  }
  if (!tls.ssl) return;
  if (server_side && !tls.ssl->is_server()) {
    throw std::invalid_argument("a server needs a server context (tls::Context::server)");
  }
  if (!server_side && tls.ssl->is_server()) {
    throw std::invalid_argument("a client needs a client context (tls::Context::client)");
  }
  if (!server_side && host.empty() && tls.server_hostname.empty() && tls.ssl->check_hostname()) {
    throw std::invalid_argument("You must set server_hostname when using ssl without a host");
  }
}

// The options of each session made with `tls`; a client's server_hostname
// defaults to `host`.
inline TlsOptions session_options(const TlsFields& tls, bool server_side, const std::string& host) {
  TlsOptions options;
  options.server_side = server_side;
  if (!server_side)
    options.server_hostname = tls.server_hostname.empty() ? host : tls.server_hostname;
  options.ssl_handshake_timeout = tls.ssl_handshake_timeout;
  options.ssl_shutdown_timeout = tls.ssl_shutdown_timeout;
  return options;
}

}  // namespace asyncio::transports_internal
