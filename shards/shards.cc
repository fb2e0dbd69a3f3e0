#include "shards/shards.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <latch>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace asyncio {
namespace shards_internal {

EventLoop& loop_of(const ShardLoops& set, size_t target) {
  if (target >= set.loops.size()) {
    throw std::out_of_range("no shard " + std::to_string(target) + " (there are " +
                            std::to_string(set.loops.size()) + ")");
  }
  EventLoop* loop = set.loops[target];
  if (loop == nullptr) throw std::runtime_error("Event loop is closed");
  return *loop;
}

void count_call(ShardLoops& set, size_t index) noexcept {
  ShardCounters::add(set.counters[index].calls);
}

namespace {

// How a shard's main ended, as the coordinator hears it.
struct MainOutcome {
  bool cancelled = false;
  std::exception_ptr error;  // a failure other than cancellation
};

std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
    }
  }
  return cpus;
}

}  // namespace

struct Coordinator;

// One shard: its thread's state. Fields without a note are touched on the
// shard's thread only.
struct ShardRuntime {
  ShardRuntime(ShardLoops& set, size_t index) : shard(set, index, *this) {}

  Shard shard;
  std::optional<AnyTask> main;
  std::optional<Future<void>> wake;  // set when main is done or on release
  bool main_done = false;
  bool released = false;
  bool cancel_requested = false;  // before main existed
  std::vector<Server> servers;
  std::exception_ptr start_error;  // written before the start latch

  void wake_body() {
    if (wake && !wake->done()) wake->set_result();
  }
  void cancel_main() {
    cancel_requested = true;
    if (main && !main->done()) main->cancel();
  }
  void release() {
    released = true;
    wake_body();
  }
};

// The thread that called run_sharded: hears from the shards and from the
// signals, and decides, on a loop of its own.
struct Coordinator {
  Coordinator(size_t n, ErasedMain m, const ShardedOptions& o)
      : loops(n),
        main(std::move(m)),
        options(o),
        start_latch(static_cast<std::ptrdiff_t>(n) + 1),
        close_latch(static_cast<std::ptrdiff_t>(n)) {
    runtimes.reserve(n);
    for (size_t i = 0; i < n; ++i) runtimes.push_back(std::make_unique<ShardRuntime>(loops, i));
  }

  ShardLoops loops;
  ErasedMain main;
  const ShardedOptions& options;
  std::vector<std::unique_ptr<ShardRuntime>> runtimes;
  std::latch start_latch;  // every loop made (or failed to be)
  std::latch close_latch;  // every loop closed: nobody posts any more
  std::unique_ptr<EventLoop> loop;
  std::vector<int> cpus;  // to pin the shards to, if asked

  // The coordinator's loop only.
  size_t finished = 0;
  std::vector<std::exception_ptr> failures;
  bool some_cancelled = false;
  bool cancelling = false;
  int signals = 0;
  int interrupts = 0;
  bool terminated = false;
  bool raise_now = false;
  bool all_released = false;

  // Posts `fn(runtime)` to shard i's loop, if it still takes callbacks.
  template <class Fn>
  void post_to_shard(size_t i, Fn fn) {
    EventLoop* target = loops.loops[i];
    if (target == nullptr) return;
    ShardRuntime* runtime = runtimes[i].get();
    try {
      target->call_soon_threadsafe([runtime, fn]() mutable { fn(*runtime); });
    } catch (const std::runtime_error&) {
      // Closed: that shard is done.
    }
  }

  void cancel_all() {
    cancelling = true;
    for (size_t i = 0; i < runtimes.size(); ++i) {
      post_to_shard(i, [](ShardRuntime& r) { r.cancel_main(); });
    }
  }

  void release_all() {
    if (all_released) return;
    all_released = true;
    for (size_t i = 0; i < runtimes.size(); ++i) {
      post_to_shard(i, [](ShardRuntime& r) { r.release(); });
    }
    loop->stop();
  }

  void on_main_done(MainOutcome outcome) {
    ++finished;
    if (outcome.error) {
      failures.push_back(outcome.error);
      if (!cancelling) cancel_all();
    }
    if (outcome.cancelled) some_cancelled = true;
    if (finished == runtimes.size()) release_all();
  }

