// tls::Context over OpenSSL's SSL_CTX.
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "tls/internal/openssl_context.h"
#include "tls/tls.h"

namespace asyncio::tls_internal {
namespace {

// Chooses the first of the server's protocols that the client offers.
int select_alpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* outlen,
                const unsigned char* in, unsigned int inlen, void* arg) {
  auto* self = static_cast<OpenSslContext*>(arg);
  const auto* server = reinterpret_cast<const unsigned char*>(self->alpn_wire.data());
  unsigned char* selected = nullptr;
  unsigned char selected_len = 0;
  if (self->alpn_wire.empty() ||
      SSL_select_next_proto(&selected, &selected_len, server,
                            static_cast<unsigned int>(self->alpn_wire.size()), in,
                            inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = selected;
  *outlen = selected_len;
  return SSL_TLSEXT_ERR_OK;
}

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

BioPtr memory_bio(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) throw ssl_error_from_queue("BIO_new_mem_buf");
  return bio;
}

}  // namespace

OpenSslContext::OpenSslContext(bool server)
    : server_side(server), verify_peer(!server), check_peer_hostname(!server) {
  ERR_clear_error();
  ctx_ = SSL_CTX_new(TLS_method());
  if (ctx_ == nullptr) throw ssl_error_from_queue("SSL_CTX_new");
  SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
  // Retried writes come from a buffer that may have moved.
  SSL_CTX_set_mode(ctx_, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_options(ctx_, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (server) SSL_CTX_set_alpn_select_cb(ctx_, select_alpn, this);
  apply_verify_mode();
}

OpenSslContext::~OpenSslContext() { SSL_CTX_free(ctx_); }

void OpenSslContext::apply_verify_mode() {
  int mode = SSL_VERIFY_NONE;
  if (verify_peer)
    mode = server_side ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER;
  SSL_CTX_set_verify(ctx_, mode, nullptr);
}

tls::SSLError ssl_error_from_queue(const std::string& what) {
  unsigned long last = 0;
  while (unsigned long e = ERR_get_error()) last = e;
  std::string message = what;
  if (last != 0) {
    const char* lib = ERR_lib_error_string(last);
    const char* reason = ERR_reason_error_string(last);
    message += ": [";
    message += lib ? lib : "OpenSSL";
    message += "] ";
    if (reason != nullptr) {
      message += reason;
    } else {
      char buf[256];
      ERR_error_string_n(last, buf, sizeof(buf));
      message += buf;
    }
  }
  return tls::SSLError(message);
}

std::exception_ptr handshake_error(SSL* ssl, int ssl_error, const std::string& server_hostname) {
  long verify_result = SSL_get_verify_result(ssl);
  if (verify_result != X509_V_OK) {
    ERR_clear_error();
    std::string reason = X509_verify_cert_error_string(verify_result);
    if (verify_result == X509_V_ERR_HOSTNAME_MISMATCH ||
        verify_result == X509_V_ERR_IP_ADDRESS_MISMATCH) {
      reason += ", certificate is not valid for '" + server_hostname + "'";
    }
    return std::make_exception_ptr(
        tls::CertificateError("certificate verify failed: " + reason, verify_result));
  }
  if (ERR_peek_error() == 0) {
    const char* what = ssl_error == SSL_ERROR_ZERO_RETURN || ssl_error == SSL_ERROR_SYSCALL
                           ? "TLS handshake failed: EOF in violation of protocol"
                           : "TLS handshake failed";
    return std::make_exception_ptr(tls::SSLError(what));
  }
  return std::make_exception_ptr(ssl_error_from_queue("TLS handshake failed"));
}

}  // namespace asyncio::tls_internal

namespace asyncio::tls {

Context Context::client() {
  Context context(std::make_shared<tls_internal::OpenSslContext>(false));
  context.load_default_certs();
  return context;
}

Context Context::server(std::string cert_chain_file, std::string key_file) {
  Context context(std::make_shared<tls_internal::OpenSslContext>(true));
  context.load_cert_chain(std::move(cert_chain_file), std::move(key_file));
  return context;
}

void Context::load_verify_locations(std::string cafile) {
  ERR_clear_error();
  if (SSL_CTX_load_verify_locations(state_->ctx(), cafile.c_str(), nullptr) != 1) {
    throw tls_internal::ssl_error_from_queue("load_verify_locations(" + cafile + ")");
  }
}

void Context::load_verify_data(std::string pem) {
  ERR_clear_error();
  tls_internal::BioPtr bio = tls_internal::memory_bio(pem);
  X509_STORE* store = SSL_CTX_get_cert_store(state_->ctx());
  int added = 0;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    int ok = X509_STORE_add_cert(store, cert);
    X509_free(cert);
    if (ok != 1) throw tls_internal::ssl_error_from_queue("load_verify_data");
    ++added;
  }
  ERR_clear_error();  // the end of the PEM text
  if (added == 0) throw SSLError("load_verify_data: no certificate in the PEM text");
}

void Context::load_default_certs() {
  ERR_clear_error();
  if (SSL_CTX_set_default_verify_paths(state_->ctx()) != 1) {
    throw tls_internal::ssl_error_from_queue("load_default_certs");
  }
}

void Context::load_cert_chain(std::string cert, std::string key) {
  SSL_CTX* ctx = state_->ctx();
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1) {
    throw tls_internal::ssl_error_from_queue("load_cert_chain(" + cert + ")");
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
    throw tls_internal::ssl_error_from_queue("load_cert_chain: key " + key);
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    throw tls_internal::ssl_error_from_queue("load_cert_chain: the key does not match " + cert);
  }
}

void Context::load_cert_chain_data(std::string cert_pem, std::string key_pem) {
  SSL_CTX* ctx = state_->ctx();
  ERR_clear_error();
  tls_internal::BioPtr certs = tls_internal::memory_bio(cert_pem);
  X509* leaf = PEM_read_bio_X509_AUX(certs.get(), nullptr, nullptr, nullptr);
  if (leaf == nullptr)
    throw tls_internal::ssl_error_from_queue("load_cert_chain_data: certificate");
  int ok = SSL_CTX_use_certificate(ctx, leaf);
  X509_free(leaf);
  if (ok != 1) throw tls_internal::ssl_error_from_queue("load_cert_chain_data: certificate");
  SSL_CTX_clear_chain_certs(ctx);
  while (X509* ca = PEM_read_bio_X509(certs.get(), nullptr, nullptr, nullptr)) {
    if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
      X509_free(ca);
      throw tls_internal::ssl_error_from_queue("load_cert_chain_data: chain");
    }
  }
  ERR_clear_error();
  tls_internal::BioPtr key_bio = tls_internal::memory_bio(key_pem);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr);
  if (key == nullptr) throw tls_internal::ssl_error_from_queue("load_cert_chain_data: key");
  ok = SSL_CTX_use_PrivateKey(ctx, key);
  EVP_PKEY_free(key);
  if (ok != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    throw tls_internal::ssl_error_from_queue("load_cert_chain_data: key");
  }
}

