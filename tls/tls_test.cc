#include "tls/tls.h"

#include <fcntl.h>
#include <openssl/x509_vfy.h>
#include <unistd.h>

#include <algorithm>
#include <any>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <system_error>
#include <vector>

#include "gtest/gtest.h"
#include "streams/streams.h"
#include "testing/async_test_util.h"
#include "tls/testing/certs.h"

namespace asyncio {
namespace {

using testing_util::handle_echo;
using testing_util::port_of;

using namespace std::chrono_literals;

const tls_testing::TestCerts& certs() { return tls_testing::test_certs(); }

tls::Context server_context(const tls_testing::CertFiles& files) {
  return tls::Context::server(files.cert, files.key);
}
tls::Context server_context() { return server_context(certs().server); }

tls::Context client_context() {
  tls::Context context = tls::Context::client();
  context.load_verify_locations(certs().ca_file);
  return context;
}

StreamOptions with_ssl(tls::Context context) {
  StreamOptions options;
  options.ssl = std::move(context);
  return options;
}

// Connects, expects `message` echoed by a handle_echo server, closes.
Coro<void> expect_echo(uint16_t port, StreamOptions options, std::string message) {
  auto [reader, writer] = co_await open_connection("127.0.0.1", port, options);
  writer.write(message);
  EXPECT_EQ(co_await reader.read(100), message);
  writer.close();
  co_await writer.wait_closed();
}

TEST(TlsTest, StreamsEchoWithCertificateDetails) {
  run([]() -> Coro<void> {
    StreamOptions server_options = with_ssl(server_context());
    Server server = co_await start_server(handle_echo, "127.0.0.1", 0, server_options);
    StreamOptions client_options = with_ssl(client_context());
    client_options.server_hostname = "localhost";
    auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(server), client_options);
    writer.write("Hello World!");
    EXPECT_EQ(co_await reader.read(100), "Hello World!");
    EXPECT_EQ(co_await reader.read(100), "") << "close_notify from the server: EOF";

    auto cert = std::any_cast<tls::PeerCertificate>(writer.get_extra_info("peercert"));
    EXPECT_EQ(cert.subject, "CN=localhost");
    EXPECT_NE(cert.issuer.find("asyncio test CA"), std::string::npos) << cert.issuer;
    EXPECT_NE(
        std::find(cert.subject_alt_names.begin(), cert.subject_alt_names.end(), "DNS:localhost"),
        cert.subject_alt_names.end());
    EXPECT_NE(std::find(cert.subject_alt_names.begin(), cert.subject_alt_names.end(),
                        "IP Address:127.0.0.1"),
              cert.subject_alt_names.end());
    EXPECT_FALSE(cert.der.empty());
    EXPECT_FALSE(cert.not_after.empty());
    auto cipher = std::any_cast<tls::CipherInfo>(writer.get_extra_info("cipher"));
    EXPECT_EQ(cipher.protocol, "TLSv1.3");
    EXPECT_GE(cipher.secret_bits, 128);
    EXPECT_FALSE(writer.get_extra_info("alpn_protocol").has_value());
    EXPECT_NE(std::any_cast<SSL*>(writer.get_extra_info("ssl_object")), nullptr);
    EXPECT_FALSE(writer.can_write_eof());
    EXPECT_THROW(writer.write_eof(), std::runtime_error);
    writer.close();
    writer.write("dropped: written after close");
    co_await writer.wait_closed();
    server.close();
    co_await server.wait_closed();
  }());
}

// A protocol that records what happens to it.
class Recorder : public Protocol {
 public:
  explicit Recorder(EventLoop& loop) : lost(create_future<void>(loop)) {}
  void connection_made(std::shared_ptr<BaseTransport> t) override {
    transport = std::static_pointer_cast<Transport>(t);
    ++made;
  }
  void data_received(std::string_view data) override { received += data; }
  bool eof_received() override {
    got_eof = true;
    return false;
  }
  void connection_lost(std::exception_ptr exc) override {
    error = exc;
    if (!lost.done()) lost.set_result();
  }

