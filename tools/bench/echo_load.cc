// Ping-pong load generator for echo servers, on plain epoll (not on our
// library, so that it shares none of its bugs).
//
//   echo_load --port P [--host 127.0.0.1] [--connections 10] [--size 1024]
//             [--seconds 2] [--requests M] [--warmup 0.2] [--server-pid PID]
//             [--verify] [--tls] [--ca-file FILE] [--handshakes] [--pipeline K]
//
// Opens N connections; each sends an S-byte message and waits for all S
// bytes to come back before sending the next. Runs for --seconds, or until
// --requests requests in all (whichever comes first), after --warmup seconds
// that are not counted. Prints one JSON object:
//
//   {"requests": ..., "seconds": ..., "req_per_s": ..., "p50_us": ...,
//    "p99_us": ..., "server_cpu_s": ..., "server_cpu_us_per_req": ...,
//    "server_user_us_per_req": ..., "server_faults_per_req": ...,
//    "connections": N, "size": S}
//
// With --server-pid, server_cpu_s is the server's utime+stime (from
// /proc/PID/stat, all threads) over the measured window,
// server_faults_per_req its page faults (minflt + majflt) per request, and
// server_user_us_per_req its utime alone per request (the kernel's TCP work
// is the same for every server; user time is what differs); the server
// fields are -1 without it. --verify checks every echoed byte.
//
// --pipeline K: each connection sends K requests at once, each a line of S
// bytes ending in '\n', and waits for all K*S bytes before the next batch
// (the request/response servers answer each line with one write). Counted
// are requests; latency is per batch; the JSON gains "pipeline".
//
// --tls: the connections speak TLS: OpenSSL over the non-blocking sockets,
// TLS 1.3 with OpenSSL's default suites, no session resumption. The
// handshakes are all done before the warm-up starts, so the window holds
// echoes only. Without --ca-file the server's certificate is not checked;
// with it (implies --tls) it must chain to FILE and name --host. The JSON
// gains "tls_version", "cipher" and "group" (the key exchange).
//
// --handshakes (implies --tls): each of the N connections runs, over and
// over: connect, full TLS handshake, echo of --size bytes (default 1; 0:
// none), close_notify, the server's close_notify and FIN, close (the server
// closes first, so TIME_WAIT stays on its side). Counted and timed (p50/p99)
// are these cycles; the JSON's names say so:
//
//   {"handshakes": ..., "seconds": ..., "handshakes_per_s": ..., "p50_us": ...,
//    "p99_us": ..., "server_cpu_s": ..., "server_cpu_us_per_handshake": ...,
//    "server_user_us_per_handshake": ..., "connections": N, "size": S,
//    "client_cpu_us_per_handshake": ..., ...}
//
// client_cpu_us_per_handshake is echo_load's own CPU time (the client's
// handshake work shares the core with the server when both are pinned).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  int connections = 10;
  size_t size = 1024;
  double seconds = 2;
  uint64_t requests = 0;  // 0: no limit
  double warmup = 0.2;
  int server_pid = 0;
  bool verify = false;
  bool tls = false;
  std::string ca_file;  // empty: the server's certificate is not checked
  bool handshakes = false;
  int pipeline = 1;  // requests sent at once
};

// Where a --handshakes connection is in its cycle (a --tls echo connection
// goes from kHandshake to kSend and stays there).
enum class Phase { kHandshake, kSend, kReceive, kCloseNotify, kEof };

struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;   // --tls
  size_t sent = 0;      // bytes of the current message sent
  size_t received = 0;  // bytes of its echo received
  bool want_out = false;
  // TLS: the last write (or handshake step) and the last read wait for the
  // socket to take data (SSL_ERROR_WANT_WRITE).
  bool send_wants_write = false;
  bool recv_wants_write = false;
  Phase phase = Phase::kHandshake;
  int64_t start_ns = 0;
};

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "echo_load: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

[[noreturn]] void Usage(const char* msg) {
  std::fprintf(stderr, "echo_load: %s\n", msg);
  std::exit(2);
}

