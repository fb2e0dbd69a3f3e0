// One TLS session: the protocol of the socket's transport on one side (it
// receives ciphertext) and the transport of the application's protocol on
// the other (it takes plaintext), as asyncio's SSLProtocol and its
// _SSLProtocolTransport in one object.
//
// OpenSSL reads from and writes to a BIO of ours: reads come straight from
// the buffer the socket transport hands to data_received (kept only when the
// application paused reading before all of it was used), writes go to out_,
// which is handed to the socket transport's write in one piece.
#pragma once

#include <openssl/ssl.h>

#include <any>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "futures/futures.h"
#include "loop/loop.h"
#include "tls/internal/openssl_context.h"
#include "transports/transports.h"

namespace asyncio::tls_internal {

class TlsConnection final : public Protocol, public Transport {
 public:
  TlsConnection(EventLoop& loop, std::shared_ptr<OpenSslContext> context,
                std::shared_ptr<BaseProtocol> app, const TlsOptions& options,
                bool call_connection_made, std::optional<Future<void>> waiter);
  ~TlsConnection() override;

  // The socket side (Protocol).
  void connection_made(std::shared_ptr<BaseTransport> transport) override;
  void data_received(std::string_view data) override;
  bool eof_received() override;
  void connection_lost(std::exception_ptr exc) override;
  void pause_writing() override;
  void resume_writing() override;

  // The application side (Transport).
  void close() override;
  bool is_closing() const override { return closing_; }
  std::any get_extra_info(std::string_view name) const override;
  void set_protocol(std::shared_ptr<BaseProtocol> protocol) override;
  std::shared_ptr<BaseProtocol> get_protocol() const override { return app_; }
  void write(std::string_view data) override;
  void writelines(const std::vector<std::string>& data) override;
  // TLS has no half-close: throws std::runtime_error.
  void write_eof() override;
  bool can_write_eof() const override { return false; }
  void abort() override;
  void pause_reading() override;
  void resume_reading() override;
  bool is_reading() const override { return !reading_paused_ && !closing_; }
  void set_write_buffer_limits(std::optional<size_t> high = {},
                               std::optional<size_t> low = {}) override;
  std::pair<size_t, size_t> get_write_buffer_limits() const override;
  size_t get_write_buffer_size() const override;

  // For our BIO.
  size_t read_ciphertext(char* out, size_t size);
  void write_ciphertext(const char* data, size_t size) { out_.append(data, size); }

 private:
  enum class State { kUnwrapped, kHandshake, kWrapped, kShutdown, kClosed };

  std::shared_ptr<TlsConnection> self() {
    return std::static_pointer_cast<TlsConnection>(BaseTransport::shared_from_this());
  }
  void process();
  void do_handshake();
  void handshake_done(std::exception_ptr exc);
  void read_application_data();
  void drain_after_close_notify();
  void on_peer_close_notify();
  void start_shutdown();
  void write_plaintext(std::string_view data);
  void retry_pending_writes();
  void flush();
  void fatal_error(std::exception_ptr exc);
  void call_app_eof_received();
  void report(const char* message, std::exception_ptr exc);
  void keep_unread_input();
  // No ciphertext left to decrypt and no plaintext inside OpenSSL.
  bool nothing_left_to_read() const { return in_.empty() && SSL_has_pending(ssl_) == 0; }

  EventLoop& loop_;
  std::shared_ptr<OpenSslContext> context_;
  SSL* ssl_;
  std::shared_ptr<BaseProtocol> app_;
  Protocol* app_stream_ = nullptr;  // one of these two is set
  BufferedProtocol* app_buffered_ = nullptr;
  std::shared_ptr<Transport> wire_;  // the socket's transport
  TlsOptions options_;
  std::optional<Future<void>> waiter_;
  TimerHandle handshake_timer_;
  TimerHandle shutdown_timer_;
  State state_ = State::kUnwrapped;
  bool call_connection_made_;
  bool app_connected_;    // the application protocol has a connection
  bool closing_ = false;  // close() or abort() (or the connection is gone)
  bool reading_paused_ = false;
  bool eof_pending_ = false;  // the socket hit EOF while reading was paused
  std::exception_ptr fatal_;  // what connection_lost reports
  std::string_view in_;       // ciphertext not yet read by OpenSSL
  std::string in_buffer_;     // holds in_ between calls to data_received
  std::string out_;           // ciphertext OpenSSL produced, not yet written
  std::string pending_;       // plaintext OpenSSL could not take yet
  std::pair<size_t, size_t> limits_{16 * 1024, 64 * 1024};
};

}  // namespace asyncio::tls_internal