  std::shared_ptr<Transport> transport;
  std::string received;
  int made = 0;
  bool got_eof = false;
  std::exception_ptr error;
  Future<void> lost;
};

// Echoes and records the negotiated protocol.
class AlpnEchoProtocol : public testing_util::EchoProtocol {
 public:
  void connection_made(std::shared_ptr<BaseTransport> t) override {
    EchoProtocol::connection_made(t);
    std::any alpn = transport->get_extra_info("alpn_protocol");
    if (alpn.has_value()) negotiated = std::any_cast<std::string>(alpn);
  }
  std::string negotiated;
};

TEST(TlsTest, OverUnixSockets) {
  testing_util::TempDir dir;
  std::string path = dir.file("s.sock");
  run([path]() -> Coro<void> {
    StreamOptions server_options = with_ssl(server_context());
    Server server = co_await start_unix_server(handle_echo, path, server_options);
    StreamOptions no_name = with_ssl(client_context());
    bool refused = false;
    try {
      co_await open_unix_connection(path, no_name);
    } catch (const std::invalid_argument&) {
      refused = true;  // no host to check the certificate against
    }
    EXPECT_TRUE(refused);
    StreamOptions client_options = with_ssl(client_context());
    client_options.server_hostname = "localhost";
    auto [reader, writer] = co_await open_unix_connection(path, client_options);
    writer.write("over a Unix socket");
    EXPECT_EQ(co_await reader.read(100), "over a Unix socket");
    writer.close();
    co_await writer.wait_closed();
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(TlsTest, ProtocolsAlpnAndWatermarks) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    tls::Context server_ctx = server_context();
    server_ctx.set_alpn_protocols({"h2", "http/1.1"});
    std::vector<std::shared_ptr<AlpnEchoProtocol>> accepted;
    ServerOptions server_options;
    server_options.ssl = server_ctx;
    Server server = co_await create_server(
        loop,
        [&accepted]() -> std::shared_ptr<BaseProtocol> {
          accepted.push_back(std::make_shared<AlpnEchoProtocol>());
          return accepted.back();
        },
        "127.0.0.1", 0, server_options);

    tls::Context client_ctx = client_context();
    client_ctx.set_alpn_protocols({"http/1.1", "spdy/1"});
    ConnectOptions options;
    options.ssl = client_ctx;
    options.server_hostname = "localhost";
    auto factory = [&loop] { return std::make_shared<Recorder>(loop); };
    auto [transport, client] =
        co_await create_connection(loop, factory, "127.0.0.1", port_of(server), options);
    EXPECT_EQ(client->made, 1);
    EXPECT_EQ(client->transport, transport);
    EXPECT_EQ(std::any_cast<std::string>(transport->get_extra_info("alpn_protocol")), "http/1.1");
    EXPECT_EQ(std::any_cast<std::string>(transport->get_extra_info("server_hostname")),
              "localhost");
    EXPECT_EQ(std::any_cast<SocketAddress>(transport->get_extra_info("peername")).port(),
              port_of(server));
    transport->set_write_buffer_limits(1000);
    EXPECT_EQ(transport->get_write_buffer_limits(), std::make_pair(size_t{250}, size_t{1000}));
    EXPECT_THROW(transport->set_write_buffer_limits(10, 20), std::invalid_argument);

    transport->write("ping");
    while (client->received.size() < 4) co_await sleep(0s);
    EXPECT_EQ(client->received, "ping");
    EXPECT_EQ(accepted.size(), 1u);
    if (!accepted.empty()) {
      EXPECT_EQ(accepted[0]->negotiated, "http/1.1");
    }
    transport->close();
    EXPECT_TRUE(transport->is_closing());
    co_await client->lost;
    EXPECT_EQ(client->error, nullptr);
    server.close();
    co_await server.wait_closed();
  }());
}

// Stops reading as soon as it is connected, so it never answers close_notify.
class DeafProtocol : public Protocol {
 public:
  explicit DeafProtocol(std::vector<std::shared_ptr<Transport>>& accepted) : accepted_(accepted) {}
  void connection_made(std::shared_ptr<BaseTransport> t) override {
    auto transport = std::static_pointer_cast<Transport>(t);
    transport->pause_reading();
    accepted_.push_back(transport);
  }

 private:
  std::vector<std::shared_ptr<Transport>>& accepted_;
};

TEST(TlsTest, ShutdownTimeoutAbortsAPeerThatNeverAnswers) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    std::vector<std::shared_ptr<Transport>> accepted;
    ServerOptions server_options;
    server_options.ssl = server_context();
    auto deaf = [&accepted] { return std::make_shared<DeafProtocol>(accepted); };
    Server server = co_await create_server(loop, deaf, "127.0.0.1", 0, server_options);
    ConnectOptions options;
    options.ssl = client_context();
    options.server_hostname = "localhost";
    options.ssl_shutdown_timeout = 50ms;
    auto factory = [&loop] { return std::make_shared<Recorder>(loop); };
    auto [transport, client] =
        co_await create_connection(loop, factory, "127.0.0.1", port_of(server), options);
    const double closed_at = loop.time();
    transport->close();
    co_await client->lost;  // no close_notify comes back: aborted after the timeout
    EXPECT_GE(loop.time() - closed_at, 0.045);
    EXPECT_EQ(client->error, nullptr);
    EXPECT_FALSE(client->got_eof);
    for (const std::shared_ptr<Transport>& t : accepted) t->abort();
    server.close();
    co_await server.wait_closed();
  }());
}

struct VerifyCase {
  const char* name;
  const tls_testing::CertFiles& (*files)();
  const char* host;  // what the client connects to / checks
  long code;
  const char* reason;
};

class VerifyFailure : public testing::TestWithParam<VerifyCase> {};