  void on_signal(int sig) {
    if (sig == SIGINT) ++interrupts;
    if (sig == SIGTERM) terminated = true;
    if (++signals == 1) {
      cancel_all();
      return;
    }
    // A second signal: stop waiting for the mains.
    if (sig == SIGINT) raise_now = true;
    release_all();
  }

  // Called by shard i's thread (its loop) when its main is done.
  void report(MainOutcome outcome) {
    try {
      loop->call_soon_threadsafe([this, outcome] { on_main_done(outcome); });
    } catch (const std::runtime_error&) {
    }
  }

  void shard_thread(size_t i);
  Coro<void> shard_body(ShardRuntime& runtime);
  void run();
};

namespace {

Coro<void> close_server(Server server) {
  server.close();
  server.close_clients();
  bool closed = true;
  try {
    co_await wait_for(server.wait_closed(), std::chrono::seconds(5));
  } catch (const TimeoutError&) {
    closed = false;
  }
  if (closed) co_return;
  server.abort_clients();
  co_await server.wait_closed();
}

bool default_disposition(int sig) {
  struct sigaction previous {};
  if (::sigaction(sig, nullptr, &previous) != 0) return false;
  return !(previous.sa_flags & SA_SIGINFO) && previous.sa_handler == SIG_DFL;
}

}  // namespace

Coro<void> Coordinator::shard_body(ShardRuntime& runtime) {
  EventLoop& here = get_running_loop();
  // The loop-affine handles go on this thread, however the body ends.
  struct Cleanup {
    ShardRuntime& runtime;
    ~Cleanup() {
      runtime.servers.clear();
      runtime.wake.reset();
      runtime.main.reset();
    }
  } cleanup{runtime};
  runtime.wake = create_future<void>(here);
  try {
    Task<void> task = create_task(main(runtime.shard));
    runtime.main = AnyTask(task);
    if (runtime.cancel_requested) task.cancel();
    task.add_done_callback([this, &runtime](Future<void>& done) {
      MainOutcome outcome;
      if (done.cancelled()) {
        outcome.cancelled = true;
      } else {
        outcome.error = done.exception();
      }
      runtime.main_done = true;
      report(outcome);
      runtime.wake_body();
    });
  } catch (...) {
    runtime.main_done = true;
    report(MainOutcome{false, std::current_exception()});
  }
  if (!runtime.main_done) {
    co_await *runtime.wake;
    runtime.wake = create_future<void>(here);
  }
  // The main is done (or a second SIGINT said not to wait for it): close
  // the servers it opened, then keep serving the other shards until all
  // are done.
  std::vector<Server> servers = std::move(runtime.servers);
  runtime.servers.clear();
  if (runtime.main_done) {
    for (Server& server : servers) co_await close_server(server);
  } else {
    for (Server& server : servers) {
      server.close();
      server.abort_clients();
    }
  }
  if (!runtime.released) co_await *runtime.wake;
}

void Coordinator::shard_thread(size_t i) {
  ShardRuntime& runtime = *runtimes[i];
  if (!cpus.empty()) {
    // Pinned before the loop is made, so that its memory is the CPU's own.
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpus[i % cpus.size()], &set);
    ::pthread_setaffinity_np(::pthread_self(), sizeof set, &set);
  }
  std::optional<Runner> runner;
  try {
    RunOptions run_options;
    run_options.debug = options.debug;
    runner.emplace(std::move(run_options));
    loops.loops[i] = &runner->get_loop();
  } catch (...) {
    runtime.start_error = std::current_exception();
  }
  start_latch.arrive_and_wait();
  if (loops.loops[i] != nullptr) {
    try {
      runner->run(shard_body(runtime));
    } catch (...) {
      // shard_body reports the main's outcome itself; anything else (the
      // loop stopped) is reported by the Runner's loop.
    }
    runner->close();
  }
  // Every loop stays alive until all are closed: another shard may still be
  // posting to this one (and get "Event loop is closed").
  close_latch.arrive_and_wait();
  runner.reset();
}

