// make_certs DIR: writes a set of TLS test certificates into DIR (created if
// missing) and prints one name=path line per file, for benchmarks and Python
// peers that cannot link //tls/testing:certs.
#include <cstdio>
#include <exception>
#include <string>

#include "tls/testing/certs.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  try {
    const asyncio::tls_testing::TestCerts certs = asyncio::tls_testing::make_test_certs(argv[1]);
    const struct {
      const char* name;
      const std::string& path;
    } lines[] = {
        {"ca_file", certs.ca_file},
        {"server_cert", certs.server.cert},
        {"server_key", certs.server.key},
        {"expired_cert", certs.expired.cert},
        {"expired_key", certs.expired.key},
        {"wrong_host_cert", certs.wrong_host.cert},
        {"wrong_host_key", certs.wrong_host.key},
        {"self_signed_cert", certs.self_signed.cert},
        {"self_signed_key", certs.self_signed.key},
        {"client_cert", certs.client.cert},
        {"client_key", certs.client.key},
    };
    for (const auto& line : lines) std::printf("%s=%s\n", line.name, line.path.c_str());
    // A reader that went away must not pass for success.
    if (std::fflush(stdout) != 0) {
      std::perror("make_certs: stdout");
      return 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_certs: %s\n", e.what());
    return 1;
  }
  return 0;
}