// A failed OpenSSL call: its reason from the error queue (or errno).
[[noreturn]] void DieTls(const char* what) {
  const int err = errno;
  const unsigned long e = ERR_get_error();
  char reason[256];
  if (e != 0) {
    ERR_error_string_n(e, reason, sizeof reason);
  } else {
    std::snprintf(reason, sizeof reason, "%s", err != 0 ? std::strerror(err) : "unexpected EOF");
  }
  std::fprintf(stderr, "echo_load: %s: %s\n", what, reason);
  std::exit(1);
}

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

struct CpuTimes {
  double user = -1;    // utime, seconds
  double sys = -1;     // stime
  double faults = -1;  // minflt + majflt
  double total() const { return user < 0 ? -1 : user + sys; }
};

// utime and stime of `pid` (all its threads); -1 if unreadable.
CpuTimes ProcessCpuTimes(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command name, which is in parentheses and may hold
  // spaces: state(3) ... utime(14) stime(15).
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return {};
  std::istringstream fields(stat.substr(paren + 2));
  std::string field;
  uint64_t utime = 0;
  uint64_t stime = 0;
  uint64_t faults = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 10 || i == 12) faults += std::strtoull(field.c_str(), nullptr, 10);  // min, maj
    if (i == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
    if (i == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
  }
  const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  return {static_cast<double>(utime) / hz, static_cast<double>(stime) / hz,
          static_cast<double>(faults)};
}

Options Parse(int argc, char** argv) {
  Options o;
  bool size_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      size_t eq = arg.find('=');
      if (eq != std::string::npos) return arg.substr(eq + 1);
      if (i + 1 >= argc) Usage(("missing value for " + arg).c_str());
      return argv[++i];
    };
    std::string name = arg.substr(0, arg.find('='));
    if (name == "--host") {
      o.host = value();
    } else if (name == "--port") {
      o.port = std::atoi(value().c_str());
    } else if (name == "--connections") {
      o.connections = std::atoi(value().c_str());
    } else if (name == "--size") {
      o.size = std::strtoull(value().c_str(), nullptr, 10);
      size_given = true;
    } else if (name == "--seconds") {
      o.seconds = std::atof(value().c_str());
    } else if (name == "--requests") {
      o.requests = std::strtoull(value().c_str(), nullptr, 10);
    } else if (name == "--warmup") {
      o.warmup = std::atof(value().c_str());
    } else if (name == "--server-pid") {
      o.server_pid = std::atoi(value().c_str());
    } else if (name == "--pipeline") {
      o.pipeline = std::atoi(value().c_str());
    } else if (name == "--verify") {
      o.verify = true;
    } else if (name == "--tls") {
      o.tls = true;
    } else if (name == "--ca-file") {
      o.ca_file = value();
      o.tls = true;
    } else if (name == "--handshakes") {
      o.handshakes = true;
      o.tls = true;
    } else {
      Usage(("unknown option " + arg).c_str());
    }
  }
  if (o.handshakes && !size_given) o.size = 1;
  if (o.port <= 0 || o.port > 65535) Usage("--port is required");
  if (o.connections <= 0 || (o.size == 0 && !o.handshakes)) {
    Usage("--connections and --size must be > 0");
  }
  if (o.pipeline < 1 || o.pipeline > 1024 || (o.pipeline > 1 && (o.tls || o.size < 2))) {
    Usage("--pipeline must be in [1, 1024], without --tls, with --size >= 2");
  }
  if (!(o.seconds > 0) || o.seconds > 3600) Usage("--seconds must be in (0, 3600]");
  if (o.warmup < 0 || o.warmup > 60) Usage("--warmup must be in [0, 60]");
  return o;
}

int Connect(const Options& o) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Die("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(o.port));
  if (inet_pton(AF_INET, o.host.c_str(), &addr.sin_addr) != 1) Usage("--host: not an IPv4 literal");
  // Blocking connect (loopback: immediate), then non-blocking.
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) Die("connect");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

double Percentile(std::vector<float>& v, double p) {
  if (v.empty()) return 0;
  size_t k = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size()))) - 1;
  k = std::min(k, v.size() - 1);
  std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(k), v.end());
  return v[k];
}

// --- TLS -----------------------------------------------------------------------------

