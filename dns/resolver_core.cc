#include "dns/internal/resolver_core.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/time.h>

#include <algorithm>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "dns/internal/addrinfo.h"
#include "dns/internal/hosts.h"

namespace asyncio::dns_internal {
namespace {

// Loop timers fire on the loop's clock, c-ares checks its own: a little slack
// keeps the timer from firing just before c-ares thinks a query is due.
constexpr double kTimerSlack = 0.001;

void init_library() {
  static std::once_flag once;
  std::call_once(once, [] {
    int rc = ::ares_library_init(ARES_LIB_INIT_ALL);
    if (rc != ARES_SUCCESS) {
      throw std::runtime_error(std::string("c-ares: ares_library_init: ") + ::ares_strerror(rc));
    }
  });
}

// "127.0.0.1", "127.0.0.1:5353", "::1", "[::1]:5353" -> c-ares' "host:port"
// form ("[v6]:port" for IPv6). Throws std::invalid_argument.
std::string server_csv_entry(const std::string& server) {
  auto bad = [&server](const char* why) {
    return std::invalid_argument("dns::ResolverOptions: bad server address \"" + server +
                                 "\": " + why);
  };
  std::string host = server;
  std::string port = "53";
  if (!server.empty() && server.front() == '[') {
    size_t close = server.find(']');
    if (close == std::string::npos) throw bad("missing ']'");
    host = server.substr(1, close - 1);
    std::string rest = server.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') throw bad("expected ':' after ']'");
      port = rest.substr(1);
    }
  } else if (std::count(server.begin(), server.end(), ':') == 1) {
    size_t colon = server.find(':');
    host = server.substr(0, colon);
    port = server.substr(colon + 1);
  }
  std::optional<uint16_t> port_number = numeric_port(port);
  if (port.empty() || !port_number || *port_number == 0) throw bad("bad port");
  unsigned char buf[sizeof(in6_addr)];
  if (::inet_pton(AF_INET, host.c_str(), buf) == 1) return host + ":" + port;
  if (::inet_pton(AF_INET6, host.c_str(), buf) == 1) return "[" + host + "]:" + port;
  throw bad("not an IPv4 or IPv6 address");
}

// The name at the end of the CNAME chain that starts at `name`.
std::string canonical_name(const ares_addrinfo* ai) {
  std::string name = ai->name != nullptr ? ai->name : "";
  if (ai->cnames == nullptr) return name;
  for (int hops = 0; hops < 32; ++hops) {
    const ares_addrinfo_cname* next = nullptr;
    for (const ares_addrinfo_cname* c = ai->cnames; c != nullptr; c = c->next) {
      if (c->alias != nullptr && c->name != nullptr && ::strcasecmp(c->alias, name.c_str()) == 0) {
        next = c;
        break;
      }
    }
    if (next == nullptr) break;
    name = next->name;
  }
  if (name == (ai->name != nullptr ? ai->name : "")) {
    // The chain did not start at the queried name (a search domain was
    // appended): its last target is the canonical name.
    const ares_addrinfo_cname* last = ai->cnames;
    while (last->next != nullptr) last = last->next;
    if (last->name != nullptr) name = last->name;
  }
  return name;
}

}  // namespace

std::vector<AddrInfo> addrinfo_from_ares(const ares_addrinfo& answer, const Service& service,
                                         const AddrInfoHints& hints) {
  std::vector<SocketAddress> addresses;
  for (const ares_addrinfo_node* n = answer.nodes; n != nullptr; n = n->ai_next) {
    if (n->ai_family != AF_INET && n->ai_family != AF_INET6) continue;
    addresses.push_back(
        SocketAddress::from_sockaddr(n->ai_addr, static_cast<socklen_t>(n->ai_addrlen)));
  }
  if (addresses.empty()) return {};
  return build_addrinfo(std::move(addresses), service, hints, canonical_name(&answer),
                        /*sort=*/true);
}

// ---------------------------------------------------------------------------
// Requests

