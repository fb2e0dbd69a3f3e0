// //dns: asynchronous name resolution with c-ares, on the event loop itself.
//
//   std::vector<AddrInfo> infos = co_await asyncio::getaddrinfo(loop, "example.com", "443");
//   auto [host, service] = co_await asyncio::getnameinfo(loop, infos[0].addr);
//   asyncio::dns::install(loop);  // create_connection & co. now resolve with c-ares
//
// Python's asyncio resolves names on a thread pool; here a c-ares channel is
// bound to one loop: its sockets are watched with the loop's readers and
// writers and its timeouts run on the loop's timers, so there is no extra
// thread. /etc/hosts is honoured (the system's lookup order, normally "files,
// then DNS"; the file is parsed once per process and re-read when it
// changes), IP literals and localhost are answered without a query, at most
// ResolverOptions::max_queries_in_flight queries are out at once, and a lookup
// whose task is cancelled is abandoned: its answer, when it comes, is dropped.
//
// AddrInfo, AddrInfoHints, GaiError and NameResolver live in //loop (so that
// transports can use them without depending on //dns); they are re-exported
// here.
#pragma once

#include <netdb.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "futures/futures.h"
#include "loop/loop.h"

namespace asyncio {

namespace dns_internal {
class ResolverCore;
}  // namespace dns_internal

// loop.getaddrinfo(host, port, family=..., type=..., proto=..., flags=...):
// resolves on `loop` with c-ares, through the resolver dns::install gave the
// loop, or else a per-loop resolver with the default options (created on
// first use, destroyed with the loop). `port` is a number, a service name
// ("http") or empty (port 0); `host` empty means the loopback address, or the
// wildcard address with AI_PASSIVE. Like socket.getaddrinfo, a zero socktype
// gives one entry per socket type (stream, datagram, raw) for each address.
// Throws GaiError (code() is EAI_NONAME for a name that does not exist,
// EAI_AGAIN for a timeout or an unreachable server, ...).
Coro<std::vector<AddrInfo>> getaddrinfo(EventLoop& loop, std::string host, std::string port,
                                        AddrInfoHints hints = {});

// loop.getnameinfo(sockaddr, flags): (host, service) for an IPv4 or IPv6
// address, with the NI_* flags of <netdb.h> (NI_NUMERICHOST, NI_NUMERICSERV,
// NI_NAMEREQD, NI_NOFQDN, NI_DGRAM). Without NI_NAMEREQD, an address that has
// no PTR record gives its numeric form. Throws GaiError.
Coro<std::pair<std::string, std::string>> getnameinfo(EventLoop& loop, const SocketAddress& addr,
                                                      int flags = 0);

namespace dns {

// How a Resolver's c-ares channel is set up. Anything left at its default
// comes from /etc/resolv.conf (or c-ares' defaults when that says nothing).
struct ResolverOptions {
  // DNS servers, in order: "127.0.0.1", "127.0.0.1:5353", "::1", "[::1]:5353".
  // Empty: the nameservers of /etc/resolv.conf.
  std::vector<std::string> servers;
  // How long one attempt waits for an answer (c-ares doubles it on each round
  // through the servers). 0: resolv.conf's "options timeout:", else 5 s.
  std::chrono::milliseconds timeout{0};
  // Attempts per server. 0: resolv.conf's "options attempts:", else 4 (c-ares' default).
  int tries = 0;
  // Pick servers round-robin instead of always starting with the first one
  // (resolv.conf's "options rotate"). Unset: resolv.conf decides.
  std::optional<bool> rotate;
  // Names with fewer dots than this are tried with the search domains first
  // (resolv.conf's "options ndots:"). Negative: resolv.conf's, else 1.
  int ndots = -1;
  // Search domains (resolv.conf's "search"). Unset: resolv.conf's; an empty
  // list: none.
  std::optional<std::vector<std::string>> search_domains;
  // Lookup order: "fb" (the hosts file, then DNS), "bf", "b" (DNS only) or
  // "f" (the hosts file only). Empty: the system's, as c-ares reads it
  // (/etc/nsswitch.conf's "hosts:" line), else "fb".
  std::string lookups;
  // Queries over TCP instead of UDP.
  bool use_tcp = false;
  // Another resolv.conf to read instead of /etc/resolv.conf.
  std::string resolv_conf;
  // Another hosts file to read instead of /etc/hosts (for the "f" lookups).
  // Hosts files are parsed once per process and checked for changes at most
  // once a second.
  std::string hosts_file;
  // At most this many lookups are out at the DNS servers at once; more wait
  // for a free slot, in order. A burst of thousands of UDP queries overflows
  // socket buffers (the server's or ours), and c-ares only sends a lost query
  // again after a whole timeout. 0: kDefaultMaxQueriesInFlight.
  int max_queries_in_flight = 0;
  static constexpr int kDefaultMaxQueriesInFlight = 128;
};

// A c-ares channel bound to one loop: every lookup runs on that loop (use the
// Resolver on the loop's thread only). Destroying the Resolver destroys the
// channel: lookups still pending fail with GaiError(EAI_CANCELED). Destroying
// the loop shuts the Resolver down too; it must not be used afterwards.
class Resolver {
 public:
  // Throws std::invalid_argument for a malformed server address and
  // std::runtime_error if c-ares cannot set the channel up.
  explicit Resolver(EventLoop& loop, ResolverOptions options = {});
  ~Resolver();
  Resolver(Resolver&& other) noexcept;
  Resolver& operator=(Resolver&& other) noexcept;
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // As asyncio::getaddrinfo and asyncio::getnameinfo, through this resolver.
  Coro<std::vector<AddrInfo>> getaddrinfo(std::string host, std::string port,
                                          AddrInfoHints hints = {});
  Coro<std::pair<std::string, std::string>> getnameinfo(const SocketAddress& addr, int flags = 0);

  EventLoop& loop() const;
  // Lookups started and not yet answered (abandoned ones included until
  // c-ares is done with them).
  size_t pending() const;
  // This resolver as the loop's NameResolver hook (EventLoop::set_name_resolver).
  std::shared_ptr<NameResolver> name_resolver() const;

 private:
  std::shared_ptr<dns_internal::ResolverCore> core_;
};

// Makes c-ares with `options` the resolver of `loop`: create_connection,
// open_connection and the other functions that take a host name resolve
// through it, and so do asyncio::getaddrinfo / getnameinfo on that loop.
// Calling it again replaces the previous one (its pending lookups finish).
// The resolver is destroyed with the loop.
void install(EventLoop& loop, ResolverOptions options = {});

}  // namespace dns
}  // namespace asyncio