TEST_P(VerifyFailure, GivesCertificateErrorWithTheReasonAndServerCarriesOn) {
  const VerifyCase& c = GetParam();
  run([&c]() -> Coro<void> {
    StreamOptions server_options = with_ssl(server_context(c.files()));
    Server server = co_await start_server(handle_echo, "127.0.0.1", 0, server_options);
    StreamOptions client_options = with_ssl(client_context());
    client_options.server_hostname = c.host;
    bool failed = false;
    try {
      co_await open_connection("127.0.0.1", port_of(server), client_options);
    } catch (const tls::CertificateError& e) {
      failed = true;
      EXPECT_EQ(e.verify_code(), c.code) << e.what();
      EXPECT_NE(std::string(e.what()).find(c.reason), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("certificate verify failed"), std::string::npos);
    }
    EXPECT_TRUE(failed);
    // Without verification the same server is reachable: nothing broke.
    tls::Context trusting = tls::Context::client();
    trusting.set_verify(false);
    EXPECT_FALSE(trusting.check_hostname());
    co_await expect_echo(port_of(server), with_ssl(trusting), "still serving");
    server.close();
    co_await server.wait_closed();
  }());
}

INSTANTIATE_TEST_SUITE_P(
    TlsTest, VerifyFailure,
    testing::Values(
        VerifyCase{"UnknownCa",
                   []() -> const tls_testing::CertFiles& { return certs().self_signed; },
                   "localhost", X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, "self-signed"},
        VerifyCase{"Expired", []() -> const tls_testing::CertFiles& { return certs().expired; },
                   "localhost", X509_V_ERR_CERT_HAS_EXPIRED, "certificate has expired"},
        VerifyCase{"WrongHost",
                   []() -> const tls_testing::CertFiles& { return certs().wrong_host; },
                   "localhost", X509_V_ERR_HOSTNAME_MISMATCH,
                   "hostname mismatch, certificate is not valid for 'localhost'"},
        VerifyCase{"WrongIp", []() -> const tls_testing::CertFiles& { return certs().wrong_host; },
                   "127.0.0.1", X509_V_ERR_IP_ADDRESS_MISMATCH,
                   "IP address mismatch, certificate is not valid for '127.0.0.1'"}),
    [](const testing::TestParamInfo<VerifyCase>& info) { return std::string(info.param.name); });

TEST(TlsTest, ClientCertificateRequiredByTheServer) {
  run([]() -> Coro<void> {
    tls::Context server_ctx = server_context();
    server_ctx.load_verify_locations(certs().ca_file);
    server_ctx.set_verify(true);
    std::string client_subject;
    ClientConnected who = [&client_subject](StreamReader reader,
                                            StreamWriter writer) -> Coro<void> {
      auto cert = std::any_cast<tls::PeerCertificate>(writer.get_extra_info("peercert"));
      client_subject = cert.subject;
      co_await handle_echo(reader, writer);
    };
    StreamOptions server_options = with_ssl(server_ctx);
    Server server = co_await start_server(who, "127.0.0.1", 0, server_options);

    // Without a certificate: TLS 1.3 tells the client on its first read.
    StreamOptions anonymous = with_ssl(client_context());
    anonymous.server_hostname = "localhost";
    bool refused = false;
    try {
      auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(server), anonymous);
      writer.write("let me in");
      co_await reader.read(100);
    } catch (const tls::SSLError& e) {
      refused = true;
      EXPECT_NE(std::string(e.what()).find("certificate required"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(refused);

    tls::Context with_cert = client_context();
    with_cert.load_cert_chain(certs().client.cert, certs().client.key);
    StreamOptions identified = with_ssl(with_cert);
    identified.server_hostname = "localhost";
    auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(server), identified);
    writer.write("it's me");
    EXPECT_EQ(co_await reader.read(100), "it's me");
    EXPECT_EQ(client_subject, "CN=asyncio test client");
    writer.close();
    co_await writer.wait_closed();
    server.close();
    co_await server.wait_closed();
  }());
}

// As getpeercert(): a certificate nobody verified is not an identity.
TEST(TlsTest, PeercertOnlyWhenVerified) {
  run([]() -> Coro<void> {
    // A server that does not verify clients does not ask for their
    // certificates either: it sees none.
    std::any server_saw = std::string("not set");
    ClientConnected record = [&server_saw](StreamReader reader, StreamWriter writer) -> Coro<void> {
      server_saw = writer.get_extra_info("peercert");
      co_await handle_echo(reader, writer);
    };
    StreamOptions server_options = with_ssl(server_context());
    Server server = co_await start_server(record, "127.0.0.1", 0, server_options);
    tls::Context with_cert = client_context();
    with_cert.load_cert_chain(certs().client.cert, certs().client.key);
    co_await expect_echo(port_of(server), with_ssl(with_cert), "unverified client");
    EXPECT_FALSE(server_saw.has_value());

    // A client that does not verify the server still receives its
    // certificate: it must not be presented as the peer's.
    tls::Context trusting = tls::Context::client();
    trusting.set_verify(false);
    auto [reader, writer] =
        co_await open_connection("127.0.0.1", port_of(server), with_ssl(trusting));
    EXPECT_FALSE(writer.get_extra_info("peercert").has_value());
    EXPECT_TRUE(writer.get_extra_info("cipher").has_value());
    writer.write("unverified server");
    EXPECT_EQ(co_await reader.read(100), "unverified server");
    writer.close();
    co_await writer.wait_closed();
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(TlsTest, PemStringsInsteadOfFiles) {
  run([]() -> Coro<void> {
    tls::Context server_ctx = tls::Context::server(certs().server.cert, certs().server.key);
    server_ctx.load_cert_chain_data(certs().server_pem_chain, certs().server_pem_key);
    StreamOptions server_options = with_ssl(server_ctx);
    Server server = co_await start_server(handle_echo, "127.0.0.1", 0, server_options);
    tls::Context client_ctx = tls::Context::client();
    client_ctx.load_verify_data(certs().ca_pem);
    co_await expect_echo(port_of(server), with_ssl(client_ctx), "pem");
    server.close();
    co_await server.wait_closed();
  }());
  EXPECT_THROW(tls::Context::server("/nonexistent.pem", "/nonexistent.key"), tls::SSLError);
  tls::Context ctx = tls::Context::client();
  EXPECT_THROW(ctx.load_verify_data("not a certificate"), tls::SSLError);
  EXPECT_THROW(ctx.set_alpn_protocols({""}), std::invalid_argument);
}

TEST(TlsTest, MisuseIsRefusedUpFront) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    ServerOptions with_client_ctx;
    with_client_ctx.ssl = client_context();
    bool refused = false;
    try {
      co_await create_server(
          loop, [] { return std::make_shared<Protocol>(); }, "127.0.0.1", 0, with_client_ctx);
    } catch (const std::invalid_argument&) {
      refused = true;
    }
    EXPECT_TRUE(refused);
    StreamOptions hostname_without_ssl;
    hostname_without_ssl.server_hostname = "localhost";
    refused = false;
    try {
      co_await open_connection("127.0.0.1", 1, hostname_without_ssl);
    } catch (const std::invalid_argument&) {
      refused = true;
    }
    EXPECT_TRUE(refused);
  }());
}

TEST(TlsTest, HandshakeTimeout) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    // A server that accepts and never answers.
    Server silent = co_await create_server(
        loop, [] { return std::make_shared<Protocol>(); }, "127.0.0.1", 0);
    StreamOptions options = with_ssl(client_context());
    options.ssl_handshake_timeout = 50ms;
    bool timed_out = false;
    try {
      co_await open_connection("127.0.0.1", port_of(silent), options);
    } catch (const std::system_error& e) {
      timed_out = true;
      EXPECT_EQ(e.code().value(), ECONNABORTED);
      EXPECT_NE(std::string(e.what()).find("SSL handshake is taking longer"), std::string::npos);
    }
    EXPECT_TRUE(timed_out);
    silent.close();
    co_await silent.wait_closed();
  }());
}

