// Builds a client TLS context: the target that brings in @asyncio_cpp//tls
// (and so OpenSSL).
#include <iostream>

#include "streams/streams.h"
#include "tls/tls.h"

int main() {
  asyncio::StreamOptions options;
  options.ssl = asyncio::tls::Context::client();  // ssl.create_default_context()
  std::cout << "a TLS client context is ready\n";
  return options.ssl ? 0 : 1;
}
