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
// for what this API does not cover), ("sslcontext") (the
// std::shared_ptr<TlsLayer> the `ssl` option held: compare it with the
// context's conversion, std::shared_ptr<TlsLayer>(context)) and, through to
// the socket,
// ("peername"), ("sockname"), ("socket").
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "transports/tls_layer.h"
#include "transports/transports.h"

namespace asyncio::tls_internal {
class OpenSslContext;
}

namespace asyncio::tls {

// A TLS failure: what() carries OpenSSL's reason, e.g. "[SSL] wrong version
// number" (ssl.SSLError).
class SSLError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The peer's certificate did not verify (ssl.SSLCertVerificationError):
// unknown CA, expired, host name mismatch, ... `verify_code` is OpenSSL's
// X509_V_ERR_* value.
class CertificateError : public SSLError {
 public:
  CertificateError(const std::string& message, long verify_code)
      : SSLError(message), verify_code_(verify_code) {}
  long verify_code() const noexcept { return verify_code_; }

 private:
  long verify_code_;
};

enum class TlsVersion { kTls1_2, kTls1_3 };

// As ssl.SSLContext: certificates, verification and protocol settings shared
// by the connections made with it. A handle: copies share one context (a
// change through one is seen by all, as in Python). It converts to the
// TlsLayer of the `ssl` options and of start_tls (options.ssl = context).
class Context {
 public:
  // Client: verifies the server against the system's CA store and checks
  // its host name; TLS 1.2 or newer.
  static Context client();
  // Server: presents the certificate chain (PEM file, leaf first) and key;
  // asks for no client certificate.
  static Context server(std::string cert_chain_file, std::string key_file);

  // Trust the CA certificates in a PEM file (load_verify_locations(cafile)),
  // or given as PEM text (load_verify_locations(cadata=...)).
  void load_verify_locations(std::string cafile);
  void load_verify_data(std::string pem);
  // The system's CA store.
  void load_default_certs();
  // The certificate chain and key to present, from PEM files or PEM text.
  void load_cert_chain(std::string cert, std::string key);
  void load_cert_chain_data(std::string cert_pem, std::string key_pem);
  // A client verifies the server; a server with verify on requires and
  // verifies a client certificate (CERT_REQUIRED).
  void set_verify(bool verify);
  void set_check_hostname(bool check);
  // In order of preference.
  void set_alpn_protocols(std::vector<std::string> protocols);
  void set_minimum_version(TlsVersion version);
  // OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's defaults).
  void set_ciphers(std::string ciphers);

  bool is_server() const;
  bool verify() const;
  bool check_hostname() const;

  // The layer the transports call; shares this context.
  operator std::shared_ptr<TlsLayer>() const;  // NOLINT: implicit by design

 private:
  explicit Context(std::shared_ptr<tls_internal::OpenSslContext> state)
      : state_(std::move(state)) {}
  std::shared_ptr<tls_internal::OpenSslContext> state_;
};

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