struct ResolverCore::Request {
  ResolverCore* core = nullptr;
  LookupId id = 0;
  bool nameinfo = false;
  std::string what;  // the host (or address) named in error messages
  Service port;      // getaddrinfo's port
  AddrInfoHints hints;
  Done done;
  NameInfoDone nameinfo_done;
  // The outcome.
  std::vector<AddrInfo> results;
  std::string node, service;
  std::exception_ptr error;
  // Who holds the request: c-ares (in_ares), the queue of answers to deliver
  // (queued), the id map (until delivered or abandoned).
  bool in_ares = false;
  bool waiting = false;  // for a free slot (max_in_flight_)
  bool queued = false;
  bool abandoned = false;
  // getnameinfo's query.
  SocketAddress addr;
  int ni_flags = 0;
};

std::shared_ptr<ResolverCore> ResolverCore::create(EventLoop& loop,
                                                   const dns::ResolverOptions& options) {
  std::shared_ptr<ResolverCore> core(new ResolverCore(loop));
  core->init_channel(options);
  return core;
}

ResolverCore::ResolverCore(EventLoop& loop) : loop_(&loop) {
  if (loop.is_closed()) throw std::runtime_error("Event loop is closed");
  state_ = &LoopState::of(loop);
  state_->add(this);
}

ResolverCore::~ResolverCore() {
  destroy_channel();
  if (loop_ != nullptr && !loop_->is_closed() && !completed_.empty()) {
    // Nobody holds the core any more, yet some lookups were not delivered:
    // their callbacks still run once, on the next iteration, without it.
    std::vector<std::unique_ptr<Request>> left;
    for (Request* r : completed_) {
      if (r->abandoned) {
        delete r;
      } else {
        left.emplace_back(r);
      }
    }
    completed_.clear();
    requests_.clear();
    EventLoop* loop = loop_;
    loop_->call_soon([left = std::move(left), loop]() mutable {
      for (auto& r : left) deliver(*r, loop);
    });
  } else {
    drop_all();
  }
  if (state_ != nullptr) state_->remove(this);
}

