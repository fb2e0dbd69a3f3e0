#include "tls/internal/tls_connection.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "loop/posix.h"
#include "tls/tls.h"

namespace asyncio::tls_internal {
namespace {

// Plaintext handed to the application per data_received (TLS records carry
// at most 16 KiB; several are read before the application is called).
constexpr size_t kReadChunk = 256 * 1024;
// Plaintext encrypted per step of a large write, so that the ciphertext
// waiting in out_ stays small.
constexpr size_t kWriteChunk = 256 * 1024;

char* read_buffer() {
  thread_local std::unique_ptr<char[]> buffer(new char[kReadChunk]);
  return buffer.get();
}

std::exception_ptr os_error(int err, const std::string& what) {
  return std::make_exception_ptr(std::system_error(err, std::generic_category(), what));
}

TlsConnection* connection_of(BIO* bio) { return static_cast<TlsConnection*>(BIO_get_data(bio)); }

// The BIO between OpenSSL and a TlsConnection: reads the ciphertext the
// socket delivered, writes into the connection's outgoing buffer.
BIO_METHOD* connection_bio_method() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "asyncio TLS");
    BIO_meth_set_write_ex(m, [](BIO* bio, const char* data, size_t size, size_t* written) {
      connection_of(bio)->write_ciphertext(data, size);
      *written = size;
      return 1;
    });
    BIO_meth_set_read_ex(m, [](BIO* bio, char* out, size_t size, size_t* read) {
      BIO_clear_retry_flags(bio);
      *read = connection_of(bio)->read_ciphertext(out, size);
      if (*read > 0) return 1;
      BIO_set_retry_read(bio);  // more may come: "want read", not EOF
      return 0;
    });
    BIO_meth_set_ctrl(m, [](BIO*, int cmd, long, void*) -> long { return cmd == BIO_CTRL_FLUSH; });
    BIO_meth_set_create(m, [](BIO* bio) {
      BIO_set_init(bio, 1);
      return 1;
    });
    return m;
  }();
  return method;
}

bool is_ip_literal(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  return size > 0 ? std::string(data, static_cast<size_t>(size)) : std::string();
}

std::string name_text(const X509_NAME* name) {
  BIO* bio = BIO_new(BIO_s_mem());
  X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253);
  std::string text = bio_text(bio);
  BIO_free(bio);
  return text;
}

std::string time_text(const ASN1_TIME* time) {
  BIO* bio = BIO_new(BIO_s_mem());
  ASN1_TIME_print(bio, time);
  std::string text = bio_text(bio);
  BIO_free(bio);
  return text;
}

tls::PeerCertificate describe(X509* cert) {
  tls::PeerCertificate info;
  info.subject = name_text(X509_get_subject_name(cert));
  info.issuer = name_text(X509_get_issuer_name(cert));
  info.not_before = time_text(X509_get0_notBefore(cert));
  info.not_after = time_text(X509_get0_notAfter(cert));
  if (BIGNUM* serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr)) {
    if (char* hex = BN_bn2hex(serial)) {
      info.serial_number = hex;
      OPENSSL_free(hex);
    }
    BN_free(serial);
  }
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type == GEN_DNS || name->type == GEN_EMAIL || name->type == GEN_URI) {
      const ASN1_IA5STRING* s = name->d.ia5;
      const char* prefix = name->type == GEN_DNS     ? "DNS:"
                           : name->type == GEN_EMAIL ? "email:"
                                                     : "URI:";
      info.subject_alt_names.push_back(
          prefix + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                               static_cast<size_t>(ASN1_STRING_length(s))));
    } else if (name->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* ip = name->d.iPAddress;
      char text[INET6_ADDRSTRLEN] = {};
      int family = ASN1_STRING_length(ip) == 4 ? AF_INET : AF_INET6;
      if (::inet_ntop(family, ASN1_STRING_get0_data(ip), text, sizeof(text)) != nullptr) {
        info.subject_alt_names.push_back(std::string("IP Address:") + text);
      }
    }
  }
  GENERAL_NAMES_free(names);
  int size = i2d_X509(cert, nullptr);
  if (size > 0) {
    info.der.resize(static_cast<size_t>(size));
    auto* out = reinterpret_cast<unsigned char*>(info.der.data());
    i2d_X509(cert, &out);
  }
  return info;
}

}  // namespace