void Context::set_verify(bool verify) {
  tls_internal::OpenSslContext& s = *state_;
  s.verify_peer = verify;
  if (!verify) s.check_peer_hostname = false;  // as Python: no host check without verification
  s.apply_verify_mode();
}

void Context::set_check_hostname(bool check) {
  tls_internal::OpenSslContext& s = *state_;
  s.check_peer_hostname = check;
  if (check && !s.verify_peer) {
    s.verify_peer = true;  // as Python: checking the host name means verifying
    s.apply_verify_mode();
  }
}

void Context::set_alpn_protocols(std::vector<std::string> protocols) {
  tls_internal::OpenSslContext& s = *state_;
  std::string wire;
  for (const std::string& p : protocols) {
    if (p.empty() || p.size() > 255) {
      throw std::invalid_argument("ALPN protocol names are 1 to 255 bytes: '" + p + "'");
    }
    wire.push_back(static_cast<char>(p.size()));
    wire += p;
  }
  s.alpn_wire = wire;
  if (!s.server_side) {
    // Note: SSL_CTX_set_alpn_protos returns 0 on success.
    if (SSL_CTX_set_alpn_protos(s.ctx(), reinterpret_cast<const unsigned char*>(wire.data()),
                                static_cast<unsigned int>(wire.size())) != 0) {
      throw tls_internal::ssl_error_from_queue("set_alpn_protocols");
    }
  }
}

void Context::set_minimum_version(TlsVersion version) {
  SSL_CTX_set_min_proto_version(state_->ctx(),
                                version == TlsVersion::kTls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION);
}

void Context::set_ciphers(std::string ciphers) {
  ERR_clear_error();
  if (SSL_CTX_set_cipher_list(state_->ctx(), ciphers.c_str()) != 1) {
    throw tls_internal::ssl_error_from_queue("set_ciphers(" + ciphers + ")");
  }
}

bool Context::is_server() const { return state_->server_side; }
bool Context::verify() const { return state_->verify_peer; }
bool Context::check_hostname() const { return state_->check_peer_hostname; }

Context::operator std::shared_ptr<TlsLayer>() const { return state_; }

}  // namespace asyncio::tls