void ResolverCore::init_channel(const dns::ResolverOptions& options) {
  init_library();
  if (options.lookups.find_first_not_of("fb") != std::string::npos) {
    throw std::invalid_argument(
        "dns::ResolverOptions: lookups must be made of 'f' and 'b', not \"" + options.lookups +
        "\"");
  }
  hosts_file_ = options.hosts_file;
  if (options.max_queries_in_flight > 0)
    max_in_flight_ = static_cast<size_t>(options.max_queries_in_flight);
  ares_options opts{};
  int mask = ARES_OPT_SOCK_STATE_CB;
  opts.sock_state_cb = &ResolverCore::on_sock_state;
  opts.sock_state_cb_data = this;
  if (options.timeout.count() > 0) {
    mask |= ARES_OPT_TIMEOUTMS;
    opts.timeout = static_cast<int>(std::min<int64_t>(options.timeout.count(), INT32_MAX));
  }
  if (options.tries > 0) {
    mask |= ARES_OPT_TRIES;
    opts.tries = options.tries;
  }
  if (options.rotate.has_value()) mask |= *options.rotate ? ARES_OPT_ROTATE : ARES_OPT_NOROTATE;
  if (options.ndots >= 0) {
    mask |= ARES_OPT_NDOTS;
    opts.ndots = options.ndots;
  }
  std::vector<char*> domains;
  if (options.search_domains.has_value()) {
    for (const std::string& d : *options.search_domains) {
      domains.push_back(const_cast<char*>(d.c_str()));
    }
    mask |= ARES_OPT_DOMAINS;
    opts.domains = domains.data();
    opts.ndomains = static_cast<int>(domains.size());
  }
  if (options.use_tcp) {
    mask |= ARES_OPT_FLAGS;
    opts.flags = ARES_FLAG_USEVC;
  }
  if (!options.resolv_conf.empty()) {
    mask |= ARES_OPT_RESOLVCONF;
    opts.resolvconf_path = const_cast<char*>(options.resolv_conf.c_str());
  }
  std::string csv;
  for (const std::string& server : options.servers) {
    if (!csv.empty()) csv += ',';
    csv += server_csv_entry(server);
  }

  // The hosts file is ours (see hosts.h): c-ares only ever asks DNS ("b").
  // Without lookups in the options, the order is what c-ares makes of the
  // system's configuration (/etc/nsswitch.conf, ...), read from a first
  // channel.
  lookups_ = options.lookups;
  if (lookups_.empty()) {
    ares_channel probe = nullptr;
    int rc = ::ares_init_options(&probe, &opts, mask);
    if (rc != ARES_SUCCESS) {
      throw std::runtime_error(std::string("c-ares: ares_init_options: ") + ::ares_strerror(rc));
    }
    ares_options saved{};
    int saved_mask = 0;
    if (::ares_save_options(probe, &saved, &saved_mask) == ARES_SUCCESS) {
      if ((saved_mask & ARES_OPT_LOOKUPS) && saved.lookups != nullptr) lookups_ = saved.lookups;
      ::ares_destroy_options(&saved);
    }
    ::ares_destroy(probe);
    if (lookups_.empty() || lookups_.find_first_not_of("fb") != std::string::npos) lookups_ = "fb";
  }
  char dns_only[] = "b";
  mask |= ARES_OPT_LOOKUPS;
  opts.lookups = dns_only;

  ares_channel channel = nullptr;
  int rc = ::ares_init_options(&channel, &opts, mask);
  if (rc != ARES_SUCCESS) {
    throw std::runtime_error(std::string("c-ares: ares_init_options: ") + ::ares_strerror(rc));
  }
  if (!csv.empty()) {
    rc = ::ares_set_servers_ports_csv(channel, csv.c_str());
    if (rc != ARES_SUCCESS) {
      ::ares_destroy(channel);
      throw std::invalid_argument("dns::ResolverOptions: c-ares rejects the servers \"" + csv +
                                  "\": " + ::ares_strerror(rc));
    }
  }
  ares_options saved{};
  int saved_mask = 0;
  if (::ares_save_options(channel, &saved, &saved_mask) == ARES_SUCCESS) {
    if ((saved_mask & ARES_OPT_TIMEOUTMS) && saved.timeout > 0) {
      first_try_timeout_ = saved.timeout / 1000.0;
    }
    ::ares_destroy_options(&saved);
  }
  channel_ = channel;
}

void ResolverCore::check_usable() const {
  if (loop_ == nullptr || loop_->is_closed()) throw std::runtime_error("Event loop is closed");
  if (channel_ == nullptr) throw std::runtime_error("dns::Resolver is shut down");
}

NameResolver::LookupId ResolverCore::add_request(Request* request) {
  request->core = this;
  request->id = ++next_id_;
  requests_.emplace(request->id, request);
  return request->id;
}

// ---------------------------------------------------------------------------
// Answers without DNS

std::optional<std::vector<AddrInfo>> ResolverCore::from_hosts_file(const std::string& host,
                                                                   const Service& service,
                                                                   const AddrInfoHints& hints,
                                                                   bool last_resort) const {
  std::shared_ptr<const HostsTable> table = HostsTable::current(hosts_file_);
  std::vector<const HostsTable::Entry*> entries = table->lookup(host, hints.family);
  std::vector<SocketAddress> addresses;
  std::string canonname = host;
  for (const HostsTable::Entry* e : entries) addresses.push_back(e->addr);
  if (!entries.empty()) canonname = entries.front()->canonical;
  if (addresses.empty() && is_localhost(host)) {
    // As c-ares: localhost is the loopback address even when the hosts file
    // says nothing about it (for that family).
    if (hints.family != AF_INET) {
      addresses.push_back(SocketAddress("::1", 0));
    }
    if (hints.family != AF_INET6) addresses.push_back(SocketAddress("127.0.0.1", 0));
  }
  if (addresses.empty()) {
    if (last_resort) std::rethrow_exception(make_gai_error(EAI_NONAME, host));
    return std::nullopt;
  }
  return build_addrinfo(std::move(addresses), service, hints, canonname, /*sort=*/true);
}