TlsLayer::Session OpenSslContext::new_session(EventLoop& loop, std::shared_ptr<BaseProtocol> app,
                                              const TlsOptions& options, bool call_connection_made,
                                              std::optional<Future<void>> waiter) {
  if (options.server_side != server_side) {
    throw std::invalid_argument(server_side
                                    ? "a client needs a client context (tls::Context::client)"
                                    : "a server needs a server context (tls::Context::server)");
  }
  auto connection = std::make_shared<TlsConnection>(
      loop, shared_from_this(), std::move(app), options, call_connection_made, std::move(waiter));
  return {connection, connection};
}

TlsConnection::TlsConnection(EventLoop& loop, std::shared_ptr<OpenSslContext> context,
                             std::shared_ptr<BaseProtocol> app, const TlsOptions& options,
                             bool call_connection_made, std::optional<Future<void>> waiter)
    : loop_(loop),
      context_(std::move(context)),
      ssl_(nullptr),
      options_(options),
      waiter_(std::move(waiter)),
      call_connection_made_(call_connection_made),
      app_connected_(!call_connection_made) {
  set_protocol(std::move(app));
  const std::string& host = options_.server_hostname;
  if (!options_.server_side && host.empty() && context_->check_peer_hostname) {
    throw std::invalid_argument("check_hostname requires server_hostname");
  }
  ERR_clear_error();
  ssl_ = SSL_new(context_->ctx());
  if (ssl_ == nullptr) throw ssl_error_from_queue("SSL_new");
  BIO* bio = BIO_new(connection_bio_method());
  if (bio == nullptr) {
    SSL_free(ssl_);
    throw ssl_error_from_queue("BIO_new");
  }
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_, bio, bio);  // one reference, owned by ssl_
  if (options_.server_side) {
    SSL_set_accept_state(ssl_);
    return;
  }
  SSL_set_connect_state(ssl_);
  if (host.empty()) return;
  const bool ip = is_ip_literal(host);
  if (!ip) SSL_set_tlsext_host_name(ssl_, host.c_str());  // SNI carries names only
  if (context_->check_peer_hostname) {
    SSL_set_hostflags(ssl_, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), host.c_str())
                : SSL_set1_host(ssl_, host.c_str());
    if (ok != 1) {
      SSL_free(ssl_);
      throw std::invalid_argument("invalid server_hostname '" + host + "'");
    }
  }
}

TlsConnection::~TlsConnection() { SSL_free(ssl_); }

size_t TlsConnection::read_ciphertext(char* out, size_t size) {
  size_t n = std::min(size, in_.size());
  if (n == 0) return 0;
  std::memcpy(out, in_.data(), n);
  in_.remove_prefix(n);
  return n;
}

// ---------------------------------------------------------------------------
// The socket side

void TlsConnection::connection_made(std::shared_ptr<BaseTransport> transport) {
  wire_ = std::dynamic_pointer_cast<Transport>(transport);
  if (!wire_) throw std::invalid_argument("TLS runs over a stream transport");
  state_ = State::kHandshake;
  std::weak_ptr<TlsConnection> weak = self();
  handshake_timer_ = loop_.call_later(options_.ssl_handshake_timeout, [weak] {
    std::shared_ptr<TlsConnection> self = weak.lock();
    if (!self || self->state_ != State::kHandshake) return;
    self->handshake_done(
        os_error(ECONNABORTED, "SSL handshake is taking longer than " +
                                   std::to_string(self->options_.ssl_handshake_timeout.count()) +
                                   " seconds: aborting the connection"));
  });
  process();  // a client sends its hello
}

void TlsConnection::data_received(std::string_view data) {
  if (state_ == State::kClosed) return;
  if (in_.empty()) {
    in_ = data;  // read in place; what is left is copied by keep_unread_input
  } else {
    in_buffer_.erase(0, static_cast<size_t>(in_.data() - in_buffer_.data()));
    in_buffer_.append(data);
    in_ = in_buffer_;
  }
  process();
  keep_unread_input();
}

void TlsConnection::keep_unread_input() {
  if (in_.empty()) {
    in_buffer_.clear();
    return;
  }
  const char* begin = in_buffer_.data();
  if (in_.data() >= begin && in_.data() <= begin + in_buffer_.size()) {
    in_buffer_.erase(0, static_cast<size_t>(in_.data() - begin));
  } else {
    in_buffer_.assign(in_);
  }
  in_ = in_buffer_;
}

