// The hosts file (/etc/hosts), parsed once and shared by every resolver of
// the process. c-ares 1.18 opens and parses it again on every lookup (five or
// more system calls each time); here a lookup is a hash-table probe, and the
// file is checked for changes (stat) at most once a second.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "loop/loop.h"

namespace asyncio::dns_internal {

class HostsTable {
 public:
  struct Entry {
    SocketAddress addr;     // port 0
    std::string canonical;  // the first name of the line
  };

  // Parses the text of a hosts file.
  static std::shared_ptr<const HostsTable> parse(std::string_view text);
  // The table of `path` ("" = /etc/hosts), re-read when the file changed (the
  // check is made at most once a second per path). An unreadable file gives
  // an empty table. Thread-safe.
  static std::shared_ptr<const HostsTable> current(const std::string& path);

  // The addresses of `name` (case-insensitive) of `family` (AF_UNSPEC: both),
  // in file order.
  std::vector<const Entry*> lookup(std::string_view name, int family) const;
  // The first name given to `addr` (the port is ignored), or nullptr.
  const std::string* reverse(const SocketAddress& addr) const;

 private:
  std::vector<Entry> entries_;
  std::unordered_map<std::string, std::vector<size_t>> by_name_;  // lowercase name -> entries
  std::unordered_map<std::string, std::string> by_address_;       // host() -> first name
};

}  // namespace asyncio::dns_internal
