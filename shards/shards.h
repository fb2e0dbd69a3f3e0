// //shards: one event loop per core behind one server (shared-nothing, as
// Seastar's reactor per core), with asyncio's API unchanged inside each loop.
//
// asyncio runs one loop in one thread. run_sharded runs n of them, one per
// thread (a thread per CPU by default), each with its own copy of `main`:
//
//   asyncio::run_sharded([](asyncio::Shard& shard) -> asyncio::Coro<void> {
//     asyncio::Server server = co_await shard.start_server(handle_echo, "127.0.0.1", 8888);
//     co_await server.serve_forever();
//   });
//
// Each shard listens on the same port (SO_REUSEPORT) and the kernel spreads
// the connections. Shards share nothing; they talk by message: call() runs a
// function on another shard's loop, submit() a coroutine, a ShardQueue
// carries items to the shard that owns it. Peers: Seastar's smp::submit_to
// (call/submit) and sharded<Service> (run_sharded), Python's
// asyncio.run_coroutine_threadsafe between two loops (what submit() does,
// without blocking a thread).
#pragma once

#include <pthread.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <source_location>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "futures/futures.h"
#include "loop/loop.h"
#include "queues/queues.h"
#include "shards/internal/cross_call.h"
#include "shards/internal/shard_set.h"
#include "streams/streams.h"
#include "transports/transports.h"

namespace asyncio {

namespace shards_internal {
struct ShardRuntime;
}  // namespace shards_internal

// What one shard has counted so far (Shard::stats, Shard::all_stats).
//   connections_accepted: by the servers of Shard::start_server and
//     Shard::create_server;
//   connections_open: of those, still open (a start_server connection until
//     its handler returns; a create_server one until its protocol is
//     released);
//   requests: what the application counted with Shard::count_request;
//   cross_shard_calls: call() and submit() this shard made to others.
// (The loop's busy time is not there: //loop does not measure it.)
struct ShardStats {
  size_t index = 0;
  uint64_t connections_accepted = 0;
  uint64_t connections_open = 0;
  uint64_t requests = 0;
  uint64_t cross_shard_calls = 0;
};

// The shards' view of each other. Passed to each shard's main; valid until
// run_sharded returns. Use it on its own shard's thread (from its main and
// the tasks it starts), except index() and count().
class Shard {
 public:
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  // 0 .. count()-1.
  size_t index() const noexcept { return index_; }
  size_t count() const noexcept { return set_->loops.size(); }
  // This shard's loop (the running loop of its main).
  EventLoop& loop() const noexcept { return *set_->loops[index_]; }

  // Runs fn() on shard `target`'s loop and returns its result (or throws its
  // exception) here: Seastar's smp::submit_to with a plain function. Neither
  // loop blocks: the request and the reply are each one
  // call_soon_threadsafe. On the own shard, fn() runs at once. Cancelling
  // the caller is safe: fn() is skipped if it has not started, else it
  // finishes and its result is dropped. std::out_of_range for a target that
  // is no shard; std::runtime_error("Event loop is closed") if the target's
  // loop is closed (it has shut down) before fn() could run. `fn` is moved
  // to the target's thread; what it refers to must be safe to use there.
  template <class F>
  auto call(size_t target, F fn) -> Coro<std::invoke_result_t<F&>>;

  // Calls factory() on shard `target`'s loop and runs the coroutine it
  // returns there as a task; returns its result here. As
  // `asyncio.run_coroutine_threadsafe(coro, other_loop)` awaited with
  // `asyncio.wrap_future`, but the coroutine is made on its own loop and no
  // thread waits. Cancelling the caller cancels the remote task. Throws what
  // the coroutine throws; CancelledError if the remote task was cancelled
  // (e.g. by its shard shutting down); std::runtime_error("Event loop is
  // closed") if the target's loop closed first. On the own shard the
  // coroutine is awaited inline.
  template <class F>
  auto submit(size_t target, F factory) -> Coro<await_result_t<std::invoke_result_t<F&>>>;