SSL_CTX* NewClientContext(const Options& o) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) DieTls("SSL_CTX_new");
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // EOF without close_notify reads as EOF (SSL_ERROR_ZERO_RETURN).
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);  // every handshake a full one
  if (o.ca_file.empty()) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  } else {
    if (SSL_CTX_load_verify_locations(ctx, o.ca_file.c_str(), nullptr) != 1) {
      DieTls(("--ca-file " + o.ca_file).c_str());
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  }
  return ctx;
}

SSL* NewSsl(SSL_CTX* ctx, int fd, const Options& o) {
  SSL* ssl = SSL_new(ctx);
  if (ssl == nullptr || SSL_set_fd(ssl, fd) != 1) DieTls("SSL_new");
  // --host is an IPv4 literal: checked against the certificate's IP names.
  if (!o.ca_file.empty() &&
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), o.host.c_str()) != 1) {
    DieTls("X509_VERIFY_PARAM_set1_ip_asc");
  }
  SSL_set_connect_state(ssl);
  return ssl;
}

// After an SSL call returned r: true if it only waits for the socket
// (*wants_write: to take data, else to deliver some), false if it failed.
bool TlsBlocked(SSL* ssl, int r, bool* wants_write) {
  const int err = SSL_get_error(ssl, r);
  *wants_write = err == SSL_ERROR_WANT_WRITE;
  return err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE;
}

// One step of c's TLS handshake: true once it is done.
bool Handshake(Conn& c) {
  ERR_clear_error();
  const int r = SSL_connect(c.ssl);
  if (r == 1) {
    c.send_wants_write = false;
    return true;
  }
  if (TlsBlocked(c.ssl, r, &c.send_wants_write)) return false;
  DieTls("TLS handshake");
}

// The protocol, suite and key exchange of a finished handshake, as JSON fields.
std::string TlsFields(SSL* ssl) {
  const int group = SSL_get_negotiated_group(ssl);
  const char* group_name = group != 0 ? OBJ_nid2sn(group & ~TLSEXT_nid_unknown) : nullptr;
  return std::string(", \"tls_version\": \"") + SSL_get_version(ssl) + "\", \"cipher\": \"" +
         SSL_get_cipher_name(ssl) + "\", \"group\": \"" + (group_name ? group_name : "?") + "\"";
}

// --- I/O, plain or TLS -------------------------------------------------------------

// Sends what the socket takes of data[0, n): the bytes sent, 0 if none.
size_t SendSome(Conn& c, const char* data, size_t n) {
  if (c.ssl == nullptr) {
    while (true) {
      ssize_t r = send(c.fd, data, n, MSG_NOSIGNAL);
      if (r >= 0) return static_cast<size_t>(r);
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      Die("send");
    }
  }
  size_t written = 0;
  ERR_clear_error();
  const int r = SSL_write_ex(c.ssl, data, n, &written);
  if (r == 1) {
    c.send_wants_write = false;
    return written;
  }
  if (TlsBlocked(c.ssl, r, &c.send_wants_write)) return 0;
  DieTls("SSL_write");
}

// Reads at most n bytes: the bytes read, 0 if none are there yet, -1 at EOF.
ssize_t RecvSome(Conn& c, char* out, size_t n) {
  if (c.ssl == nullptr) {
    while (true) {
      ssize_t r = recv(c.fd, out, n, 0);
      if (r > 0) return r;
      if (r == 0) return -1;
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      Die("recv");
    }
  }
  size_t got = 0;
  ERR_clear_error();
  const int r = SSL_read_ex(c.ssl, out, n, &got);
  if (r == 1) {
    c.recv_wants_write = false;
    return static_cast<ssize_t>(got);
  }
  if (TlsBlocked(c.ssl, r, &c.recv_wants_write)) return 0;
  if (SSL_get_error(c.ssl, r) == SSL_ERROR_ZERO_RETURN) return -1;
  DieTls("SSL_read");
}

// Whether c waits for its socket to take data.
bool WantsOut(const Conn& c, size_t size) {
  return c.ssl != nullptr ? c.send_wants_write || c.recv_wants_write : c.sent < size;
}

