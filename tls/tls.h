// //tls: TLS for transports and streams, over OpenSSL (asyncio's ssl=).
//
//   auto ctx = asyncio::tls::Context::client();
//   ctx.load_verify_locations("ca.pem");
//   asyncio::StreamOptions options;
//   options.ssl = ctx;
//   auto [reader, writer] = co_await asyncio::open_connection("localhost", 8443, options);
//
// The TLS layer is a transport over a transport, as asyncio's SSLProtocol:
// OpenSSL reads and writes memory, never the socket, so nothing blocks; the
// socket transport underneath keeps its flow control, and the application's
// pause_reading/resume_reading and watermarks act on it. close() sends
// close_notify and waits (up to ssl_shutdown_timeout) for the peer's.
//
// A TLS transport answers get_extra_info("peercert") (PeerCertificate, when
// the peer sent one and it was verified: none with verification off, as
// getpeercert()), ("cipher") (CipherInfo), ("alpn_protocol")
// (std::string, when one was negotiated), ("ssl_object") (the OpenSSL SSL*,
// for what this API does not cover) and, through to the socket,
// ("peername"), ("sockname"), ("socket").
#pragma once

#include <string>
#include <vector>

#include "tls/context.h"
#include "transports/transports.h"

namespace asyncio::tls {

// The peer's certificate (getpeercert()).
struct PeerCertificate {
  std::string subject;  // RFC 2253, e.g. "CN=localhost"
  std::string issuer;
  // "DNS:localhost", "IP Address:127.0.0.1", ...
  std::vector<std::string> subject_alt_names;
  std::string not_before;  // e.g. "Nov 22 00:00:00 2026 GMT"
  std::string not_after;
  std::string serial_number;  // hex
  std::string der;            // the certificate itself
};

// cipher(): the suite, the protocol version and the secret bits.
struct CipherInfo {
  std::string name;      // e.g. "TLS_AES_256_GCM_SHA384"
  std::string protocol;  // e.g. "TLSv1.3"
  int secret_bits = 0;
};

}  // namespace asyncio::tls