std::optional<std::vector<AddrInfo>> ResolverCore::answer_locally(const std::string& host,
                                                                  const std::string& port,
                                                                  const AddrInfoHints& hints,
                                                                  Service* service) const {
  if (auto numeric = numeric_addrinfo(host, port, hints)) return numeric;
  *service = resolve_service(host, port, hints);
  if (lookups_.empty() || lookups_.front() != 'f') return std::nullopt;
  const bool files_only = lookups_.find('b') == std::string::npos;
  return from_hosts_file(host, *service, hints, files_only);
}

// ---------------------------------------------------------------------------
// Starting lookups

NameResolver::LookupId ResolverCore::getaddrinfo(std::string host, std::string port,
                                                 AddrInfoHints hints, Done done) {
  check_usable();
  Service service;
  std::optional<std::vector<AddrInfo>> local;
  std::exception_ptr error;
  try {
    local = answer_locally(host, port, hints, &service);
  } catch (const GaiError&) {
    error = std::current_exception();
  }
  if (!local && !error) return query_addrinfo(std::move(host), service, hints, std::move(done));
  auto r = new Request;
  r->done = std::move(done);
  r->error = error;
  if (local) r->results = std::move(*local);
  const LookupId id = add_request(r);
  complete(r);
  schedule_drain();
  return id;
}

NameResolver::LookupId ResolverCore::query_addrinfo(std::string host, Service service,
                                                    AddrInfoHints hints, Done done) {
  check_usable();
  auto r = new Request;
  r->hints = hints;
  r->port = service;
  r->done = std::move(done);
  r->what = std::move(host);
  return submit(r);
}

NameResolver::LookupId ResolverCore::submit(Request* r) {
  const LookupId id = add_request(r);
  if (in_flight_ >= max_in_flight_) {
    // Too many queries out already: this one waits for a free slot.
    r->waiting = true;
    waiting_.push_back(r);
    return id;
  }
  send(r);
  after_start();
  return id;
}

void ResolverCore::send(Request* r) {
  r->in_ares = true;
  ++in_flight_;
  if (r->nameinfo) {
    const int ares_flags =
        to_ares_ni_flags(r->ni_flags) | ARES_NI_LOOKUPHOST | ARES_NI_LOOKUPSERVICE;
    ::ares_getnameinfo(channel_, r->addr.sockaddr_ptr(),
                       static_cast<ares_socklen_t>(r->addr.sockaddr_len()), ares_flags,
                       &ResolverCore::on_nameinfo, r);
    return;
  }
  ares_addrinfo_hints ah{};
  // The port is ours (no /etc/services read per lookup), and so is the
  // RFC 6724 sort (c-ares' costs a socket per address even for one).
  ah.ai_flags = to_ares_ai_flags(r->hints.flags & ~AI_NUMERICSERV) | ARES_AI_NOSORT;
  ah.ai_family = r->hints.family;
  ah.ai_socktype = r->hints.socktype;
  ah.ai_protocol = r->hints.protocol;
  ::ares_getaddrinfo(channel_, r->what.c_str(), nullptr, &ah, &ResolverCore::on_addrinfo, r);
}

bool ResolverCore::send_waiting() {
  bool sent = false;
  while (!waiting_.empty() && in_flight_ < max_in_flight_ && channel_ != nullptr) {
    Request* r = waiting_.front();
    waiting_.pop_front();
    r->waiting = false;
    if (r->abandoned) {
      delete r;
      continue;
    }
    send(r);
    sent = true;
  }
  return sent;
}

