#include "testing/async_test_util.h"

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <system_error>

namespace asyncio::testing_util {

int open_fd_count() {
  int count = 0;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (dirent* entry = ::readdir(dir)) count += entry->d_name[0] != '.';
    ::closedir(dir);
  }
  return count - 1;  // the directory stream's own descriptor
}

int lowest_free_fd() {
  int fd = ::dup(0);
  ::close(fd);
  return fd;
}

bool raise_fd_limit(rlim_t wanted) {
  rlimit lim;
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return false;
  if (lim.rlim_cur >= wanted) return true;
  rlimit raised{wanted, std::max(lim.rlim_max, wanted)};
  if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) return true;
  lim.rlim_cur = lim.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &lim);
  return lim.rlim_cur >= wanted;
}

RestoreFileLimit::RestoreFileLimit() { ::getrlimit(RLIMIT_NOFILE, &original_); }
RestoreFileLimit::~RestoreFileLimit() { ::setrlimit(RLIMIT_NOFILE, &original_); }

long rss_kib() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

uint16_t port_of(const Server& server) { return server.sockets().at(0).getsockname().port(); }

TempDir::TempDir() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string templ = std::string(tmp != nullptr ? tmp : "/tmp") + "/asyncio.XXXXXX";
  // TEST_TMPDIR can be too deep for a socket path: /tmp then.
  if (templ.size() > 60) templ = "/tmp/asyncio.XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(), "mkdtemp " + templ);
  }
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string TempDir::file(std::string_view name) const { return path_ + "/" + std::string(name); }

Coro<void> settle() {
  for (int i = 0; i < 5; ++i) co_await sleep(std::chrono::seconds(0));
}

Coro<void> handle_echo(StreamReader reader, StreamWriter writer) {
  std::string data = co_await reader.read(100);
  writer.write(data);
  co_await writer.drain();
  writer.close();
  co_await writer.wait_closed();
}

Coro<void> echo_lines(StreamReader reader, StreamWriter writer) {
  try {
    while (true) {
      std::string line = co_await reader.readline();
      if (line.empty()) break;
      writer.write(line);
      co_await writer.drain();
    }
  } catch (const std::system_error&) {
    // The peer reset: that connection is over, the server is not.
  }
  writer.close();
}

void EchoProtocol::connection_made(std::shared_ptr<BaseTransport> t) {
  transport = std::static_pointer_cast<Transport>(t);
}

void EchoProtocol::data_received(std::string_view data) {
  received += data;
  transport->write(data);
}

bool EchoProtocol::eof_received() {
  got_eof = true;
  return false;
}

void EchoProtocol::connection_lost(std::exception_ptr exc) {
  lost = true;
  lost_error = exc;
}

}  // namespace asyncio::testing_util
