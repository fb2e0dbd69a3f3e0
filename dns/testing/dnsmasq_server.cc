#include "dns/testing/dnsmasq_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace asyncio::dns_testing {
namespace {

using posix::throw_errno;
using posix::UniqueFd;

// A port free for both UDP and TCP on 127.0.0.1 right now.
uint16_t free_port() {
  for (int attempt = 0; attempt < 50; ++attempt) {
    UniqueFd udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!udp) throw_errno("socket");
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sin);
    if (::bind(udp.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) < 0 ||
        ::getsockname(udp.get(), reinterpret_cast<sockaddr*>(&sin), &len) < 0) {
      throw_errno("bind");
    }
    UniqueFd tcp(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    bool ok = tcp && ::bind(tcp.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) == 0;
    if (ok) return ntohs(sin.sin_port);
  }
  throw std::runtime_error("no free port for dnsmasq");
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A DNS query for `name` (type A), as bytes.
std::string dns_query(const std::string& name) {
  std::string q = {'\x12', '\x34', '\x01', '\x00', '\x00', '\x01',
                   '\x00', '\x00', '\x00', '\x00', '\x00', '\x00'};
  size_t start = 0;
  while (start <= name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    q += static_cast<char>(dot - start);
    q += name.substr(start, dot - start);
    start = dot + 1;
  }
  q += '\0';
  q += std::string("\x00\x01\x00\x01", 4);
  return q;
}

}  // namespace

std::string DnsmasqServer::binary() {
  for (const char* path : {"/usr/sbin/dnsmasq", "/usr/bin/dnsmasq", "/sbin/dnsmasq"}) {
    if (::access(path, X_OK) == 0) return path;
  }
  return "";
}

DnsmasqServer::DnsmasqServer(DnsmasqConfig config) {
  const std::string exe = binary();
  if (exe.empty()) {
    throw std::runtime_error(
        "dnsmasq is not installed (apt-get install -y dnsmasq, or ./dev deps)");
  }
  {
    std::ofstream hosts(dir_.file("hosts"));
    for (const auto& [address, name] : config.hosts) hosts << address << ' ' << name << '\n';
  }
  std::vector<std::string> args = {
      exe,
      "--no-daemon",  // no fork, no pid file, no change of user
      "--listen-address=127.0.0.1",
      "--bind-interfaces",
      "--no-resolv",
      "--no-hosts",
      "--no-poll",
      "--conf-file=/dev/null",
      "--log-facility=-",
      "--addn-hosts=" + dir_.file("hosts"),
  };
  for (const auto& [alias, target] : config.cnames)
    args.push_back("--cname=" + alias + "," + target);
  for (const std::string& record : config.host_records) args.push_back("--host-record=" + record);
  for (const std::string& domain : config.local_domains) args.push_back("--local=/" + domain + "/");
  for (const std::string& arg : config.extra_args) args.push_back(arg);

  std::string log;
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (start(args, &log)) return;
  }
  throw std::runtime_error("dnsmasq did not start:\n" + log);
}

bool DnsmasqServer::start(const std::vector<std::string>& base_args, std::string* log) {
  port_ = free_port();
  std::vector<std::string> args = base_args;
  args.push_back("--port=" + std::to_string(port_));
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  const std::string log_path = dir_.file("log");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  int rc = ::posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw_errno("posix_spawn dnsmasq", rc);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    int status;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // exited: the port was taken?
      pid_ = -1;
      *log = read_file(log_path);
      return false;
    }
    if (answers()) return true;
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
  *log = read_file(log_path) + "\n(no answer within 10 s)";
  return false;
}

bool DnsmasqServer::answers() const {
  UniqueFd socket(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!socket) throw_errno("socket");
  const int fd = socket.get();
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port_);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const std::string query = dns_query("ready.probe");
  bool ok = false;
  if (::sendto(fd, query.data(), query.size(), 0, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) ==
      static_cast<ssize_t>(query.size())) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) == 1) {
      char buf[512];
      ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      ok = n >= 12 && buf[0] == '\x12' && buf[1] == '\x34';
    }
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return ok;
}

DnsmasqServer::~DnsmasqServer() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }
}

SilentServer::SilentServer() {
  fd_.reset(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd_) throw_errno("socket");
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(sin);
  if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) < 0 ||
      ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&sin), &len) < 0) {
    throw_errno("bind");
  }
  port_ = ntohs(sin.sin_port);
}

SilentServer::~SilentServer() = default;

}  // namespace asyncio::dns_testing