void SetOut(int ep, std::vector<Conn>& conns, size_t i, bool out) {
  Conn& c = conns[i];
  if (c.want_out == out) return;
  c.want_out = out;
  epoll_event ev{};
  ev.events = EPOLLIN | (out ? EPOLLOUT : 0u);
  ev.data.u64 = i;
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev) < 0) Die("epoll_ctl");
}

void Watch(int ep, std::vector<Conn>& conns, size_t i) {
  conns[i].want_out = false;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = i;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev) < 0) Die("epoll_ctl");
}

// --- the measured window ------------------------------------------------------------

// From the end of the warm-up to the deadline (or to --requests), with the
// server's CPU times at both ends; then up to 2 s of draining, in which the
// requests in flight finish (not counted) so that no connection is closed
// with unread data, which would reset it.
class Window {
 public:
  explicit Window(const Options& o)
      : o_(o),
        t0_(NowNs()),
        measure_start_(t0_ + static_cast<int64_t>(o.warmup * 1e9)),
        deadline_(measure_start_ + static_cast<int64_t>(o.seconds * 1e9)),
        measuring_(o.warmup == 0),
        start_(measuring_ ? t0_ : 0) {
    if (measuring_) Sample(&cpu_start_, &self_start_);
  }

  // Before each wait: measuring starts after the warm-up, ends at the
  // deadline. The wait's timeout, or -1 once the drain is over.
  int Tick() {
    const int64_t now = NowNs();
    if (!measuring_ && now >= measure_start_) {
      measuring_ = true;
      start_ = now;
      Sample(&cpu_start_, &self_start_);
    }
    if (!draining_ && now >= deadline_) End(now);
    if (draining_ && now >= drain_deadline_) return -1;
    const int64_t until = draining_ ? drain_deadline_ : measuring_ ? deadline_ : measure_start_;
    return static_cast<int>((until - now) / 1000000) + 1;
  }
  void End(int64_t at) {
    draining_ = true;
    end_ = at;
    Sample(&cpu_end_, &self_end_);
    drain_deadline_ = NowNs() + 2000000000;
  }
  bool counting() const { return measuring_ && !draining_; }
  bool draining() const { return draining_; }

  // Prints the JSON line for `done` requests (or handshakes) in the window;
  // `extra` is appended to its fields.
  void Report(uint64_t done, std::vector<float>& latencies_us, const std::string& extra) {
    if (!draining_) End(NowNs());
    const double seconds = measuring_ ? static_cast<double>(end_ - start_) / 1e9 : 0;
    double server_cpu = -1;
    double cpu_per_req = -1;
    double user_per_req = -1;
    double faults_per_req = -1;
    if (o_.server_pid > 0 && cpu_start_.user >= 0 && cpu_end_.user >= 0) {
      server_cpu = cpu_end_.total() - cpu_start_.total();
      if (done > 0) {
        cpu_per_req = server_cpu / static_cast<double>(done) * 1e6;
        user_per_req = (cpu_end_.user - cpu_start_.user) / static_cast<double>(done) * 1e6;
        faults_per_req = (cpu_end_.faults - cpu_start_.faults) / static_cast<double>(done);
      }
    }
    const double p50 = Percentile(latencies_us, 0.50);
    const double p99 = Percentile(latencies_us, 0.99);
    // Echo: requests, req_per_s, ..._per_req; --handshakes: handshakes,
    // handshakes_per_s, ..._per_handshake.
    const char* count = o_.handshakes ? "handshakes" : "requests";
    const char* rate = o_.handshakes ? "handshakes" : "req";
    const char* per = o_.handshakes ? "handshake" : "req";
    std::string fields = extra;
    if (o_.handshakes) {
      double self_per = -1;
      if (done > 0 && self_start_.user >= 0 && self_end_.user >= 0) {
        self_per = (self_end_.total() - self_start_.total()) / static_cast<double>(done) * 1e6;
      }
      char client[64];
      std::snprintf(client, sizeof client, ", \"client_cpu_us_per_handshake\": %.3f", self_per);
      fields = client + fields;
    }
    std::printf(
        "{\"%s\": %llu, \"seconds\": %.6f, \"%s_per_s\": %.1f, \"p50_us\": %.1f, "
        "\"p99_us\": %.1f, \"server_cpu_s\": %.3f, \"server_cpu_us_per_%s\": %.3f, "
        "\"server_user_us_per_%s\": %.3f, \"server_faults_per_%s\": %.3f, \"connections\": %d, "
        "\"size\": %zu%s}\n",
        count, static_cast<unsigned long long>(done), seconds, rate,
        seconds > 0 ? static_cast<double>(done) / seconds : 0.0, p50, p99, server_cpu, per,
        cpu_per_req, per, user_per_req, per, faults_per_req, o_.connections, o_.size,
        fields.c_str());
  }

