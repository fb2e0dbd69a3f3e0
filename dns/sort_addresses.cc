// Destination address selection (RFC 6724, section 6), as glibc's
// getaddrinfo and c-ares do it: the source address the kernel would pick for
// each destination (a UDP socket connect()ed to it, which sends nothing)
// decides rules 1, 2, 5 and 9. Only called for answers with two addresses or
// more, as glibc does: a single address costs no system call.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "dns/internal/addrinfo.h"

namespace asyncio::dns_internal {
namespace {

struct Policy {
  unsigned char prefix[16];
  int prefix_len;
  int precedence;
  int label;
};

// RFC 6724's default policy table, IPv4 as IPv4-mapped IPv6.
constexpr Policy kPolicies[] = {
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, 50, 0},  // ::1
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 96, 35, 4},         // ::ffff:0:0/96
    {{0x20, 0x02}, 16, 30, 2},                                       // 2002::/16
    {{0x20, 0x01, 0, 0}, 32, 5, 5},                                  // 2001::/32
    {{0xfc}, 7, 3, 13},                                              // fc00::/7
    {{0}, 96, 1, 3},                                                 // ::/96
    {{0xfe, 0xc0}, 10, 1, 11},                                       // fec0::/10
    {{0x3f, 0xfe}, 16, 1, 12},                                       // 3ffe::/16
    {{0}, 0, 40, 1},                                                 // ::/0
};

constexpr int kScopeLinkLocal = 2;
constexpr int kScopeSiteLocal = 5;
constexpr int kScopeGlobal = 14;

// The address as 16 bytes (IPv4 mapped).
void as_v6(const sockaddr* sa, unsigned char out[16]) {
  std::memset(out, 0, 16);
  if (sa->sa_family == AF_INET) {
    out[10] = out[11] = 0xff;
    std::memcpy(out + 12, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, 4);
  } else {
    std::memcpy(out, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, 16);
  }
}

bool matches(const unsigned char a[16], const unsigned char prefix[16], int len) {
  int bytes = len / 8, bits = len % 8;
  if (std::memcmp(a, prefix, bytes) != 0) return false;
  if (bits == 0) return true;
  unsigned char mask = static_cast<unsigned char>(0xff << (8 - bits));
  return (a[bytes] & mask) == (prefix[bytes] & mask);
}

const Policy& policy_of(const sockaddr* sa) {
  unsigned char a[16];
  as_v6(sa, a);
  for (const Policy& p : kPolicies) {
    if (matches(a, p.prefix, p.prefix_len)) return p;
  }
  return kPolicies[std::size(kPolicies) - 1];
}

int scope_of(const sockaddr* sa) {
  if (sa->sa_family == AF_INET) {
    const uint32_t a = ntohl(reinterpret_cast<const sockaddr_in*>(sa)->sin_addr.s_addr);
    if ((a >> 24) == 127 || (a >> 16) == 0xa9fe) return kScopeLinkLocal;  // 127/8, 169.254/16
    return kScopeGlobal;
  }
  const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr;
  if (a.s6_addr[0] == 0xff) return a.s6_addr[1] & 0x0f;  // multicast: its scope field
  if (IN6_IS_ADDR_LOOPBACK(&a) || IN6_IS_ADDR_LINKLOCAL(&a)) return kScopeLinkLocal;
  if (IN6_IS_ADDR_SITELOCAL(&a)) return kScopeSiteLocal;
  return kScopeGlobal;
}

int common_prefix_len(const sockaddr* a, const sockaddr* b) {
  const auto& x = reinterpret_cast<const sockaddr_in6*>(a)->sin6_addr.s6_addr;
  const auto& y = reinterpret_cast<const sockaddr_in6*>(b)->sin6_addr.s6_addr;
  int len = 0;
  for (int i = 0; i < 16; ++i) {
    unsigned char d = x[i] ^ y[i];
    if (d == 0) {
      len += 8;
      continue;
    }
    while (!(d & 0x80)) {
      ++len;
      d = static_cast<unsigned char>(d << 1);
    }
    break;
  }
  return len;
}

struct Candidate {
  SocketAddress dst;
  sockaddr_storage src{};
  bool has_src = false;
  size_t original = 0;
};

// The source address the kernel would use to reach `dst`, if it can.
bool find_source(const SocketAddress& dst, sockaddr_storage& src) {
  const int fd = ::socket(dst.family(), SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_UDP);
  if (fd < 0) return false;
  bool ok = false;
  if (::connect(fd, dst.sockaddr_ptr(), dst.sockaddr_len()) == 0) {
    socklen_t len = sizeof(src);
    ok = ::getsockname(fd, reinterpret_cast<sockaddr*>(&src), &len) == 0;
  }
  ::close(fd);
  return ok;
}

// True if `a` goes before `b`.
bool precedes(const Candidate& a, const Candidate& b) {
  // Rule 1: avoid unusable destinations.
  if (a.has_src != b.has_src) return a.has_src;
  const sockaddr* da = a.dst.sockaddr_ptr();
  const sockaddr* db = b.dst.sockaddr_ptr();
  const int scope_da = scope_of(da), scope_db = scope_of(db);
  if (a.has_src && b.has_src) {
    const sockaddr* sa = reinterpret_cast<const sockaddr*>(&a.src);
    const sockaddr* sb = reinterpret_cast<const sockaddr*>(&b.src);
    // Rule 2: prefer matching scope.
    const bool scope_a = scope_da == scope_of(sa), scope_b = scope_db == scope_of(sb);
    if (scope_a != scope_b) return scope_a;
    // Rule 5: prefer matching label.
    const bool label_a = policy_of(da).label == policy_of(sa).label;
    const bool label_b = policy_of(db).label == policy_of(sb).label;
    if (label_a != label_b) return label_a;
  }
  // Rule 6: prefer higher precedence.
  const int prec_a = policy_of(da).precedence, prec_b = policy_of(db).precedence;
  if (prec_a != prec_b) return prec_a > prec_b;
  // Rule 8: prefer smaller scope.
  if (scope_da != scope_db) return scope_da < scope_db;
  // Rule 9: longest matching prefix (IPv6 only, as glibc and c-ares).
  if (a.has_src && b.has_src && da->sa_family == AF_INET6 && db->sa_family == AF_INET6) {
    const int pa = common_prefix_len(da, reinterpret_cast<const sockaddr*>(&a.src));
    const int pb = common_prefix_len(db, reinterpret_cast<const sockaddr*>(&b.src));
    if (pa != pb) return pa > pb;
  }
  // Rule 10: otherwise, keep the order.
  return a.original < b.original;
}

}  // namespace

void sort_addresses(std::vector<SocketAddress>& addresses) {
  if (addresses.size() < 2) return;
  std::vector<Candidate> candidates(addresses.size());
  for (size_t i = 0; i < addresses.size(); ++i) {
    candidates[i].dst = addresses[i];
    candidates[i].original = i;
    candidates[i].has_src = find_source(addresses[i], candidates[i].src);
  }
  // Insertion sort: stable, safe even if the rules do not make a strict weak
  // order, and answers are short. (Not std::stable_sort: its temporary
  // buffer trips clang's deprecation warning in libstdc++ 12's headers.)
  for (size_t i = 1; i < candidates.size(); ++i) {
    for (size_t j = i; j > 0 && precedes(candidates[j], candidates[j - 1]); --j) {
      std::swap(candidates[j], candidates[j - 1]);
    }
  }
  for (size_t i = 0; i < addresses.size(); ++i) addresses[i] = candidates[i].dst;
}

}  // namespace asyncio::dns_internal