bool TlsConnection::eof_received() {
  auto keep = self();
  switch (state_) {
    case State::kHandshake:
      handshake_done(
          os_error(ECONNRESET, "the peer closed the connection during the TLS handshake"));
      return false;
    case State::kWrapped:
      if (reading_paused_ && (!in_.empty() || SSL_pending(ssl_) > 0)) {
        eof_pending_ = true;  // delivered once the application reads the rest
        return true;
      }
      // The peer closed without close_notify (a "ragged EOF"): end of data.
      state_ = State::kClosed;
      closing_ = true;
      try {
        call_app_eof_received();
      } catch (...) {
        fatal_ = std::current_exception();
        loop_.call_exception_handler({"Fatal error on SSL protocol", fatal_, "", ""});
      }
      return false;
    default:
      return false;
  }
}

void TlsConnection::connection_lost(std::exception_ptr exc) {
  auto keep = self();
  handshake_timer_.cancel();
  shutdown_timer_.cancel();
  state_ = State::kClosed;
  closing_ = true;
  std::exception_ptr error = fatal_ ? fatal_ : exc;
  if (waiter_ && !waiter_->done()) {
    waiter_->set_exception(
        error ? error : os_error(ECONNRESET, "the connection was lost during the TLS handshake"));
  }
  wire_.reset();
  in_ = {};
  in_buffer_.clear();
  out_.clear();
  pending_.clear();
  std::shared_ptr<BaseProtocol> app = std::move(app_);
  app_stream_ = nullptr;
  app_buffered_ = nullptr;
  if (app_connected_ && app) {
    app_connected_ = false;
    try {
      app->connection_lost(error);
    } catch (...) {
      loop_.call_exception_handler(
          {"protocol.connection_lost() failed", std::current_exception(), "", ""});
    }
  }
}

void TlsConnection::pause_writing() {
  if (!app_connected_ || !app_) return;
  try {
    app_->pause_writing();
  } catch (...) {
    loop_.call_exception_handler(
        {"protocol.pause_writing() failed", std::current_exception(), "", ""});
  }
}

void TlsConnection::resume_writing() {
  if (!app_connected_ || !app_) return;
  try {
    app_->resume_writing();
  } catch (...) {
    loop_.call_exception_handler(
        {"protocol.resume_writing() failed", std::current_exception(), "", ""});
  }
}

// ---------------------------------------------------------------------------
// Driving OpenSSL

void TlsConnection::process() {
  auto keep = self();
  try {
    if (state_ == State::kHandshake) do_handshake();
    if (state_ == State::kWrapped) {
      retry_pending_writes();
      if (state_ == State::kWrapped) read_application_data();
    } else if (state_ == State::kShutdown) {
      drain_after_close_notify();
    }
    flush();
  } catch (...) {
    // The application's callback threw: as asyncio, report and abort.
    fatal_ = std::current_exception();
    loop_.call_exception_handler({"Fatal error on SSL protocol", fatal_, "", ""});
    state_ = State::kClosed;
    closing_ = true;
    if (wire_) wire_->abort();
  }
}

void TlsConnection::do_handshake() {
  ERR_clear_error();
  int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    handshake_done(nullptr);
    return;
  }
  int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_READ) return;
  handshake_done(handshake_error(ssl_, err, options_.server_hostname));
}

void TlsConnection::handshake_done(std::exception_ptr exc) {
  handshake_timer_.cancel();
  if (exc) {
    state_ = State::kClosed;
    closing_ = true;
    fatal_ = exc;
    flush();  // the alert, so that the peer learns why
    if (waiter_ && !waiter_->done()) {
      waiter_->set_exception(exc);
    } else {
      report("SSL handshake failed", exc);
    }
    if (wire_) wire_->close();
    return;
  }
  state_ = State::kWrapped;
  if (call_connection_made_) {
    app_connected_ = true;
    app_->connection_made(self());
  }
  if (waiter_ && !waiter_->done()) waiter_->set_result();
}

