// libFuzzer target: c-ares' getaddrinfo answer -> AddrInfo entries
// (addrinfo_from_ares), with the answer's structs built from the input: the
// queried name, a CNAME list (names from a small set, so chains, loops and
// dangling aliases are likely, or arbitrary strings), address nodes of any
// family, and the hints.
#include <ares.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "dns/internal/addrinfo.h"
#include "dns/internal/resolver_core.h"
#include "loop/loop.h"

namespace {

using asyncio::AddrInfo;
using asyncio::AddrInfoHints;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "addrinfo_fuzzer: %s\n", what);
  std::abort();
}

class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  void copy(void* out, size_t n) {
    auto* bytes = static_cast<uint8_t*>(out);
    for (size_t i = 0; i < n; ++i) bytes[i] = byte();
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

constexpr const char* kNames[] = {"a.test", "b.test", "c.test", "A.TEST", "d.test", ""};

// Owns the strings and structs of one ares_addrinfo.
struct Answer {
  std::deque<std::string> strings;
  std::deque<ares_addrinfo_cname> cnames;
  std::deque<ares_addrinfo_node> nodes;
  std::deque<sockaddr_storage> addrs;
  ares_addrinfo info{};

  // nullptr, a name of kNames, or up to 15 bytes of the input (NUL-free).
  char* name(Input& in) {
    const uint8_t choice = in.byte();
    if (choice % 8 == 7) return nullptr;
    if (choice % 8 < 6) return strings.emplace_back(kNames[choice % 8]).data();
    std::string& s = strings.emplace_back();
    for (size_t n = in.byte() % 16; n > 0; --n) s.push_back(static_cast<char>(in.byte() | 1));
    return s.data();
  }
};

void run_input(const uint8_t* data, size_t size) {
  Input in(data, size);
  AddrInfoHints hints;
  constexpr int kFamilies[] = {AF_UNSPEC, AF_INET, AF_INET6};
  constexpr int kSocktypes[] = {0, SOCK_STREAM, SOCK_DGRAM, SOCK_RAW};
  hints.family = kFamilies[in.byte() % 3];
  hints.socktype = kSocktypes[in.byte() % 4];
  hints.flags = in.byte() & (AI_CANONNAME | AI_PASSIVE | AI_NUMERICSERV | AI_ADDRCONFIG);
  asyncio::dns_internal::Service service;
  service.port = static_cast<uint16_t>(in.byte() << 8 | in.byte());
  service.named = (in.byte() & 1) != 0;

  Answer answer;
  answer.info.name = answer.name(in);
  const size_t cname_count = in.byte() % 8;
  ares_addrinfo_cname* prev_cname = nullptr;
  for (size_t i = 0; i < cname_count; ++i) {
    ares_addrinfo_cname& c = answer.cnames.emplace_back();
    c.ttl = 60;
    c.alias = answer.name(in);
    c.name = answer.name(in);
    (prev_cname != nullptr ? prev_cname->next : answer.info.cnames) = &c;
    prev_cname = &c;
  }
  const size_t node_count = in.byte() % 6;
  ares_addrinfo_node* prev_node = nullptr;
  size_t inet_nodes = 0;
  for (size_t i = 0; i < node_count; ++i) {
    ares_addrinfo_node& n = answer.nodes.emplace_back();
    sockaddr_storage& storage = answer.addrs.emplace_back();
    std::memset(&storage, 0, sizeof(storage));
    const uint8_t kind = in.byte() % 3;
    if (kind == 0) {
      sockaddr_in sin{};
      sin.sin_family = AF_INET;
      in.copy(&sin.sin_addr, sizeof(sin.sin_addr));
      std::memcpy(&storage, &sin, sizeof(sin));
      n.ai_family = AF_INET;
      n.ai_addrlen = sizeof(sin);
      ++inet_nodes;
    } else if (kind == 1) {
      sockaddr_in6 sin6{};
      sin6.sin6_family = AF_INET6;
      in.copy(&sin6.sin6_addr, sizeof(sin6.sin6_addr));
      sin6.sin6_scope_id = in.byte() % 3;
      std::memcpy(&storage, &sin6, sizeof(sin6));
      n.ai_family = AF_INET6;
      n.ai_addrlen = sizeof(sin6);
      ++inet_nodes;
    } else {
      // A family getaddrinfo does not answer with: skipped.
      storage.ss_family = AF_UNIX;
      n.ai_family = AF_UNIX;
      n.ai_addrlen = sizeof(sa_family_t);
    }
    n.ai_addr = reinterpret_cast<sockaddr*>(&storage);
    (prev_node != nullptr ? prev_node->ai_next : answer.info.nodes) = &n;
    prev_node = &n;
  }

  const std::vector<AddrInfo> results =
      asyncio::dns_internal::addrinfo_from_ares(answer.info, service, hints);
  if (results.empty() != (inet_nodes == 0)) fail("entries without addresses, or none with some");
  for (size_t i = 0; i < results.size(); ++i) {
    const AddrInfo& r = results[i];
    if (r.family != AF_INET && r.family != AF_INET6) fail("an entry of another family");
    if (r.addr.family() != r.family) fail("an entry's address has another family");
    if (r.addr.port() != service.port) fail("an entry has another port");
    if (hints.socktype != 0 && r.socktype != hints.socktype) fail("an entry of another type");
    if (i > 0 && !r.canonname.empty()) fail("a canonical name past the first entry");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  run_input(data, size);
  return 0;
}
