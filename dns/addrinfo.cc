#include "dns/internal/addrinfo.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <strings.h>

#include <cstring>
#include <stdexcept>
#include <utility>

namespace asyncio::dns_internal {
namespace {

SocketAddress make_v4(const in_addr& a, uint16_t port) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr = a;
  return SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&sin), sizeof(sin));
}

SocketAddress make_v6(const in6_addr& a, uint16_t port) {
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(port);
  sin6.sin6_addr = a;
  return SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&sin6), sizeof(sin6));
}

}  // namespace

std::optional<uint16_t> numeric_port(std::string_view port) {
  if (port.empty()) return uint16_t{0};
  if (port.size() > 5) return std::nullopt;
  uint32_t value = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value > 65535) return std::nullopt;
  return static_cast<uint16_t>(value);
}

Service resolve_service(const std::string& host, const std::string& port,
                        const AddrInfoHints& hints) {
  if (std::optional<uint16_t> number = numeric_port(port)) return Service{*number, false};
  if (hints.flags & AI_NUMERICSERV)
    std::rethrow_exception(make_gai_error(EAI_NONAME, host + ":" + port));
  // /etc/services, as glibc and c-ares read it.
  const bool udp_only = hints.socktype == SOCK_DGRAM || hints.protocol == IPPROTO_UDP;
  for (const char* proto : {"tcp", "udp"}) {
    if (udp_only && std::strcmp(proto, "tcp") == 0) continue;
    servent entry;
    servent* found = nullptr;
    char buf[1024];
    if (::getservbyname_r(port.c_str(), proto, &entry, buf, sizeof(buf), &found) == 0 &&
        found != nullptr) {
      return Service{ntohs(static_cast<uint16_t>(found->s_port)), true};
    }
  }
  std::rethrow_exception(make_gai_error(EAI_SERVICE, host + ":" + port));
}

std::string service_name(uint16_t port, int ni_flags) {
  if (!(ni_flags & NI_NUMERICSERV)) {
    servent entry;
    servent* found = nullptr;
    char buf[1024];
    if (::getservbyport_r(htons(port), (ni_flags & NI_DGRAM) ? "udp" : "tcp", &entry, buf,
                          sizeof(buf), &found) == 0 &&
        found != nullptr) {
      return found->s_name;
    }
  }
  return std::to_string(port);
}

bool is_localhost(std::string_view host) {
  auto iequals = [](std::string_view a, std::string_view b) {
    return a.size() == b.size() && ::strncasecmp(a.data(), b.data(), a.size()) == 0;
  };
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (iequals(host, "localhost")) return true;
  return host.size() > 10 && iequals(host.substr(host.size() - 10), ".localhost");
}

std::vector<AddrInfo> build_addrinfo(std::vector<SocketAddress> addresses, const Service& service,
                                     const AddrInfoHints& hints, const std::string& canonname,
                                     bool sort) {
  if (sort) sort_addresses(addresses);
  std::vector<AddrInfo> out;
  out.reserve(addresses.size() * (hints.socktype == 0 ? 3 : 1));
  for (const SocketAddress& addr : addresses) {
    append_entries(out, with_port(addr, service.port), hints, service.named);
  }
  if ((hints.flags & AI_CANONNAME) && !out.empty()) out.front().canonname = canonname;
  return out;
}

std::optional<std::vector<AddrInfo>> numeric_addrinfo(const std::string& host,
                                                      const std::string& port,
                                                      const AddrInfoHints& hints) {
  const int family = hints.family;
  if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6) {
    std::rethrow_exception(make_gai_error(EAI_FAMILY, host));
  }
  std::vector<SocketAddress> addresses;
  if (host.empty()) {
    // No host: the wildcard addresses to bind to, or the loopback ones to
    // connect to, in glibc's order.
    const bool passive = (hints.flags & AI_PASSIVE) != 0;
    in_addr v4{};
    v4.s_addr = htonl(passive ? INADDR_ANY : INADDR_LOOPBACK);
    const in6_addr v6 = passive ? in6addr_any : in6addr_loopback;
    if (passive) {
      if (family != AF_INET6) addresses.push_back(make_v4(v4, 0));
      if (family != AF_INET) addresses.push_back(make_v6(v6, 0));
    } else {
      if (family != AF_INET) addresses.push_back(make_v6(v6, 0));
      if (family != AF_INET6) addresses.push_back(make_v4(v4, 0));
    }
  } else {
    in_addr v4;
    std::optional<SocketAddress> literal;
    if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) {
      literal = make_v4(v4, 0);
    } else if (host.find(':') != std::string::npos) {
      try {
        literal = SocketAddress(host, 0);
      } catch (const std::invalid_argument&) {
      }
    }
    if (!literal) {
      if (hints.flags & AI_NUMERICHOST) std::rethrow_exception(make_gai_error(EAI_NONAME, host));
      return std::nullopt;  // a name: the resolver's job
    }
    if (family == AF_INET && literal->family() == AF_INET6) {
      std::rethrow_exception(make_gai_error(EAI_ADDRFAMILY, host));
    }
    if (family == AF_INET6 && literal->family() == AF_INET) {
      if (!(hints.flags & AI_V4MAPPED))
        std::rethrow_exception(make_gai_error(EAI_ADDRFAMILY, host));
      in6_addr mapped{};
      mapped.s6_addr[10] = 0xff;
      mapped.s6_addr[11] = 0xff;
      std::memcpy(&mapped.s6_addr[12], &v4, 4);
      literal = make_v6(mapped, 0);
    }
    addresses.push_back(*literal);
  }
  const Service service = resolve_service(host, port, hints);
  return build_addrinfo(std::move(addresses), service, hints, host, /*sort=*/false);
}