 private:
  // The server's CPU times (with --server-pid) and, with --handshakes, ours.
  void Sample(CpuTimes* server, CpuTimes* self) const {
    if (o_.server_pid > 0) *server = ProcessCpuTimes(o_.server_pid);
    if (o_.handshakes) *self = ProcessCpuTimes(getpid());
  }

  const Options& o_;
  const int64_t t0_;
  const int64_t measure_start_;
  const int64_t deadline_;
  bool measuring_;
  bool draining_ = false;
  int64_t start_;
  int64_t end_ = 0;
  int64_t drain_deadline_ = 0;
  CpuTimes cpu_start_;
  CpuTimes cpu_end_;
  CpuTimes self_start_;
  CpuTimes self_end_;
};

std::string Message(size_t size) {
  std::string message(size, '\0');
  for (size_t i = 0; i < size; ++i) message[i] = static_cast<char>('a' + i % 26);
  return message;
}

// --- ping-pong ------------------------------------------------------------------------

int RunEcho(const Options& o, SSL_CTX* ctx) {
  // A batch is --pipeline requests sent at once; each is a line (--size
  // bytes, the last one '\n') when pipelining.
  const size_t batch = o.size * o.pipeline;
  std::string message = Message(o.size);
  if (o.pipeline > 1) {
    message.back() = '\n';
    std::string one = message;
    for (int k = 1; k < o.pipeline; ++k) message += one;
  }
  std::vector<char> rbuf(std::max<size_t>(batch, 256 * 1024));

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) Die("epoll_create1");
  std::vector<Conn> conns(static_cast<size_t>(o.connections));
  for (size_t i = 0; i < conns.size(); ++i) {
    conns[i].fd = Connect(o);
    Watch(ep, conns, i);
  }
  std::vector<epoll_event> events(conns.size());

  std::string tls_fields;
  if (ctx != nullptr) {
    // Every handshake first: the window holds echoes only.
    size_t handshaking = conns.size();
    // One step of connection i's handshake; once it is done, the session
    // tickets the server sends after it are read (no data may come yet).
    auto step = [&](size_t i) {
      Conn& c = conns[i];
      if (c.phase == Phase::kHandshake) {
        if (!Handshake(c)) {
          SetOut(ep, conns, i, WantsOut(c, 0));
          return;
        }
        c.phase = Phase::kSend;
        --handshaking;
      }
      char byte;
      if (RecvSome(c, &byte, 1) != 0) {
        std::fprintf(stderr, "echo_load: data or EOF before the first request\n");
        std::exit(1);
      }
      SetOut(ep, conns, i, WantsOut(c, 0));
    };
    for (size_t i = 0; i < conns.size(); ++i) {
      conns[i].ssl = NewSsl(ctx, conns[i].fd, o);
      step(i);
    }
    while (handshaking > 0) {
      int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 10000);
      if (n < 0) {
        if (errno == EINTR) continue;
        Die("epoll_wait");
      }
      if (n == 0) {
        std::fprintf(stderr, "echo_load: TLS handshakes: no progress for 10 s\n");
        return 1;
      }
      for (int e = 0; e < n; ++e) step(events[e].data.u64);
    }
    tls_fields = TlsFields(conns[0].ssl);
  }

  // Sends what the socket takes of the current message.
  auto push = [&](size_t i) {
    Conn& c = conns[i];
    while (c.sent < batch) {
      size_t n = SendSome(c, message.data() + c.sent, batch - c.sent);
      if (n == 0) break;
      c.sent += n;
    }
    SetOut(ep, conns, i, WantsOut(c, batch));
  };

  Window window(o);
  uint64_t done = 0;
  std::vector<float> latencies_us;
  latencies_us.reserve(1 << 20);

  for (size_t i = 0; i < conns.size(); ++i) {
    conns[i].start_ns = NowNs();
    push(i);
  }
  size_t in_flight = conns.size();
  while (in_flight > 0) {
    const int timeout_ms = window.Tick();
    if (timeout_ms < 0) break;
    int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), timeout_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      Die("epoll_wait");
    }
    for (int e = 0; e < n; ++e) {
      const size_t i = events[e].data.u64;
      const uint32_t ev = events[e].events;
      Conn& c = conns[i];
      if (c.fd < 0) continue;
      // TLS: a write may also wait for the socket to deliver, a read for it
      // to take data.
      const bool tls_write_waits_in = c.ssl != nullptr && !c.send_wants_write;
      if (c.sent < batch && ((ev & EPOLLOUT) || tls_write_waits_in)) push(i);
      if (!(ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) && !(c.ssl != nullptr && c.recv_wants_write)) {
        continue;
      }
      // Read what is there, but never past the end of the current echo.
      while (c.received < batch) {
        ssize_t r = RecvSome(c, rbuf.data(), batch - c.received);
        if (r == 0) break;
        if (r < 0) {
          std::fprintf(stderr, "echo_load: server closed a connection\n");
          return 1;
        }
        if (o.verify &&
            std::memcmp(rbuf.data(), message.data() + c.received, static_cast<size_t>(r)) != 0) {
          std::fprintf(stderr, "echo_load: wrong bytes echoed\n");
          return 1;
        }
        c.received += static_cast<size_t>(r);
      }
      if (c.received < batch) {
        if (c.ssl != nullptr) SetOut(ep, conns, i, WantsOut(c, batch));
        continue;
      }
      // A full echo: one request done.
      const int64_t end = NowNs();
      if (window.counting()) {
        done += static_cast<uint64_t>(o.pipeline);
        latencies_us.push_back(static_cast<float>(static_cast<double>(end - c.start_ns) / 1e3));
        if (o.requests > 0 && done >= o.requests) window.End(end);
      }
      if (window.draining()) {
        // Done with this connection: close it cleanly.
        epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
        if (c.ssl != nullptr) {
          SSL_shutdown(c.ssl);  // our close_notify; the server's is not awaited
          SSL_free(c.ssl);
          c.ssl = nullptr;
        }
        close(c.fd);
        c.fd = -1;
        --in_flight;
        continue;
      }
      c.sent = 0;
      c.received = 0;
      c.start_ns = end;
      push(i);
    }
  }
  for (Conn& c : conns) {
    if (c.ssl != nullptr) SSL_free(c.ssl);
    if (c.fd >= 0) close(c.fd);  // a request still unanswered after the drain
  }
  close(ep);
  if (o.pipeline > 1) tls_fields += ", \"pipeline\": " + std::to_string(o.pipeline);
  window.Report(done, latencies_us, tls_fields);
  return done > 0 ? 0 : 1;
}

