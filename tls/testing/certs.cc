#include "tls/testing/certs.h"

#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace asyncio::tls_testing {
namespace {

// unique_ptr deleters for OpenSSL objects, so that every early throw frees.
template <auto Free>
struct Deleter {
  template <typename T>
  void operator()(T* p) const {
    Free(p);
  }
};
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free>>;
using BignumPtr = std::unique_ptr<BIGNUM, Deleter<BN_free>>;
using ExtensionPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;

constexpr int kTenYears = 3652;  // days: outlives any checkout of the tests

// Throws with every queued OpenSSL error (consuming the thread's queue, so a
// later failure does not report stale reasons).
[[noreturn]] void throw_openssl(const std::string& what) {
  std::string message = "make_test_certs: " + what;
  const char* separator = ": ";
  while (unsigned long err = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(err, buf, sizeof buf);
    message += separator;
    message += buf;
    separator = "; ";
  }
  throw std::runtime_error(message);
}

[[noreturn]] void throw_errno(const std::string& what, int err) {
  throw std::runtime_error("make_test_certs: " + what + ": " + std::strerror(err));
}

PkeyPtr make_key() {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) throw_openssl("EC P-256 key generation failed");
  return key;
}

struct CertSpec {
  std::string common_name;
  std::string subject_alt_name;  // OpenSSL config syntax: "DNS:a,IP:1.2.3.4"
  bool ca = false;
  const char* extended_key_usage = nullptr;  // leaves only
  int not_before_days = -1;                  // relative to now
  int not_after_days = kTenYears;
};

CertSpec leaf_spec(std::string common_name, std::string subject_alt_name,
                   const char* extended_key_usage) {
  CertSpec spec;
  spec.common_name = std::move(common_name);
  spec.subject_alt_name = std::move(subject_alt_name);
  spec.extended_key_usage = extended_key_usage;
  return spec;
}

class Issuer {
 public:
  // Signs `key`'s certificate with `issuer_key`; self-signed if `issuer` is null.
  X509Ptr issue(const CertSpec& spec, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key) {
    X509Ptr cert(X509_new());
    if (!cert) throw_openssl("X509_new failed");
    if (issuer == nullptr) {
      issuer = cert.get();
      issuer_key = key;
    }
    if (X509_set_version(cert.get(), X509_VERSION_3) != 1) throw_openssl("X509_set_version failed");
    set_serial(cert.get());
    if (X509_time_adj_ex(X509_getm_notBefore(cert.get()), spec.not_before_days, 0, nullptr) ==
            nullptr ||
        X509_time_adj_ex(X509_getm_notAfter(cert.get()), spec.not_after_days, 0, nullptr) ==
            nullptr) {
      throw_openssl("setting the validity period failed");
    }
    X509_NAME* subject = X509_get_subject_name(cert.get());
    if (X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(spec.common_name.c_str()),
                                   -1, -1, 0) != 1 ||
        X509_set_issuer_name(cert.get(), X509_get_subject_name(issuer)) != 1) {
      throw_openssl("setting the names failed");
    }
    if (X509_set_pubkey(cert.get(), key) != 1) throw_openssl("X509_set_pubkey failed");

    X509V3_CTX ctx{};
    X509V3_set_ctx(&ctx, issuer, cert.get(), nullptr, nullptr, 0);
    // Lets authorityKeyIdentifier be computed for the self-signed ones.
    if (X509V3_set_issuer_pkey(&ctx, issuer_key) != 1)
      throw_openssl("X509V3_set_issuer_pkey failed");
    add_extension(cert.get(), &ctx, NID_basic_constraints,
                  spec.ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    add_extension(cert.get(), &ctx, NID_key_usage,
                  spec.ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
    if (spec.extended_key_usage != nullptr) {
      add_extension(cert.get(), &ctx, NID_ext_key_usage, spec.extended_key_usage);
    }
    if (!spec.subject_alt_name.empty()) {
      add_extension(cert.get(), &ctx, NID_subject_alt_name, spec.subject_alt_name.c_str());
    }
    // Before the authority key id: a self-signed certificate's is read from it.
    add_extension(cert.get(), &ctx, NID_subject_key_identifier, "hash");
    add_extension(cert.get(), &ctx, NID_authority_key_identifier, "keyid:always");

    if (X509_sign(cert.get(), issuer_key, EVP_sha256()) <= 0) {
      throw_openssl("signing " + spec.common_name + " failed");
    }
    return cert;
  }

 private:
  // 159 random bits with the top one set: positive, at most 20 octets
  // (RFC 5280), and checked distinct from this set's others rather than trusted to be.
  void set_serial(X509* cert) {
    BignumPtr serial(BN_new());
    if (!serial) throw_openssl("BN_new failed");
    for (;;) {
      if (BN_rand(serial.get(), 159, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) != 1) {
        throw_openssl("BN_rand failed");
      }
      bool used = false;
      for (const auto& other : serials_) used = used || BN_cmp(other.get(), serial.get()) == 0;
      if (!used) break;
    }
    if (BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert)) == nullptr) {
      throw_openssl("BN_to_ASN1_INTEGER failed");
    }
    serials_.push_back(std::move(serial));
  }

  static void add_extension(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
    ExtensionPtr ext(X509V3_EXT_nconf_nid(nullptr, ctx, nid, value));
    if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
      throw_openssl(std::string("adding extension ") + OBJ_nid2sn(nid) + "=" + value + " failed");
    }
  }

  std::vector<BignumPtr> serials_;
};

