// Soak: a mixed workload on one loop for a while, checking invariants as it
// goes: TCP and TLS echo clients against our own servers, subprocesses,
// name lookups with c-ares, jobs on the default executor, timers and
// cancellations. Every echoed byte is compared, descriptors must not grow,
// memory must stay bounded, and nothing may fail that was not meant to.
//
//   soak [--seconds N]   (default 60)
//
// Prints a line per 10 s and a summary; exits 1 if an invariant broke.
// `./dev soak [--minutes N]` runs it; CI runs it for two minutes.
#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "dns/dns.h"
#include "executors/executors.h"
#include "futures/futures.h"
#include "streams/streams.h"
#include "subprocess/subprocess.h"
#include "testing/async_test_util.h"
#include "tls/testing/certs.h"
#include "tls/tls.h"

namespace asyncio {
namespace {

using testing_util::open_fd_count;

using namespace std::chrono_literals;

struct Stats {
  long tcp_echoes = 0, tls_echoes = 0, bytes = 0, connections = 0;
  long processes = 0, lookups = 0, jobs = 0, timeouts = 0, cancellations = 0;
  long errors = 0;  // anything unexpected: an exception, a wrong byte
  std::string first_error;
  void fail(const std::string& what) {
    if (errors++ == 0) first_error = what;
    std::fprintf(stderr, "soak: %s\n", what.c_str());
  }
};

// A message of `size` bytes that says where it came from.
std::string message(std::mt19937& rng, size_t size) {
  std::string m(size, '\0');
  for (char& c : m) c = static_cast<char>('a' + rng() % 26);
  return m;
}

Coro<void> echo(StreamReader reader, StreamWriter writer) {
  try {
    while (true) {
      std::string data = co_await reader.read(64 * 1024);
      if (data.empty()) break;
      writer.write(data);
      co_await writer.drain();
    }
  } catch (const std::system_error&) {
    // a client reset: not news
  }
  writer.close();
}

// A client that connects, echoes a few messages of random sizes, closes,
// and starts over until `deadline`.
Coro<void> echo_client(uint16_t port, std::optional<tls::Context> ssl, double deadline,
                       unsigned seed, Stats& stats) {
  EventLoop& loop = get_running_loop();
  std::mt19937 rng(seed);
  while (loop.time() < deadline) {
    bool failed = false;
    try {
      StreamOptions options;
      if (ssl) {
        options.ssl = *ssl;
        options.server_hostname = "localhost";
      }
      auto [reader, writer] = co_await open_connection("127.0.0.1", port, options);
      ++stats.connections;
      const int rounds = 1 + static_cast<int>(rng() % 20);
      for (int i = 0; i < rounds; ++i) {
        const size_t size = 1 + rng() % (rng() % 8 == 0 ? 256 * 1024 : 2048);
        const std::string sent = message(rng, size);
        writer.write(sent);
        std::string back = co_await reader.readexactly(size);
        if (back != sent) stats.fail("echo: wrong bytes came back");
        ++(ssl ? stats.tls_echoes : stats.tcp_echoes);
        stats.bytes += static_cast<long>(size);
      }
      writer.close();
      co_await writer.wait_closed();
    } catch (const std::exception& e) {
      stats.fail(std::string("echo client: ") + e.what());
      failed = true;
    }
    if (failed) co_await sleep(10ms);
  }
}

Coro<void> processes(double deadline, Stats& stats) {
  EventLoop& loop = get_running_loop();
  std::mt19937 rng(7);
  while (loop.time() < deadline) {
    try {
      SubprocessOptions options;
      options.stdin_ = subprocess::PIPE;
      options.stdout_ = subprocess::PIPE;
      Process cat = co_await create_subprocess_exec("cat", options);
      const std::string input = message(rng, 1 + rng() % (128 * 1024));
      auto [out, err] = co_await cat.communicate(input);
      if (out != input || cat.returncode() != 0) stats.fail("cat: wrong output or exit status");
      ++stats.processes;
    } catch (const std::exception& e) {
      stats.fail(std::string("subprocess: ") + e.what());
    }
  }
}

Coro<void> lookups(double deadline, Stats& stats) {
  EventLoop& loop = get_running_loop();
  while (loop.time() < deadline) {
    try {
      std::vector<AddrInfo> found = co_await getaddrinfo(loop, "localhost", "80");
      if (found.empty()) stats.fail("getaddrinfo(localhost): no address");
      ++stats.lookups;
    } catch (const std::exception& e) {
      stats.fail(std::string("getaddrinfo: ") + e.what());
    }
    co_await sleep(5ms);
  }
}

Coro<void> jobs(double deadline, Stats& stats) {
  EventLoop& loop = get_running_loop();
  long n = 0;
  while (loop.time() < deadline) {
    try {
      ++n;
      long got = co_await to_thread([n] { return n * n; });
      if (got != n * n) stats.fail("to_thread: wrong result");
      ++stats.jobs;
    } catch (const std::exception& e) {
      stats.fail(std::string("to_thread: ") + e.what());
    }
  }
}

// Timeouts that fire and ones that do not, and tasks cancelled mid-sleep.
Coro<void> timers(double deadline, Stats& stats) {
  EventLoop& loop = get_running_loop();
  std::mt19937 rng(11);
  while (loop.time() < deadline) {
    const auto delay = std::chrono::microseconds(rng() % 2000);
    const auto limit = std::chrono::microseconds(rng() % 2000);
    try {
      co_await wait_for(sleep(delay), limit);
      if (delay > limit + 1ms) stats.fail("wait_for: a sleep outlived its timeout");
    } catch (const TimeoutError&) {
      ++stats.timeouts;
    }
    Task<void> victim = create_task(sleep(1h));
    co_await sleep(0s);
    victim.cancel();
    try {
      co_await victim;
      stats.fail("cancel: a cancelled sleep finished");
    } catch (const CancelledError&) {
      ++stats.cancellations;
    }
  }
}

Coro<int> soak(double seconds) {
  EventLoop& loop = get_running_loop();
  const auto& certs = tls_testing::test_certs();
  tls::Context server_ctx = tls::Context::server(certs.server.cert, certs.server.key);
  tls::Context client_ctx = tls::Context::client();
  client_ctx.load_verify_locations(certs.ca_file);

  ClientConnected handler = echo;
  Server tcp = co_await start_server(handler, "127.0.0.1", 0);
  StreamOptions tls_options;
  tls_options.ssl = server_ctx;
  Server tls_server = co_await start_server(handler, "127.0.0.1", 0, tls_options);
  const uint16_t tcp_port = tcp.sockets().at(0).getsockname().port();
  const uint16_t tls_port = tls_server.sockets().at(0).getsockname().port();

  Stats stats;
  const double start = loop.time();
  const double deadline = start + seconds;
  TaskGroup group;
  for (unsigned i = 0; i < 20; ++i) {
    group.create_task(echo_client(tcp_port, std::nullopt, deadline, 100 + i, stats));
  }
  for (unsigned i = 0; i < 5; ++i) {
    group.create_task(echo_client(tls_port, client_ctx, deadline, 200 + i, stats));
  }
  group.create_task(processes(deadline, stats));
  group.create_task(lookups(deadline, stats));
  group.create_task(jobs(deadline, stats));
  group.create_task(timers(deadline, stats));

  // The invariants, checked every second while the work runs.
  int max_fds = 0;
  long warm_rss = -1, max_rss = 0;
  double next_report = start + 10;
  while (loop.time() < deadline) {
    co_await sleep(1s);
    max_fds = std::max(max_fds, open_fd_count());
    const long rss = testing_util::rss_kib() / 1024;
    max_rss = std::max(max_rss, rss);
    if (warm_rss < 0 && loop.time() - start >= std::min(10.0, seconds / 4)) warm_rss = rss;
    // 25 clients, their server ends, a child's pipes, the loop's own:
    // a leak grows past this within seconds.
    if (max_fds > 200) stats.fail("descriptors: " + std::to_string(max_fds) + " open");
    if (warm_rss >= 0 && rss > 2 * warm_rss + 64) {
      stats.fail("memory: RSS " + std::to_string(rss) + " MiB, " + std::to_string(warm_rss) +
                 " MiB once warm");
    }
    if (loop.time() >= next_report) {
      next_report += 10;
      std::printf(
          "soak: %3.0f s: %ld echoes, %ld processes, %ld lookups, %ld jobs, %d fds, "
          "%ld MiB, %ld errors\n",
          loop.time() - start, stats.tcp_echoes + stats.tls_echoes, stats.processes, stats.lookups,
          stats.jobs, open_fd_count(), rss, stats.errors);
      std::fflush(stdout);
    }
  }
  co_await group.join();
  tcp.close();
  tls_server.close();
  co_await tcp.wait_closed();
  co_await tls_server.wait_closed();
  std::printf(
      "soak: %.0f s, %ld TCP and %ld TLS echoes over %ld connections (%ld MiB, byte-exact), "
      "%ld subprocesses, %ld lookups, %ld executor jobs, %ld timeouts, %ld cancellations; "
      "peak %d descriptors, peak RSS %ld MiB; %ld errors%s%s\n",
      loop.time() - start, stats.tcp_echoes, stats.tls_echoes, stats.connections, stats.bytes >> 20,
      stats.processes, stats.lookups, stats.jobs, stats.timeouts, stats.cancellations, max_fds,
      max_rss, stats.errors, stats.errors ? ": " : "", stats.first_error.c_str());
  co_return stats.errors == 0 ? 0 : 1;
}

}  // namespace
}  // namespace asyncio

int main(int argc, char** argv) {
  double seconds = 60;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--seconds N]\n", argv[0]);
      return 2;
    }
  }
  if (!(seconds > 0)) {
    std::fprintf(stderr, "soak: --seconds must be positive\n");
    return 2;
  }
  const int fds_before = asyncio::testing_util::open_fd_count();
  const int status = asyncio::run(asyncio::soak(seconds));
  const int fds_after = asyncio::testing_util::open_fd_count();
  if (fds_after != fds_before) {
    std::printf("soak: %d descriptors before, %d after: leaked\n", fds_before, fds_after);
    return 1;
  }
  std::printf("soak: no descriptor left behind (%d before and after)\n", fds_after);
  return status;
}
