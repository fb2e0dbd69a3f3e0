// //tls against TLS peers we did not write: the openssl command line tool
// (s_client, s_server) and CPython's ssl module, run as child processes
// through //subprocess. Every step that waits on a child is bounded (kStep),
// readiness is always an event (a line on a pipe), never a sleep, and every
// child is awaited: none is left behind, running or zombie.
#include <dirent.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <unistd.h>

#include <any>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <optional>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "futures/futures.h"
#include "gtest/gtest.h"
#include "streams/streams.h"
#include "subprocess/subprocess.h"
#include "testing/async_test_util.h"
#include "tls/testing/certs.h"
#include "tls/tls.h"

namespace asyncio {
namespace {

using testing_util::port_of;

using namespace std::chrono_literals;

// Generous: a hang fails the test instead of blocking it, and a slow
// sanitizer build on a busy machine still passes.
constexpr auto kStep = 20s;

// Awaits `step` for at most kStep; a timeout names the step.
template <class T>
Coro<T> within(Coro<T> step, std::string what) {
  try {
    co_return co_await wait_for(std::move(step), kStep);
  } catch (const TimeoutError&) {
    throw std::runtime_error("timed out (" + std::to_string(kStep.count()) + " s) waiting for " +
                             what);
  }
}

constexpr char kOpenssl[] = "/usr/bin/openssl";
constexpr char kPython[] = "/usr/bin/python3";

const tls_testing::TestCerts& certs() { return tls_testing::test_certs(); }

// The processes whose parent we are (zombies included).
std::vector<int> children() {
  std::vector<int> out;
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return out;
  const int me = ::getpid();
  while (dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    std::ifstream file(std::string("/proc/") + entry->d_name + "/stat");
    std::string stat((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    size_t paren = stat.rfind(')');
    if (paren == std::string::npos || paren + 2 > stat.size()) continue;
    std::istringstream rest(stat.substr(paren + 2));
    char state = 0;
    int ppid = 0;
    rest >> state >> ppid;
    if (ppid == me) out.push_back(std::stoi(entry->d_name));
  }
  ::closedir(dir);
  return out;
}

// After each test: every child was awaited.
class NoChildLeft : public testing::EmptyTestEventListener {
  void OnTestEnd(const testing::TestInfo&) override {
    EXPECT_EQ(children(), std::vector<int>()) << "child processes left behind";
  }
};
const bool kListening = [] {
  testing::UnitTest::GetInstance()->listeners().Append(new NoChildLeft);
  return true;
}();

SubprocessOptions pipes(subprocess::Stdio stderr_to = subprocess::PIPE) {
  SubprocessOptions options;
  options.stdin_ = subprocess::PIPE;
  options.stdout_ = subprocess::PIPE;
  options.stderr_ = stderr_to;
  return options;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Reads lines until one starts with `prefix` and returns it; everything read
// is appended to `transcript`. EOF first is an error that shows the transcript.
Coro<std::string> line_starting_with(StreamReader reader, std::string prefix,
                                     std::string* transcript) {
  while (true) {
    std::string line = co_await reader.readline();
    if (line.empty()) {
      throw std::runtime_error("EOF before a line starting with '" + prefix + "'; read:\n" +
                               *transcript);
    }
    *transcript += line;
    if (line.starts_with(prefix)) co_return line;
  }
}

// TLS 1.3 KeyUpdate messages through one of our connections, seen with
// OpenSSL's message callback on its "ssl_object".
struct KeyUpdates {
  int received = 0;
  int sent = 0;
  std::optional<Future<void>> first_received;  // set, if given, on the first one
};

void count_key_update(int write_p, int /*version*/, int content_type, const void* buf, size_t len,
                      SSL* /*ssl*/, void* arg) {
  if (content_type != SSL3_RT_HANDSHAKE || len == 0 ||
      static_cast<const unsigned char*>(buf)[0] != SSL3_MT_KEY_UPDATE) {
    return;
  }
  auto* counts = static_cast<KeyUpdates*>(arg);
  if (write_p) {
    ++counts->sent;
    return;
  }
  ++counts->received;
  if (counts->first_received && !counts->first_received->done()) {
    counts->first_received->set_result();
  }
}

// `counts` must outlive the connection's use of OpenSSL.
void watch_key_updates(const StreamWriter& writer, KeyUpdates* counts) {
  SSL* ssl = std::any_cast<SSL*>(writer.get_extra_info("ssl_object"));
  SSL_set_msg_callback_arg(ssl, counts);
  SSL_set_msg_callback(ssl, count_key_update);
}

Coro<void> until_done(Future<void> future) { co_await future; }

// What our echo server saw.
struct Seen {
  int connections = 0;
  std::vector<std::string> lines;
  std::vector<std::string> alpn;           // per connection, "" for none
  std::vector<std::string> peer_subjects;  // per connection, "" for none
  std::vector<std::string> ciphers;        // "name protocol"
  std::vector<std::string> errors;
  KeyUpdates key_updates;  // over all connections
};

// Echoes lines until EOF; records what the connection negotiated.
Coro<void> echo_lines(Seen* seen, StreamReader reader, StreamWriter writer) {
  ++seen->connections;
  std::any alpn = writer.get_extra_info("alpn_protocol");
  seen->alpn.push_back(alpn.has_value() ? std::any_cast<std::string>(alpn) : "");
  std::any cert = writer.get_extra_info("peercert");
  seen->peer_subjects.push_back(cert.has_value() ? std::any_cast<tls::PeerCertificate>(cert).subject
                                                 : "");
  auto cipher = std::any_cast<tls::CipherInfo>(writer.get_extra_info("cipher"));
  seen->ciphers.push_back(cipher.name + " " + cipher.protocol);
  watch_key_updates(writer, &seen->key_updates);
  try {
    while (true) {
      std::string line = co_await reader.readline();
      if (line.empty()) break;
      seen->lines.push_back(line);
      writer.write(line);
      co_await writer.drain();
    }
  } catch (const std::exception& e) {
    seen->errors.push_back(e.what());
  }
  writer.close();
}

Coro<Server> start_echo_server(tls::Context context, Seen* seen) {
  StreamOptions options;
  options.ssl = std::move(context);
  ClientConnected cb = [seen](StreamReader reader, StreamWriter writer) {
    return echo_lines(seen, std::move(reader), std::move(writer));
  };
  Server server = co_await start_server(cb, "127.0.0.1", 0, options);
  co_return server;
}

tls::Context our_server_context() {
  return tls::Context::server(certs().server.cert, certs().server.key);
}

tls::Context our_client_context() {
  tls::Context context = tls::Context::client();
  context.load_verify_locations(certs().ca_file);
  return context;
}

// Our client's stream options: TLS, trusting the test CA, checking "localhost".
StreamOptions our_client_options() {
  StreamOptions options;
  options.ssl = our_client_context();
  options.server_hostname = "localhost";
  return options;
}

Coro<void> close_server(Server& server) {
  server.close();
  co_await within(server.wait_closed(), "server.wait_closed()");
}

// ---------------------------------------------------------------------------
// 1. openssl s_client against our server

// Verifies our server against the CA and the name "localhost". Interactive
// commands (a line "K": TLS 1.3 key update, requesting the peer's) only when
// asked for.
std::vector<std::string> s_client_argv(uint16_t port, bool commands = false) {
  std::vector<std::string> argv = {kOpenssl, "s_client", "-connect",
                                   "127.0.0.1:" + std::to_string(port)};
  for (const char* arg : {"-CAfile", certs().ca_file.c_str(), "-verify_return_error", "-servername",
                          "localhost", "-verify_hostname", "localhost"}) {
    argv.push_back(arg);
  }
  if (!commands) argv.push_back("-nocommands");
  return argv;
}

class OpensslClient : public testing::TestWithParam<const char*> {};

// -brief: s_client prints a summary of the connection on stderr, and only
// what the server sends on stdout; EOF on its stdin closes the connection
// (close_notify) and it exits 0.
TEST_P(OpensslClient, EchoesThroughOurServerAndVerifiesIt) {
  const std::string version = GetParam();
  run([&version]() -> Coro<void> {
    Seen seen;
    Server server = co_await start_echo_server(our_server_context(), &seen);
    std::vector<std::string> argv = s_client_argv(port_of(server));
    argv.push_back("-brief");
    argv.push_back(version == "TLSv1.2" ? "-tls1_2" : "-tls1_3");
    Process client = co_await create_subprocess_exec(std::move(argv), pipes());

    client.stdin_->write("hello from s_client\n");
    EXPECT_EQ(co_await within(client.stdout_->readline(), "s_client's echo"),
              "hello from s_client\n");
    client.stdin_->write("and a second line\n");
    EXPECT_EQ(co_await within(client.stdout_->readline(), "s_client's second echo"),
              "and a second line\n");
    auto [out, err] = co_await within(client.communicate(), "s_client's exit");
    EXPECT_EQ(client.returncode(), 0) << err;
    EXPECT_EQ(out, "");
    EXPECT_TRUE(contains(err, "CONNECTION ESTABLISHED\n")) << err;
    EXPECT_TRUE(contains(err, "Protocol version: " + version + "\n")) << err;
    EXPECT_TRUE(contains(err, "Peer certificate: CN = localhost\n")) << err;
    EXPECT_TRUE(contains(err, "Verification: OK\n")) << err;
    EXPECT_TRUE(contains(err, "Verified peername: localhost\n")) << err;

    co_await close_server(server);
    EXPECT_EQ(seen.connections, 1);
    EXPECT_EQ(seen.lines,
              (std::vector<std::string>{"hello from s_client\n", "and a second line\n"}));
    EXPECT_EQ(seen.ciphers.size(), 1u);
    if (seen.ciphers.empty()) co_return;
    EXPECT_TRUE(seen.ciphers[0].ends_with(" " + version)) << seen.ciphers[0];
    EXPECT_TRUE(
        contains(err, "Ciphersuite: " + seen.ciphers[0].substr(0, seen.ciphers[0].find(' '))))
        << err << "\nours: " << seen.ciphers[0];
    EXPECT_EQ(seen.peer_subjects, std::vector<std::string>{""}) << "no client certificate";
    EXPECT_EQ(seen.errors, std::vector<std::string>());
  }());
}

INSTANTIATE_TEST_SUITE_P(TlsInterop, OpensslClient, testing::Values("TLSv1.3", "TLSv1.2"),
                         [](const testing::TestParamInfo<const char*>& info) {
                           return std::string(info.param) == "TLSv1.2" ? "Tls12" : "Tls13";
                         });

// A TLS 1.3 KeyUpdate from s_client that requests ours: our server must
// answer it (OpenSSL queues the answer while we read; we must send it) and
// both directions go on under the new keys.
TEST(TlsInterop, OpensslClientKeyUpdateThroughOurServer) {
  run([]() -> Coro<void> {
    Seen seen;
    Server server = co_await start_echo_server(our_server_context(), &seen);
    std::vector<std::string> argv = s_client_argv(port_of(server), /*commands=*/true);
    argv.push_back("-brief");
    Process client = co_await create_subprocess_exec(std::move(argv), pipes());

    client.stdin_->write("before the key update\n");
    EXPECT_EQ(co_await within(client.stdout_->readline(), "s_client's echo"),
              "before the key update\n");
    client.stdin_->write("K\n");
    std::string err_transcript;
    co_await within(line_starting_with(*client.stderr_, "KEYUPDATE", &err_transcript),
                    "s_client's KEYUPDATE");
    for (int i = 0; i < 3; ++i) {
      const std::string line = "after the key update " + std::to_string(i) + "\n";
      client.stdin_->write(line);
      EXPECT_EQ(co_await within(client.stdout_->readline(), "s_client's echo after KeyUpdate"),
                line);
    }
    auto [out, err] = co_await within(client.communicate(), "s_client's exit");
    err_transcript += err;
    EXPECT_EQ(client.returncode(), 0) << err_transcript;
    EXPECT_EQ(out, "");

    co_await close_server(server);
    EXPECT_EQ(seen.lines.size(), 4u);
    EXPECT_EQ(seen.key_updates.received, 1);
    EXPECT_EQ(seen.key_updates.sent, 1) << "the KeyUpdate s_client requested";
    EXPECT_EQ(seen.errors, std::vector<std::string>());
  }());
}

struct AlpnCase {
  const char* name;
  const char* offered;   // s_client -alpn
  const char* selected;  // "" for none
};

void PrintTo(const AlpnCase& c, std::ostream* os) { *os << c.name; }

class OpensslClientAlpn : public testing::TestWithParam<AlpnCase> {};

// Without -brief s_client prints the connection's details on stdout, among
// them "ALPN protocol: X" or "No ALPN negotiated", before what the server sends.
TEST_P(OpensslClientAlpn, OurServerSelectsByItsOwnPreference) {
  const AlpnCase& c = GetParam();
  run([&c]() -> Coro<void> {
    tls::Context context = our_server_context();
    context.set_alpn_protocols({"h2", "http/1.1"});
    Seen seen;
    Server server = co_await start_echo_server(context, &seen);
    std::vector<std::string> argv = s_client_argv(port_of(server));
    argv.push_back("-alpn");
    argv.push_back(c.offered);
    Process client = co_await create_subprocess_exec(std::move(argv), pipes());

    std::string transcript;
    const std::string expected = std::string(c.selected).empty()
                                     ? "No ALPN negotiated\n"
                                     : "ALPN protocol: " + std::string(c.selected) + "\n";
    const std::string alpn_prefix = std::string(c.selected).empty() ? "No ALPN" : "ALPN protocol:";
    EXPECT_EQ(co_await within(line_starting_with(*client.stdout_, alpn_prefix, &transcript),
                              "s_client's ALPN line"),
              expected);
    client.stdin_->write("alpn echo\n");
    EXPECT_EQ(co_await within(line_starting_with(*client.stdout_, "alpn echo", &transcript),
                              "s_client's echo"),
              "alpn echo\n");
    auto [out, err] = co_await within(client.communicate(), "s_client's exit");
    EXPECT_EQ(client.returncode(), 0) << transcript << out << err;
    EXPECT_TRUE(contains(transcript, "Verify return code: 0 (ok)\n")) << transcript;

    co_await close_server(server);
    EXPECT_EQ(seen.alpn, std::vector<std::string>{c.selected});
    EXPECT_EQ(seen.lines, std::vector<std::string>{"alpn echo\n"});
  }());
}

INSTANTIATE_TEST_SUITE_P(TlsInterop, OpensslClientAlpn,
                         testing::Values(AlpnCase{"ServerPrefersH2", "http/1.1,h2", "h2"},
                                         AlpnCase{"OnlyCommonOne", "spdy/1,http/1.1", "http/1.1"},
                                         AlpnCase{"NoOverlapNegotiatesNone", "spdy/3", ""}),
                         [](const testing::TestParamInfo<AlpnCase>& info) {
                           return std::string(info.param.name);
                         });

// ---------------------------------------------------------------------------
// 2. CPython's ssl module against our server

// argv: cafile port [certfile keyfile]. Sends a line, prints the echo and the
// connection's details, closes with close_notify (unwrap: it waits for ours).
constexpr char kPythonClient[] = R"py(
import socket, ssl, sys
cafile, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.create_default_context(cafile=cafile)
if len(sys.argv) > 3:
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
with socket.create_connection(('127.0.0.1', port), timeout=20) as sock:
    with ctx.wrap_socket(sock, server_hostname='localhost') as tls:
        print('version:', tls.version(), flush=True)
        name, protocol, bits = tls.cipher()
        print('cipher:', name, protocol, bits, flush=True)
        subject = dict(field[0] for field in tls.getpeercert()['subject'])
        print('peer:', subject['commonName'], flush=True)
        tls.sendall(b'hello from python\n')
        data = b''
        while not data.endswith(b'\n'):
            chunk = tls.recv(1024)
            if not chunk:
                break
            data += chunk
        print('echo:', data.decode(), end='', flush=True)
        tls.unwrap()
print('closed cleanly', flush=True)
)py";

TEST(TlsInterop, PythonClientThroughOurServer) {
  run([]() -> Coro<void> {
    Seen seen;
    Server server = co_await start_echo_server(our_server_context(), &seen);
    std::vector<std::string> argv = {kPython, "-c", kPythonClient, certs().ca_file,
                                     std::to_string(port_of(server))};
    Process client = co_await create_subprocess_exec(std::move(argv), pipes());
    auto [out, err] = co_await within(client.communicate(), "the Python client");
    EXPECT_EQ(client.returncode(), 0) << out << err;
    EXPECT_TRUE(contains(out, "version: TLSv1.3\n")) << out;
    EXPECT_TRUE(contains(out, "peer: localhost\n")) << out;
    EXPECT_TRUE(contains(out, "echo: hello from python\n")) << out;
    EXPECT_TRUE(contains(out, "closed cleanly\n")) << out << err;
    EXPECT_EQ(err, "");

    co_await close_server(server);
    EXPECT_EQ(seen.lines, std::vector<std::string>{"hello from python\n"});
    EXPECT_EQ(seen.ciphers.size(), 1u);
    if (seen.ciphers.empty()) co_return;
    // Python's cipher() and ours name the same suite and version.
    EXPECT_TRUE(contains(out, "cipher: " + seen.ciphers[0] + " ")) << out << seen.ciphers[0];
    EXPECT_EQ(seen.errors, std::vector<std::string>());
  }());
}

TEST(TlsInterop, PythonClientCertificateRequiredByOurServer) {
  run([]() -> Coro<void> {
    tls::Context context = our_server_context();
    context.load_verify_locations(certs().ca_file);
    context.set_verify(true);
    Seen seen;
    Server server = co_await start_echo_server(context, &seen);
    const std::string port = std::to_string(port_of(server));

    // With the client certificate: served, and we see who it is.
    std::vector<std::string> argv = {kPython,           "-c", kPythonClient,
                                     certs().ca_file,   port, certs().client.cert,
                                     certs().client.key};
    Process client = co_await create_subprocess_exec(std::move(argv), pipes());
    auto [out, err] = co_await within(client.communicate(), "the Python client");
    EXPECT_EQ(client.returncode(), 0) << out << err;
    EXPECT_TRUE(contains(out, "echo: hello from python\n")) << out << err;
    EXPECT_TRUE(contains(out, "closed cleanly\n")) << out << err;
    EXPECT_EQ(seen.peer_subjects, std::vector<std::string>{"CN=asyncio test client"});

    // Without: in TLS 1.3 the client's handshake completes, then our alert
    // ends the connection on its first read.
    std::vector<std::string> anonymous_argv = {kPython, "-c", kPythonClient, certs().ca_file, port};
    Process anonymous = co_await create_subprocess_exec(std::move(anonymous_argv), pipes());
    auto [anonymous_out, anonymous_err] =
        co_await within(anonymous.communicate(), "the anonymous Python client");
    EXPECT_EQ(anonymous.returncode(), 1) << anonymous_out << anonymous_err;
    EXPECT_FALSE(contains(anonymous_out, "echo:")) << anonymous_out;
    EXPECT_TRUE(contains(anonymous_err, "ssl.SSLError")) << anonymous_err;
    EXPECT_TRUE(contains(anonymous_err, "certificate required")) << anonymous_err;

    co_await close_server(server);
    EXPECT_EQ(seen.connections, 1) << "the anonymous client never got past the handshake";
    EXPECT_EQ(seen.lines, std::vector<std::string>{"hello from python\n"});
  }());
}

// argv: cafile port total. CPython's asyncio over its ssl module: sends
// `total` random bytes while reading the echo, compares digests.
constexpr char kPythonAsyncioClient[] = R"py(
import asyncio, hashlib, os, ssl, sys

async def main():
    cafile, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ctx = ssl.create_default_context(cafile=cafile)
    reader, writer = await asyncio.open_connection(
        '127.0.0.1', port, ssl=ctx, server_hostname='localhost')
    sent = hashlib.sha256()

    async def send():
        remaining = total
        while remaining:
            block = os.urandom(min(remaining, 100003))
            sent.update(block)
            writer.write(block)
            await writer.drain()
            remaining -= len(block)

    sender = asyncio.create_task(send())
    received, digest = 0, hashlib.sha256()
    while received < total:
        data = await reader.read(65536)
        if not data:
            break
        digest.update(data)
        received += len(data)
    await sender
    print('received:', received, flush=True)
    print('same bytes:', digest.hexdigest() == sent.hexdigest(), flush=True)
    writer.close()
    await writer.wait_closed()
    print('closed cleanly', flush=True)

asyncio.run(asyncio.wait_for(main(), 60))
)py";

// Echoes bytes as they come until EOF.
Coro<void> echo_bytes(StreamReader reader, StreamWriter writer) {
  while (true) {
    std::string data = co_await reader.read(64 * 1024);
    if (data.empty()) break;
    writer.write(data);
    co_await writer.drain();
  }
  writer.close();
}

// Many records each way, with flow control on both sides, against CPython's
// own TLS-over-transports (asyncio's SSLProtocol).
TEST(TlsInterop, PythonAsyncioClientSixteenMebibytesEchoed) {
  run([]() -> Coro<void> {
    StreamOptions options;
    options.ssl = our_server_context();
    Server server = co_await start_server(echo_bytes, "127.0.0.1", 0, options);
    constexpr size_t kTotal = 16 << 20;
    std::vector<std::string> argv = {kPython,
                                     "-c",
                                     kPythonAsyncioClient,
                                     certs().ca_file,
                                     std::to_string(port_of(server)),
                                     std::to_string(kTotal)};
    Process client = co_await create_subprocess_exec(std::move(argv), pipes());
    auto [out, err] = co_await within(client.communicate(), "the Python asyncio client");
    EXPECT_EQ(client.returncode(), 0) << out << err;
    EXPECT_EQ(out, "received: " + std::to_string(kTotal) + "\nsame bytes: True\nclosed cleanly\n")
        << err;
    EXPECT_EQ(err, "");
    co_await close_server(server);
  }());
}

// ---------------------------------------------------------------------------
// 3. Our client against openssl s_server

// s_server writes what it receives to stdout and sends what it reads on
// stdin (a line starting with Q or q is a command: quit). Its stdout is the
// pipe we read, stderr merged into it. With -accept HOST:0 it prints
// "ACCEPT HOST:PORT" once listening (not with -quiet or -brief). -naccept 1:
// it exits after one connection.
std::vector<std::string> s_server_argv(const tls_testing::CertFiles& files) {
  return {kOpenssl,   "s_server", "-accept", "127.0.0.1:0", "-cert",
          files.cert, "-key",     files.key, "-naccept",    "1"};
}

Coro<uint16_t> accept_port(Process& server, std::string* transcript) {
  std::string line = co_await line_starting_with(*server.stdout_, "ACCEPT ", transcript);
  co_return static_cast<uint16_t>(std::stoi(line.substr(line.rfind(':') + 1)));
}

TEST(TlsInterop, OurClientThroughOpensslServer) {
  run([]() -> Coro<void> {
    Process server =
        co_await create_subprocess_exec(s_server_argv(certs().server), pipes(subprocess::STDOUT));
    std::string transcript;
    const uint16_t port =
        co_await within(accept_port(server, &transcript), "s_server's ACCEPT line");
    EXPECT_TRUE(contains(transcript, "ACCEPT 127.0.0.1:")) << transcript;

    StreamOptions options = our_client_options();
    auto [reader, writer] =
        co_await within(open_connection("127.0.0.1", port, options), "the handshake with s_server");
    auto cert = std::any_cast<tls::PeerCertificate>(writer.get_extra_info("peercert"));
    EXPECT_EQ(cert.subject, "CN=localhost");
    auto cipher = std::any_cast<tls::CipherInfo>(writer.get_extra_info("cipher"));
    EXPECT_EQ(cipher.protocol, "TLSv1.3");

    writer.write("hello from asyncio\n");
    EXPECT_EQ(co_await within(line_starting_with(*server.stdout_, "hello from", &transcript),
                              "our line on s_server's stdout"),
              "hello from asyncio\n");
    EXPECT_TRUE(contains(transcript, "CIPHER is " + cipher.name + "\n")) << transcript;
    server.stdin_->write("hello from s_server\n");
    EXPECT_EQ(co_await within(reader.readline(), "s_server's line"), "hello from s_server\n");

    // A TLS 1.3 KeyUpdate from s_server that requests ours (its stdin line
    // "K"; what it prints about it is stdio-buffered, so we await the message
    // itself): our client answers it before its next data, and both
    // directions go on under the new keys.
    KeyUpdates key_updates;
    key_updates.first_received = create_future<void>(get_running_loop());
    watch_key_updates(writer, &key_updates);
    server.stdin_->write("K\n");
    co_await within(until_done(*key_updates.first_received), "s_server's KeyUpdate");
    writer.write("hello again from asyncio\n");
    EXPECT_EQ(co_await within(line_starting_with(*server.stdout_, "hello again", &transcript),
                              "our line after the KeyUpdate"),
              "hello again from asyncio\n");
    server.stdin_->write("hello again from s_server\n");
    EXPECT_EQ(co_await within(reader.readline(), "s_server's line after the KeyUpdate"),
              "hello again from s_server\n");
    EXPECT_EQ(key_updates.received, 1);
    EXPECT_EQ(key_updates.sent, 1) << "the KeyUpdate s_server requested";

    // Our close_notify ends s_server's session ("DONE"); it answers with its
    // own and, its one connection done, exits 0.
    writer.close();
    co_await within(writer.wait_closed(), "our close_notify and s_server's");
    EXPECT_EQ(co_await within(reader.read(), "EOF from s_server"), "");
    auto [out, err] = co_await within(server.communicate(), "s_server's exit");
    transcript += out;
    EXPECT_EQ(server.returncode(), 0) << transcript;
    EXPECT_TRUE(contains(transcript, "DONE\n")) << transcript;
    EXPECT_TRUE(contains(transcript, "CONNECTION CLOSED\n")) << transcript;
    EXPECT_TRUE(contains(transcript, "1 server accepts that finished")) << transcript;
  }());
}

// EOF on s_server's stdin makes it close the socket without close_notify (a
// "ragged EOF"): our client reads what came, then EOF, and closes cleanly,
// as CPython's asyncio does against the same server.
TEST(TlsInterop, OurClientTakesOpensslServersRaggedEofAsEof) {
  run([]() -> Coro<void> {
    Process server =
        co_await create_subprocess_exec(s_server_argv(certs().server), pipes(subprocess::STDOUT));
    std::string transcript;
    const uint16_t port =
        co_await within(accept_port(server, &transcript), "s_server's ACCEPT line");
    StreamOptions options = our_client_options();
    auto [reader, writer] =
        co_await within(open_connection("127.0.0.1", port, options), "the handshake with s_server");
    server.stdin_->write("last words\n");
    server.stdin_->close();
    EXPECT_EQ(co_await within(reader.readline(), "s_server's line"), "last words\n");
    EXPECT_EQ(co_await within(reader.read(), "EOF from s_server"), "");
    writer.close();
    co_await within(writer.wait_closed(), "the connection's end");
    auto [out, err] = co_await within(server.communicate(), "s_server's exit");
    transcript += out;
    EXPECT_EQ(server.returncode(), 0) << transcript;
    EXPECT_TRUE(contains(transcript, "DONE\n")) << transcript;
  }());
}

TEST(TlsInterop, OurClientRejectsOpensslServersExpiredCertificate) {
  run([]() -> Coro<void> {
    Process server =
        co_await create_subprocess_exec(s_server_argv(certs().expired), pipes(subprocess::STDOUT));
    std::string transcript;
    const uint16_t port =
        co_await within(accept_port(server, &transcript), "s_server's ACCEPT line");

    StreamOptions options = our_client_options();
    bool rejected = false;
    try {
      co_await within(open_connection("127.0.0.1", port, options), "the handshake with s_server");
    } catch (const tls::CertificateError& e) {
      rejected = true;
      EXPECT_EQ(e.verify_code(), X509_V_ERR_CERT_HAS_EXPIRED) << e.what();
      EXPECT_TRUE(contains(e.what(), "certificate has expired")) << e.what();
    }
    EXPECT_TRUE(rejected);

    // s_server got our alert, gave up on its one connection and exited.
    auto [out, err] = co_await within(server.communicate(), "s_server's exit");
    transcript += out;
    EXPECT_EQ(server.returncode(), 0) << transcript;
    EXPECT_TRUE(contains(transcript, "alert certificate expired")) << transcript;
    EXPECT_TRUE(contains(transcript, "0 server accepts that finished")) << transcript;
  }());
}

// ---------------------------------------------------------------------------
// 4. STARTTLS against a Python server

// argv: certfile keyfile. Prints its port, then speaks a plaintext greeting,
// waits for STARTTLS, answers, upgrades (server side) and echoes one line
// over TLS; it reports the SNI name it was sent and what it got.
constexpr char kPythonStartTlsServer[] = R"py(
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
def sni(sslobj, name, context):
    print('sni:', name, flush=True)
ctx.sni_callback = sni

def plaintext_line(sock):
    # Byte by byte: nothing of the TLS handshake may be read as plaintext.
    line = b''
    while not line.endswith(b'\n'):
        byte = sock.recv(1)
        if not byte:
            break
        line += byte
    return line

with socket.create_server(('127.0.0.1', 0)) as listener:
    listener.settimeout(20)
    print(listener.getsockname()[1], flush=True)
    conn, _ = listener.accept()
    conn.settimeout(20)
    conn.sendall(b'220 python ready\n')
    command = plaintext_line(conn)
    if command != b'STARTTLS\n':
        conn.sendall(b'500 expected STARTTLS\n')
        sys.exit('unexpected command %r' % command)
    conn.sendall(b'220 go ahead\n')
    tls = ctx.wrap_socket(conn, server_side=True)
    print('tls:', tls.version(), flush=True)
    data = b''
    while not data.endswith(b'\n'):
        chunk = tls.recv(1024)
        if not chunk:
            break
        data += chunk
    print('got:', data.decode(), end='', flush=True)
    tls.sendall(b'python echo: ' + data)
    tls.unwrap().close()
print('closed cleanly', flush=True)
)py";

TEST(TlsInterop, StartTlsWithPythonServer) {
  run([]() -> Coro<void> {
    std::vector<std::string> argv = {kPython, "-c", kPythonStartTlsServer, certs().server.cert,
                                     certs().server.key};
    Process server = co_await create_subprocess_exec(std::move(argv), pipes());
    std::string port_line = co_await within(server.stdout_->readline(), "the Python server's port");
    if (port_line.empty()) throw std::runtime_error("the Python server died before listening");
    const uint16_t port = static_cast<uint16_t>(std::stoi(port_line));

    auto [reader, writer] =
        co_await within(open_connection("127.0.0.1", port), "connecting to the Python server");
    EXPECT_EQ(co_await within(reader.readline(), "the greeting"), "220 python ready\n");
    EXPECT_FALSE(writer.get_extra_info("cipher").has_value());
    writer.write("STARTTLS\n");
    EXPECT_EQ(co_await within(reader.readline(), "the answer to STARTTLS"), "220 go ahead\n");
    TlsOptions tls_options;
    tls_options.server_hostname = "localhost";
    co_await within(writer.start_tls(our_client_context(), tls_options), "start_tls");
    auto cert = std::any_cast<tls::PeerCertificate>(writer.get_extra_info("peercert"));
    EXPECT_EQ(cert.subject, "CN=localhost");

    writer.write("swordfish\n");
    EXPECT_EQ(co_await within(reader.readline(), "the echo over TLS"), "python echo: swordfish\n");
    // Python's unwrap(): its close_notify, answered by ours.
    EXPECT_EQ(co_await within(reader.read(), "EOF from the Python server"), "");
    writer.close();
    co_await within(writer.wait_closed(), "our close_notify and Python's");

    auto [out, err] = co_await within(server.communicate(), "the Python server's exit");
    EXPECT_EQ(server.returncode(), 0) << out << err;
    EXPECT_EQ(out, "sni: localhost\ntls: TLSv1.3\ngot: swordfish\nclosed cleanly\n") << err;
    EXPECT_EQ(err, "");
  }());
}

}  // namespace
}  // namespace asyncio
