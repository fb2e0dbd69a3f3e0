// libFuzzer target: the TLS layer (tls::Context's sessions) as a server or as
// a client, over a fake socket transport, fed the input as the ciphertext it
// receives, in chunks. Nothing may crash, leak or use freed memory; the
// session must end with the application's connection_lost when the socket
// goes away.
//
// The input is a mode byte (bit 0: client; bit 1: the application writes on
// connection_made; bit 2: it pauses reading every other chunk; bit 3: it
// closes after the last chunk; bit 4: the peer's EOF comes before the
// connection is lost; bit 5: a real peer), then chunks: a length byte and
// that many bytes.
//
// Without a real peer the chunks are the ciphertext received: the handshake
// never completes (the peer's randomness is not in the input), so the parsing
// of hellos and alerts is what gets exercised. With one (an OpenSSL session
// in memory that completes the handshake), each chunk is a command, its first
// byte saying which: the peer sends the rest as data, or raw bytes, or
// close_notify, or a key update; the application writes, pauses or resumes
// reading, or closes. That reaches the TLS layer's states after the
// handshake.
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <any>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "futures/futures.h"
#include "loop/loop.h"
#include "tls/testing/certs.h"
#include "tls/tls.h"
#include "transports/tls_layer.h"
#include "transports/transports.h"

namespace {

using asyncio::BaseProtocol;
using asyncio::BaseTransport;
using asyncio::EventLoop;
using asyncio::Protocol;
using asyncio::Transport;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "tls_fuzzer: %s\n", what);
  std::abort();
}

// The socket's transport: keeps what is written, and reports its own close
// to the protocol on the next iteration, as a socket transport does.
class FakeSocketTransport final : public Transport {
 public:
  explicit FakeSocketTransport(EventLoop& loop) : loop_(loop) {}

  void close() override { lose(); }
  bool is_closing() const override { return closing_; }
  std::any get_extra_info(std::string_view) const override { return {}; }
  void set_protocol(std::shared_ptr<BaseProtocol> protocol) override {
    protocol_ = std::static_pointer_cast<Protocol>(protocol);
  }
  std::shared_ptr<BaseProtocol> get_protocol() const override { return protocol_; }
  void write(std::string_view data) override {
    if (closing_) return;
    written_ += data.size();
    if (peer_input_ != nullptr) BIO_write(peer_input_, data.data(), static_cast<int>(data.size()));
  }
  void writelines(const std::vector<std::string>& data) override {
    for (const std::string& d : data) write(d);
  }
  void write_eof() override {}
  bool can_write_eof() const override { return true; }
  void abort() override { lose(); }
  void pause_reading() override { reading_ = false; }
  void resume_reading() override { reading_ = true; }
  bool is_reading() const override { return reading_; }
  void set_write_buffer_limits(std::optional<size_t>, std::optional<size_t>) override {}
  std::pair<size_t, size_t> get_write_buffer_limits() const override { return {0, 0}; }
  size_t get_write_buffer_size() const override { return 0; }

  // The peer sent `data`: handed over in a buffer that dies after the call.
  void receive(std::string_view data) {
    if (closing_ || !protocol_) return;
    const std::string copy(data);
    protocol_->data_received(copy);
  }
  void receive_eof() {
    if (closing_ || !protocol_) return;
    if (!protocol_->eof_received()) lose();
  }
  // The connection is gone: connection_lost now (if not reported yet).
  void lose() {
    if (lost_scheduled_) return;
    closing_ = true;
    lost_scheduled_ = true;
    auto self = std::static_pointer_cast<FakeSocketTransport>(shared_from_this());
    loop_.call_soon([self] { self->report_lost(); });
  }
  void report_lost() {
    if (std::shared_ptr<Protocol> protocol = std::move(protocol_)) protocol->connection_lost({});
  }
  bool lost() const { return lost_scheduled_ && !protocol_; }
  // What is written goes to this BIO (the real peer's input), if set.
  void set_peer_input(BIO* bio) { peer_input_ = bio; }

