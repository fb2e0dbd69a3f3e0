// The value types of //tls that the lower layers name: tls::Context, the
// TLS errors and TlsOptions. Part of //tls (include tls/tls.h); its own
// small target //tls:context so that //transports and //streams can carry an
// `ssl` option without linking OpenSSL. Context's functions are defined in
// //tls: a program that makes a Context depends on //tls.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "futures/futures.h"

namespace asyncio {

class BaseProtocol;
class Transport;

inline constexpr std::chrono::duration<double> kDefaultSslHandshakeTimeout{60.0};
inline constexpr std::chrono::duration<double> kDefaultSslShutdownTimeout{30.0};

// The TLS options of start_tls (and of the connection and server functions,
// which take them from their own options).
struct TlsOptions {
  bool server_side = false;
  // The name to send (SNI) and to check the certificate against; a client
  // needs one unless the context checks no host name.
  std::string server_hostname;
  // Both must be positive (not NaN): std::invalid_argument otherwise, before
  // anything is connected, listened on or sent.
  std::chrono::duration<double> ssl_handshake_timeout = kDefaultSslHandshakeTimeout;
  std::chrono::duration<double> ssl_shutdown_timeout = kDefaultSslShutdownTimeout;
};

namespace tls {

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

namespace internal {

// Throws std::invalid_argument unless both timeouts are positive numbers
// (asyncio's ValueError): zero would abort every handshake at once, NaN would
// never time out.
inline void check_timeouts(std::chrono::duration<double> handshake,
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

// For the connection and server functions: the TLS timeouts are checked with
// `ssl`; without it, changing them is a mistake (asyncio: "... is only
// meaningful with ssl"). A default value given explicitly cannot be told
// apart and passes.
inline void check_timeouts(bool with_ssl, std::chrono::duration<double> handshake,
                           std::chrono::duration<double> shutdown) {
  if (with_ssl) {
    check_timeouts(handshake, shutdown);
    return;
  }
  if (handshake != kDefaultSslHandshakeTimeout) {
    throw std::invalid_argument("ssl_handshake_timeout is only meaningful with ssl");
  }
  if (shutdown != kDefaultSslShutdownTimeout) {
    throw std::invalid_argument("ssl_shutdown_timeout is only meaningful with ssl");
  }
}

}  // namespace internal

namespace internal {
class ContextState;
}

// As ssl.SSLContext: certificates, verification and protocol settings shared
// by the connections made with it. A handle: copies share one context (a
// change through one is seen by all, as in Python).
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

  // For the TLS layer.
  internal::ContextState& state() const { return *state_; }

 private:
  explicit Context(std::shared_ptr<internal::ContextState> state) : state_(std::move(state)) {}
  std::shared_ptr<internal::ContextState> state_;
};

namespace internal {

// The TLS layer behind a Context, as the connection and server functions see
// it (implemented in //tls over OpenSSL).
class ContextState {
 public:
  virtual ~ContextState() = default;

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
  virtual bool is_server() const = 0;
  virtual bool verify() const = 0;
  virtual bool check_hostname() const = 0;
};

}  // namespace internal

inline bool Context::is_server() const { return state_->is_server(); }
inline bool Context::verify() const { return state_->verify(); }
inline bool Context::check_hostname() const { return state_->check_hostname(); }
}  // namespace tls
}  // namespace asyncio
