// //dns against a real DNS server: a private dnsmasq on loopback with the
// records written here, a server that never answers, /etc/hosts, IP literals,
// cancellation and teardown.
#include "dns/dns.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dns/testing/dnsmasq_server.h"
#include "futures/futures.h"
#include "gtest/gtest.h"
#include "loop/loop.h"

namespace asyncio {
namespace {

using namespace std::chrono_literals;
using dns_testing::DnsmasqConfig;
using dns_testing::DnsmasqServer;
using dns_testing::SilentServer;

constexpr int kBulkNames = 1000;

// ASSERT_EQ for coroutines (gtest's ASSERT_* `return`, which a coroutine cannot).
#define CO_ASSERT_EQ(a, b)        \
  do {                            \
    EXPECT_EQ(a, b);              \
    if (!((a) == (b))) co_return; \
  } while (0)

std::string bulk_name(int i) { return "bulk" + std::to_string(i) + ".test"; }
std::string bulk_address(int i) {
  return "198.18." + std::to_string(i / 256) + "." + std::to_string(i % 256);
}

DnsmasqConfig test_records() {
  DnsmasqConfig config;
  config.hosts = {
      {"192.0.2.1", "multi.test"},    {"192.0.2.2", "multi.test"}, {"192.0.2.3", "multi.test"},
      {"2001:db8::1", "v6only.test"}, {"192.0.2.10", "both.test"}, {"2001:db8::10", "both.test"},
      {"192.0.2.20", "target.test"},
  };
  for (int i = 0; i < kBulkNames; ++i) config.hosts.emplace_back(bulk_address(i), bulk_name(i));
  // alias1 -> alias2 -> alias3 -> target
  config.cnames = {{"alias1.test", "alias2.test"},
                   {"alias2.test", "alias3.test"},
                   {"alias3.test", "target.test"}};
  config.host_records = {"rev.test,192.0.2.50,2001:db8::50"};
  // NXDOMAIN, not REFUSED, for addresses without a PTR record.
  config.local_domains = {"test", "2.0.192.in-addr.arpa"};
  return config;
}

class DnsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new DnsmasqServer(test_records()); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  // Options for the test's dnsmasq only, with nothing from resolv.conf that
  // could change the queries (search domains).
  static dns::ResolverOptions local_options() {
    dns::ResolverOptions options;
    options.servers = {server_->address()};
    options.timeout = 2000ms;
    options.tries = 3;
    options.search_domains = std::vector<std::string>{};
    return options;
  }