// --- handshakes -------------------------------------------------------------------------

// Runs c's cycle (--handshakes) as far as it goes without waiting: true once
// the server has closed its side.
bool Cycle(Conn& c, const Options& o, const std::string& message, char* buf, size_t buf_size) {
  while (true) {
    switch (c.phase) {
      case Phase::kHandshake:
        if (!Handshake(c)) return false;
        c.phase = Phase::kSend;
        break;
      case Phase::kSend:
        while (c.sent < o.size) {
          size_t n = SendSome(c, message.data() + c.sent, o.size - c.sent);
          if (n == 0) return false;
          c.sent += n;
        }
        c.phase = Phase::kReceive;
        break;
      case Phase::kReceive:
        while (c.received < o.size) {
          ssize_t r = RecvSome(c, buf, std::min(buf_size, o.size - c.received));
          if (r == 0) return false;
          if (r < 0) {
            std::fprintf(stderr, "echo_load: server closed a connection before the echo\n");
            std::exit(1);
          }
          if (o.verify &&
              std::memcmp(buf, message.data() + c.received, static_cast<size_t>(r)) != 0) {
            std::fprintf(stderr, "echo_load: wrong bytes echoed\n");
            std::exit(1);
          }
          c.received += static_cast<size_t>(r);
        }
        c.phase = Phase::kCloseNotify;
        break;
      case Phase::kCloseNotify: {
        ERR_clear_error();
        const int r = SSL_shutdown(c.ssl);  // 0: ours is sent
        if (r < 0 && TlsBlocked(c.ssl, r, &c.send_wants_write)) return false;
        c.send_wants_write = false;
        c.phase = Phase::kEof;
        break;
      }
      case Phase::kEof:
        // The server's close_notify (after which OpenSSL reads no more; data
        // before it is dropped), then its FIN. An error ends it as well.
        while (true) {
          size_t got = 0;
          ERR_clear_error();
          const int r = SSL_read_ex(c.ssl, buf, buf_size, &got);
          if (r == 1) continue;
          if (TlsBlocked(c.ssl, r, &c.recv_wants_write)) return false;
          break;
        }
        c.recv_wants_write = false;
        while (true) {
          ssize_t r = recv(c.fd, buf, buf_size, 0);
          if (r > 0) continue;
          if (r < 0 && errno == EINTR) continue;
          if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
          return true;  // EOF, or reset
        }
    }
  }
}

