// What //dns does without c-ares: IP literals and numeric ports, the shape of
// getaddrinfo's answer (one entry per socket type), the EAI_* codes and the
// messages of GaiError.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loop/loop.h"

namespace asyncio::dns_internal {

// "80" -> 80, "" -> 0; nullopt for a service name ("http") or a number out of
// range.
std::optional<uint16_t> numeric_port(std::string_view port);

// A port: numeric, or a service name looked up in /etc/services.
struct Service {
  uint16_t port = 0;
  bool named = false;  // it came from a service name
};
// Throws GaiError: EAI_SERVICE for an unknown service, EAI_NONAME for a
// service name with AI_NUMERICSERV. `host` is for the message.
Service resolve_service(const std::string& host, const std::string& port,
                        const AddrInfoHints& hints);
// getnameinfo's service: the name of `port` unless NI_NUMERICSERV (or none).
std::string service_name(uint16_t port, int ni_flags);
// "localhost" and the names under .localhost (RFC 6761), which are never sent
// to a DNS server.
bool is_localhost(std::string_view host);

// The answer of getaddrinfo when no resolver is needed: `host` is empty or an
// IP literal. nullopt when `host` is a name. Throws GaiError for what
// getaddrinfo rejects up front: an unsupported family (EAI_FAMILY), a literal
// of the other family (EAI_ADDRFAMILY), a name with AI_NUMERICHOST
// (EAI_NONAME), a bad service (see resolve_service).
std::optional<std::vector<AddrInfo>> numeric_addrinfo(const std::string& host,
                                                      const std::string& port,
                                                      const AddrInfoHints& hints);

// getaddrinfo's answer for `addresses` (their ports are replaced): sorted by
// RFC 6724 if `sort` and there are several, one entry per socket type (see
// append_entries), the canonical name on the first entry with AI_CANONNAME.
std::vector<AddrInfo> build_addrinfo(std::vector<SocketAddress> addresses, const Service& service,
                                     const AddrInfoHints& hints, const std::string& canonname,
                                     bool sort);

// `addr` with another port.
SocketAddress with_port(const SocketAddress& addr, uint16_t port);

// Appends the entries for one resolved address: one per socket type when
// hints.socktype is 0 (stream/TCP, datagram/UDP, raw), as glibc does, else
// one with the hinted type and its default protocol. `named_service`: the
// port came from a service name, which only has stream entries by default.
void append_entries(std::vector<AddrInfo>& out, const SocketAddress& addr,
                    const AddrInfoHints& hints, bool named_service);

// Orders the addresses of one answer as RFC 6724 says (what glibc's
// getaddrinfo does): usable destinations first, then by scope, label,
// precedence and prefix. Costs a UDP socket per address, so only done for
// answers with several addresses.
void sort_addresses(std::vector<SocketAddress>& addresses);

// AI_* flags (glibc) -> ARES_AI_*; NI_* -> ARES_NI_*.
int to_ares_ai_flags(int ai_flags);
int to_ares_ni_flags(int ni_flags);

// The EAI_* code for a c-ares status.
int eai_from_ares(int ares_status);

// A GaiError for `what` ("example.com", "getnameinfo(192.0.2.1)"):
// "<what>: <gai_strerror(code)>", plus c-ares' own reason when there is one.
std::exception_ptr make_gai_error(int eai_code, std::string_view what, int ares_status = 0);
std::exception_ptr gai_error_from_ares(int ares_status, std::string_view what);

}  // namespace asyncio::dns_internal