 private:
  EventLoop& loop_;
  std::shared_ptr<Protocol> protocol_;
  size_t written_ = 0;
  bool closing_ = false;
  bool reading_ = true;
  bool lost_scheduled_ = false;
  BIO* peer_input_ = nullptr;
};

class App final : public Protocol {
 public:
  explicit App(bool write_on_connect) : write_on_connect_(write_on_connect) {}
  void connection_made(std::shared_ptr<BaseTransport> t) override {
    transport = std::static_pointer_cast<Transport>(t);
    if (write_on_connect_) transport->write("GET / HTTP/1.0\r\n\r\n");
  }
  void data_received(std::string_view data) override { received += data.size(); }
  bool eof_received() override { return false; }
  void connection_lost(std::exception_ptr) override {
    lost = true;
    transport.reset();
  }

  std::shared_ptr<Transport> transport;
  size_t received = 0;
  bool lost = false;

 private:
  bool write_on_connect_;
};

struct Contexts {
  asyncio::tls::Context server;
  asyncio::tls::Context client;
  // For the real peer (OpenSSL's own): it verifies nothing.
  SSL_CTX* peer_server;
  SSL_CTX* peer_client;
};

const Contexts& contexts() {
  static const Contexts* contexts = [] {
    const auto& certs = asyncio::tls_testing::test_certs();
    auto server = asyncio::tls::Context::server(certs.server.cert, certs.server.key);
    auto client = asyncio::tls::Context::client();
    client.load_verify_locations(certs.ca_file);
    SSL_CTX* peer_server = SSL_CTX_new(TLS_server_method());
    SSL_CTX* peer_client = SSL_CTX_new(TLS_client_method());
    if (peer_server == nullptr || peer_client == nullptr ||
        SSL_CTX_use_certificate_chain_file(peer_server, certs.server.cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(peer_server, certs.server.key.c_str(), SSL_FILETYPE_PEM) != 1) {
      fail("cannot set up the peer's contexts");
    }
    return new Contexts{server, client, peer_server, peer_client};
  }();
  return *contexts;
}

// The other end of the connection, an OpenSSL session over memory BIOs.
class Peer {
 public:
  Peer(bool server, FakeSocketTransport& wire, EventLoop& loop)
      : ssl_(SSL_new(server ? contexts().peer_server : contexts().peer_client)),
        wire_(wire),
        loop_(loop) {
    if (ssl_ == nullptr) fail("SSL_new");
    input_ = BIO_new(BIO_s_mem());
    output_ = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl_, input_, output_);
    if (server) {
      SSL_set_accept_state(ssl_);
    } else {
      SSL_set_connect_state(ssl_);
      SSL_set_tlsext_host_name(ssl_, "localhost");
    }
    wire_.set_peer_input(input_);
  }
  ~Peer() {
    wire_.set_peer_input(nullptr);
    SSL_free(ssl_);
  }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  // Lets both sides answer each other until neither has more to say.
  void exchange();
  void send(std::string_view data) {
    if (!data.empty()) SSL_write(ssl_, data.data(), static_cast<int>(data.size()));
    ERR_clear_error();
  }
  void send_close_notify() {
    SSL_shutdown(ssl_);
    ERR_clear_error();
  }
  void send_key_update() {
    if (SSL_is_init_finished(ssl_) != 0 && SSL_version(ssl_) == TLS1_3_VERSION) {
      SSL_key_update(ssl_, SSL_KEY_UPDATE_REQUESTED);
      SSL_do_handshake(ssl_);
    }
    ERR_clear_error();
  }

 private:
  SSL* ssl_;
  BIO* input_;   // what our side wrote, owned by ssl_
  BIO* output_;  // what the peer writes, owned by ssl_
  FakeSocketTransport& wire_;
  EventLoop& loop_;
};

void run_once(EventLoop& loop) {
  loop.call_soon([&loop] { loop.stop(); });
  loop.run_forever();
}