// What awaiting `operation` threw, if it was std::invalid_argument.
template <class T>
Coro<std::string> invalid_argument_from(Coro<T> operation) {
  try {
    co_await std::move(operation);
  } catch (const std::invalid_argument& e) {
    co_return e.what();
  } catch (const std::exception& e) {
    co_return std::string("not std::invalid_argument: ") + e.what();
  }
  co_return "nothing thrown";
}

TEST(TlsTest, TimeoutsThatAreNotPositiveAreRefusedUpFront) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    auto plain_factory = [] { return std::make_shared<Protocol>(); };
    const std::chrono::duration<double> bad_values[] = {
        0s, -1s, std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN())};
    for (bool handshake : {true, false}) {
      const std::string name = handshake ? "ssl_handshake_timeout" : "ssl_shutdown_timeout";
      for (std::chrono::duration<double> bad : bad_values) {
        SCOPED_TRACE(name + " = " + std::to_string(bad.count()));
        // Port 1 has no listener: had the connection been tried, it would
        // have been refused with a std::system_error instead.
        ConnectOptions connect;
        connect.ssl = client_context();
        (handshake ? connect.ssl_handshake_timeout : connect.ssl_shutdown_timeout) = bad;
        std::string error = co_await invalid_argument_from(
            create_connection(loop, plain_factory, "127.0.0.1", 1, connect));
        EXPECT_NE(error.find(name + " should be a positive number"), std::string::npos) << error;

        ServerOptions serve;
        serve.ssl = server_context();
        (handshake ? serve.ssl_handshake_timeout : serve.ssl_shutdown_timeout) = bad;
        error = co_await invalid_argument_from(
            create_server(loop, plain_factory, "127.0.0.1", 0, serve));
        EXPECT_NE(error.find(name + " should be a positive number"), std::string::npos) << error;

        StreamOptions client_stream = with_ssl(client_context());
        (handshake ? client_stream.ssl_handshake_timeout : client_stream.ssl_shutdown_timeout) =
            bad;
        error = co_await invalid_argument_from(open_connection("127.0.0.1", 1, client_stream));
        EXPECT_NE(error.find(name + " should be a positive number"), std::string::npos) << error;

        StreamOptions server_stream = with_ssl(server_context());
        (handshake ? server_stream.ssl_handshake_timeout : server_stream.ssl_shutdown_timeout) =
            bad;
        error = co_await invalid_argument_from(
            start_server(handle_echo, "127.0.0.1", 0, server_stream));
        EXPECT_NE(error.find(name + " should be a positive number"), std::string::npos) << error;
      }
    }

    // start_tls refuses before touching the connection, which stays usable.
    Server echo = co_await start_server(handle_echo, "127.0.0.1", 0);
    auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(echo));
    TlsOptions zero_handshake;
    zero_handshake.server_hostname = "localhost";
    zero_handshake.ssl_handshake_timeout = 0s;
    std::string error = co_await invalid_argument_from(
        start_tls(loop, std::static_pointer_cast<Transport>(writer.transport().shared_from_this()),
                  std::make_shared<Protocol>(), client_context(), zero_handshake));
    EXPECT_NE(error.find("ssl_handshake_timeout should be a positive number, got 0"),
              std::string::npos)
        << error;
    TlsOptions nan_shutdown;
    nan_shutdown.server_hostname = "localhost";
    nan_shutdown.ssl_shutdown_timeout =
        std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN());
    error = co_await invalid_argument_from(writer.start_tls(client_context(), nan_shutdown));
    EXPECT_NE(error.find("ssl_shutdown_timeout should be a positive number"), std::string::npos)
        << error;
    EXPECT_FALSE(writer.is_closing());
    writer.write("still plaintext");
    EXPECT_EQ(co_await reader.read(100), "still plaintext");
    writer.close();
    co_await writer.wait_closed();
    echo.close();
    co_await echo.wait_closed();
  }());
}