void TlsConnection::read_application_data() {
  while (state_ == State::kWrapped && !reading_paused_) {
    int err = SSL_ERROR_NONE;
    if (app_buffered_ != nullptr) {
      std::span<char> buf = app_buffered_->get_buffer(kReadChunk);
      if (buf.empty()) throw std::runtime_error("get_buffer() returned an empty buffer");
      size_t n = 0;
      ERR_clear_error();
      int r = SSL_read_ex(ssl_, buf.data(), buf.size(), &n);
      if (r == 1) {
        app_buffered_->buffer_updated(n);
        if (nothing_left_to_read()) break;
        continue;
      }
      err = SSL_get_error(ssl_, r);
    } else {
      char* buf = read_buffer();
      size_t total = 0;
      while (total < kReadChunk) {
        size_t n = 0;
        ERR_clear_error();
        int r = SSL_read_ex(ssl_, buf + total, kReadChunk - total, &n);
        if (r != 1) {
          err = SSL_get_error(ssl_, r);
          break;
        }
        total += n;
        if (nothing_left_to_read()) {
          err = SSL_ERROR_WANT_READ;  // known without asking OpenSSL again
          break;
        }
      }
      if (total > 0) app_stream_->data_received(std::string_view(buf, total));
      if (err == SSL_ERROR_NONE || state_ != State::kWrapped) continue;
    }
    if (err == SSL_ERROR_WANT_READ) break;
    if (err == SSL_ERROR_ZERO_RETURN) {
      on_peer_close_notify();
      return;
    }
    fatal_error(std::make_exception_ptr(ssl_error_from_queue("SSL read failed")));
    return;
  }
  if (eof_pending_ && state_ == State::kWrapped && !reading_paused_) {
    eof_pending_ = false;
    state_ = State::kClosed;
    closing_ = true;
    call_app_eof_received();
    if (wire_) wire_->close();
  }
}

void TlsConnection::on_peer_close_notify() {
  call_app_eof_received();  // its answer does not matter: TLS has no half-close
  if (state_ == State::kWrapped) start_shutdown();
}

void TlsConnection::call_app_eof_received() {
  if (!app_connected_) return;
  if (app_stream_ != nullptr) {
    app_stream_->eof_received();
  } else if (app_buffered_ != nullptr) {
    app_buffered_->eof_received();
  }
}

void TlsConnection::start_shutdown() {
  state_ = State::kShutdown;
  closing_ = true;
  std::weak_ptr<TlsConnection> weak = self();
  shutdown_timer_ = loop_.call_later(options_.ssl_shutdown_timeout, [weak] {
    std::shared_ptr<TlsConnection> self = weak.lock();
    if (self && self->wire_) self->wire_->abort();
  });
  if (reading_paused_ && wire_) wire_->resume_reading();  // the peer's close_notify
  ERR_clear_error();
  SSL_shutdown(ssl_);  // queues our close_notify
  flush();
  drain_after_close_notify();
}

void TlsConnection::drain_after_close_notify() {
  // Not read_buffer(): the application may be reading that one right now.
  char scratch[16 * 1024];
  while (true) {
    size_t n = 0;
    ERR_clear_error();
    int r = SSL_read_ex(ssl_, scratch, sizeof(scratch), &n);
    if (r == 1) continue;  // discarded: the application closed
    int err = SSL_get_error(ssl_, r);
    if (err == SSL_ERROR_WANT_READ) return;
    break;  // the peer's close_notify, or an error: either way, done
  }
  ERR_clear_error();
  state_ = State::kClosed;
  flush();
  if (wire_) wire_->close();
}

void TlsConnection::fatal_error(std::exception_ptr exc) {
  fatal_ = exc;
  state_ = State::kClosed;
  closing_ = true;
  report("Fatal error on SSL transport", exc);
  flush();
  if (wire_) wire_->close();
}

void TlsConnection::report(const char* message, std::exception_ptr exc) {
  // SSL errors are ordinary network events (OSErrors in Python): reported in
  // debug mode only, as asyncio.
  if (loop_.get_debug()) loop_.call_exception_handler({message, exc, "", ""});
}

void TlsConnection::flush() {
  if (out_.empty()) return;
  if (wire_) wire_->write(out_);
  out_.clear();
}

void TlsConnection::write_plaintext(std::string_view data) {
  while (!data.empty()) {
    size_t chunk = std::min(data.size(), kWriteChunk);
    size_t n = 0;
    ERR_clear_error();
    int r = SSL_write_ex(ssl_, data.data(), chunk, &n);
    if (r != 1) {
      if (SSL_get_error(ssl_, r) == SSL_ERROR_WANT_READ) {
        pending_.append(data);  // retried after the next read
        return;
      }
      fatal_error(std::make_exception_ptr(ssl_error_from_queue("SSL write failed")));
      return;
    }
    data.remove_prefix(n);
    flush();
  }
}

void TlsConnection::retry_pending_writes() {
  if (pending_.empty()) return;
  std::string pending = std::move(pending_);
  pending_.clear();
  write_plaintext(pending);
}