  // asyncio.start_server(client_connected_cb, host, port, reuse_port=True)
  // on this shard's loop: every shard calls it with the same port and the
  // kernel spreads the connections among them (by a hash of the
  // connection's addresses and ports). Counts connections in the shard's
  // stats. The server is closed, with its clients, when this shard's main
  // is done (cancelled or not): close(), close_clients(), and after 5 s
  // abort_clients().
  // `where`, as for asyncio::start_server: the site an unclosed server or
  // connection is reported with.
  Coro<Server> start_server(ClientConnected client_connected_cb, std::string host, uint16_t port,
                            StreamOptions options,
                            std::source_location where = std::source_location::current());
  Coro<Server> start_server(ClientConnected client_connected_cb, std::string host, uint16_t port,
                            std::source_location where = std::source_location::current());
  // loop.create_server(protocol_factory, host, port, reuse_port=True), the
  // same way for Protocols.
  Coro<Server> create_server(ProtocolFactory protocol_factory, std::string host, uint16_t port,
                             ServerOptions options,
                             std::source_location where = std::source_location::current());
  Coro<Server> create_server(ProtocolFactory protocol_factory, std::string host, uint16_t port,
                             std::source_location where = std::source_location::current());

  // Adds to this shard's request count (this shard's thread only; cheap: a
  // plain store).
  void count_request(uint64_t n = 1) noexcept {
    shards_internal::ShardCounters::add(set_->counters[index_].requests, n);
  }
  // This shard's counters, or shard `i`'s, read now (from any shard).
  ShardStats stats() const { return stats_of(index_); }
  ShardStats stats_of(size_t i) const;
  std::vector<ShardStats> all_stats() const;
  // A table of every shard's counters and their total, one line per shard.
  std::string format_stats() const;

 private:
  friend struct shards_internal::ShardRuntime;
  friend void shards_internal::track_server(Shard& shard, const Server& server);
  Shard(shards_internal::ShardLoops& set, size_t index, shards_internal::ShardRuntime& runtime)
      : set_(&set), index_(index), runtime_(&runtime) {}

  shards_internal::ShardLoops* set_;
  size_t index_;
  shards_internal::ShardRuntime* runtime_;
};

// The options of run_sharded.
//   pin_threads: pins shard i's thread to the i-th CPU the process may use
//     (sched_getaffinity; wrapping around when there are more shards).
//   handle_signals: SIGINT and SIGTERM stop every shard (see run_sharded).
//     Only for a signal whose disposition is the default one, as
//     asyncio.Runner does for SIGINT.
//   debug: each loop's debug mode (unset: the loop's own setting).
struct ShardedOptions {
  bool pin_threads = false;
  bool handle_signals = true;
  std::optional<bool> debug = std::nullopt;
};

// The CPUs this process may run on (sched_getaffinity), at least 1: the
// default number of shards.
size_t available_cpus();

// Runs `main(shard)` (a coroutine function: Coro<T>(Shard&)) on `n` shards:
// n threads, each with its own EventLoop (made as asyncio::run makes one),
// each running its own main as a task. Returns when every main is done and
// every loop closed (tasks left are cancelled, as asyncio::run does), with
// nothing (Coro<void>) or each shard's result by index (std::vector<T>).
// Throws std::runtime_error if called from a running loop, std::
// invalid_argument if n is 0.
//
// A shard whose main is done keeps its loop running for the others (their
// calls to it are still served) until all are done.
//
// Failures, as asyncio.TaskGroup: when a main throws, the others are
// cancelled; run_sharded then rethrows that exception, or an ExceptionGroup
// ("unhandled errors in run_sharded") when several mains failed. A main
// that ends cancelled with nobody asking (no failure, no signal) makes it
// throw CancelledError, as asyncio::run would.
//
// Signals (handle_signals): the thread calling run_sharded handles them;
// the shards' threads block SIGINT and SIGTERM. SIGINT, as asyncio.Runner:
// the first cancels every shard's main (each can catch CancelledError and
// clean up); if one then ends cancelled, run_sharded throws
// KeyboardInterrupt (mains that all swallow the cancellation return
// normally). A second SIGINT makes every shard stop waiting for its main
// (Runner's "raise at once": the shards cancel what is left, close) and
// run_sharded throws KeyboardInterrupt. SIGTERM, the way services are
// stopped, cancels every main the same way and run_sharded returns normally.
template <class Main>
requires std::is_invocable_v<Main&, Shard&>
auto run_sharded(size_t n, Main main, ShardedOptions options = {});
// The same with one shard per available CPU (available_cpus()).
template <class Main>
requires std::is_invocable_v<Main&, Shard&>
auto run_sharded(Main main, ShardedOptions options = {}) {
  return run_sharded(available_cpus(), std::move(main), std::move(options));
}

// A queue that any shard (or any thread) puts into and the shard that owns
// it gets from: asyncio.Queue across loops. Unbounded, so putting never
// waits. The owner is the loop of the first get(); get() from another loop
// throws std::runtime_error. Items from one producer arrive in the order it
// put them. Share it by reference (make it before run_sharded, or in a
// shard and hand it over): it must outlive the shards that use it.
//
//   asyncio::ShardQueue<std::string> logs;    // drained by shard 0
//   ... on any shard: logs.put_nowait(line);
//   ... on shard 0:   std::string line = co_await logs.get();
template <class T>
class ShardQueue {
 public:
  ShardQueue() : state_(std::make_shared<State>()) {}
  ShardQueue(const ShardQueue&) = delete;
  ShardQueue& operator=(const ShardQueue&) = delete;

