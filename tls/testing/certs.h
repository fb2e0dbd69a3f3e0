// TLS test certificates, generated at run time with OpenSSL's C API: a CA and
// leaf certificates for the usual success and failure cases (expired, wrong
// host, self-signed), so no test or benchmark depends on checked-in keys that
// expire.
//
//   const auto& certs = asyncio::tls_testing::test_certs();
//   SSL_CTX_use_certificate_chain_file(server_ctx, certs.server.cert.c_str());
//   SSL_CTX_use_PrivateKey_file(server_ctx, certs.server.key.c_str(), SSL_FILETYPE_PEM);
//   SSL_CTX_load_verify_locations(client_ctx, certs.ca_file.c_str(), nullptr);
//
// All keys are EC P-256 (fast handshakes), all signatures ECDSA with SHA-256,
// keys are unencrypted PKCS#8 PEM files of mode 0600.
#pragma once

#include <string>

namespace asyncio::tls_testing {

// Paths to PEM files.
struct CertFiles {
  std::string cert;
  std::string key;
};

struct TestCerts {
  std::string dir;      // absolute; every path below is inside it
  std::string ca_file;  // self-signed CA, CN "asyncio test CA"
  // CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1; signed by the CA;
  // valid from a day ago for 10 years; extendedKeyUsage serverAuth.
  CertFiles server;
  // As `server`, but valid from 30 days ago until a day ago.
  CertFiles expired;
  // CN and SAN DNS:wrong.example only; signed by the CA, valid, serverAuth.
  CertFiles wrong_host;
  // CN=localhost, SAN DNS:localhost, IP:127.0.0.1; self-signed (not by the
  // CA), valid, serverAuth.
  CertFiles self_signed;
  // CN "asyncio test client", SAN DNS:client.asyncio.test; signed by the CA,
  // valid, extendedKeyUsage clientAuth.
  CertFiles client;
  std::string server_pem_chain;  // contents of server.cert (the leaf alone)
  std::string server_pem_key;    // contents of server.key
  std::string ca_pem;            // contents of ca_file
};

// Generates a fresh set (new keys, random serials) into `dir`, created if
// missing, and returns the paths (made absolute). Existing files are replaced.
// Throws std::runtime_error with OpenSSL's reason on failure.
TestCerts make_test_certs(const std::string& dir);

// A set in a fresh directory under $TEST_TMPDIR (or /tmp), generated on the
// first call and shared by every later call of the process; the directory is
// removed when the process exits. Thread-safe.
const TestCerts& test_certs();

}  // namespace asyncio::tls_testing