  static DnsmasqServer* server_;
};

DnsmasqServer* DnsTest::server_ = nullptr;

std::vector<std::string> hosts_of(const std::vector<AddrInfo>& infos) {
  std::vector<std::string> hosts;
  for (const AddrInfo& info : infos) hosts.push_back(info.addr.host());
  std::sort(hosts.begin(), hosts.end());
  hosts.erase(std::unique(hosts.begin(), hosts.end()), hosts.end());
  return hosts;
}

// The EAI_* code of the GaiError `aw` throws; 0 if it succeeds.
template <class A>
Coro<int> gai_code(A aw, std::string* message = nullptr) {
  try {
    co_await std::move(aw);
  } catch (const GaiError& e) {
    if (message != nullptr) *message = e.what();
    co_return e.code();
  }
  co_return 0;
}

AddrInfoHints inet_stream() {
  AddrInfoHints hints;
  hints.family = AF_INET;
  hints.socktype = SOCK_STREAM;
  return hints;
}

// ---------------------------------------------------------------------------
// Records served by dnsmasq

TEST_F(DnsTest, SeveralARecords) {
  run([]() -> Coro<void> {
    dns::Resolver resolver(get_running_loop(), local_options());
    std::vector<AddrInfo> infos = co_await resolver.getaddrinfo("multi.test", "80", inet_stream());
    CO_ASSERT_EQ(infos.size(), 3u);
    std::vector<std::string> expected = {"192.0.2.1", "192.0.2.2", "192.0.2.3"};
    EXPECT_EQ(hosts_of(infos), expected);
    for (const AddrInfo& info : infos) {
      EXPECT_EQ(info.family, AF_INET);
      EXPECT_EQ(info.socktype, SOCK_STREAM);
      EXPECT_EQ(info.protocol, IPPROTO_TCP);
      EXPECT_EQ(info.addr.port(), 80);
      EXPECT_EQ(info.canonname, "");
    }
  }());
}

TEST_F(DnsTest, AaaaRecord) {
  run([]() -> Coro<void> {
    dns::Resolver resolver(get_running_loop(), local_options());
    AddrInfoHints hints;
    hints.family = AF_INET6;
    hints.socktype = SOCK_STREAM;
    std::vector<AddrInfo> infos = co_await resolver.getaddrinfo("v6only.test", "443", hints);
    CO_ASSERT_EQ(infos.size(), 1u);
    EXPECT_EQ(infos[0].family, AF_INET6);
    EXPECT_EQ(infos[0].addr.host(), "2001:db8::1");
    EXPECT_EQ(infos[0].addr.port(), 443);
    // The name exists, without an IPv4 address.
    EXPECT_EQ(co_await gai_code(resolver.getaddrinfo("v6only.test", "443", inet_stream())),
              EAI_NODATA);
  }());
}

TEST_F(DnsTest, CnameChain) {
  run([]() -> Coro<void> {
    dns::Resolver resolver(get_running_loop(), local_options());
    AddrInfoHints hints = inet_stream();
    hints.flags = AI_CANONNAME;
    std::vector<AddrInfo> infos = co_await resolver.getaddrinfo("alias1.test", "80", hints);
    CO_ASSERT_EQ(infos.size(), 1u);
    EXPECT_EQ(infos[0].addr.host(), "192.0.2.20");
    EXPECT_EQ(infos[0].canonname, "target.test");
    // Without AI_CANONNAME, no canonical name.
    infos = co_await resolver.getaddrinfo("alias2.test", "80", inet_stream());
    CO_ASSERT_EQ(infos.size(), 1u);
    EXPECT_EQ(infos[0].canonname, "");
  }());
}

TEST_F(DnsTest, MissingNameIsEaiNoname) {
  run([]() -> Coro<void> {
    dns::Resolver resolver(get_running_loop(), local_options());
    std::string message;
    EXPECT_EQ(co_await gai_code(resolver.getaddrinfo("nope.test", "80"), &message), EAI_NONAME);
    EXPECT_NE(message.find("nope.test"), std::string::npos) << message;
    EXPECT_NE(message.find(gai_strerror(EAI_NONAME)), std::string::npos) << message;
  }());
}

TEST_F(DnsTest, UnspecGivesBothFamilies) {
  run([]() -> Coro<void> {
    dns::Resolver resolver(get_running_loop(), local_options());
    AddrInfoHints hints;
    hints.socktype = SOCK_STREAM;
    std::vector<AddrInfo> infos = co_await resolver.getaddrinfo("both.test", "53", hints);
    std::vector<std::string> expected = {"192.0.2.10", "2001:db8::10"};
    EXPECT_EQ(hosts_of(infos), expected);
    std::set<int> families;
    for (const AddrInfo& info : infos) families.insert(info.family);
    EXPECT_EQ(families, (std::set<int>{AF_INET, AF_INET6}));
    // Only IPv4 records: AF_UNSPEC gives them (the AAAA query finds nothing).
    infos = co_await resolver.getaddrinfo("multi.test", "53", hints);
    EXPECT_EQ(infos.size(), 3u);
  }());
}

TEST_F(DnsTest, ZeroSocktypeGivesOneEntryPerSocketType) {
  run([]() -> Coro<void> {
    dns::Resolver resolver(get_running_loop(), local_options());
    AddrInfoHints hints;
    hints.family = AF_INET;
    std::vector<AddrInfo> infos = co_await resolver.getaddrinfo("target.test", "7", hints);
    CO_ASSERT_EQ(infos.size(), 3u);
    EXPECT_EQ(infos[0].socktype, SOCK_STREAM);
    EXPECT_EQ(infos[0].protocol, IPPROTO_TCP);
    EXPECT_EQ(infos[1].socktype, SOCK_DGRAM);
    EXPECT_EQ(infos[1].protocol, IPPROTO_UDP);
    EXPECT_EQ(infos[2].socktype, SOCK_RAW);
    for (const AddrInfo& info : infos) EXPECT_EQ(info.addr.to_string(), "192.0.2.20:7");
  }());
}

TEST_F(DnsTest, ServiceNames) {
  run([]() -> Coro<void> {
    dns::Resolver resolver(get_running_loop(), local_options());
    std::vector<AddrInfo> infos =
        co_await resolver.getaddrinfo("target.test", "http", inet_stream());
    CO_ASSERT_EQ(infos.size(), 1u);
    EXPECT_EQ(infos[0].addr.port(), 80);
    EXPECT_EQ(
        co_await gai_code(resolver.getaddrinfo("target.test", "no-such-service", inet_stream())),
        EAI_SERVICE);
    AddrInfoHints numeric = inet_stream();
    numeric.flags = AI_NUMERICSERV;
    EXPECT_EQ(co_await gai_code(resolver.getaddrinfo("target.test", "http", numeric)), EAI_NONAME);
  }());
}

TEST_F(DnsTest, SearchDomainsAndNdots) {
  run([]() -> Coro<void> {
    dns::ResolverOptions options = local_options();
    options.search_domains = std::vector<std::string>{"nowhere.test", "test"};
    options.ndots = 1;
    options.rotate = true;
    dns::Resolver resolver(get_running_loop(), options);
    // "multi" has no dot: tried as multi.nowhere.test (NXDOMAIN), then multi.test.
    std::vector<AddrInfo> infos = co_await resolver.getaddrinfo("multi", "80", inet_stream());
    EXPECT_EQ(infos.size(), 3u);
    // Without search domains, "multi" is asked as is: dnsmasq refuses it.
    options.search_domains = std::vector<std::string>{};
    dns::Resolver no_search(get_running_loop(), options);
    EXPECT_NE(co_await gai_code(no_search.getaddrinfo("multi", "80", inet_stream())), 0);
  }());
}

TEST_F(DnsTest, OverTcp) {
  run([]() -> Coro<void> {
    dns::ResolverOptions options = local_options();
    options.use_tcp = true;
    dns::Resolver resolver(get_running_loop(), options);
    std::vector<AddrInfo> infos = co_await resolver.getaddrinfo("multi.test", "80", inet_stream());
    EXPECT_EQ(infos.size(), 3u);
  }());
}

TEST_F(DnsTest, FallsOverToTheNextServer) {
  SilentServer silent;
  run([&silent]() -> Coro<void> {
    dns::ResolverOptions options = local_options();
    options.servers = {silent.address(), server_->address()};
    options.timeout = 100ms;
    options.tries = 2;
    dns::Resolver resolver(get_running_loop(), options);
    std::vector<AddrInfo> infos = co_await resolver.getaddrinfo("multi.test", "80", inet_stream());
    EXPECT_EQ(infos.size(), 3u);
  }());
}

TEST_F(DnsTest, ThousandConcurrentLookups) {
  run([]() -> Coro<void> {
    // At most kDefaultMaxQueriesInFlight go out at once: a burst of 1,000
    // UDP queries would overflow dnsmasq's socket buffer, and c-ares would
    // send the lost ones again only after a whole timeout.
    dns::Resolver resolver(get_running_loop(), local_options());
    const double start = get_running_loop().time();
    std::vector<Task<std::vector<AddrInfo>>> tasks;
    for (int i = 0; i < kBulkNames; ++i) {
      tasks.push_back(create_task(resolver.getaddrinfo(bulk_name(i), "80", inet_stream())));
    }
    co_await sleep(0s);  // every task has started its lookup
    EXPECT_GT(resolver.pending(), kBulkNames / 2u);
    int good = 0;
    for (int i = 0; i < kBulkNames; ++i) {
      std::vector<AddrInfo> infos = co_await tasks[i];
      if (infos.size() == 1 && infos[0].addr.host() == bulk_address(i)) ++good;
    }
    EXPECT_EQ(good, kBulkNames);
    EXPECT_EQ(resolver.pending(), 0u);
    std::printf("%d lookups in %.3f s\n", kBulkNames, get_running_loop().time() - start);
  }());
}

// ---------------------------------------------------------------------------
// getnameinfo

TEST_F(DnsTest, GetnameinfoNumeric) {
  run([]() -> Coro<void> {
    dns::Resolver resolver(get_running_loop(), local_options());
    auto [host, service] = co_await resolver.getnameinfo(SocketAddress("192.0.2.50", 8080),
                                                         NI_NUMERICHOST | NI_NUMERICSERV);
    EXPECT_EQ(host, "192.0.2.50");
    EXPECT_EQ(service, "8080");
  }());
}

TEST_F(DnsTest, GetnameinfoReverse) {
  run([]() -> Coro<void> {
    dns::Resolver resolver(get_running_loop(), local_options());
    auto [host, service] = co_await resolver.getnameinfo(SocketAddress("192.0.2.50", 80));
    EXPECT_EQ(host, "rev.test");
    EXPECT_EQ(service, "http");
    auto [host6, service6] =
        co_await resolver.getnameinfo(SocketAddress("2001:db8::50", 443), NI_NUMERICSERV);
    EXPECT_EQ(host6, "rev.test");
    EXPECT_EQ(service6, "443");
    // No PTR record: the numeric form, unless a name is required.
    auto [numeric, unused] = co_await resolver.getnameinfo(SocketAddress("192.0.2.99", 80));
    EXPECT_EQ(numeric, "192.0.2.99");
    EXPECT_EQ(co_await gai_code(resolver.getnameinfo(SocketAddress("192.0.2.99", 80), NI_NAMEREQD)),
              EAI_NONAME);
    EXPECT_EQ(co_await gai_code(resolver.getnameinfo(SocketAddress::unix_path("/tmp/x"))),
              EAI_FAMILY);
  }());
}

// ---------------------------------------------------------------------------
// No query needed

TEST_F(DnsTest, NumericHostsAnswerWithoutAQuery) {
  SilentServer silent;  // any query would hang until the timeout
  run([&silent]() -> Coro<void> {
    dns::ResolverOptions options;
    options.servers = {silent.address()};
    options.timeout = 5000ms;
    dns::Resolver resolver(get_running_loop(), options);
    const double start = get_running_loop().time();
    std::vector<AddrInfo> infos = co_await resolver.getaddrinfo("192.0.2.7", "80", inet_stream());
    CO_ASSERT_EQ(infos.size(), 1u);
    EXPECT_EQ(infos[0].addr.to_string(), "192.0.2.7:80");
    AddrInfoHints hints;
    hints.socktype = SOCK_STREAM;
    hints.flags = AI_CANONNAME;
    infos = co_await resolver.getaddrinfo("::1", "", hints);
    CO_ASSERT_EQ(infos.size(), 1u);
    EXPECT_EQ(infos[0].family, AF_INET6);
    EXPECT_EQ(infos[0].addr.to_string(), "[::1]:0");
    EXPECT_EQ(infos[0].canonname, "::1");
    // No host: loopback, or the wildcard with AI_PASSIVE.
    infos = co_await resolver.getaddrinfo("", "8000", inet_stream());
    CO_ASSERT_EQ(infos.size(), 1u);
    EXPECT_EQ(infos[0].addr.to_string(), "127.0.0.1:8000");
    AddrInfoHints passive = inet_stream();
    passive.flags = AI_PASSIVE;
    infos = co_await resolver.getaddrinfo("", "8000", passive);
    CO_ASSERT_EQ(infos.size(), 1u);
    EXPECT_EQ(infos[0].addr.to_string(), "0.0.0.0:8000");
    // A v4 literal as IPv4-mapped IPv6.
    AddrInfoHints mapped;
    mapped.family = AF_INET6;
    mapped.socktype = SOCK_STREAM;
    mapped.flags = AI_V4MAPPED;
    infos = co_await resolver.getaddrinfo("192.0.2.7", "80", mapped);
    CO_ASSERT_EQ(infos.size(), 1u);
    EXPECT_EQ(infos[0].addr.host(), "::ffff:192.0.2.7");
    EXPECT_LT(get_running_loop().time() - start, 1.0);
    EXPECT_EQ(resolver.pending(), 0u);

    // What getaddrinfo rejects up front.
    AddrInfoHints v4 = inet_stream();
    EXPECT_EQ(co_await gai_code(resolver.getaddrinfo("::1", "80", v4)), EAI_ADDRFAMILY);
    AddrInfoHints numeric = inet_stream();
    numeric.flags = AI_NUMERICHOST;
    EXPECT_EQ(co_await gai_code(resolver.getaddrinfo("multi.test", "80", numeric)), EAI_NONAME);
    AddrInfoHints unix_family;
    unix_family.family = AF_UNIX;
    EXPECT_EQ(co_await gai_code(resolver.getaddrinfo("localhost", "80", unix_family)), EAI_FAMILY);
    EXPECT_EQ(resolver.pending(), 0u);
  }());
}

TEST_F(DnsTest, LocalhostFromTheHostsFile) {
  SilentServer silent;  // /etc/hosts answers: no query reaches it
  run([&silent]() -> Coro<void> {
    dns::ResolverOptions options;
    options.servers = {silent.address()};
    options.timeout = 5000ms;
    options.search_domains = std::vector<std::string>{};
    dns::Resolver resolver(get_running_loop(), options);
    const double start = get_running_loop().time();
    std::vector<AddrInfo> infos = co_await resolver.getaddrinfo("localhost", "80", inet_stream());
    std::vector<std::string> expected = {"127.0.0.1"};
    EXPECT_EQ(hosts_of(infos), expected);
    AddrInfoHints any;
    any.socktype = SOCK_STREAM;
    infos = co_await resolver.getaddrinfo("localhost", "80", any);
    std::vector<std::string> hosts = hosts_of(infos);
    EXPECT_NE(std::find(hosts.begin(), hosts.end(), "127.0.0.1"), hosts.end());
    EXPECT_LT(get_running_loop().time() - start, 1.0);
    // DNS only: now the silent server is asked (and never answers).
    options.lookups = "b";
    options.timeout = 100ms;
    options.tries = 1;
    dns::Resolver dns_only(get_running_loop(), options);
    EXPECT_EQ(co_await gai_code(dns_only.getaddrinfo("localhost", "80", inet_stream())), EAI_AGAIN);
  }());
}

// A hosts file the test writes (dns::ResolverOptions::hosts_file).
class HostsFile {
 public:
  HostsFile() {
    const char* tmp = std::getenv("TEST_TMPDIR");
    static int count = 0;
    // A new path each time: a file's table is cached for up to a second.
    path_ = std::string(tmp != nullptr ? tmp : "/tmp") + "/hosts." + std::to_string(::getpid()) +
            "." + std::to_string(++count);
  }
  ~HostsFile() { std::remove(path_.c_str()); }
  void write(const std::string& text) {
    std::ofstream out(path_, std::ios::trunc);
    out << text;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// True if the kernel has a route to ::1 (IPv6 loopback is up).
bool ipv6_loopback_usable() {
  int fd = ::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  SocketAddress lo("::1", 9);
  bool ok = ::connect(fd, lo.sockaddr_ptr(), lo.sockaddr_len()) == 0;
  ::close(fd);
  return ok;
}

TEST_F(DnsTest, HostsFileComesFirst) {
  HostsFile hosts;
  hosts.write(
      "# a comment\n"
      "192.0.2.77 filehost.test filealias   # trailing comment\n"
      "2001:db8::77 filehost.test\n"
      "10.0.0.1 multi.test\n"
      "127.0.0.1 order.test\n"
      "::1 order.test\n");
  run([&hosts]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    dns::ResolverOptions options = local_options();
    options.hosts_file = hosts.path();
    options.lookups = "fb";
    dns::Resolver resolver(loop, options);
    AddrInfoHints hints;
    hints.socktype = SOCK_STREAM;
    hints.flags = AI_CANONNAME;
    std::vector<AddrInfo> infos = co_await resolver.getaddrinfo("FILEALIAS", "80", hints);
    std::vector<std::string> expected = {"192.0.2.77"};
    EXPECT_EQ(hosts_of(infos), expected);
    CO_ASSERT_EQ(infos.size(), 1u);
    EXPECT_EQ(infos[0].canonname, "filehost.test");
    infos = co_await resolver.getaddrinfo("filehost.test", "80", hints);
    expected = {"192.0.2.77", "2001:db8::77"};
    EXPECT_EQ(hosts_of(infos), expected);
    // The file shadows DNS.
    infos = co_await resolver.getaddrinfo("multi.test", "80", inet_stream());
    expected = {"10.0.0.1"};
    EXPECT_EQ(hosts_of(infos), expected);
    // Several addresses are sorted as RFC 6724 says: ::1 (precedence 50)
    // before 127.0.0.1 (35), if IPv6 loopback is up.
    infos = co_await resolver.getaddrinfo("order.test", "80", hints);
    CO_ASSERT_EQ(infos.size(), 2u);
    EXPECT_EQ(infos[0].addr.host(), ipv6_loopback_usable() ? "::1" : "127.0.0.1");
    // Reverse lookups read it too.
    auto [name, service] = co_await resolver.getnameinfo(SocketAddress("192.0.2.77", 80));
    EXPECT_EQ(name, "filehost.test");
    EXPECT_EQ(service, "http");
    auto [short_name, unused] =
        co_await resolver.getnameinfo(SocketAddress("192.0.2.77", 80), NI_NOFQDN);
    EXPECT_EQ(short_name, "filehost");
    // localhost is loopback even when the file does not say so.
    AddrInfoHints v6;
    v6.family = AF_INET6;
    v6.socktype = SOCK_STREAM;
    infos = co_await resolver.getaddrinfo("localhost", "80", v6);
    expected = {"::1"};
    EXPECT_EQ(hosts_of(infos), expected);

    // A changed file is read again (changes are looked for once a second).
    hosts.write("192.0.2.78 filehost.test\n");
    co_await sleep(1100ms);
    infos = co_await resolver.getaddrinfo("filehost.test", "80", inet_stream());
    expected = {"192.0.2.78"};
    EXPECT_EQ(hosts_of(infos), expected);
  }());
}

TEST_F(DnsTest, LookupOrder) {
  HostsFile hosts;
  hosts.write("192.0.2.77 filehost.test\n10.0.0.1 multi.test\n");
  run([&hosts]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    // DNS first, then the file.
    dns::ResolverOptions options = local_options();
    options.hosts_file = hosts.path();
    options.lookups = "bf";
    dns::Resolver dns_first(loop, options);
    std::vector<AddrInfo> infos = co_await dns_first.getaddrinfo("multi.test", "80", inet_stream());
    EXPECT_EQ(infos.size(), 3u);
    infos = co_await dns_first.getaddrinfo("filehost.test", "80", inet_stream());
    std::vector<std::string> expected = {"192.0.2.77"};
    EXPECT_EQ(hosts_of(infos), expected);
    // The file only: a miss is EAI_NONAME without asking the (silent) server.
    SilentServer silent;
    options.servers = {silent.address()};
    options.timeout = 5000ms;
    options.lookups = "f";
    dns::Resolver files_only(loop, options);
    const double start = loop.time();
    EXPECT_EQ(co_await gai_code(files_only.getaddrinfo("multi.test", "80", inet_stream())), 0);
    EXPECT_EQ(co_await gai_code(files_only.getaddrinfo("nope.test", "80", inet_stream())),
              EAI_NONAME);
    auto [numeric, unused] = co_await files_only.getnameinfo(SocketAddress("192.0.2.99", 80));
    EXPECT_EQ(numeric, "192.0.2.99");
    EXPECT_LT(loop.time() - start, 1.0);
    EXPECT_EQ(files_only.pending(), 0u);
  }());
}

// ---------------------------------------------------------------------------
// Timeouts, cancellation, teardown

TEST_F(DnsTest, SilentServerTimesOutWithinBounds) {
  SilentServer silent;
  run([&silent]() -> Coro<void> {
    dns::ResolverOptions options;
    options.servers = {silent.address()};
    options.timeout = 200ms;
    options.tries = 2;
    options.search_domains = std::vector<std::string>{};
    dns::Resolver resolver(get_running_loop(), options);
    EventLoop& loop = get_running_loop();
    const double start = loop.time();
    std::string message;
    AddrInfoHints hints;
    hints.socktype = SOCK_STREAM;
    EXPECT_EQ(co_await gai_code(resolver.getaddrinfo("slow.test", "80", hints), &message),
              EAI_AGAIN);
    const double elapsed = loop.time() - start;
    // Two tries on one server: 200 ms, then 400 ms (c-ares doubles the
    // timeout on each round), so about 0.6 s; never a hang.
    EXPECT_GE(elapsed, 0.2);
    EXPECT_LE(elapsed, 2.5);
    EXPECT_NE(message.find("slow.test"), std::string::npos) << message;
    EXPECT_EQ(resolver.pending(), 0u);
  }());
}

TEST_F(DnsTest, CancelledTaskAbandonsTheLookup) {
  SilentServer silent;
  run([&silent]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    // A lookup that would only end with a timeout, cancelled while waiting.
    dns::ResolverOptions options;
    options.servers = {silent.address()};
    options.timeout = 300ms;
    options.tries = 1;
    options.search_domains = std::vector<std::string>{};
    dns::Resolver resolver(loop, options);
    Task<std::vector<AddrInfo>> task =
        create_task(resolver.getaddrinfo("slow.test", "80", inet_stream()));
    co_await sleep(20ms);
    EXPECT_EQ(resolver.pending(), 1u);
    task.cancel();
    bool cancelled = false;
    try {
      co_await task;
    } catch (const CancelledError&) {
      cancelled = true;
    }
    EXPECT_TRUE(cancelled);
    // c-ares still holds the query until it times out; its answer is dropped.
    co_await sleep(600ms);
    EXPECT_EQ(resolver.pending(), 0u);

    // Cancelled before dnsmasq's answer comes: the answer is dropped too.
    dns::Resolver local(loop, local_options());
    Task<std::vector<AddrInfo>> fast =
        create_task(local.getaddrinfo("multi.test", "80", inet_stream()));
    co_await sleep(0s);  // the query is sent
    fast.cancel();
    co_await sleep(200ms);
    EXPECT_TRUE(fast.cancelled());
    EXPECT_EQ(local.pending(), 0u);
    // The resolver still works.
    std::vector<AddrInfo> infos = co_await local.getaddrinfo("multi.test", "80", inet_stream());
    EXPECT_EQ(infos.size(), 3u);
  }());
}