TEST(TlsTest, TimeoutsWithoutSslAreRefused) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    auto plain_factory = [] { return std::make_shared<Protocol>(); };
    ConnectOptions connect;
    connect.ssl_handshake_timeout = 5s;
    std::string error = co_await invalid_argument_from(
        create_connection(loop, plain_factory, "127.0.0.1", 1, connect));
    EXPECT_NE(error.find("ssl_handshake_timeout is only meaningful with ssl"), std::string::npos)
        << error;
    ServerOptions serve;
    serve.ssl_shutdown_timeout = 5s;
    error =
        co_await invalid_argument_from(create_server(loop, plain_factory, "127.0.0.1", 0, serve));
    EXPECT_NE(error.find("ssl_shutdown_timeout is only meaningful with ssl"), std::string::npos)
        << error;
    StreamOptions stream;
    stream.ssl_handshake_timeout = 5s;
    error = co_await invalid_argument_from(open_connection("127.0.0.1", 1, stream));
    EXPECT_NE(error.find("ssl_handshake_timeout is only meaningful with ssl"), std::string::npos)
        << error;
    error = co_await invalid_argument_from(start_server(handle_echo, "127.0.0.1", 0, stream));
    EXPECT_NE(error.find("ssl_handshake_timeout is only meaningful with ssl"), std::string::npos)
        << error;
  }());
}

// A plaintext server that answers anything with an HTTP error, then closes.
class HttpErrorProtocol : public Protocol {
 public:
  void connection_made(std::shared_ptr<BaseTransport> t) override {
    auto transport = std::static_pointer_cast<Transport>(t);
    transport->write("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    transport->close();
  }
};

TEST(TlsTest, PlaintextServerGivesSslError) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    Server http = co_await create_server(
        loop, [] { return std::make_shared<HttpErrorProtocol>(); }, "127.0.0.1", 0);
    StreamOptions options = with_ssl(client_context());
    bool failed = false;
    try {
      co_await open_connection("127.0.0.1", port_of(http), options);
    } catch (const tls::SSLError& e) {
      failed = true;
      EXPECT_NE(std::string(e.what()).find("wrong version number"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(failed);
    // A server that closes at once, mid-handshake from the client's view.
    Server rude = co_await create_server(
        loop,
        [] {
          struct Closer : Protocol {
            void connection_made(std::shared_ptr<BaseTransport> t) override { t->close(); }
          };
          return std::make_shared<Closer>();
        },
        "127.0.0.1", 0);
    failed = false;
    try {
      co_await open_connection("127.0.0.1", port_of(rude), options);
    } catch (const std::system_error& e) {
      failed = true;
      EXPECT_EQ(e.code().value(), ECONNRESET) << e.what();
    }
    EXPECT_TRUE(failed);
    http.close();
    rude.close();
    co_await http.wait_closed();
    co_await rude.wait_closed();
  }());
}

TEST(TlsTest, GarbageAndDroppedHandshakesDoNotHurtTheServer) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    std::vector<ExceptionContext> reports;
    loop.set_exception_handler(
        [&reports](EventLoop&, const ExceptionContext& context) { reports.push_back(context); });
    loop.set_debug(true);  // handshake failures are reported in debug mode only
    StreamOptions server_options = with_ssl(server_context());
    Server server = co_await start_server(handle_echo, "127.0.0.1", 0, server_options);

