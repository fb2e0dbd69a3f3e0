// //examples:resolve: looks up the names given on the command line with
// c-ares on the event loop, all at once, and prints each address found.
//
//   bazel run //examples:resolve -- localhost example.com
//   bazel run //examples:resolve -- --server=127.0.0.1:5353 --family=6 host.test
//
// Output, in the order of the arguments: "<name> IPv4 <address>" or
// "<name> IPv6 <address>" per address; a name that does not resolve prints
// "<name> error: <reason>" on stderr, and the exit status is then 1.
#include <netdb.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "dns/dns.h"
#include "futures/futures.h"
#include "loop/loop.h"

namespace {

void usage() {
  std::cerr << "usage: resolve [--server=ADDR[:PORT]]... [--family=4|6] [--timeout=MS] NAME...\n";
}

asyncio::Coro<int> resolve_all(asyncio::dns::ResolverOptions options, int family,
                               std::vector<std::string> names) {
  asyncio::EventLoop& loop = asyncio::get_running_loop();
  asyncio::dns::Resolver resolver(loop, std::move(options));
  asyncio::AddrInfoHints hints;
  hints.family = family;
  hints.socktype = SOCK_STREAM;
  // Every lookup at once; results in the order of the names.
  std::vector<asyncio::Task<std::vector<asyncio::AddrInfo>>> lookups;
  for (const std::string& name : names) {
    lookups.push_back(asyncio::create_task(resolver.getaddrinfo(name, "", hints)));
  }
  int status = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    try {
      std::vector<asyncio::AddrInfo> infos = co_await lookups[i];
      std::set<std::pair<int, std::string>> seen;
      for (const asyncio::AddrInfo& info : infos) {
        if (!seen.emplace(info.family, info.addr.host()).second) continue;
        std::cout << names[i] << (info.family == AF_INET6 ? " IPv6 " : " IPv4 ") << info.addr.host()
                  << '\n';
      }
    } catch (const asyncio::GaiError& e) {
      std::cout.flush();
      std::cerr << names[i] << " error: " << e.what() << '\n';
      status = 1;
    }
  }
  co_return status;
}

}  // namespace

int main(int argc, char** argv) {
  asyncio::dns::ResolverOptions options;
  int family = AF_UNSPEC;
  std::vector<std::string> names;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--server=", 0) == 0) {
      options.servers.push_back(arg.substr(9));
    } else if (arg == "--family=4") {
      family = AF_INET;
    } else if (arg == "--family=6") {
      family = AF_INET6;
    } else if (arg.rfind("--timeout=", 0) == 0) {
      options.timeout = std::chrono::milliseconds(std::atoi(arg.c_str() + 10));
    } else if (arg == "-h" || arg == "--help") {
      usage();
      return 0;
    } else if (!arg.empty() && arg[0] == '-') {
      usage();
      return 2;
    } else {
      names.push_back(arg);
    }
  }
  if (names.empty()) {
    usage();
    return 2;
  }
  try {
    return asyncio::run(resolve_all(std::move(options), family, std::move(names)));
  } catch (const std::exception& e) {
    std::cerr << "resolve: " << e.what() << '\n';
    return 2;
  }
}