std::optional<std::pair<std::string, std::string>> ResolverCore::name_locally(
    const SocketAddress& addr, int flags) const {
  if (addr.family() != AF_INET && addr.family() != AF_INET6) {
    std::rethrow_exception(make_gai_error(EAI_FAMILY, "getnameinfo(" + addr.to_string() + ")"));
  }
  const bool files_first = !lookups_.empty() && lookups_.front() == 'f';
  const bool files_only = lookups_.find('b') == std::string::npos;
  if ((flags & NI_NUMERICHOST) || !files_first) return std::nullopt;
  std::shared_ptr<const HostsTable> table = HostsTable::current(hosts_file_);
  const std::string* name = table->reverse(addr);
  std::string node;
  if (name != nullptr) {
    node = *name;
    if (flags & NI_NOFQDN) node = node.substr(0, node.find('.'));
  } else if (files_only) {
    if (flags & NI_NAMEREQD) std::rethrow_exception(make_gai_error(EAI_NONAME, addr.host()));
    node = addr.host();
  } else {
    return std::nullopt;
  }
  return std::make_pair(std::move(node), service_name(addr.port(), flags));
}

NameResolver::LookupId ResolverCore::getnameinfo(const SocketAddress& addr, int flags,
                                                 NameInfoDone done) {
  check_usable();
  std::optional<std::pair<std::string, std::string>> local;
  std::exception_ptr error;
  try {
    local = name_locally(addr, flags);
  } catch (const GaiError&) {
    error = std::current_exception();
  }
  if (!local && !error) return query_nameinfo(addr, flags, std::move(done));
  auto r = new Request;
  r->nameinfo = true;
  r->nameinfo_done = std::move(done);
  r->error = error;
  if (local) {
    r->node = std::move(local->first);
    r->service = std::move(local->second);
  }
  const LookupId id = add_request(r);
  complete(r);
  schedule_drain();
  return id;
}

NameResolver::LookupId ResolverCore::query_nameinfo(const SocketAddress& addr, int flags,
                                                    NameInfoDone done) {
  check_usable();
  auto r = new Request;
  r->nameinfo = true;
  r->nameinfo_done = std::move(done);
  r->what = addr.host();
  r->addr = addr;
  r->ni_flags = flags;
  return submit(r);
}

void ResolverCore::after_start() {
  // A new query is due no earlier than one first-try timeout from now.
  if (in_flight_ > 0 && channel_ != nullptr) {
    arm_timer(loop_->time() + first_try_timeout_ + kTimerSlack);
  }
  // Answered at once (the hosts file, an error): delivered next iteration.
  if (!completed_.empty()) schedule_drain();
}

void ResolverCore::cancel(LookupId id) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return;
  Request* r = it->second;
  requests_.erase(it);
  r->abandoned = true;
  // Released last: their destructors may call back into the core.
  Done done = std::move(r->done);
  NameInfoDone nameinfo_done = std::move(r->nameinfo_done);
  if (!r->in_ares && !r->queued && !r->waiting) delete r;
}

// ---------------------------------------------------------------------------
// c-ares callbacks (no exception may cross them)

void ResolverCore::on_sock_state(void* data, int fd, int readable, int writable) noexcept {
  auto* core = static_cast<ResolverCore*>(data);
  auto& watched = core->watched_;
  auto it = std::find(watched.begin(), watched.end(), fd);
  if (readable || writable) {
    if (it == watched.end()) watched.push_back(fd);
  } else if (it != watched.end()) {
    watched.erase(it);
  }
  EventLoop* loop = core->loop_;
  if (loop == nullptr || loop->is_closed()) return;
  try {
    if (readable) {
      loop->add_reader(fd, [core, fd] { core->process_fd(fd, ARES_SOCKET_BAD); });
    } else {
      loop->remove_reader(fd);
    }
    if (writable) {
      loop->add_writer(fd, [core, fd] { core->process_fd(ARES_SOCKET_BAD, fd); });
    } else {
      loop->remove_writer(fd);
    }
  } catch (...) {
    loop->call_exception_handler(
        {"dns: cannot watch a c-ares socket", std::current_exception(), "", ""});
  }
}

