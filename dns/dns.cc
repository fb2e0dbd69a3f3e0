#include "dns/dns.h"

#include <stdexcept>
#include <utility>

#include "dns/internal/addrinfo.h"
#include "dns/internal/resolver_core.h"

namespace asyncio {
namespace dns_internal {
namespace {

// Abandons the lookup when the awaiting coroutine is done with it: answered
// (then this is a no-op), cancelled, or destroyed with its loop.
struct Abandon {
  ResolverCore* core;
  NameResolver::LookupId id;
  ~Abandon() { core->cancel(id); }
};

std::shared_ptr<ResolverCore> usable(const std::shared_ptr<ResolverCore>& core) {
  if (!core) throw std::logic_error("dns::Resolver: used after being moved from");
  if (core->loop() == nullptr) throw std::runtime_error("Event loop is closed");
  return core;
}

// `core` null: the loop's resolver, taken only when a query is needed.
Coro<std::vector<AddrInfo>> resolve(EventLoop* loop, std::shared_ptr<ResolverCore> core,
                                    std::string host, std::string port, AddrInfoHints hints) {
  if (auto numeric = numeric_addrinfo(host, port, hints)) co_return std::move(*numeric);
  if (!core) core = LoopState::of(*loop).resolver();
  usable(core);
  Service service;
  if (auto local = core->answer_locally(host, port, hints, &service)) co_return std::move(*local);
  Future<std::vector<AddrInfo>> result = create_future<std::vector<AddrInfo>>(*core->loop());
  const NameResolver::LookupId id =
      core->query_addrinfo(std::move(host), service, hints,
                           [result](std::vector<AddrInfo> infos, std::exception_ptr error) mutable {
                             if (result.done()) return;  // the awaiting task was cancelled
                             if (error) {
                               result.set_exception(std::move(error));
                             } else {
                               result.set_result(std::move(infos));
                             }
                           });
  Abandon abandon{core.get(), id};
  co_return co_await result;
}

Coro<std::pair<std::string, std::string>> reverse(EventLoop* loop,
                                                  std::shared_ptr<ResolverCore> core,
                                                  SocketAddress addr, int flags) {
  if (!core) core = LoopState::of(*loop).resolver();
  usable(core);
  using Result = std::pair<std::string, std::string>;
  if (auto local = core->name_locally(addr, flags)) co_return std::move(*local);
  Future<Result> result = create_future<Result>(*core->loop());
  const NameResolver::LookupId id = core->query_nameinfo(
      addr, flags,
      [result](std::string host, std::string service, std::exception_ptr error) mutable {
        if (result.done()) return;
        if (error) {
          result.set_exception(std::move(error));
        } else {
          result.set_result(Result(std::move(host), std::move(service)));
        }
      });
  Abandon abandon{core.get(), id};
  co_return co_await result;
}

}  // namespace
}  // namespace dns_internal

Coro<std::vector<AddrInfo>> getaddrinfo(EventLoop& loop, std::string host, std::string port,
                                        AddrInfoHints hints) {
  return dns_internal::resolve(&loop, nullptr, std::move(host), std::move(port), hints);
}

Coro<std::pair<std::string, std::string>> getnameinfo(EventLoop& loop, const SocketAddress& addr,
                                                      int flags) {
  return dns_internal::reverse(&loop, nullptr, addr, flags);
}

namespace dns {

Resolver::Resolver(EventLoop& loop, ResolverOptions options)
    : core_(dns_internal::ResolverCore::create(loop, options)) {}

Resolver::~Resolver() {
  if (core_) core_->shutdown();
}

Resolver::Resolver(Resolver&& other) noexcept = default;

Resolver& Resolver::operator=(Resolver&& other) noexcept {
  if (this != &other) {
    if (core_) core_->shutdown();
    core_ = std::move(other.core_);
  }
  return *this;
}

Coro<std::vector<AddrInfo>> Resolver::getaddrinfo(std::string host, std::string port,
                                                  AddrInfoHints hints) {
  dns_internal::usable(core_);
  return dns_internal::resolve(core_->loop(), core_, std::move(host), std::move(port), hints);
}

Coro<std::pair<std::string, std::string>> Resolver::getnameinfo(const SocketAddress& addr,
                                                                int flags) {
  dns_internal::usable(core_);
  return dns_internal::reverse(core_->loop(), core_, addr, flags);
}

EventLoop& Resolver::loop() const { return *dns_internal::usable(core_)->loop(); }

size_t Resolver::pending() const { return core_ ? core_->pending() : 0; }

std::shared_ptr<NameResolver> Resolver::name_resolver() const { return core_; }

void install(EventLoop& loop, ResolverOptions options) {
  std::shared_ptr<dns_internal::ResolverCore> core =
      dns_internal::ResolverCore::create(loop, options);
  dns_internal::LoopState::of(loop).set_resolver(core);
  loop.set_name_resolver(std::move(core));
}

}  // namespace dns
}  // namespace asyncio
