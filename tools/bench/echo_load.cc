// Ping-pong load generator for echo servers, on plain epoll (not on our
// library, so that it shares none of its bugs).
//
//   echo_load --port P [--host 127.0.0.1] [--connections 10] [--size 1024]
//             [--seconds 2] [--requests M] [--warmup 0.2] [--server-pid PID]
//             [--verify]
//
// Opens N connections; each sends an S-byte message and waits for all S
// bytes to come back before sending the next. Runs for --seconds, or until
// --requests requests in all (whichever comes first), after --warmup seconds
// that are not counted. Prints one JSON object:
//
//   {"requests": ..., "seconds": ..., "req_per_s": ..., "p50_us": ...,
//    "p99_us": ..., "server_cpu_s": ..., "server_cpu_us_per_req": ...,
//    "server_user_us_per_req": ..., "connections": N, "size": S}
//
// With --server-pid, server_cpu_s is the server's utime+stime (from
// /proc/PID/stat, all threads) over the measured window, and
// server_user_us_per_req its utime alone per request (the kernel's TCP work
// is the same for every server; user time is what differs); the server
// fields are -1 without it. --verify checks every echoed byte.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
};

struct Conn {
  int fd = -1;
  size_t sent = 0;      // bytes of the current message sent
  size_t received = 0;  // bytes of its echo received
  bool want_out = false;
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

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

struct CpuTimes {
  double user = -1;  // utime, seconds
  double sys = -1;   // stime
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
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
    if (i == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
  }
  const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  return {static_cast<double>(utime) / hz, static_cast<double>(stime) / hz};
}

Options Parse(int argc, char** argv) {
  Options o;
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
    } else if (name == "--seconds") {
      o.seconds = std::atof(value().c_str());
    } else if (name == "--requests") {
      o.requests = std::strtoull(value().c_str(), nullptr, 10);
    } else if (name == "--warmup") {
      o.warmup = std::atof(value().c_str());
    } else if (name == "--server-pid") {
      o.server_pid = std::atoi(value().c_str());
    } else if (name == "--verify") {
      o.verify = true;
    } else {
      Usage(("unknown option " + arg).c_str());
    }
  }
  if (o.port <= 0 || o.port > 65535) Usage("--port is required");
  if (o.connections <= 0 || o.size == 0) Usage("--connections and --size must be > 0");
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

}  // namespace