void Coordinator::run() {
  const size_t n = runtimes.size();
  if (options.pin_threads) cpus = allowed_cpus();
  loop = new_event_loop();
  bool handles_int = false;
  bool handles_term = false;
  if (options.handle_signals) {
    if (default_disposition(SIGINT)) {
      loop->add_signal_handler(SIGINT, [this] { on_signal(SIGINT); });
      handles_int = true;
    }
    if (default_disposition(SIGTERM)) {
      loop->add_signal_handler(SIGTERM, [this] { on_signal(SIGTERM); });
      handles_term = true;
    }
  }
  // The shards' threads inherit a mask blocking SIGINT and SIGTERM: the
  // signals go to this thread, and the shards' system calls are not
  // interrupted.
  sigset_t blocked, previous;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGINT);
  sigaddset(&blocked, SIGTERM);
  ::pthread_sigmask(SIG_BLOCK, &blocked, &previous);
  std::vector<std::thread> threads;
  threads.reserve(n);
  std::exception_ptr spawn_error;
  try {
    for (size_t i = 0; i < n; ++i) threads.emplace_back([this, i] { shard_thread(i); });
  } catch (...) {
    spawn_error = std::current_exception();
  }
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  if (spawn_error) {
    // The threads that did start wait at the start latch for the others:
    // count the missing ones down, with no loop, and let them finish.
    for (size_t i = threads.size(); i < n; ++i) {
      runtimes[i]->start_error = spawn_error;
      start_latch.count_down();
      close_latch.count_down();
    }
  }
  start_latch.arrive_and_wait();
  for (size_t i = 0; i < n; ++i) {
    if (runtimes[i]->start_error) on_main_done(MainOutcome{false, runtimes[i]->start_error});
  }
  if (!all_released) loop->run_forever();
  if (handles_int) loop->remove_signal_handler(SIGINT);
  if (handles_term) loop->remove_signal_handler(SIGTERM);
  for (std::thread& thread : threads) thread.join();
  // Reports that came after the release (a second SIGINT) are dropped here.
  loop->close();
}

}  // namespace shards_internal

size_t available_cpus() {
  const size_t n = shards_internal::allowed_cpus().size();
  if (n > 0) return n;
  return std::max(1u, std::thread::hardware_concurrency());
}

void shards_internal::run_sharded_erased(size_t n, ErasedMain main, const ShardedOptions& options) {
  if (n == 0) throw std::invalid_argument("run_sharded: at least one shard is needed");
  if (running_loop_or_null() != nullptr) {
    throw std::runtime_error("run_sharded() cannot be called from a running event loop");
  }
  Coordinator coordinator(n, std::move(main), options);
  coordinator.run();
  if (coordinator.raise_now) throw KeyboardInterrupt();
  if (coordinator.failures.size() == 1) std::rethrow_exception(coordinator.failures.front());
  if (coordinator.failures.size() > 1) {
    throw ExceptionGroup("unhandled errors in run_sharded", std::move(coordinator.failures));
  }
  if (coordinator.some_cancelled) {
    if (coordinator.interrupts > 0) throw KeyboardInterrupt();
    if (!coordinator.terminated) throw CancelledError();
  }
}

// --- Shard ------------------------------------------------------------------

void shards_internal::track_server(Shard& shard, const Server& server) {
  shard.runtime_->servers.push_back(server);
}

namespace {

// A start_server connection, counted while its handler runs.
Coro<void> counted_client(std::shared_ptr<const ClientConnected> cb,
                          shards_internal::ShardCounters* counters, StreamReader reader,
                          StreamWriter writer) {
  using shards_internal::ShardCounters;
  ShardCounters::add(counters->accepted);
  ShardCounters::add(counters->open);
  struct Open {
    shards_internal::ShardCounters* counters;
    ~Open() { ShardCounters::sub(counters->open); }
  } open{counters};
  co_await (*cb)(std::move(reader), std::move(writer));
}

// Holds a create_server connection's protocol; released with it.
struct CountedProtocol {
  CountedProtocol(std::shared_ptr<BaseProtocol> p, shards_internal::ShardCounters* c)
      : protocol(std::move(p)), counters(c) {
    shards_internal::ShardCounters::add(counters->accepted);
    shards_internal::ShardCounters::add(counters->open);
  }
  CountedProtocol(const CountedProtocol&) = delete;
  CountedProtocol& operator=(const CountedProtocol&) = delete;
  ~CountedProtocol() { shards_internal::ShardCounters::sub(counters->open); }
  std::shared_ptr<BaseProtocol> protocol;
  shards_internal::ShardCounters* counters;
};

}  // namespace