    // Plain HTTP at a TLS port: the server closes (OpenSSL sends no alert for
    // a record it cannot parse at all).
    {
      auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(server));
      writer.write("GET / HTTP/1.0\r\n\r\n");
      std::string answer = co_await reader.read();
      EXPECT_TRUE(answer.empty() || answer[0] == '\x15') << "nothing, or a TLS alert record";
      writer.close();
      co_await writer.wait_closed();
    }
    // The first bytes of a ClientHello, then the client goes away.
    {
      auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(server));
      writer.write(std::string("\x16\x03\x01\x02\x00\x01", 6));
      writer.close();
      co_await writer.wait_closed();
    }
    // A real client is still served.
    co_await expect_echo(port_of(server), with_ssl(client_context()), "after the garbage");
    server.close();
    co_await server.wait_closed();  // every connection is gone: nothing leaked
    // (Debug mode also reports slow callbacks: only the TLS reports count.)
    int handshake_reports = 0;
    for (const ExceptionContext& report : reports) {
      if (report.message != "SSL handshake failed") continue;
      ++handshake_reports;
      bool is_tls_error = false;
      try {
        if (report.exception) std::rethrow_exception(report.exception);
      } catch (const tls::SSLError&) {
        is_tls_error = true;
      } catch (const std::system_error&) {
        is_tls_error = true;  // the peer went away mid-handshake
      } catch (...) {
      }
      EXPECT_TRUE(is_tls_error);
    }
    EXPECT_EQ(handshake_reports, 2);
    loop.set_debug(false);
  }());
}

TEST(TlsTest, StartTlsAfterPlaintextGreeting) {
  run([]() -> Coro<void> {
    tls::Context server_ctx = server_context();
    ClientConnected starttls = [server_ctx](StreamReader reader,
                                            StreamWriter writer) -> Coro<void> {
      writer.write("220 hello, plaintext\n");
      EXPECT_EQ(co_await reader.readline(), "STARTTLS\n");
      writer.write("220 go ahead\n");
      co_await writer.start_tls(server_ctx);
      EXPECT_TRUE(writer.get_extra_info("cipher").has_value());
      std::string line = co_await reader.readline();
      writer.write("secret echo: " + line);
      co_await writer.drain();
      writer.close();
    };
    Server server = co_await start_server(starttls, "127.0.0.1", 0);
    auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(server));
    EXPECT_EQ(co_await reader.readline(), "220 hello, plaintext\n");
    EXPECT_FALSE(writer.get_extra_info("cipher").has_value());
    writer.write("STARTTLS\n");
    EXPECT_EQ(co_await reader.readline(), "220 go ahead\n");
    TlsOptions options;
    options.server_hostname = "localhost";
    StreamWriter copy = writer;  // copies see the upgrade too
    co_await writer.start_tls(client_context(), options);
    auto cert = std::any_cast<tls::PeerCertificate>(copy.get_extra_info("peercert"));
    EXPECT_EQ(cert.subject, "CN=localhost");
    copy.write("swordfish\n");
    EXPECT_EQ(co_await reader.readline(), "secret echo: swordfish\n");
    EXPECT_EQ(co_await reader.read(), "");
    writer.close();
    co_await writer.wait_closed();
    server.close();
    co_await server.wait_closed();
  }());
}

// What start_tls threw: the refusal, or a description of anything else.
Coro<std::string> start_tls_refusal(StreamWriter writer, tls::Context context, TlsOptions options) {
  try {
    co_await writer.start_tls(std::move(context), std::move(options));
  } catch (const std::runtime_error& e) {
    co_return e.what();
  }
  co_return "upgraded";
}

// Plaintext that came in behind the STARTTLS command or answer (CVE-2011-0411)
// must not be read afterwards as if it had come through TLS.
TEST(TlsTest, StartTlsRefusesPlaintextBufferedBeforeTheUpgrade) {
  run([]() -> Coro<void> {
    // Server side: the client's command and injected lines in one segment.
    Future<std::string> server_outcome = create_future<std::string>(get_running_loop());
    tls::Context server_ctx = server_context();
    ClientConnected injected_into_server =
        [server_ctx, server_outcome](StreamReader reader, StreamWriter writer) -> Coro<void> {
      Future<std::string> outcome = server_outcome;
      EXPECT_EQ(co_await reader.readline(), "STARTTLS\n");
      writer.write("220 go ahead\n");
      TlsOptions options;
      options.ssl_handshake_timeout = 10s;  // bounds the wait if the upgrade goes ahead
      outcome.set_result(co_await start_tls_refusal(writer, server_ctx, options));
      writer.close();
    };
    Server server = co_await start_server(injected_into_server, "127.0.0.1", 0);
    {
      auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(server));
      writer.write("STARTTLS\nMAIL FROM:<injected>\n");
      std::string error = co_await server_outcome;
      EXPECT_NE(error.find("plaintext"), std::string::npos) << error;
      writer.close();
      co_await writer.wait_closed();
    }
    server.close();
    co_await server.wait_closed();

    // Client side: the server's answer and injected lines in one segment.
    ClientConnected injecting_server = [](StreamReader reader, StreamWriter writer) -> Coro<void> {
      co_await reader.readline();
      writer.write("220 go ahead\n250 injected answer\n");
      co_await reader.read();
      writer.close();
    };
    Server evil = co_await start_server(injecting_server, "127.0.0.1", 0);
    auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(evil));
    writer.write("STARTTLS\n");
    EXPECT_EQ(co_await reader.readline(), "220 go ahead\n");
    TlsOptions options;
    options.server_hostname = "localhost";
    options.ssl_handshake_timeout = 10s;
    std::string error = co_await start_tls_refusal(writer, client_context(), options);
    EXPECT_NE(error.find("plaintext"), std::string::npos) << error;
    EXPECT_FALSE(writer.get_extra_info("cipher").has_value()) << "still the plaintext transport";
    writer.close();
    co_await writer.wait_closed();
    evil.close();
    co_await evil.wait_closed();
  }());
}

