#include "tls/testing/certs.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

extern char** environ;

namespace asyncio::tls_testing {
namespace {

template <auto Free>
struct Deleter {
  template <typename T>
  void operator()(T* p) const {
    Free(p);
  }
};
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, Deleter<SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, Deleter<SSL_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

X509Ptr load_cert(const std::string& path) {
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) throw std::runtime_error("cannot open " + path);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) throw std::runtime_error("no certificate in " + path);
  return cert;
}

PkeyPtr load_key(const std::string& path) {
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) throw std::runtime_error("cannot open " + path);
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) throw std::runtime_error("no private key in " + path);
  return key;
}

// X509_verify_cert against a store holding the CA alone; X509_V_OK or the error.
int verify(const std::string& cert_path, int purpose) {
  const TestCerts& certs = test_certs();
  StorePtr store(X509_STORE_new());
  X509Ptr ca = load_cert(certs.ca_file);
  EXPECT_EQ(X509_STORE_add_cert(store.get(), ca.get()), 1);
  X509Ptr cert = load_cert(cert_path);
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  EXPECT_EQ(X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr), 1);
  EXPECT_EQ(X509_STORE_CTX_set_purpose(ctx.get(), purpose), 1);
  int ok = X509_verify_cert(ctx.get());
  int err = X509_STORE_CTX_get_error(ctx.get());
  EXPECT_EQ(ok == 1, err == X509_V_OK) << X509_verify_cert_error_string(err);
  ERR_clear_error();
  return err;
}