Coro<Server> Shard::start_server(ClientConnected client_connected_cb, std::string host,
                                 uint16_t port, StreamOptions options, std::source_location where) {
  options.reuse_port = true;
  auto cb = std::make_shared<const ClientConnected>(std::move(client_connected_cb));
  shards_internal::ShardCounters* counters = &set_->counters[index_];
  ClientConnected counted = [cb, counters](StreamReader reader, StreamWriter writer) {
    return counted_client(cb, counters, std::move(reader), std::move(writer));
  };
  Server server = co_await asyncio::start_server(std::move(counted), std::move(host), port,
                                                 std::move(options), where);
  shards_internal::track_server(*this, server);
  co_return server;
}

Coro<Server> Shard::start_server(ClientConnected client_connected_cb, std::string host,
                                 uint16_t port, std::source_location where) {
  return start_server(std::move(client_connected_cb), std::move(host), port, StreamOptions(),
                      where);
}

Coro<Server> Shard::create_server(ProtocolFactory protocol_factory, std::string host, uint16_t port,
                                  ServerOptions options, std::source_location where) {
  options.reuse_port = true;
  shards_internal::ShardCounters* counters = &set_->counters[index_];
  ProtocolFactory counted = [factory = std::move(protocol_factory),
                             counters]() -> std::shared_ptr<BaseProtocol> {
    std::shared_ptr<BaseProtocol> protocol = factory();
    if (!protocol) return protocol;
    auto holder = std::make_shared<CountedProtocol>(protocol, counters);
    BaseProtocol* raw = protocol.get();
    return std::shared_ptr<BaseProtocol>(std::move(holder), raw);
  };
  Server server = co_await asyncio::create_server(loop(), std::move(counted), std::move(host), port,
                                                  std::move(options), where);
  shards_internal::track_server(*this, server);
  co_return server;
}

Coro<Server> Shard::create_server(ProtocolFactory protocol_factory, std::string host, uint16_t port,
                                  std::source_location where) {
  return create_server(std::move(protocol_factory), std::move(host), port, ServerOptions(), where);
}

ShardStats Shard::stats_of(size_t i) const {
  if (i >= count()) throw std::out_of_range("no shard " + std::to_string(i));
  const shards_internal::ShardCounters& c = set_->counters[i];
  ShardStats stats;
  stats.index = i;
  stats.connections_accepted = c.accepted.load(std::memory_order_relaxed);
  stats.connections_open = c.open.load(std::memory_order_relaxed);
  stats.requests = c.requests.load(std::memory_order_relaxed);
  stats.cross_shard_calls = c.calls.load(std::memory_order_relaxed);
  return stats;
}

std::vector<ShardStats> Shard::all_stats() const {
  std::vector<ShardStats> all;
  all.reserve(count());
  for (size_t i = 0; i < count(); ++i) all.push_back(stats_of(i));
  return all;
}

std::string Shard::format_stats() const {
  std::string out = "shard   accepted       open   requests      calls\n";
  ShardStats total;
  char line[128];
  auto add_line = [&](const char* name, const ShardStats& s) {
    std::snprintf(line, sizeof line, "%-5s %10llu %10llu %10llu %10llu\n", name,
                  static_cast<unsigned long long>(s.connections_accepted),
                  static_cast<unsigned long long>(s.connections_open),
                  static_cast<unsigned long long>(s.requests),
                  static_cast<unsigned long long>(s.cross_shard_calls));
    out += line;
  };
  for (const ShardStats& s : all_stats()) {
    add_line(std::to_string(s.index).c_str(), s);
    total.connections_accepted += s.connections_accepted;
    total.connections_open += s.connections_open;
    total.requests += s.requests;
    total.cross_shard_calls += s.cross_shard_calls;
  }
  add_line("total", total);
  return out;
}

}  // namespace asyncio