TEST(TlsTest, StartTlsFailureClosesAndThrows) {
  run([]() -> Coro<void> {
    ClientConnected plaintext_only = [](StreamReader reader, StreamWriter writer) -> Coro<void> {
      co_await reader.readline();
      writer.write("not TLS at all, sorry\n");
      co_await writer.drain();
      writer.close();
    };
    Server server = co_await start_server(plaintext_only, "127.0.0.1", 0);
    auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(server));
    writer.write("STARTTLS\n");
    TlsOptions options;
    options.server_hostname = "localhost";
    bool failed = false;
    try {
      co_await writer.start_tls(client_context(), options);
    } catch (const tls::SSLError&) {
      failed = true;
    }
    EXPECT_TRUE(failed);
    EXPECT_TRUE(writer.is_closing());
    bool read_failed = false;
    try {
      co_await reader.read();
    } catch (const tls::SSLError&) {
      read_failed = true;  // the reader learns what ended the connection
    }
    EXPECT_TRUE(read_failed);
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(TlsTest, FiveHundredConcurrentConnections) {
  run([]() -> Coro<void> {
    StreamOptions server_options = with_ssl(server_context());
    server_options.backlog = 512;
    Server server = co_await start_server(handle_echo, "127.0.0.1", 0, server_options);
    const uint16_t port = port_of(server);
    tls::Context client_ctx = client_context();
    auto one = [port, client_ctx](int i) -> Coro<bool> {
      StreamOptions options = with_ssl(client_ctx);
      options.server_hostname = "localhost";
      auto [reader, writer] = co_await open_connection("127.0.0.1", port, options);
      std::string message = "client " + std::to_string(i);
      writer.write(message);
      std::string echoed = co_await reader.read(100);
      writer.close();
      co_await writer.wait_closed();
      co_return echoed == message;
    };
    std::vector<Coro<bool>> clients;
    for (int i = 0; i < 500; ++i) clients.push_back(one(i));
    std::vector<bool> results = co_await gather(std::move(clients));
    EXPECT_EQ(std::count(results.begin(), results.end(), true), 500);
    server.close();
    co_await server.wait_closed();
  }());
}

char pattern_byte(size_t i) { return static_cast<char>((i * 131 + (i >> 12)) & 0xff); }

constexpr size_t kTotal = 64 << 20;
constexpr size_t kChunk = 1 << 20;

TEST(TlsTest, SixtyFourMebibytesByteExactWithBackpressure) {
  run([]() -> Coro<void> {
    // The server echoes what it reads, waiting for its writes to drain.
    ClientConnected echo = [](StreamReader reader, StreamWriter writer) -> Coro<void> {
      size_t remaining = kTotal;
      while (remaining > 0) {
        std::string data = co_await reader.read(static_cast<ssize_t>(std::min(remaining, kChunk)));
        if (data.empty()) break;
        remaining -= data.size();
        writer.write(data);
        co_await writer.drain();
      }
      writer.close();
    };
    StreamOptions server_options = with_ssl(server_context());
    Server server = co_await start_server(echo, "127.0.0.1", 0, server_options);
    StreamOptions client_options = with_ssl(client_context());
    auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(server), client_options);
    const auto high = writer.transport().get_write_buffer_limits().second;
    auto send = [](StreamWriter w, size_t high_watermark) -> Coro<size_t> {
      size_t over_high_after_drain = 0;
      std::string chunk(kChunk, '\0');
      for (size_t offset = 0; offset < kTotal; offset += kChunk) {
        for (size_t i = 0; i < kChunk; ++i) chunk[i] = pattern_byte(offset + i);
        w.write(chunk);
        co_await w.drain();
        if (w.transport().get_write_buffer_size() > high_watermark) ++over_high_after_drain;
      }
      co_return over_high_after_drain;
    };
    Task<size_t> sender = create_task(send(writer, high));
    size_t received = 0;
    size_t mismatches = 0;
    while (received < kTotal) {
      std::string data = co_await reader.read(256 * 1024);
      if (data.empty()) break;
      for (size_t i = 0; i < data.size(); ++i) {
        if (data[i] != pattern_byte(received + i)) ++mismatches;
      }
      received += data.size();
    }
    EXPECT_EQ(received, kTotal);
    EXPECT_EQ(mismatches, 0u);
    EXPECT_EQ(co_await sender, 0u) << "drain() returned above the high watermark";
    EXPECT_EQ(co_await reader.read(), "");
    writer.close();
    co_await writer.wait_closed();
    server.close();
    co_await server.wait_closed();
  }());
}

constexpr size_t kFileSize = (3 << 20) + 123;

TEST(TlsTest, SendfileFallsBackToWritesOverTls) {
  std::string path = std::string(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp") +
                     "/sendfile_over_tls.bin";
  {
    std::string contents(kFileSize, '\0');
    for (size_t i = 0; i < kFileSize; ++i) contents[i] = pattern_byte(i);
    FILE* f = fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(fwrite(contents.data(), 1, contents.size(), f), contents.size());
    fclose(f);
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  run([fd]() -> Coro<void> {
    ClientConnected check = [](StreamReader reader, StreamWriter writer) -> Coro<void> {
      std::string data = co_await reader.readexactly(kFileSize);
      size_t mismatches = 0;
      for (size_t i = 0; i < data.size(); ++i) mismatches += data[i] != pattern_byte(i);
      writer.write(mismatches == 0 ? "intact\n" : "corrupt\n");
      co_await writer.drain();
      writer.close();
    };
    StreamOptions server_options = with_ssl(server_context());
    Server server = co_await start_server(check, "127.0.0.1", 0, server_options);
    StreamOptions client_options = with_ssl(client_context());
    auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(server), client_options);
    bool refused = false;
    try {
      co_await sendfile(get_running_loop(), writer.transport(), fd, 0, std::nullopt, false);
    } catch (const std::runtime_error&) {
      refused = true;  // no socket to hand to sendfile(2) under TLS
    }
    EXPECT_TRUE(refused);
    size_t sent = co_await sendfile(get_running_loop(), writer.transport(), fd);
    EXPECT_EQ(sent, kFileSize);
    EXPECT_EQ(co_await reader.readline(), "intact\n");
    EXPECT_EQ(co_await reader.read(), "");
    writer.close();
    co_await writer.wait_closed();
    server.close();
    co_await server.wait_closed();
  }());
  ::close(fd);
  ::unlink(path.c_str());
}

// A buffered protocol reading TLS plaintext straight into its own memory,
// pausing and resuming reading as it goes.
class SlowBufferedReader : public BufferedProtocol {
 public:
  explicit SlowBufferedReader(EventLoop& loop) : loop_(loop), done(create_future<void>(loop)) {}
  void connection_made(std::shared_ptr<BaseTransport> t) override {
    transport = std::static_pointer_cast<Transport>(t);
  }
  std::span<char> get_buffer(size_t) override { return std::span<char>(buf_, sizeof(buf_)); }
  void buffer_updated(size_t n) override {
    received.append(buf_, n);
    ++updates;
    if (!transport->is_reading()) return;
    transport->pause_reading();
    ++pauses;
    loop_.call_soon([t = transport] { t->resume_reading(); });
  }
  bool eof_received() override { return false; }
  void connection_lost(std::exception_ptr) override {
    if (!done.done()) done.set_result();
  }
  std::shared_ptr<Transport> transport;
  std::string received;
  int updates = 0;
  int pauses = 0;

 private:
  EventLoop& loop_;
  char buf_[1000];

 public:
  Future<void> done;
};

TEST(TlsTest, BufferedProtocolWithPausedReading) {
  run([]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    std::string payload(100000, 'x');
    for (size_t i = 0; i < payload.size(); ++i) payload[i] = pattern_byte(i);
    ClientConnected send_and_close = [&payload](StreamReader, StreamWriter writer) -> Coro<void> {
      writer.write(payload);
      co_await writer.drain();
      writer.close();
    };
    StreamOptions server_options = with_ssl(server_context());
    Server server = co_await start_server(send_and_close, "127.0.0.1", 0, server_options);
    ConnectOptions options;
    options.ssl = client_context();
    options.server_hostname = "localhost";
    auto factory = [&loop] { return std::make_shared<SlowBufferedReader>(loop); };
    auto [transport, reader] =
        co_await create_connection(loop, factory, "127.0.0.1", port_of(server), options);
    co_await reader->done;
    EXPECT_EQ(reader->received, payload);
    EXPECT_GE(reader->updates, 100) << "at most 1000 bytes per buffer";
    EXPECT_GT(reader->pauses, 0);
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(TlsTest, LoopClosedWithOpenTlsConnectionsLeaksNothing) {
  // Runs under ASan's leak checker: the open session, its SSL object and the
  // protocols must all be released when the loop goes away.
  std::vector<std::string> reports;
  run([](std::vector<std::string>& reports) -> Coro<void> {
    get_running_loop().set_exception_handler(
        [&reports](EventLoop&, const ExceptionContext& ctx) { reports.push_back(ctx.message); });
    StreamOptions server_options = with_ssl(server_context());
    ClientConnected hold = [](StreamReader reader, StreamWriter) -> Coro<void> {
      co_await reader.read();
    };
    Server server = co_await start_server(hold, "127.0.0.1", 0, server_options);
    StreamOptions client_options = with_ssl(client_context());
    auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(server), client_options);
    writer.write("left open");
    co_await writer.drain();
  }(reports));
  // The server left open is reported as unclosed (Python's ResourceWarning);
  // so would a connection be, were it still open when the loop closes.
  size_t servers = 0;
  for (const std::string& r : reports) {
    EXPECT_EQ(r.rfind("unclosed ", 0), 0u) << r;
    if (r.rfind("unclosed Server", 0) == 0) ++servers;
  }
  EXPECT_EQ(servers, 1u);
}

}  // namespace
}  // namespace asyncio