// ---------------------------------------------------------------------------
// The application side

void TlsConnection::write(std::string_view data) {
  if (data.empty() || closing_) return;  // as asyncio: writes after close are dropped
  if (state_ != State::kWrapped || !pending_.empty()) {
    pending_.append(data);  // the handshake is not done yet
    return;
  }
  write_plaintext(data);
}

void TlsConnection::writelines(const std::vector<std::string>& data) {
  for (const std::string& piece : data) write(piece);
}

void TlsConnection::write_eof() {
  throw std::runtime_error("TLS transports do not support half-close (write_eof)");
}

void TlsConnection::close() {
  if (closing_) return;
  auto keep = self();
  closing_ = true;
  if (state_ == State::kWrapped) {
    retry_pending_writes();
    if (state_ == State::kWrapped) start_shutdown();
    return;
  }
  state_ = State::kClosed;
  if (wire_) wire_->close();
}

void TlsConnection::abort() {
  closing_ = true;
  state_ = State::kClosed;
  if (wire_) wire_->abort();
}

void TlsConnection::pause_reading() {
  if (closing_ || reading_paused_) return;
  reading_paused_ = true;
  if (wire_) wire_->pause_reading();
}

void TlsConnection::resume_reading() {
  if (!reading_paused_) return;
  reading_paused_ = false;
  if (closing_) return;
  if (wire_) wire_->resume_reading();
  // What was received before the pause is decrypted now.
  if (!in_.empty() || SSL_pending(ssl_) > 0 || eof_pending_) {
    std::weak_ptr<TlsConnection> weak = self();
    loop_.call_soon([weak] {
      if (std::shared_ptr<TlsConnection> self = weak.lock()) {
        self->process();
        self->keep_unread_input();
      }
    });
  }
}

void TlsConnection::set_protocol(std::shared_ptr<BaseProtocol> protocol) {
  auto* stream = dynamic_cast<Protocol*>(protocol.get());
  auto* buffered = dynamic_cast<BufferedProtocol*>(protocol.get());
  if (protocol && stream == nullptr && buffered == nullptr) {
    throw std::invalid_argument("a TLS transport needs a Protocol or a BufferedProtocol");
  }
  app_stream_ = stream;
  app_buffered_ = buffered;
  app_ = std::move(protocol);
}

std::any TlsConnection::get_extra_info(std::string_view name) const {
  if (name == "ssl_object") return ssl_;
  if (name == "sslcontext") return std::shared_ptr<TlsLayer>(context_);
  if (name == "peercert") {
    // As getpeercert(): none unless it was verified. With verification off a
    // client still receives the server's certificate, which vouches for
    // nothing.
    X509* cert = SSL_get0_peer_certificate(ssl_);
    if (cert == nullptr || (SSL_get_verify_mode(ssl_) & SSL_VERIFY_PEER) == 0 ||
        SSL_get_verify_result(ssl_) != X509_V_OK) {
      return {};
    }
    return describe(cert);
  }
  if (name == "cipher") {
    const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl_);
    if (cipher == nullptr) return {};
    return tls::CipherInfo{SSL_CIPHER_get_name(cipher), SSL_get_version(ssl_),
                           SSL_CIPHER_get_bits(cipher, nullptr)};
  }
  if (name == "alpn_protocol") {
    const unsigned char* protocol = nullptr;
    unsigned int size = 0;
    SSL_get0_alpn_selected(ssl_, &protocol, &size);
    if (size == 0) return {};
    return std::string(reinterpret_cast<const char*>(protocol), size);
  }
  if (name == "server_hostname") {
    if (options_.server_side || options_.server_hostname.empty()) return {};
    return options_.server_hostname;
  }
  return wire_ ? wire_->get_extra_info(name) : std::any();
}

void TlsConnection::set_write_buffer_limits(std::optional<size_t> high, std::optional<size_t> low) {
  if (wire_) {
    wire_->set_write_buffer_limits(high, low);
    limits_ = wire_->get_write_buffer_limits();
    return;
  }
  limits_ = posix::write_buffer_limits(high, low);
}

std::pair<size_t, size_t> TlsConnection::get_write_buffer_limits() const {
  return wire_ ? wire_->get_write_buffer_limits() : limits_;
}

size_t TlsConnection::get_write_buffer_size() const {
  return pending_.size() + out_.size() + (wire_ ? wire_->get_write_buffer_size() : 0);
}

}  // namespace asyncio::tls_internal
