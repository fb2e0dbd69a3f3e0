// A private dnsmasq for tests: started on 127.0.0.1 at a free port with the
// records the test gives, ready when it answers a query, killed when the
// object goes. Nothing of the machine's own resolver is touched.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "loop/posix.h"
#include "testing/async_test_util.h"

namespace asyncio::dns_testing {

struct DnsmasqConfig {
  // (address, name) lines of a hosts file (--addn-hosts): several lines for
  // one name give several records.
  std::vector<std::pair<std::string, std::string>> hosts;
  // (alias, target): CNAME records (--cname); targets may be aliases too.
  std::vector<std::pair<std::string, std::string>> cnames;
  // "name,IPv4[,IPv6]" (--host-record): forward records plus their PTRs.
  std::vector<std::string> host_records;
  // Domains answered from the records above only: any other name in them is
  // NXDOMAIN (names outside them are REFUSED: dnsmasq has no upstream).
  std::vector<std::string> local_domains = {"test"};
  // Anything else for dnsmasq's command line.
  std::vector<std::string> extra_args;
};

class DnsmasqServer {
 public:
  // Starts dnsmasq and waits until it answers (at most 10 s). Throws
  // std::runtime_error with dnsmasq's log if it cannot be started.
  explicit DnsmasqServer(DnsmasqConfig config);
  ~DnsmasqServer();
  DnsmasqServer(const DnsmasqServer&) = delete;
  DnsmasqServer& operator=(const DnsmasqServer&) = delete;

  uint16_t port() const { return port_; }
  // "127.0.0.1:<port>", as dns::ResolverOptions::servers takes it.
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // The dnsmasq executable, or "" if it is not installed.
  static std::string binary();

 private:
  bool start(const std::vector<std::string>& args, std::string* log);
  bool answers() const;

  pid_t pid_ = -1;
  uint16_t port_ = 0;
  testing_util::TempDir dir_;  // the hosts file and the log
};

// A UDP socket bound on 127.0.0.1 that never reads: a DNS server that never
// answers (and, being bound, never makes the kernel refuse either).
class SilentServer {
 public:
  SilentServer();
  ~SilentServer();
  SilentServer(const SilentServer&) = delete;
  SilentServer& operator=(const SilentServer&) = delete;
  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  posix::UniqueFd fd_;
  uint16_t port_ = 0;
};

}  // namespace asyncio::dns_testing
