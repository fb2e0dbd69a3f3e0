// connect_accepted_socket with ssl and ssl_handshake_timeout (the accepting
// side is the TLS server), and get_extra_info("sslcontext").
#include <sys/socket.h>

#include <any>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include "gtest/gtest.h"
#include "testing/async_test_util.h"
#include "tls/testing/certs.h"
#include "tls/tls.h"
#include "transports/transports.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;
using testing_util::open_fd_count;

const tls_testing::TestCerts& certs() { return tls_testing::test_certs(); }

tls::Context server_context() {
  return tls::Context::server(certs().server.cert, certs().server.key);
}

tls::Context client_context() {
  tls::Context context = tls::Context::client();
  context.load_verify_locations(certs().ca_file);
  return context;
}

struct SocketPair {
  SocketPair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0); }
  int fds[2] = {-1, -1};
};

// Echoes (the server side) or collects (the client side) what arrives; says
// when `want` bytes have arrived, and when the connection is gone.
class Peer : public Protocol {
 public:
  Peer(bool echo, size_t want)
      : echo_(echo),
        want_(want),
        got(create_future<std::string>(get_running_loop())),
        lost(create_future<void>(get_running_loop())) {}
  void connection_made(std::shared_ptr<BaseTransport> t) override {
    transport_ = std::static_pointer_cast<Transport>(t);
  }
  void data_received(std::string_view data) override {
    if (echo_) transport_->write(data);
    received_ += data;
    if (received_.size() >= want_ && !got.done()) got.set_result(received_);
  }
  void connection_lost(std::exception_ptr) override {
    transport_.reset();
    if (!lost.done()) lost.set_result();
  }

 private:
  bool echo_;
  size_t want_;
  std::string received_;
  std::shared_ptr<Transport> transport_;

 public:
  Future<std::string> got;
  Future<void> lost;
};

Coro<std::pair<std::shared_ptr<Transport>, std::shared_ptr<Peer>>> accept_with_tls(int sock,
                                                                                   TlsFields tls) {
  EventLoop& loop = get_running_loop();
  auto factory = [] { return std::make_shared<Peer>(true, 5); };
  auto accepting = connect_accepted_socket(loop, factory, sock, std::move(tls));
  co_return co_await std::move(accepting);
}

TEST(AcceptedSocketTlsTest, TheAcceptingSideIsTheTlsServer) {
  const int fds_before = open_fd_count();
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    SocketPair pair;
    tls::Context server = server_context();
    TlsFields tls;
    tls.ssl = server;
    tls.ssl_handshake_timeout = 5s;
    auto accepted = create_task(accept_with_tls(pair.fds[0], tls));

    tls::Context client = client_context();
    ConnectOptions options;
    options.sock = pair.fds[1];
    options.ssl = client;
    options.server_hostname = "localhost";
    auto factory = [] { return std::make_shared<Peer>(false, 5); };
    auto connecting = create_connection(loop, factory, "", 0, options);
    auto [client_transport, client_protocol] = co_await std::move(connecting);
    auto [server_transport, server_protocol] = co_await accepted;

    EXPECT_EQ(
        std::any_cast<std::shared_ptr<TlsLayer>>(server_transport->get_extra_info("sslcontext")),
        std::shared_ptr<TlsLayer>(server));
    EXPECT_EQ(
        std::any_cast<std::shared_ptr<TlsLayer>>(client_transport->get_extra_info("sslcontext")),
        std::shared_ptr<TlsLayer>(client));
    EXPECT_TRUE(server_transport->get_extra_info("cipher").has_value());

    client_transport->write("hello");
    EXPECT_EQ(co_await client_protocol->got, "hello");
    EXPECT_EQ(co_await server_protocol->got, "hello");
    client_transport->close();
    co_await client_protocol->lost;
    co_await server_protocol->lost;  // the client's close_notify closed it
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(AcceptedSocketTlsTest, HandshakeTimeoutAbortsAndClosesTheSocket) {
  const int fds_before = open_fd_count();
  run([]() -> Coro<void> {
    SocketPair pair;  // the other end never says a word
    TlsFields tls;
    tls.ssl = server_context();
    tls.ssl_handshake_timeout = 50ms;
    int code = 0;
    std::string message;
    try {
      co_await accept_with_tls(pair.fds[0], tls);
    } catch (const std::system_error& e) {
      code = e.code().value();
      message = e.what();
    }
    EXPECT_EQ(code, ECONNABORTED);
    EXPECT_NE(message.find("SSL handshake is taking longer"), std::string::npos) << message;
    co_await testing_util::settle();
    ::close(pair.fds[1]);
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(AcceptedSocketTlsTest, MisuseIsRefusedAndTheSocketClosed) {
  const int fds_before = open_fd_count();
  run([]() -> Coro<void> {
    {
      SocketPair pair;
      TlsFields tls;
      tls.ssl = server_context();
      tls.server_hostname = "localhost";  // a client's option
      EXPECT_TRUE(
          co_await testing_util::throws<std::invalid_argument>(accept_with_tls(pair.fds[0], tls)));
      ::close(pair.fds[1]);
    }
    {
      SocketPair pair;
      TlsFields tls;
      tls.ssl = client_context();  // the accepting side is the server
      EXPECT_TRUE(
          co_await testing_util::throws<std::invalid_argument>(accept_with_tls(pair.fds[0], tls)));
      ::close(pair.fds[1]);
    }
    {
      SocketPair pair;
      TlsFields tls;
      tls.ssl_handshake_timeout = 1s;  // without ssl
      EXPECT_TRUE(
          co_await testing_util::throws<std::invalid_argument>(accept_with_tls(pair.fds[0], tls)));
      ::close(pair.fds[1]);
    }
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

}  // namespace
}  // namespace asyncio