// One command of the real-peer mode: the first byte says which.
void run_command(std::string_view command, Peer& peer, FakeSocketTransport& wire, App& app) {
  if (command.empty()) return;
  const std::string_view arg = command.substr(1);
  switch (static_cast<uint8_t>(command[0]) % 8) {
    case 0:
      peer.send(arg);
      break;
    case 1:
      wire.receive(arg);  // raw bytes amid the records
      break;
    case 2:
      peer.send_close_notify();
      break;
    case 3:
      peer.send_key_update();
      break;
    case 4:
      if (app.transport) app.transport->write(arg);
      break;
    case 5:
      if (app.transport) app.transport->pause_reading();
      break;
    case 6:
      if (app.transport) app.transport->resume_reading();
      break;
    default:
      if (app.transport) app.transport->close();
      break;
  }
}

void Peer::exchange() {
  for (int round = 0; round < 32; ++round) {
    if (SSL_is_init_finished(ssl_) == 0) {
      SSL_do_handshake(ssl_);
    } else {
      char buffer[4096];
      while (SSL_read(ssl_, buffer, sizeof(buffer)) > 0) {
      }
    }
    ERR_clear_error();
    std::string out(static_cast<size_t>(BIO_pending(output_)), '\0');
    if (out.empty()) return;
    BIO_read(output_, out.data(), static_cast<int>(out.size()));
    wire_.receive(out);
    run_once(loop_);
  }
}

void run_input(const uint8_t* data, size_t size) {
  if (size == 0) return;
  const uint8_t mode = data[0];
  const bool client = (mode & 1) != 0;
  const bool write_on_connect = (mode & 2) != 0;
  const bool pause_some = (mode & 4) != 0;
  const bool close_at_end = (mode & 8) != 0;
  const bool eof_first = (mode & 16) != 0;
  const bool real_peer = (mode & 32) != 0;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);

  std::unique_ptr<EventLoop> loop = asyncio::new_event_loop();
  loop->set_exception_handler([](EventLoop&, const asyncio::ExceptionContext&) {});
  auto app = std::make_shared<App>(write_on_connect);
  asyncio::TlsOptions options;
  options.server_side = !client;
  if (client) options.server_hostname = "localhost";
  const asyncio::tls::Context& context = client ? contexts().client : contexts().server;
  auto waiter = asyncio::create_future<void>(*loop);
  std::shared_ptr<asyncio::TlsLayer> layer = context;
  auto session = layer->new_session(*loop, app, options, true, waiter);
  auto wire = std::make_shared<FakeSocketTransport>(*loop);
  wire->set_protocol(session.wire);
  std::optional<Peer> peer;
  if (real_peer) peer.emplace(/*server=*/client, *wire, *loop);
  session.wire->connection_made(wire);
  session = {};
  if (peer) {
    peer->exchange();
    run_once(*loop);
    peer->exchange();
  }

  for (int chunk = 0; !rest.empty() && !wire->lost(); ++chunk) {
    const size_t n = std::min<size_t>(static_cast<uint8_t>(rest[0]), rest.size() - 1);
    const std::string_view bytes = rest.substr(1, n);
    rest.remove_prefix(1 + n);
    if (pause_some && app->transport) {
      if (chunk % 2 == 0) {
        app->transport->pause_reading();
      } else {
        app->transport->resume_reading();
      }
    }
    if (peer) {
      run_command(bytes, *peer, *wire, *app);
      peer->exchange();
    } else {
      wire->receive(bytes);
    }
    run_once(*loop);
  }
  peer.reset();
  if (close_at_end && app->transport) app->transport->close();
  if (eof_first) wire->receive_eof();
  run_once(*loop);
  wire->lose();
  for (int i = 0; i < 8 && !wire->lost(); ++i) run_once(*loop);
  if (!wire->lost()) fail("the socket transport was never told it was lost");
  run_once(*loop);
  if (app->transport) fail("the application was connected and never lost its connection");
  if (waiter.done() && !waiter.cancelled()) (void)waiter.exception();
  loop->close();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  run_input(data, size);
  return 0;
}