std::string bio_contents(BIO* bio) {
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(size));
}

std::string cert_pem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) throw_openssl("PEM_write_bio_X509 failed");
  return bio_contents(bio.get());
}

// Unencrypted PKCS#8 ("BEGIN PRIVATE KEY"), which every TLS stack loads.
std::string key_pem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      PEM_write_bio_PKCS8PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    throw_openssl("PEM_write_bio_PKCS8PrivateKey failed");
  }
  return bio_contents(bio.get());
}

// Written to a temporary name and renamed, so that a concurrent reader (a
// benchmark's peer, another test process sharing the directory) never sees a
// partial file. fchmod: the mode must not depend on the umask.
void write_file(const std::string& path, const std::string& data, mode_t mode) {
  static std::atomic<unsigned> counter{0};
  const std::string tmp =
      path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) throw_errno("cannot create " + tmp, errno);
  int err = ::fchmod(fd, mode) == 0 ? 0 : errno;
  for (size_t done = 0; err == 0 && done < data.size();) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno != EINTR) err = errno;
    if (n > 0) done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    throw_errno("cannot write " + path, err);
  }
}

class Writer {
 public:
  explicit Writer(std::string dir) : dir_(std::move(dir)) {}

  std::string cert(const std::string& name, const std::string& pem) {
    std::string path = dir_ + "/" + name + ".cert";
    write_file(path, pem, 0644);
    return path;
  }

  CertFiles pair(const std::string& name, std::string cert_pem, std::string key_pem) {
    CertFiles files{.cert = cert(name, cert_pem), .key = dir_ + "/" + name + ".key"};
    write_file(files.key, key_pem, 0600);
    last_cert_pem_ = std::move(cert_pem);
    last_key_pem_ = std::move(key_pem);
    return files;
  }

  // The contents of the files of the last pair().
  const std::string& last_cert_pem() const { return last_cert_pem_; }
  const std::string& last_key_pem() const { return last_key_pem_; }

 private:
  std::string dir_;
  std::string last_cert_pem_;
  std::string last_key_pem_;
};

std::string make_temp_dir() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string templ =
      std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/asyncio_certs.XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) throw_errno("mkdtemp " + templ, errno);
  return templ;
}

// Owns test_certs()'s directory: removed at exit, but only by the process
// that made it (not by a forked child that exits normally).
struct CachedCerts {
  CachedCerts() : owner(::getpid()), certs(generate()) {}
  ~CachedCerts() {
    if (::getpid() != owner) return;
    std::error_code ignored;
    std::filesystem::remove_all(certs.dir, ignored);
  }

  static TestCerts generate() {
    const std::string dir = make_temp_dir();
    try {
      return make_test_certs(dir);
    } catch (...) {
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);
      throw;
    }
  }

  pid_t owner;
  TestCerts certs;
};

}  // namespace

TestCerts make_test_certs(const std::string& dir) {
  namespace fs = std::filesystem;
  if (dir.empty()) throw std::runtime_error("make_test_certs: empty directory name");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error("make_test_certs: cannot create " + dir + ": " + ec.message());
  // Absolute, so the paths stay valid for peers started in another directory.
  std::string abs = fs::absolute(dir, ec).lexically_normal().string();
  if (ec) throw std::runtime_error("make_test_certs: " + dir + ": " + ec.message());
  while (abs.size() > 1 && abs.back() == '/') abs.pop_back();

  Issuer issuer;
  Writer writer(abs);
  TestCerts out;
  out.dir = abs;

  PkeyPtr ca_key = make_key();
  CertSpec ca_spec;
  ca_spec.common_name = "asyncio test CA";
  ca_spec.ca = true;
  X509Ptr ca = issuer.issue(ca_spec, ca_key.get(), nullptr, nullptr);
  out.ca_pem = cert_pem(ca.get());
  out.ca_file = writer.cert("ca", out.ca_pem);

  // Writes name.cert and name.key for a new leaf signed by the CA (or by itself).
  auto leaf = [&](const std::string& name, const CertSpec& spec, bool self_signed) {
    PkeyPtr key = make_key();
    X509Ptr cert = self_signed ? issuer.issue(spec, key.get(), nullptr, nullptr)
                               : issuer.issue(spec, key.get(), ca.get(), ca_key.get());
    return writer.pair(name, cert_pem(cert.get()), key_pem(key.get()));
  };
  const std::string localhost_san = "DNS:localhost,IP:127.0.0.1,IP:::1";

  out.server = leaf("server", leaf_spec("localhost", localhost_san, "serverAuth"), false);
  out.server_pem_chain = writer.last_cert_pem();
  out.server_pem_key = writer.last_key_pem();

  CertSpec expired = leaf_spec("localhost", localhost_san, "serverAuth");
  expired.not_before_days = -30;
  expired.not_after_days = -1;
  out.expired = leaf("expired", expired, false);

  out.wrong_host =
      leaf("wrong_host", leaf_spec("wrong.example", "DNS:wrong.example", "serverAuth"), false);
  out.self_signed =
      leaf("self_signed", leaf_spec("localhost", "DNS:localhost,IP:127.0.0.1", "serverAuth"), true);
  out.client = leaf(
      "client", leaf_spec("asyncio test client", "DNS:client.asyncio.test", "clientAuth"), false);
  return out;
}

const TestCerts& test_certs() {
  static const CachedCerts cached;  // thread-safe initialization
  return cached.certs;
}

}  // namespace asyncio::tls_testing