SocketAddress with_port(const SocketAddress& addr, uint16_t port) {
  sockaddr_storage ss;
  std::memcpy(&ss, addr.sockaddr_ptr(), addr.sockaddr_len());
  if (addr.family() == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(port);
  } else if (addr.family() == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(port);
  }
  return SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), addr.sockaddr_len());
}

void append_entries(std::vector<AddrInfo>& out, const SocketAddress& addr,
                    const AddrInfoHints& hints, bool named_service) {
  auto add = [&](int socktype, int protocol) {
    AddrInfo info;
    info.family = addr.family();
    info.socktype = socktype;
    info.protocol = protocol;
    info.addr = addr;
    out.push_back(std::move(info));
  };
  if (hints.socktype == 0) {
    if (hints.protocol == 0 || hints.protocol == IPPROTO_TCP) add(SOCK_STREAM, IPPROTO_TCP);
    if (named_service) return;
    if (hints.protocol == 0 || hints.protocol == IPPROTO_UDP) add(SOCK_DGRAM, IPPROTO_UDP);
    if (hints.protocol == 0) add(SOCK_RAW, 0);
    return;
  }
  int protocol = hints.protocol;
  if (protocol == 0) {
    if (hints.socktype == SOCK_STREAM) protocol = IPPROTO_TCP;
    if (hints.socktype == SOCK_DGRAM) protocol = IPPROTO_UDP;
  }
  add(hints.socktype, protocol);
}

int to_ares_ai_flags(int ai_flags) {
  int flags = 0;
  if (ai_flags & AI_CANONNAME) flags |= ARES_AI_CANONNAME;
  if (ai_flags & AI_NUMERICHOST) flags |= ARES_AI_NUMERICHOST;
  if (ai_flags & AI_PASSIVE) flags |= ARES_AI_PASSIVE;
  if (ai_flags & AI_NUMERICSERV) flags |= ARES_AI_NUMERICSERV;
  if (ai_flags & AI_V4MAPPED) flags |= ARES_AI_V4MAPPED;
  if (ai_flags & AI_ALL) flags |= ARES_AI_ALL;
  if (ai_flags & AI_ADDRCONFIG) flags |= ARES_AI_ADDRCONFIG;
  return flags;
}

int to_ares_ni_flags(int ni_flags) {
  int flags = 0;
  if (ni_flags & NI_NUMERICHOST) flags |= ARES_NI_NUMERICHOST;
  if (ni_flags & NI_NUMERICSERV) flags |= ARES_NI_NUMERICSERV;
  if (ni_flags & NI_NOFQDN) flags |= ARES_NI_NOFQDN;
  if (ni_flags & NI_NAMEREQD) flags |= ARES_NI_NAMEREQD;
  if (ni_flags & NI_DGRAM) flags |= ARES_NI_DGRAM;
  return flags;
}

int eai_from_ares(int status) {
  switch (status) {
    case ARES_ENOTFOUND:
    case ARES_EBADNAME:
    case ARES_ENONAME:
      return EAI_NONAME;
    case ARES_ENODATA:
      return EAI_NODATA;
    case ARES_ETIMEOUT:
    case ARES_ECONNREFUSED:
    case ARES_ESERVFAIL:
    case ARES_EREFUSED:
      return EAI_AGAIN;
    case ARES_EBADFAMILY:
      return EAI_FAMILY;
    case ARES_EBADFLAGS:
    case ARES_EBADHINTS:
      return EAI_BADFLAGS;
    case ARES_ENOMEM:
      return EAI_MEMORY;
    case ARES_ESERVICE:
      return EAI_SERVICE;
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
      return EAI_CANCELED;
    default:  // ARES_EFORMERR, ARES_ENOTIMP, ARES_EBADRESP, ARES_EOF, ARES_EFILE, ...
      return EAI_FAIL;
  }
}

std::exception_ptr make_gai_error(int eai_code, std::string_view what, int ares_status) {
  std::string message(what);
  message += ": ";
  message += ::gai_strerror(eai_code);
  const char* reason = ares_status != 0 ? ::ares_strerror(ares_status) : nullptr;
  if (reason != nullptr && std::strcmp(reason, "unknown") != 0) {
    message += " (c-ares: ";
    message += reason;
    message += ")";
  }
  return std::make_exception_ptr(GaiError(eai_code, message));
}

std::exception_ptr gai_error_from_ares(int ares_status, std::string_view what) {
  return make_gai_error(eai_from_ares(ares_status), what, ares_status);
}

}  // namespace asyncio::dns_internal
