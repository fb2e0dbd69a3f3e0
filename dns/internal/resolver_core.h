// The c-ares channel on a loop, behind dns::Resolver, dns::install and
// asyncio::getaddrinfo / getnameinfo.
//
// c-ares tells which sockets to watch through its socket-state callback: they
// become the loop's readers and writers, which call ares_process_fd. One loop
// timer covers c-ares' timeouts: armed for the earliest deadline a new query
// can have, re-armed from ares_timeout() when it fires. Answers are queued
// while c-ares runs and delivered after it returns, so user code never runs
// inside c-ares; an answer that comes while a lookup is being started (the
// hosts file, a service name, an error) is delivered on the next loop
// iteration, so `done` never runs inside getaddrinfo().
//
// A lookup belongs to the core until it is delivered: cancel(id) only marks
// it abandoned and drops its callback; the request itself goes away when
// c-ares is done with it (ares_cancel would cancel every query of the channel).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "dns/dns.h"
#include "dns/internal/addrinfo.h"
#include "loop/loop.h"

struct ares_channeldata;
struct ares_addrinfo;

namespace asyncio::dns_internal {

class LoopState;

// getaddrinfo's answer for c-ares' answer: its IPv4 and IPv6 addresses (other
// families are skipped) with `service`'s port, sorted as RFC 6724 says, the
// canonical name at the end of its CNAME chain. Empty when it has no address.
std::vector<AddrInfo> addrinfo_from_ares(const ares_addrinfo& answer, const Service& service,
                                         const AddrInfoHints& hints);

class ResolverCore final : public NameResolver, public std::enable_shared_from_this<ResolverCore> {
 public:
  using NameInfoDone =
      absl::AnyInvocable<void(std::string host, std::string service, std::exception_ptr error)>;

  // Throws std::invalid_argument (bad server) or std::runtime_error (c-ares).
  static std::shared_ptr<ResolverCore> create(EventLoop& loop, const dns::ResolverOptions& options);
  ~ResolverCore() override;
  ResolverCore(const ResolverCore&) = delete;
  ResolverCore& operator=(const ResolverCore&) = delete;

  // NameResolver. Throws std::runtime_error if the loop is closed or the
  // resolver shut down.
  LookupId getaddrinfo(std::string host, std::string port, AddrInfoHints hints, Done done) override;
  void cancel(LookupId id) override;

  // The same contract for getnameinfo.
  LookupId getnameinfo(const SocketAddress& addr, int flags, NameInfoDone done);

  // The DNS part alone, for callers that tried answer_locally / name_locally
  // first.
  LookupId query_addrinfo(std::string host, Service service, AddrInfoHints hints, Done done);
  LookupId query_nameinfo(const SocketAddress& addr, int flags, NameInfoDone done);

  // Destroys the channel. Lookups not delivered yet fail with
  // GaiError(EAI_CANCELED) on the next loop iteration. Idempotent.
  void shutdown();
  // The loop is being destroyed (it is closed): destroys the channel and
  // drops every pending callback undelivered. Called by LoopState.
  void loop_gone() noexcept;

  // What getaddrinfo / getnameinfo answer without asking DNS: IP literals,
  // the hosts file (when the lookup order starts with it), localhost. nullopt
  // when DNS must be asked; throws GaiError. `service` receives the port.
  std::optional<std::vector<AddrInfo>> answer_locally(const std::string& host,
                                                      const std::string& port,
                                                      const AddrInfoHints& hints,
                                                      Service* service) const;
  std::optional<std::pair<std::string, std::string>> name_locally(const SocketAddress& addr,
                                                                  int flags) const;

  EventLoop* loop() const { return loop_; }
  size_t pending() const { return in_flight_ + waiting_.size() + completed_.size(); }

 private:
  struct Request;
  explicit ResolverCore(EventLoop& loop);
  void init_channel(const dns::ResolverOptions& options);
  void check_usable() const;
  std::optional<std::vector<AddrInfo>> from_hosts_file(const std::string& host,
                                                       const Service& service,
                                                       const AddrInfoHints& hints,
                                                       bool last_resort) const;
  LookupId add_request(Request* request);
  LookupId submit(Request* request);  // to c-ares, or to wait for a free slot
  void send(Request* request);
  bool send_waiting();

  static void on_sock_state(void* data, int fd, int readable, int writable) noexcept;
  static void on_addrinfo(void* arg, int status, int timeouts, ares_addrinfo* result) noexcept;
  static void on_nameinfo(void* arg, int status, int timeouts, char* node, char* service) noexcept;
  static void deliver(Request& request, EventLoop* loop);
  void complete(Request* request);

  void after_start();
  void process_fd(int read_fd, int write_fd);
  void after_ares_activity();
  void schedule_drain();
  void drain();
  void arm_timer(double deadline);
  void on_timer();
  void destroy_channel() noexcept;
  void drop_all() noexcept;
  void unwatch_all() noexcept;

  EventLoop* loop_;
  LoopState* state_ = nullptr;  // registered with the loop's LoopState while set
  ares_channeldata* channel_ = nullptr;
  std::string lookups_ = "fb";      // "fb", "bf", "f" or "b"; c-ares itself does "b"
  std::string hosts_file_;          // "" = /etc/hosts
  double first_try_timeout_ = 5.0;  // seconds; a new query's earliest deadline
  LookupId next_id_ = 0;
  std::unordered_map<LookupId, Request*> requests_;  // not delivered, not abandoned
  std::vector<Request*> completed_;                  // answered, to deliver
  size_t in_flight_ = 0;                             // queries c-ares holds
  size_t max_in_flight_ = dns::ResolverOptions::kDefaultMaxQueriesInFlight;
  std::deque<Request*> waiting_;  // for a free slot, in order
  std::vector<int> watched_;      // fds with a reader or writer
  TimerHandle timer_;
  double timer_when_ = 0;
  bool timer_armed_ = false;
  bool drain_scheduled_ = false;
};

// Per-loop state (a LoopExtension): the cores bound to the loop, shut down
// when it is destroyed, and the resolver of asyncio::getaddrinfo.
class LoopState final : public LoopExtension {
 public:
  explicit LoopState(EventLoop& loop) : loop_(loop) {}
  ~LoopState() override;
  static LoopState& of(EventLoop& loop);  // created on first use
  void add(ResolverCore* core) { cores_.push_back(core); }
  void remove(ResolverCore* core) noexcept;
  // The resolver of asyncio::getaddrinfo on this loop: the installed one, or
  // one with default options created now.
  std::shared_ptr<ResolverCore> resolver();
  void set_resolver(std::shared_ptr<ResolverCore> core) { resolver_ = std::move(core); }

 private:
  EventLoop& loop_;
  std::vector<ResolverCore*> cores_;
  std::shared_ptr<ResolverCore> resolver_;
};

}  // namespace asyncio::dns_internal
