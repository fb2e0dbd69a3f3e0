// Helpers shared by the tests of every package (as CPython's
// test_asyncio/utils.py): descriptor and memory accounting, and the port a
// server listens on. Test-only.
#pragma once

#include <cstdint>

#include "transports/transports.h"

namespace asyncio::testing_util {

// Descriptors open in this process (entries of /proc/self/fd).
int open_fd_count();

// Resident memory of this process, in KiB (/proc/self/statm).
long rss_kib();

// The port of the server's first listening socket.
uint16_t port_of(const Server& server);

}  // namespace asyncio::testing_util