TEST_F(DnsTest, QueriesBeyondTheLimitWaitForASlot) {
  SilentServer silent;
  run([&silent]() -> Coro<void> {
    EventLoop& loop = get_running_loop();
    dns::ResolverOptions options;
    options.servers = {silent.address()};
    options.timeout = 5000ms;
    options.search_domains = std::vector<std::string>{};
    options.max_queries_in_flight = 2;
    auto resolver = std::make_unique<dns::Resolver>(loop, options);
    std::vector<Task<int>> tasks;
    for (int i = 0; i < 5; ++i) {
      tasks.push_back(
          create_task(gai_code(resolver->getaddrinfo(bulk_name(i), "80", inet_stream()))));
    }
    co_await sleep(20ms);
    EXPECT_EQ(resolver->pending(), 5u);  // 2 at the server, 3 waiting
    tasks[3].cancel();                   // a waiting one: dropped
    co_await sleep(0s);
    resolver.reset();  // the others fail, sent or not
    for (int i = 0; i < 5; ++i) {
      if (i == 3) {
        bool cancelled = false;
        try {
          co_await tasks[i];
        } catch (const CancelledError&) {
          cancelled = true;
        }
        EXPECT_TRUE(cancelled);
      } else {
        EXPECT_EQ(co_await tasks[i], EAI_CANCELED) << i;
      }
    }
  }());

  // With dnsmasq: 100 lookups through 3 slots all succeed.
  run([]() -> Coro<void> {
    dns::ResolverOptions options = local_options();
    options.max_queries_in_flight = 3;
    dns::Resolver resolver(get_running_loop(), options);
    std::vector<Task<std::vector<AddrInfo>>> tasks;
    for (int i = 0; i < 100; ++i) {
      tasks.push_back(create_task(resolver.getaddrinfo(bulk_name(i), "80", inet_stream())));
    }
    int good = 0;
    for (int i = 0; i < 100; ++i) {
      std::vector<AddrInfo> infos = co_await tasks[i];
      if (infos.size() == 1 && infos[0].addr.host() == bulk_address(i)) ++good;
    }
    EXPECT_EQ(good, 100);
    EXPECT_EQ(resolver.pending(), 0u);
  }());
}