void ResolverCore::on_addrinfo(void* arg, int status, int /*timeouts*/,
                               ares_addrinfo* result) noexcept {
  auto* r = static_cast<Request*>(arg);
  ResolverCore* core = r->core;
  r->in_ares = false;
  --core->in_flight_;
  if (r->abandoned) {
    if (result != nullptr) ::ares_freeaddrinfo(result);
    delete r;
    return;
  }
  try {
    std::vector<AddrInfo> results;
    if (status == ARES_SUCCESS && result != nullptr) {
      results = addrinfo_from_ares(*result, r->port, r->hints);
    }
    if (!results.empty()) {
      r->results = std::move(results);
    } else {
      if (status == ARES_SUCCESS) status = ARES_ENODATA;
      std::optional<std::vector<AddrInfo>> fallback;
      if ((status == ARES_ENOTFOUND || status == ARES_ENODATA) && core->lookups_ == "bf") {
        fallback = core->from_hosts_file(r->what, r->port, r->hints, false);
      }
      if (fallback) {
        r->results = std::move(*fallback);
      } else {
        r->error = gai_error_from_ares(status, r->what);
      }
    }
  } catch (...) {
    r->results.clear();
    r->error = std::current_exception();
  }
  if (result != nullptr) ::ares_freeaddrinfo(result);
  core->complete(r);
}

void ResolverCore::on_nameinfo(void* arg, int status, int /*timeouts*/, char* node,
                               char* service) noexcept {
  auto* r = static_cast<Request*>(arg);
  ResolverCore* core = r->core;
  r->in_ares = false;
  --core->in_flight_;
  if (r->abandoned) {
    delete r;
    return;
  }
  try {
    if (status == ARES_SUCCESS) {
      r->node = node != nullptr ? node : "";
      r->service = service != nullptr ? service : "";
    } else {
      r->error = gai_error_from_ares(status, r->what);
    }
  } catch (...) {
    r->error = std::current_exception();
  }
  core->complete(r);
}

void ResolverCore::complete(Request* request) {
  request->queued = true;
  completed_.push_back(request);
}

// ---------------------------------------------------------------------------
// Delivery

void ResolverCore::deliver(Request& r, EventLoop* loop) {
  try {
    if (r.nameinfo) {
      r.nameinfo_done(std::move(r.node), std::move(r.service), r.error);
    } else {
      r.done(std::move(r.results), r.error);
    }
  } catch (...) {
    if (loop != nullptr) {
      loop->call_exception_handler(
          {"Exception in a name resolution callback", std::current_exception(), "", ""});
    }
  }
}

void ResolverCore::schedule_drain() {
  if (drain_scheduled_ || loop_ == nullptr || loop_->is_closed()) return;
  drain_scheduled_ = true;
  loop_->call_soon([self = shared_from_this()] { self->drain(); });
}

void ResolverCore::drain() {
  drain_scheduled_ = false;
  while (!completed_.empty()) {
    std::vector<Request*> batch;
    batch.swap(completed_);
    for (Request* r : batch) {
      r->queued = false;
      if (r->abandoned) {
        delete r;
        continue;
      }
      requests_.erase(r->id);
      std::unique_ptr<Request> owned(r);
      deliver(*owned, loop_);
    }
  }
}

// ---------------------------------------------------------------------------
// Driving c-ares from the loop

void ResolverCore::process_fd(int read_fd, int write_fd) {
  if (channel_ == nullptr) return;
  std::shared_ptr<ResolverCore> self = shared_from_this();  // a callback may drop the last owner
  ::ares_process_fd(channel_, read_fd, write_fd);
  after_ares_activity();
}

void ResolverCore::on_timer() {
  timer_armed_ = false;
  if (channel_ == nullptr) return;
  std::shared_ptr<ResolverCore> self = shared_from_this();
  ::ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts
  after_ares_activity();
}

