#include "dns/internal/hosts.h"

#include <arpa/inet.h>
#include <sys/stat.h>

#include <cctype>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>

namespace asyncio::dns_internal {
namespace {

std::string lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::optional<SocketAddress> parse_address(const std::string& text) {
  in_addr v4;
  if (::inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr = v4;
    return SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&sin), sizeof(sin));
  }
  if (text.find(':') == std::string::npos) return std::nullopt;
  try {
    return SocketAddress(text, 0);
  } catch (const std::invalid_argument&) {
    return std::nullopt;
  }
}

// What identifies a version of the file.
struct FileStamp {
  bool exists = false;
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  timespec mtime{};
  bool operator==(const FileStamp& o) const {
    return exists == o.exists && dev == o.dev && ino == o.ino && size == o.size &&
           mtime.tv_sec == o.mtime.tv_sec && mtime.tv_nsec == o.mtime.tv_nsec;
  }
};

FileStamp stamp_of(const std::string& path) {
  FileStamp s;
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    s.exists = true;
    s.dev = st.st_dev;
    s.ino = st.st_ino;
    s.size = st.st_size;
    s.mtime = st.st_mtim;
  }
  return s;
}

struct Cached {
  std::shared_ptr<const HostsTable> table;
  FileStamp stamp;
  std::chrono::steady_clock::time_point checked;
};

}  // namespace

std::shared_ptr<const HostsTable> HostsTable::parse(std::string_view text) {
  auto table = std::make_shared<HostsTable>();
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    if (size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream words(line);
    std::string address;
    if (!(words >> address)) continue;
    std::optional<SocketAddress> addr = parse_address(address);
    if (!addr) continue;
    std::string name;
    std::string canonical;
    while (words >> name) {
      if (canonical.empty()) {
        canonical = name;
        table->by_address_.emplace(addr->host(), name);
      }
      std::vector<size_t>& list = table->by_name_[lowercase(name)];
      list.push_back(table->entries_.size());
    }
    if (!canonical.empty()) table->entries_.push_back(Entry{*addr, canonical});
  }
  return table;
}

std::shared_ptr<const HostsTable> HostsTable::current(const std::string& path_or_empty) {
  const std::string path = path_or_empty.empty() ? "/etc/hosts" : path_or_empty;
  static std::mutex mu;
  static std::map<std::string, Cached> cache;
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mu);
  Cached& cached = cache[path];
  if (cached.table && now - cached.checked < std::chrono::seconds(1)) return cached.table;
  cached.checked = now;
  FileStamp stamp = stamp_of(path);
  if (cached.table && stamp == cached.stamp) return cached.table;
  std::ifstream file(path);
  std::stringstream text;
  if (file) text << file.rdbuf();
  cached.table = parse(text.str());
  cached.stamp = stamp;
  return cached.table;
}

std::vector<const HostsTable::Entry*> HostsTable::lookup(std::string_view name, int family) const {
  std::vector<const Entry*> out;
  auto it = by_name_.find(lowercase(name));
  if (it == by_name_.end()) return out;
  for (size_t i : it->second) {
    const Entry& e = entries_[i];
    if (family != AF_UNSPEC && e.addr.family() != family) continue;
    bool duplicate = false;
    for (const Entry* seen : out) duplicate = duplicate || seen->addr == e.addr;
    if (!duplicate) out.push_back(&e);
  }
  return out;
}

const std::string* HostsTable::reverse(const SocketAddress& addr) const {
  auto it = by_address_.find(addr.host());
  return it == by_address_.end() ? nullptr : &it->second;
}

}  // namespace asyncio::dns_internal