int main(int argc, char** argv) {
  const Options o = Parse(argc, argv);
  std::string message(o.size, '\0');
  for (size_t i = 0; i < o.size; ++i) message[i] = static_cast<char>('a' + i % 26);
  std::vector<char> rbuf(std::max<size_t>(o.size, 256 * 1024));

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) Die("epoll_create1");
  std::vector<Conn> conns(static_cast<size_t>(o.connections));
  for (size_t i = 0; i < conns.size(); ++i) {
    conns[i].fd = Connect(o);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev) < 0) Die("epoll_ctl");
  }

  auto set_out = [&](size_t i, bool out) {
    Conn& c = conns[i];
    if (c.want_out == out) return;
    c.want_out = out;
    epoll_event ev{};
    ev.events = EPOLLIN | (out ? EPOLLOUT : 0u);
    ev.data.u64 = i;
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev) < 0) Die("epoll_ctl");
  };
  // Sends what the kernel takes of the current message.
  auto push = [&](size_t i) {
    Conn& c = conns[i];
    while (c.sent < o.size) {
      ssize_t n = send(c.fd, message.data() + c.sent, o.size - c.sent, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        Die("send");
      }
      c.sent += static_cast<size_t>(n);
    }
    set_out(i, c.sent < o.size);
  };

  const int64_t t0 = NowNs();
  const int64_t measure_start = t0 + static_cast<int64_t>(o.warmup * 1e9);
  const int64_t deadline = measure_start + static_cast<int64_t>(o.seconds * 1e9);
  bool measuring = o.warmup == 0;
  CpuTimes cpu_start;
  if (measuring && o.server_pid > 0) cpu_start = ProcessCpuTimes(o.server_pid);
  int64_t window_start = measuring ? t0 : 0;
  uint64_t done = 0;
  std::vector<float> latencies_us;
  latencies_us.reserve(1 << 20);

  for (size_t i = 0; i < conns.size(); ++i) {
    conns[i].start_ns = NowNs();
    push(i);
  }
  std::vector<epoll_event> events(conns.size());
  // Measuring ends at the deadline (or after --requests); then the requests
  // in flight are finished (for at most 2 s, not counted) so that no
  // connection is closed with unread data, which would reset it.
  bool draining = false;
  size_t in_flight = conns.size();
  int64_t window_end = 0;
  CpuTimes cpu_end;
  int64_t drain_deadline = 0;
  auto end_measuring = [&](int64_t at) {
    draining = true;
    window_end = at;
    if (o.server_pid > 0) cpu_end = ProcessCpuTimes(o.server_pid);
    drain_deadline = NowNs() + 2000000000;
  };
  while (in_flight > 0) {
    int64_t now = NowNs();
    if (!measuring && now >= measure_start) {
      measuring = true;
      window_start = now;
      if (o.server_pid > 0) cpu_start = ProcessCpuTimes(o.server_pid);
    }
    if (!draining && now >= deadline) end_measuring(now);
    if (draining && now >= drain_deadline) break;
    const int64_t until = draining ? drain_deadline : measuring ? deadline : measure_start;
    const int timeout_ms = static_cast<int>((until - now) / 1000000) + 1;
    int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), timeout_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      Die("epoll_wait");
    }
    for (int e = 0; e < n; ++e) {
      const size_t i = events[e].data.u64;
      Conn& c = conns[i];
      if (c.fd < 0) continue;
      if ((events[e].events & EPOLLOUT) && c.sent < o.size) push(i);
      if (!(events[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) continue;
      // Read what is there, but never past the end of the current echo.
      while (c.received < o.size) {
        ssize_t r = recv(c.fd, rbuf.data(), o.size - c.received, 0);
        if (r < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          Die("recv");
        }
        if (r == 0) {
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
      if (c.received < o.size) continue;
      // A full echo: one request done.
      const int64_t end = NowNs();
      if (measuring && !draining) {
        ++done;
        latencies_us.push_back(static_cast<float>(static_cast<double>(end - c.start_ns) / 1e3));
        if (o.requests > 0 && done >= o.requests) end_measuring(end);
      }
      if (draining) {
        // Done with this connection: close it cleanly.
        epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
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
  if (!draining) end_measuring(NowNs());
  const double seconds = measuring ? static_cast<double>(window_end - window_start) / 1e9 : 0;
  double server_cpu = -1;
  double cpu_per_req = -1;
  double user_per_req = -1;
  if (o.server_pid > 0 && cpu_start.user >= 0 && cpu_end.user >= 0) {
    server_cpu = cpu_end.total() - cpu_start.total();
    if (done > 0) {
      cpu_per_req = server_cpu / static_cast<double>(done) * 1e6;
      user_per_req = (cpu_end.user - cpu_start.user) / static_cast<double>(done) * 1e6;
    }
  }
  for (Conn& c : conns) {
    if (c.fd >= 0) close(c.fd);  // a request still unanswered after the drain
  }
  close(ep);
  const double p50 = Percentile(latencies_us, 0.50);
  const double p99 = Percentile(latencies_us, 0.99);
  std::printf(
      "{\"requests\": %llu, \"seconds\": %.6f, \"req_per_s\": %.1f, \"p50_us\": %.1f, "
      "\"p99_us\": %.1f, \"server_cpu_s\": %.3f, \"server_cpu_us_per_req\": %.3f, "
      "\"server_user_us_per_req\": %.3f, \"connections\": %d, \"size\": %zu}\n",
      static_cast<unsigned long long>(done), seconds,
      seconds > 0 ? static_cast<double>(done) / seconds : 0.0, p50, p99, server_cpu, cpu_per_req,
      user_per_req, o.connections, o.size);
  return done > 0 ? 0 : 1;
}