void ResolverCore::after_ares_activity() {
  // Answers freed slots: queries that waited for one go out now, outside
  // c-ares' callbacks; their deadlines are later than anything armed.
  if (send_waiting()) arm_timer(loop_->time() + first_try_timeout_ + kTimerSlack);
  drain();
  if (channel_ == nullptr || loop_ == nullptr || loop_->is_closed()) return;
  if (in_flight_ == 0) {
    if (timer_armed_) {
      timer_.cancel();
      timer_armed_ = false;
    }
    return;
  }
  if (timer_armed_) return;  // no earlier than what is armed: see after_start
  timeval tv{};
  if (::ares_timeout(channel_, nullptr, &tv) != nullptr) {
    arm_timer(loop_->time() + static_cast<double>(tv.tv_sec) +
              static_cast<double>(tv.tv_usec) * 1e-6 + kTimerSlack);
  }
}

void ResolverCore::arm_timer(double deadline) {
  if (timer_armed_ && timer_when_ <= deadline) return;
  timer_.cancel();
  timer_ = loop_->call_at(deadline, [this] { on_timer(); });
  timer_armed_ = true;
  timer_when_ = deadline;
}

// ---------------------------------------------------------------------------
// Teardown

void ResolverCore::destroy_channel() noexcept {
  if (channel_ == nullptr) return;
  ares_channel channel = channel_;
  // Every query's callback runs now with ARES_EDESTRUCTION (a GaiError with
  // EAI_CANCELED), and every socket is reported closed.
  ::ares_destroy(channel);
  channel_ = nullptr;
  std::deque<Request*> waiting;
  waiting.swap(waiting_);
  for (Request* r : waiting) {
    r->waiting = false;
    if (r->abandoned) {
      delete r;
      continue;
    }
    r->error = make_gai_error(EAI_CANCELED, r->what, ARES_EDESTRUCTION);
    complete(r);
  }
  unwatch_all();
  timer_.cancel();
  timer_armed_ = false;
}

void ResolverCore::unwatch_all() noexcept {
  std::vector<int> fds;
  fds.swap(watched_);
  if (loop_ == nullptr || loop_->is_closed()) return;
  for (int fd : fds) {
    loop_->remove_reader(fd);
    loop_->remove_writer(fd);
  }
}

void ResolverCore::drop_all() noexcept {
  std::vector<Request*> left;
  left.swap(completed_);
  requests_.clear();
  for (Request* r : left) delete r;
}

void ResolverCore::shutdown() {
  if (channel_ == nullptr) return;
  destroy_channel();
  if (loop_ != nullptr && !loop_->is_closed()) {
    schedule_drain();
  } else {
    drop_all();
  }
}

void ResolverCore::loop_gone() noexcept {
  destroy_channel();
  drop_all();
  state_ = nullptr;
  loop_ = nullptr;
}

// ---------------------------------------------------------------------------
// LoopState

namespace {
int loop_state_slot() {
  static const int slot = EventLoop::new_extension_slot();
  return slot;
}
}  // namespace

LoopState& LoopState::of(EventLoop& loop) {
  const int slot = loop_state_slot();
  if (LoopExtension* ext = loop.extension(slot)) return static_cast<LoopState&>(*ext);
  auto state = std::make_unique<LoopState>(loop);
  LoopState& ref = *state;
  loop.set_extension(slot, std::move(state));
  return ref;
}

LoopState::~LoopState() {
  while (!cores_.empty()) {
    ResolverCore* core = cores_.back();
    cores_.pop_back();
    std::shared_ptr<ResolverCore> keep = core->weak_from_this().lock();
    core->loop_gone();
  }
  resolver_.reset();
}

void LoopState::remove(ResolverCore* core) noexcept {
  auto it = std::find(cores_.begin(), cores_.end(), core);
  if (it != cores_.end()) cores_.erase(it);
}

std::shared_ptr<ResolverCore> LoopState::resolver() {
  if (!resolver_) resolver_ = ResolverCore::create(loop_, dns::ResolverOptions{});
  return resolver_;
}

}  // namespace asyncio::dns_internal