TEST_F(DnsTest, DestroyedResolverFailsPendingLookups) {
  SilentServer silent;
  run([&silent]() -> Coro<void> {
    dns::ResolverOptions options;
    options.servers = {silent.address()};
    options.timeout = 5000ms;
    auto resolver = std::make_unique<dns::Resolver>(get_running_loop(), options);
    Task<int> task = create_task(gai_code(resolver->getaddrinfo("slow.test", "80", inet_stream())));
    co_await sleep(20ms);
    const double start = get_running_loop().time();
    resolver.reset();
    EXPECT_EQ(co_await task, EAI_CANCELED);
    EXPECT_LT(get_running_loop().time() - start, 1.0);
  }());
}

TEST_F(DnsTest, LoopTornDownWithPendingLookups) {
  SilentServer silent;
  dns::ResolverOptions options;
  options.servers = {silent.address()};
  options.timeout = 5000ms;
  std::unique_ptr<EventLoop> loop = new_event_loop();
  dns::install(*loop, options);
  auto outlives_loop = std::make_unique<dns::Resolver>(*loop, options);
  std::vector<Task<std::vector<AddrInfo>>> tasks;
  for (int i = 0; i < 3; ++i) {
    tasks.push_back(create_task(*loop, getaddrinfo(*loop, bulk_name(i), "80")));
    tasks.push_back(create_task(*loop, outlives_loop->getaddrinfo(bulk_name(i), "80")));
  }
  // Also a lookup through the NameResolver hook, and a Coro never awaited.
  bool called = false;
  loop->name_resolver()->getaddrinfo(
      "slow.test", "80", inet_stream(),
      [&called](std::vector<AddrInfo>, std::exception_ptr) { called = true; });
  Coro<std::vector<AddrInfo>> never_awaited = outlives_loop->getaddrinfo("x.test", "80");
  run_until_complete(*loop, sleep(50ms));
  EXPECT_EQ(outlives_loop->pending(), 3u);
  tasks.clear();
  loop.reset();  // everything pending goes with the loop, nothing leaks
  EXPECT_FALSE(called);
  EXPECT_EQ(outlives_loop->pending(), 0u);
  outlives_loop.reset();  // after its loop: harmless
  never_awaited.close();  // dropped unawaited on purpose: not reported
}

