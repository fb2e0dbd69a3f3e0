#include "testing/async_test_util.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdio>

namespace asyncio::testing_util {

int open_fd_count() {
  int count = 0;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (dirent* entry = ::readdir(dir)) count += entry->d_name[0] != '.';
    ::closedir(dir);
  }
  return count - 1;  // the directory stream's own descriptor
}

long rss_kib() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

uint16_t port_of(const Server& server) { return server.sockets().at(0).getsockname().port(); }

}  // namespace asyncio::testing_util
