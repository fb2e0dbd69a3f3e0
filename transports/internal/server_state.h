// The state behind a Server handle.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <source_location>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include "futures/futures.h"
#include "loop/loop.h"
#include "transports/internal/tls_fields.h"
#include "transports/tls_layer.h"
#include "transports/transports.h"

namespace asyncio::transports_internal {

struct ServerState : std::enable_shared_from_this<ServerState> {
  ServerState(EventLoop& l, ProtocolFactory f, int b)
      : loop(l), factory(std::move(f)), backlog(b) {}
  ~ServerState();

  void start_serving();
  void stop_serving();  // removes the accept watches
  void close();
  void attach(Transport* client) {
    ++active_connections;
    clients.insert(client);
  }
  void detach(Transport* client);
  // close() or abort() on every client.
  void close_clients(bool abort);
  void wake_up_waiters();
  void accept_ready(int listen_fd);
  void accept_connection(int fd);
  void set_tls(const TlsFields& tls) {
    check_tls_fields(tls, true, "");
    ssl = tls.ssl;
    tls_options = session_options(tls, true, "");
  }

  EventLoop& loop;
  ProtocolFactory factory;
  int backlog;
  std::vector<int> fds;   // listening sockets
  std::string unix_path;  // removed when the server closes
  ino_t unix_inode = 0;   // ... if it is still our socket
  bool serving = false;
  bool closed = false;
  size_t active_connections = 0;
  std::unordered_set<Transport*> clients;  // each detaches before it goes
  std::vector<Future<void>> closed_waiters;
  std::optional<Future<void>> serving_forever;
  TimerHandle accept_retry;
  std::shared_ptr<TlsLayer> ssl;  // each connection is a TLS session
  TlsOptions tls_options;
  // The create_server call's site, reported if the server goes unclosed
  // (once a Server was handed out), and its connections' site.
  std::source_location opened_at;
  bool handed_out = false;
};

}  // namespace asyncio::transports_internal