int RunHandshakes(const Options& o, SSL_CTX* ctx) {
  const std::string message = Message(o.size);
  std::vector<char> buf(16 * 1024);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) Die("epoll_create1");
  std::vector<Conn> conns(static_cast<size_t>(o.connections));
  std::vector<epoll_event> events(conns.size());
  Window window(o);
  uint64_t done = 0;
  std::vector<float> latencies_us;
  latencies_us.reserve(1 << 20);
  std::string tls_fields;
  size_t in_flight = conns.size();

  // Runs connection i's cycles until one waits for the server (or, when
  // draining, until its cycle in flight is over).
  auto advance = [&](size_t i) {
    Conn& c = conns[i];
    while (true) {
      if (c.fd < 0) {
        c = Conn();
        c.start_ns = NowNs();
        c.fd = Connect(o);
        c.ssl = NewSsl(ctx, c.fd, o);
        Watch(ep, conns, i);
      }
      if (!Cycle(c, o, message, buf.data(), buf.size())) {
        SetOut(ep, conns, i, WantsOut(c, o.size));
        return;
      }
      const int64_t end = NowNs();
      if (window.counting()) {
        ++done;
        latencies_us.push_back(static_cast<float>(static_cast<double>(end - c.start_ns) / 1e3));
        if (o.requests > 0 && done >= o.requests) window.End(end);
      }
      if (tls_fields.empty()) tls_fields = TlsFields(c.ssl);
      epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
      SSL_free(c.ssl);
      c.ssl = nullptr;
      close(c.fd);
      c.fd = -1;
      if (window.draining()) {
        --in_flight;
        return;
      }
    }
  };

  for (size_t i = 0; i < conns.size(); ++i) advance(i);
  while (in_flight > 0) {
    const int timeout_ms = window.Tick();
    if (timeout_ms < 0) break;
    int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), timeout_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      Die("epoll_wait");
    }
    for (int e = 0; e < n; ++e) {
      const size_t i = events[e].data.u64;
      if (conns[i].fd >= 0) advance(i);
    }
  }
  for (Conn& c : conns) {
    if (c.ssl != nullptr) SSL_free(c.ssl);
    if (c.fd >= 0) close(c.fd);  // a cycle still unfinished after the drain
  }
  close(ep);
  window.Report(done, latencies_us, tls_fields);
  return done > 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = Parse(argc, argv);
  if (!o.tls) return RunEcho(o, nullptr);
  signal(SIGPIPE, SIG_IGN);  // OpenSSL writes with write(), not send(MSG_NOSIGNAL)
  SSL_CTX* ctx = NewClientContext(o);
  const int status = o.handshakes ? RunHandshakes(o, ctx) : RunEcho(o, ctx);
  SSL_CTX_free(ctx);
  return status;
}
