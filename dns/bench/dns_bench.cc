// Lookups per second with c-ares on the loop (//dns), for dns/bench/run.sh.
//
//   dns_bench --server=127.0.0.1:53 --names=1000 --count=20000 --concurrency=100
//
// `concurrency` tasks share `count` getaddrinfo calls (AF_INET, SOCK_STREAM,
// port 80) over the names bench0.test ... bench<names-1>.test, round-robin;
// a warm-up of min(count, 1000) lookups comes first. Prints one line:
// "cares concurrency=<C> count=<N> seconds=<S> lookups_per_second=<R>".
// Every answer is checked (one address, none missing).
#include <netdb.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "dns/dns.h"
#include "futures/futures.h"
#include "loop/loop.h"

namespace {

struct Config {
  std::string server = "127.0.0.1:53";
  int names = 1000;
  int count = 20000;
  int concurrency = 100;
  std::string lookups;    // "" (the system's order: /etc/hosts, then DNS) or "b"
  int max_in_flight = 0;  // 0: the default
};

struct Shared {
  int next = 0;
  int count = 0;
  int failures = 0;
};

asyncio::Coro<void> worker(asyncio::dns::Resolver& resolver, const Config& config, Shared& shared) {
  asyncio::AddrInfoHints hints;
  hints.family = AF_INET;
  hints.socktype = SOCK_STREAM;
  while (shared.next < shared.count) {
    const int i = shared.next++;
    std::string name = "bench" + std::to_string(i % config.names) + ".test";
    try {
      std::vector<asyncio::AddrInfo> infos = co_await resolver.getaddrinfo(name, "80", hints);
      if (infos.size() != 1) ++shared.failures;
    } catch (const asyncio::GaiError& e) {
      if (shared.failures++ == 0) std::cerr << "dns_bench: " << e.what() << '\n';
    }
  }
}

asyncio::Coro<double> run_lookups(asyncio::dns::Resolver& resolver, const Config& config, int count,
                                  int* failures) {
  Shared shared;
  shared.count = count;
  std::vector<asyncio::Task<void>> tasks;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < config.concurrency; ++i) {
    tasks.push_back(asyncio::create_task(worker(resolver, config, shared)));
  }
  for (auto& task : tasks) co_await task;
  *failures += shared.failures;
  co_return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

asyncio::Coro<int> bench(Config config) {
  asyncio::dns::ResolverOptions options;
  options.servers = {config.server};
  options.search_domains = std::vector<std::string>{};
  options.lookups = config.lookups;
  options.max_queries_in_flight = config.max_in_flight;
  asyncio::dns::Resolver resolver(asyncio::get_running_loop(), options);
  int failures = 0;
  co_await run_lookups(resolver, config, std::min(config.count, 1000), &failures);
  const double seconds = co_await run_lookups(resolver, config, config.count, &failures);
  std::printf("cares concurrency=%d count=%d seconds=%.4f lookups_per_second=%.0f\n",
              config.concurrency, config.count, seconds, config.count / seconds);
  if (failures != 0) {
    std::fprintf(stderr, "dns_bench: %d failed lookups\n", failures);
    co_return 1;
  }
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&arg](const char* prefix) -> const char* {
      const size_t n = std::char_traits<char>::length(prefix);
      return arg.compare(0, n, prefix) == 0 ? arg.c_str() + n : nullptr;
    };
    if (const char* v = value("--server=")) {
      config.server = v;
    } else if (const char* v = value("--names=")) {
      config.names = std::atoi(v);
    } else if (const char* v = value("--count=")) {
      config.count = std::atoi(v);
    } else if (const char* v = value("--concurrency=")) {
      config.concurrency = std::atoi(v);
    } else if (const char* v = value("--lookups=")) {
      config.lookups = v;
    } else if (const char* v = value("--max-in-flight=")) {
      config.max_in_flight = std::atoi(v);
    } else {
      std::cerr << "usage: dns_bench [--server=ADDR:PORT] [--names=N] [--count=N] "
                   "[--concurrency=N] [--lookups=fb|b] [--max-in-flight=N]\n";
      return 2;
    }
  }
  if (config.names <= 0 || config.count <= 0 || config.concurrency <= 0) {
    std::cerr << "dns_bench: --names, --count and --concurrency must be positive\n";
    return 2;
  }
  return asyncio::run(bench(config));
}