TEST_F(DnsTest, ResolverOutlivingItsLoopRejectsLookups) {
  std::unique_ptr<EventLoop> loop = new_event_loop();
  dns::Resolver resolver(*loop, local_options());
  loop.reset();
  EXPECT_THROW((void)resolver.getaddrinfo("multi.test", "80"), std::runtime_error);
}

// ---------------------------------------------------------------------------
// The loop's resolver

TEST_F(DnsTest, InstallMakesCaresTheLoopsResolver) {
  std::unique_ptr<EventLoop> loop = new_event_loop();
  EXPECT_EQ(loop->name_resolver(), nullptr);
  dns::install(*loop, local_options());
  ASSERT_NE(loop->name_resolver(), nullptr);
  std::shared_ptr<NameResolver> resolver = loop->name_resolver();

  std::vector<AddrInfo> got;
  std::exception_ptr error;
  int calls = 0;
  bool cancelled_called = false;
  resolver->getaddrinfo("multi.test", "80", inet_stream(),
                        [&](std::vector<AddrInfo> infos, std::exception_ptr e) {
                          got = std::move(infos);
                          error = e;
                          ++calls;
                        });
  NameResolver::LookupId id = resolver->getaddrinfo(
      "both.test", "80", {},
      [&](std::vector<AddrInfo>, std::exception_ptr) { cancelled_called = true; });
  resolver->cancel(id);
  // An IP literal through the hook: answered, but on a later iteration.
  bool literal_done = false;
  resolver->getaddrinfo("127.0.0.1", "80", inet_stream(),
                        [&](std::vector<AddrInfo> infos, std::exception_ptr e) {
                          literal_done = !e && infos.size() == 1;
                        });
  EXPECT_FALSE(literal_done);
  run_until_complete(*loop, sleep(300ms));
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(error);
  EXPECT_EQ(got.size(), 3u);
  EXPECT_FALSE(cancelled_called);
  EXPECT_TRUE(literal_done);

  // asyncio::getaddrinfo on this loop goes through the installed resolver
  // (the test's dnsmasq), and so does getnameinfo.
  std::vector<AddrInfo> infos =
      run_until_complete(*loop, getaddrinfo(*loop, "target.test", "80", inet_stream()));
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_EQ(infos[0].addr.host(), "192.0.2.20");
  auto names = run_until_complete(*loop, getnameinfo(*loop, SocketAddress("192.0.2.50", 80)));
  EXPECT_EQ(names.first, "rev.test");

  // Installing again replaces it.
  dns::install(*loop, local_options());
  EXPECT_NE(loop->name_resolver(), resolver);
  resolver.reset();
  loop->close();
  EXPECT_EQ(loop->name_resolver(), nullptr);
}