  // queue.put_nowait(item), from any thread; wakes the owner if it waits.
  // Wake-ups are batched: one at most is on its way at any time.
  void put_nowait(T item);
  // queue.put(item): the same (the queue is unbounded).
  Coro<void> put(T item) {
    put_nowait(std::move(item));
    co_return;
  }
  // queue.get(), on the owner's loop: the oldest item, waiting for one.
  Coro<T> get();
  // queue.get_nowait(), on the owner's loop: QueueEmpty if there is none.
  T get_nowait();
  // Items waiting, from any thread (a snapshot).
  size_t qsize() const {
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->items.size();
  }
  bool empty() const { return qsize() == 0; }

 private:
  struct State {
    mutable std::mutex mu;
    std::deque<T> items;            // guarded by mu
    EventLoop* owner = nullptr;     // guarded by mu; set by the first get()
    bool consumer_waiting = false;  // guarded by mu
    bool wake_posted = false;       // guarded by mu
    // Owner's thread only: the futures of the get() calls waiting.
    std::vector<Future<void>*> waiters;

    void claim(EventLoop& here);  // mu held
    void wake();                  // owner's thread
  };
  std::shared_ptr<State> state_;
};

// ---------------------------------------------------------------------------
// Implementation details

namespace shards_internal {

using ErasedMain = std::function<Coro<void>(Shard&)>;
void run_sharded_erased(size_t n, ErasedMain main, const ShardedOptions& options);

template <class T, class Main>
Coro<void> store_result(Main& main, Shard& shard, std::optional<T>& slot) {
  slot.emplace(co_await main(shard));
}

void count_call(ShardLoops& set, size_t index) noexcept;

}  // namespace shards_internal

template <class Main>
requires std::is_invocable_v<Main&, Shard&>
auto run_sharded(size_t n, Main main, ShardedOptions options) {
  using C = std::invoke_result_t<Main&, Shard&>;
  static_assert(iscoroutine<C>, "run_sharded: main(shard) must return a Coro");
  using T = typename C::value_type;
  // std::function needs a copyable target; the one main is shared.
  auto shared = std::make_shared<Main>(std::move(main));
  if constexpr (std::is_void_v<T>) {
    shards_internal::run_sharded_erased(
        n, [shared](Shard& shard) { return (*shared)(shard); }, options);
  } else {
    std::vector<std::optional<T>> slots(n);
    shards_internal::run_sharded_erased(
        n,
        [shared, &slots](Shard& shard) {
          return shards_internal::store_result<T>(*shared, shard, slots[shard.index()]);
        },
        options);
    std::vector<T> results;
    results.reserve(n);
    for (auto& slot : slots) results.push_back(std::move(*slot));
    return results;
  }
}

template <class F>
auto Shard::call(size_t target, F fn) -> Coro<std::invoke_result_t<F&>> {
  using R = std::invoke_result_t<F&>;
  EventLoop& there = shards_internal::loop_of(*set_, target);
  if (target == index_) co_return fn();
  shards_internal::count_call(*set_, index_);
  auto reply = std::make_shared<shards_internal::Reply<R>>();
  EventLoop& home = loop();
  shards_internal::CallRequest<R, F> request{{reply, &home}, std::move(fn)};
  co_return co_await shards_internal::await_remote<R>(home, there, std::move(reply),
                                                      std::move(request), false);
}

template <class F>
auto Shard::submit(size_t target, F factory) -> Coro<await_result_t<std::invoke_result_t<F&>>> {
  using C = std::invoke_result_t<F&>;
  static_assert(iscoroutine<C>, "Shard::submit: factory() must return a Coro");
  using R = typename C::value_type;
  EventLoop& there = shards_internal::loop_of(*set_, target);
  if (target == index_) co_return co_await factory();
  shards_internal::count_call(*set_, index_);
  auto reply = std::make_shared<shards_internal::Reply<R>>();
  EventLoop& home = loop();
  shards_internal::SubmitRequest<R, F> request{{reply, &home}, std::move(factory), &there};
  co_return co_await shards_internal::await_remote<R>(home, there, std::move(reply),
                                                      std::move(request), true);
}

template <class T>
void ShardQueue<T>::State::claim(EventLoop& here) {
  if (owner == nullptr) owner = &here;
  if (owner != &here) {
    throw std::runtime_error("ShardQueue: get() on a loop that does not own the queue");
  }
}

template <class T>
void ShardQueue<T>::State::wake() {
  {
    std::lock_guard<std::mutex> lock(mu);
    wake_posted = false;
  }
  // A copy: a woken getter may remove itself before the loop ends.
  std::vector<Future<void>*> woken = waiters;
  for (Future<void>* waiter : woken) {
    if (!waiter->done()) waiter->set_result();
  }
}

template <class T>
void ShardQueue<T>::put_nowait(T item) {
  EventLoop* post_to = nullptr;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->items.push_back(std::move(item));
    if (state_->consumer_waiting && !state_->wake_posted) {
      state_->wake_posted = true;
      post_to = state_->owner;
    }
  }
  if (post_to == nullptr) return;
  if (running_loop_or_null() == post_to) {
    state_->wake();
    return;
  }
  try {
    post_to->call_soon_threadsafe([state = state_] { state->wake(); });
  } catch (const std::runtime_error&) {
    // The owner's loop is closed: nobody will get the item.
  }
}

template <class T>
T ShardQueue<T>::get_nowait() {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->claim(get_running_loop());
  if (state_->items.empty()) throw QueueEmpty();
  T item = std::move(state_->items.front());
  state_->items.pop_front();
  return item;
}

template <class T>
Coro<T> ShardQueue<T>::get() {
  EventLoop& here = get_running_loop();
  State& state = *state_;
  {
    std::lock_guard<std::mutex> lock(state.mu);
    state.claim(here);
  }
  // Unregisters the waiter on every way out (item, cancellation).
  struct Registration {
    State& state;
    Future<void>* waiter;
    ~Registration() {
      std::erase(state.waiters, waiter);
      if (!state.waiters.empty()) return;
      std::lock_guard<std::mutex> lock(state.mu);
      state.consumer_waiting = false;
    }
  };
  while (true) {
    {
      std::lock_guard<std::mutex> lock(state.mu);
      if (!state.items.empty()) {
        T item = std::move(state.items.front());
        state.items.pop_front();
        co_return item;
      }
      state.consumer_waiting = true;
    }
    Future<void> ready = create_future<void>(here);
    state.waiters.push_back(&ready);
    Registration registration{state, &ready};
    co_await ready;
  }
}

}  // namespace asyncio
