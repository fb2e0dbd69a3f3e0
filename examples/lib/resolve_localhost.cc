// Name resolution on the loop, with c-ares (//dns). In Python:
//
//   async def main():
//       loop = asyncio.get_running_loop()
//       infos = await loop.getaddrinfo("localhost", 80, family=socket.AF_INET,
//                                      type=socket.SOCK_STREAM)
//       for address in sorted({info[4][0] for info in infos}):
//           print("localhost ->", address)
//       print(await loop.getnameinfo(("127.0.0.1", 80),
//                                    socket.NI_NUMERICHOST | socket.NI_NUMERICSERV))
//
//   asyncio.run(main())
//
// Python resolves on a thread pool; here dns::install makes the loop resolve
// with c-ares, on the loop itself. "localhost" comes from /etc/hosts: no DNS
// server is asked.
#include <netdb.h>
#include <sys/socket.h>

#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "dns/dns.h"
#include "examples/lib/examples.h"
#include "futures/futures.h"
#include "loop/loop.h"

namespace asyncio_examples {
namespace {

asyncio::Coro<void> main_coro() {
  asyncio::EventLoop& loop = asyncio::get_running_loop();
  asyncio::dns::install(loop);
  asyncio::AddrInfoHints hints;
  hints.family = AF_INET;
  hints.socktype = SOCK_STREAM;
  std::vector<asyncio::AddrInfo> infos =
      co_await asyncio::getaddrinfo(loop, "localhost", "80", hints);
  std::set<std::string> addresses;
  for (const asyncio::AddrInfo& info : infos) addresses.insert(info.addr.host());
  for (const std::string& address : addresses) std::cout << "localhost -> " << address << '\n';
  auto [host, port] = co_await asyncio::getnameinfo(loop, asyncio::SocketAddress("127.0.0.1", 80),
                                                    NI_NUMERICHOST | NI_NUMERICSERV);
  std::cout << "('" << host << "', '" << port << "')\n";
}

}  // namespace

void run_resolve_localhost() {
  asyncio::run(main_coro());
  std::cout.flush();
}

}  // namespace asyncio_examples