TEST(TestCertsTest, FilesArePemWithPrivateKeys) {
  const TestCerts& certs = test_certs();
  ASSERT_FALSE(certs.dir.empty());
  EXPECT_EQ(certs.dir.front(), '/');
  const char* tmp = std::getenv("TEST_TMPDIR");
  if (tmp != nullptr) {
    EXPECT_EQ(certs.dir.rfind(tmp, 0), 0u) << certs.dir;
  }
  EXPECT_EQ(&certs, &test_certs()) << "generated once per process";

  EXPECT_EQ(read_file(certs.ca_file), certs.ca_pem);
  EXPECT_EQ(read_file(certs.server.cert), certs.server_pem_chain);
  EXPECT_EQ(read_file(certs.server.key), certs.server_pem_key);
  EXPECT_EQ(certs.ca_pem.rfind("-----BEGIN CERTIFICATE-----\n", 0), 0u);

  for (const CertFiles* files :
       {&certs.server, &certs.expired, &certs.wrong_host, &certs.self_signed, &certs.client}) {
    SCOPED_TRACE(files->cert);
    EXPECT_EQ(files->cert.rfind(certs.dir + "/", 0), 0u);
    EXPECT_EQ(files->key.rfind(certs.dir + "/", 0), 0u);
    EXPECT_EQ(read_file(files->cert).rfind("-----BEGIN CERTIFICATE-----\n", 0), 0u);
    // Unencrypted PKCS#8, not the legacy "BEGIN EC PRIVATE KEY".
    EXPECT_EQ(read_file(files->key).rfind("-----BEGIN PRIVATE KEY-----\n", 0), 0u);
    struct stat st;
    ASSERT_EQ(::stat(files->key.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);

    X509Ptr cert = load_cert(files->cert);
    PkeyPtr key = load_key(files->key);
    EXPECT_EQ(X509_check_private_key(cert.get(), key.get()), 1);
    EXPECT_TRUE(EVP_PKEY_is_a(key.get(), "EC"));
    char group[64] = {};
    size_t group_len = 0;
    ASSERT_EQ(EVP_PKEY_get_group_name(key.get(), group, sizeof group, &group_len), 1);
    EXPECT_STREQ(group, "prime256v1");  // OpenSSL's name for P-256
    EXPECT_EQ(X509_get_signature_nid(cert.get()), NID_ecdsa_with_SHA256);
    EXPECT_EQ(X509_get_version(cert.get()), X509_VERSION_3);
  }
}

TEST(TestCertsTest, PemStringsLoad) {
  const TestCerts& certs = test_certs();
  BioPtr cert_bio(BIO_new_mem_buf(certs.server_pem_chain.data(),
                                  static_cast<int>(certs.server_pem_chain.size())));
  X509Ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  ASSERT_TRUE(cert);
  BioPtr key_bio(
      BIO_new_mem_buf(certs.server_pem_key.data(), static_cast<int>(certs.server_pem_key.size())));
  PkeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  ASSERT_TRUE(key);
  EXPECT_EQ(X509_check_private_key(cert.get(), key.get()), 1);
}

TEST(TestCertsTest, Extensions) {
  const TestCerts& certs = test_certs();
  X509Ptr ca = load_cert(certs.ca_file);
  EXPECT_EQ(X509_check_ca(ca.get()), 1);
  EXPECT_EQ(X509_get_key_usage(ca.get()), static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  EXPECT_NE(X509_get_extension_flags(ca.get()) & EXFLAG_SS, 0u) << "self-signed";
  const ASN1_OCTET_STRING* ca_skid = X509_get0_subject_key_id(ca.get());
  ASSERT_NE(ca_skid, nullptr);

  struct Leaf {
    const CertFiles& files;
    uint32_t extended_key_usage;
    bool by_ca;
  };
  for (const Leaf& leaf :
       {Leaf{certs.server, XKU_SSL_SERVER, true}, Leaf{certs.expired, XKU_SSL_SERVER, true},
        Leaf{certs.wrong_host, XKU_SSL_SERVER, true},
        Leaf{certs.self_signed, XKU_SSL_SERVER, false}, Leaf{certs.client, XKU_SSL_CLIENT, true}}) {
    SCOPED_TRACE(leaf.files.cert);
    X509Ptr cert = load_cert(leaf.files.cert);
    EXPECT_EQ(X509_check_ca(cert.get()), 0);
    EXPECT_NE(X509_get_extension_flags(cert.get()) & EXFLAG_BCONS, 0u) << "basicConstraints";
    EXPECT_EQ(X509_get_key_usage(cert.get()), static_cast<uint32_t>(KU_DIGITAL_SIGNATURE));
    EXPECT_EQ(X509_get_extended_key_usage(cert.get()), leaf.extended_key_usage);
    ASSERT_NE(X509_get0_subject_key_id(cert.get()), nullptr);
    const ASN1_OCTET_STRING* akid = X509_get0_authority_key_id(cert.get());
    ASSERT_NE(akid, nullptr);
    const ASN1_OCTET_STRING* issuer_skid =
        leaf.by_ca ? ca_skid : X509_get0_subject_key_id(cert.get());
    EXPECT_EQ(ASN1_OCTET_STRING_cmp(akid, issuer_skid), 0);
    EXPECT_GE(X509_get_ext_by_NID(cert.get(), NID_subject_alt_name, -1), 0) << "subjectAltName";
  }
}

TEST(TestCertsTest, SerialsAreDistinct) {
  const TestCerts& certs = test_certs();
  const TestCerts other = make_test_certs(certs.dir + "/other");
  std::vector<X509Ptr> all;
  for (const TestCerts* set : {&certs, &other}) {
    for (const std::string& path :
         {set->ca_file, set->server.cert, set->expired.cert, set->wrong_host.cert,
          set->self_signed.cert, set->client.cert}) {
      all.push_back(load_cert(path));
    }
  }
  for (size_t i = 0; i < all.size(); ++i) {
    const ASN1_INTEGER* serial = X509_get0_serialNumber(all[i].get());
    EXPECT_GE(ASN1_STRING_length(serial), 16) << "random, not a counter";
    for (size_t j = 0; j < i; ++j) {
      EXPECT_NE(ASN1_INTEGER_cmp(serial, X509_get0_serialNumber(all[j].get())), 0) << i << " " << j;
    }
  }
  // A second set is a different CA: fresh keys.
  EXPECT_NE(read_file(other.ca_file), certs.ca_pem);
}

TEST(TestCertsTest, VerifyAgainstCa) {
  const TestCerts& certs = test_certs();
  EXPECT_EQ(verify(certs.server.cert, X509_PURPOSE_SSL_SERVER), X509_V_OK);
  EXPECT_EQ(verify(certs.client.cert, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
  // The chain of the wrong-host certificate is fine: only its name is wrong.
  EXPECT_EQ(verify(certs.wrong_host.cert, X509_PURPOSE_SSL_SERVER), X509_V_OK);
  EXPECT_EQ(verify(certs.expired.cert, X509_PURPOSE_SSL_SERVER), X509_V_ERR_CERT_HAS_EXPIRED);
  int self_signed = verify(certs.self_signed.cert, X509_PURPOSE_SSL_SERVER);
  EXPECT_TRUE(self_signed == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
              self_signed == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY)
      << X509_verify_cert_error_string(self_signed);
  // extendedKeyUsage is honoured: neither certificate does the other's job.
  EXPECT_EQ(verify(certs.client.cert, X509_PURPOSE_SSL_SERVER), X509_V_ERR_INVALID_PURPOSE);
  EXPECT_EQ(verify(certs.server.cert, X509_PURPOSE_SSL_CLIENT), X509_V_ERR_INVALID_PURPOSE);
}

TEST(TestCertsTest, HostNames) {
  const TestCerts& certs = test_certs();
  X509Ptr server = load_cert(certs.server.cert);
  EXPECT_EQ(X509_check_host(server.get(), "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(server.get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(server.get(), "::1", 0), 1);
  EXPECT_EQ(X509_check_host(server.get(), "wrong.example", 0, 0, nullptr), 0);

  X509Ptr wrong = load_cert(certs.wrong_host.cert);
  EXPECT_EQ(X509_check_host(wrong.get(), "localhost", 0, 0, nullptr), 0);
  EXPECT_EQ(X509_check_ip_asc(wrong.get(), "127.0.0.1", 0), 0);
  EXPECT_EQ(X509_check_host(wrong.get(), "wrong.example", 0, 0, nullptr), 1);

  X509Ptr self_signed = load_cert(certs.self_signed.cert);
  EXPECT_EQ(X509_check_host(self_signed.get(), "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(self_signed.get(), "127.0.0.1", 0), 1);
}

// A TLS handshake over a BIO pair: the client verifies the server against
// `trusted` and `host`; the server asks for a client certificate when
// `client` is given. Returns the client's verify result (or -1 if the
// handshake failed for another reason).
long handshake(const std::string& trusted, const CertFiles& server, const std::string& host,
               const CertFiles* client = nullptr) {
  const TestCerts& certs = test_certs();
  SslCtxPtr server_ctx(SSL_CTX_new(TLS_server_method()));
  EXPECT_EQ(SSL_CTX_use_certificate_chain_file(server_ctx.get(), server.cert.c_str()), 1);
  EXPECT_EQ(SSL_CTX_use_PrivateKey_file(server_ctx.get(), server.key.c_str(), SSL_FILETYPE_PEM), 1);
  SslCtxPtr client_ctx(SSL_CTX_new(TLS_client_method()));
  EXPECT_EQ(SSL_CTX_load_verify_locations(client_ctx.get(), trusted.c_str(), nullptr), 1);
  SSL_CTX_set_verify(client_ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (client != nullptr) {
    EXPECT_EQ(SSL_CTX_load_verify_locations(server_ctx.get(), certs.ca_file.c_str(), nullptr), 1);
    SSL_CTX_set_verify(server_ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       nullptr);
    EXPECT_EQ(SSL_CTX_use_certificate_chain_file(client_ctx.get(), client->cert.c_str()), 1);
    EXPECT_EQ(SSL_CTX_use_PrivateKey_file(client_ctx.get(), client->key.c_str(), SSL_FILETYPE_PEM),
              1);
  }
  SslPtr server_ssl(SSL_new(server_ctx.get()));
  SslPtr client_ssl(SSL_new(client_ctx.get()));
  EXPECT_EQ(SSL_set1_host(client_ssl.get(), host.c_str()), 1);
  BIO* server_bio = nullptr;
  BIO* client_bio = nullptr;
  EXPECT_EQ(BIO_new_bio_pair(&server_bio, 0, &client_bio, 0), 1);
  SSL_set_bio(server_ssl.get(), server_bio, server_bio);  // owns it from here
  SSL_set_bio(client_ssl.get(), client_bio, client_bio);
  SSL_set_accept_state(server_ssl.get());
  SSL_set_connect_state(client_ssl.get());

  bool client_done = false;
  bool server_done = false;
  bool failed = false;
  for (int round = 0; round < 20 && !failed && !(client_done && server_done); ++round) {
    for (auto [ssl, done] :
         {std::pair{client_ssl.get(), &client_done}, std::pair{server_ssl.get(), &server_done}}) {
      if (*done) continue;
      int rc = SSL_do_handshake(ssl);
      if (rc == 1) {
        *done = true;
      } else {
        int err = SSL_get_error(ssl, rc);
        failed = failed || (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE);
      }
    }
  }
  long result = SSL_get_verify_result(client_ssl.get());
  if (result == X509_V_OK && !(client_done && server_done)) {
    result = -1;
    // In TLS 1.3 the client finishes first and learns of a rejected client
    // certificate by reading the server's alert.
    char byte;
    EXPECT_LE(SSL_read(client_ssl.get(), &byte, 1), 0);
  }
  ERR_clear_error();
  return result;
}

TEST(TestCertsTest, TlsHandshakes) {
  const TestCerts& certs = test_certs();
  EXPECT_EQ(handshake(certs.ca_file, certs.server, "localhost"), X509_V_OK);
  EXPECT_EQ(handshake(certs.ca_file, certs.server, "localhost", &certs.client), X509_V_OK);
  EXPECT_EQ(handshake(certs.ca_file, certs.expired, "localhost"), X509_V_ERR_CERT_HAS_EXPIRED);
  EXPECT_EQ(handshake(certs.ca_file, certs.wrong_host, "localhost"), X509_V_ERR_HOSTNAME_MISMATCH);
  long self_signed = handshake(certs.ca_file, certs.self_signed, "localhost");
  EXPECT_TRUE(self_signed == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
              self_signed == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY)
      << X509_verify_cert_error_string(self_signed);
  // Trusting the self-signed certificate itself (pinning) works.
  EXPECT_EQ(handshake(certs.self_signed.cert, certs.self_signed, "localhost"), X509_V_OK);
  // The server rejects a client certificate from another CA.
  EXPECT_EQ(handshake(certs.ca_file, certs.server, "localhost", &certs.self_signed), -1);
}

// Exit status of `/usr/bin/openssl args...`, or -1 if it did not run.
int run_openssl(std::vector<std::string> args) {
  args.insert(args.begin(), "/usr/bin/openssl");
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t pid;
  if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) return -1;
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

TEST(TestCertsTest, OpensslCliAgrees) {
  if (::access("/usr/bin/openssl", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/openssl";
  const TestCerts& certs = test_certs();
  EXPECT_EQ(run_openssl({"verify", "-CAfile", certs.ca_file, certs.server.cert}), 0);
  EXPECT_EQ(
      run_openssl({"verify", "-CAfile", certs.ca_file, "-purpose", "sslclient", certs.client.cert}),
      0);
  EXPECT_EQ(run_openssl({"verify", "-CAfile", certs.ca_file, certs.expired.cert}), 2);
}

TEST(TestCertsTest, MakeTestCertsCreatesDirectories) {
  const TestCerts& certs = test_certs();
  TestCerts nested = make_test_certs(certs.dir + "/a/b/");
  EXPECT_EQ(nested.dir, certs.dir + "/a/b");
  EXPECT_EQ(nested.server.cert, nested.dir + "/server.cert");
  EXPECT_EQ(read_file(nested.ca_file), nested.ca_pem);
}

TEST(TestCertsTest, FailureThrows) {
  EXPECT_THROW(make_test_certs("/dev/null/certs"), std::runtime_error);
  EXPECT_THROW(make_test_certs(""), std::runtime_error);
}

}  // namespace
}  // namespace asyncio::tls_testing