TEST_F(DnsTest, CallbackExceptionGoesToTheExceptionHandler) {
  std::unique_ptr<EventLoop> loop = new_event_loop();
  dns::install(*loop, local_options());
  std::string reported;
  loop->set_exception_handler(
      [&](EventLoop&, const ExceptionContext& context) { reported = context.message; });
  loop->name_resolver()->getaddrinfo(
      "multi.test", "80", {},
      [](std::vector<AddrInfo>, std::exception_ptr) { throw std::runtime_error("boom"); });
  run_until_complete(*loop, sleep(200ms));
  EXPECT_NE(reported.find("name resolution"), std::string::npos) << reported;
}

TEST(DnsOptionsTest, BadOptionsAreRejected) {
  std::unique_ptr<EventLoop> loop = new_event_loop();
  auto make = [&](std::vector<std::string> servers, std::string lookups = "") {
    dns::ResolverOptions options;
    options.servers = std::move(servers);
    options.lookups = std::move(lookups);
    dns::Resolver resolver(*loop, options);
  };
  EXPECT_THROW(make({"not-an-address"}), std::invalid_argument);
  EXPECT_THROW(make({"127.0.0.1:0"}), std::invalid_argument);
  EXPECT_THROW(make({"127.0.0.1:99999"}), std::invalid_argument);
  EXPECT_THROW(make({"[::1"}), std::invalid_argument);
  EXPECT_THROW(make({"127.0.0.1"}, "xb"), std::invalid_argument);
  EXPECT_NO_THROW(make({"127.0.0.1", "127.0.0.1:5353", "::1", "[::1]:5353"}, "fb"));
}

}  // namespace
}  // namespace asyncio
