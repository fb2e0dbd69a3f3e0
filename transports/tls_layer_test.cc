// The TLS seam without //tls: this binary depends on //transports only (no
// OpenSSL; tls_layer_deps_test checks that //transports depends on no //tls),
// links and runs, and the `ssl` options accept any TlsLayer. A stand-in
// layer that refuses every handshake shows what the transports hand it.
#include "transports/tls_layer.h"

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "futures/futures.h"
#include "gtest/gtest.h"
#include "testing/async_test_util.h"
#include "transports/transports.h"

namespace asyncio {
namespace {

using testing_util::port_of;

using namespace std::chrono_literals;

class HandshakeRefused : public std::runtime_error {
 public:
  HandshakeRefused() : std::runtime_error("handshake refused") {}
};

// The socket side of a session that fails its handshake at once.
class RefusingWire : public Protocol {
 public:
  explicit RefusingWire(std::optional<Future<void>> waiter) : waiter_(std::move(waiter)) {}
  void connection_made(std::shared_ptr<BaseTransport> transport) override {
    transport->close();
    if (waiter_) waiter_->set_exception(std::make_exception_ptr(HandshakeRefused()));
  }

 private:
  std::optional<Future<void>> waiter_;
};

// Records the options of each session it is asked for.
class RefusingTlsLayer : public TlsLayer {
 public:
  explicit RefusingTlsLayer(bool server_side) : server_side_(server_side) {}
  Session new_session(EventLoop& loop, std::shared_ptr<BaseProtocol> app, const TlsOptions& options,
                      bool call_connection_made, std::optional<Future<void>> waiter) override {
    (void)loop;
    (void)app;
    (void)call_connection_made;
    sessions.push_back(options);
    return {std::make_shared<RefusingWire>(std::move(waiter)), nullptr};
  }
  bool is_server() const override { return server_side_; }
  bool check_hostname() const override { return true; }

  std::vector<TlsOptions> sessions;

 private:
  bool server_side_;
};

class Recorder : public Protocol {
 public:
  explicit Recorder(EventLoop& loop) : lost(create_future<void>(loop)) {}
  void connection_lost(std::exception_ptr) override {
    if (!lost.done()) lost.set_result();
  }
  Future<void> lost;
};

template <class T>
Coro<std::string> error_from(Coro<T> operation) {
  try {
    co_await std::move(operation);
  } catch (const std::exception& e) {
    co_return e.what();
  }
  co_return "nothing thrown";
}

TEST(TlsLayerTest, ClientSessionsGetTheConnectionsTlsFields) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    auto plain = [] { return std::make_shared<Protocol>(); };
    Server server = co_await create_server(loop, plain, "127.0.0.1", 0);
    auto layer = std::make_shared<RefusingTlsLayer>(false);
    ConnectOptions options;
    options.ssl = layer;
    options.ssl_handshake_timeout = 5s;
    std::string error =
        co_await error_from(create_connection(loop, plain, "127.0.0.1", port_of(server), options));
    EXPECT_EQ(error, "handshake refused");
    options.server_hostname = "example.org";
    error =
        co_await error_from(create_connection(loop, plain, "127.0.0.1", port_of(server), options));
    EXPECT_EQ(error, "handshake refused");
    EXPECT_EQ(layer->sessions.size(), 2u);
    if (layer->sessions.size() == 2) {
      EXPECT_FALSE(layer->sessions[0].server_side);
      EXPECT_EQ(layer->sessions[0].server_hostname, "127.0.0.1");  // the host by default
      EXPECT_EQ(layer->sessions[0].ssl_handshake_timeout, 5s);
      EXPECT_EQ(layer->sessions[0].ssl_shutdown_timeout, kDefaultSslShutdownTimeout);
      EXPECT_EQ(layer->sessions[1].server_hostname, "example.org");
    }
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(TlsLayerTest, ServerSessionsGetTheServersTlsFields) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    auto layer = std::make_shared<RefusingTlsLayer>(true);
    ServerOptions options;
    options.ssl = layer;
    options.ssl_shutdown_timeout = 2s;
    auto plain = [] { return std::make_shared<Protocol>(); };
    Server server = co_await create_server(loop, plain, "127.0.0.1", 0, options);
    auto [transport, client] = co_await create_connection(
        loop, [&loop] { return std::make_shared<Recorder>(loop); }, "127.0.0.1", port_of(server));
    co_await client->lost;  // the refused handshake closed the server's side
    EXPECT_EQ(layer->sessions.size(), 1u);
    if (layer->sessions.size() == 1) {
      EXPECT_TRUE(layer->sessions[0].server_side);
      EXPECT_EQ(layer->sessions[0].server_hostname, "");
      EXPECT_EQ(layer->sessions[0].ssl_shutdown_timeout, 2s);
    }
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(TlsLayerTest, MismatchedLayersAndFieldsAreRefusedUpFront) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    auto plain = [] { return std::make_shared<Protocol>(); };
    ServerOptions client_layer;
    client_layer.ssl = std::make_shared<RefusingTlsLayer>(false);
    EXPECT_EQ(co_await error_from(create_server(loop, plain, "127.0.0.1", 0, client_layer)),
              "a server needs a server context (tls::Context::server)");
    ServerOptions named;
    named.ssl = std::make_shared<RefusingTlsLayer>(true);
    named.server_hostname = "localhost";
    EXPECT_EQ(co_await error_from(create_server(loop, plain, "127.0.0.1", 0, named)),
              "server_hostname is only meaningful for a client");
    ConnectOptions server_layer;
    server_layer.ssl = std::make_shared<RefusingTlsLayer>(true);
    EXPECT_EQ(co_await error_from(create_connection(loop, plain, "127.0.0.1", 1, server_layer)),
              "a client needs a client context (tls::Context::client)");
    ConnectOptions unnamed;
    unnamed.ssl = std::make_shared<RefusingTlsLayer>(false);
    EXPECT_EQ(co_await error_from(create_unix_connection(loop, plain, "/nonexistent", unnamed)),
              "You must set server_hostname when using ssl without a host");
  }());
}

}  // namespace
}  // namespace asyncio
