// concurrent::ProcessPoolExecutor: work runs in forked worker processes.
// Included by executors/executors.h.
//
// The constructor forks one "fork server" process from the caller's thread
// (the clean point): it closes every inherited descriptor and then only forks
// workers on request, so every worker — the first ones and the replacements
// of dead ones — starts as a copy of the program at the moment the pool was
// made, from a single-threaded process. A worker shares the program's code,
// so a plain function pointer means the same function there; the arguments
// and the result travel over a socketpair, serialized (trivially copyable
// types byte for byte, std::string with a length prefix).
//
// A manager thread in the parent hands jobs to idle workers and reads their
// answers. A worker that dies (EOF on its socket) fails the future of the job
// it was running with BrokenProcessPool, and the fork server makes a new one.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "executors/internal/concurrent_future.h"
#include "executors/internal/thread_pool.h"
#include "loop/loop.h"

namespace asyncio::concurrent {

// A worker process died while running (or about to run) a job.
class BrokenProcessPool : public std::runtime_error {
 public:
  explicit BrokenProcessPool(const std::string& what) : std::runtime_error(what) {}
};

namespace executors_internal {

// --- serialization ----------------------------------------------------------

template <class T>
constexpr bool kWireType = std::is_trivially_copyable_v<T> || std::is_same_v<T, std::string>;

template <class T>
void wire_put(std::string& out, const T& value) {
  if constexpr (std::is_same_v<T, std::string>) {
    uint64_t n = value.size();
    out.append(reinterpret_cast<const char*>(&n), sizeof(n));
    out.append(value);
  } else {
    out.append(reinterpret_cast<const char*>(&value), sizeof(T));
  }
}

class WireReader {
 public:
  explicit WireReader(std::string_view data) : data_(data) {}
  template <class T>
  T get() {
    if constexpr (std::is_same_v<T, std::string>) {
      uint64_t n = get<uint64_t>();
      check(n);
      std::string s(data_.substr(0, n));
      data_.remove_prefix(n);
      return s;
    } else {
      check(sizeof(T));
      T value;
      std::memcpy(static_cast<void*>(&value), data_.data(), sizeof(T));
      data_.remove_prefix(sizeof(T));
      return value;
    }
  }

 private:
  void check(uint64_t n) const {
    if (n > data_.size()) throw std::runtime_error("process pool: truncated message");
  }
  std::string_view data_;
};

// Runs in the worker: decodes the arguments, calls the function, encodes the
// result into `out`. Exceptions propagate to the worker's main loop.
using Invoker = void (*)(uintptr_t fn, std::string_view args, std::string* out);

template <class R, class... A>
void invoke_wire(uintptr_t fn_bits, std::string_view args, std::string* out) {
  auto fn = reinterpret_cast<R (*)(A...)>(fn_bits);
  WireReader in(args);
  (void)in;  // unused when there are no arguments
  // Braced init: arguments are decoded left to right.
  std::tuple<std::remove_cvref_t<A>...> decoded{in.get<std::remove_cvref_t<A>>()...};
  if constexpr (std::is_void_v<R>) {
    std::apply(fn, decoded);
  } else {
    R result = std::apply(fn, decoded);
    wire_put(*out, result);
  }
}

// A job as the manager sees it.
class ProcessJob {
 public:
  virtual ~ProcessJob() = default;
  // set_running_or_notify_cancel: false if the job was cancelled.
  virtual bool start() = 0;
  // The worker's answer: the encoded result, or an error.
  virtual void deliver(std::string_view result) = 0;
  virtual void fail(std::exception_ptr error) = 0;
  virtual void cancel() = 0;
  std::string request;  // the encoded call
};

template <class R>
class TypedProcessJob final : public ProcessJob {
 public:
  explicit TypedProcessJob(Future<R> future) : future_(std::move(future)) {}
  bool start() override { return future_.set_running_or_notify_cancel(); }
  // deliver and fail complete the future with this job's reference to it
  // (see Future::try_set_result_and_release): the manager thread keeps
  // nothing of the outcome once it has been handed on.
  void deliver(std::string_view result) override {
    if constexpr (std::is_void_v<R>) {
      std::move(future_).try_set_result_and_release();
    } else {
      std::optional<R> value;
      std::exception_ptr error;
      try {
        WireReader in(result);
        value.emplace(in.get<R>());
      } catch (...) {
        error = std::current_exception();
      }
      if (error) {
        std::move(future_).try_set_exception_and_release(std::move(error));
      } else {
        std::move(future_).try_set_result_and_release(std::move(*value));
      }
    }
  }
  void fail(std::exception_ptr error) override {
    std::move(future_).try_set_exception_and_release(std::move(error));
  }
  void cancel() override { future_.cancel(); }

 private:
  Future<R> future_;
};

// Rebuilds, in the parent, an exception a worker reported by type name and
// message: the standard exception types come back as themselves, others as
// std::runtime_error("<type>: <message>").
std::exception_ptr remote_exception(const std::string& type, const std::string& what);

}  // namespace executors_internal

class ProcessPoolExecutor : public Executor {
 public:
  // max_workers == 0: the number of hardware threads. Forks the fork server
  // and the workers now. std::invalid_argument if negative,
  // std::system_error if fork fails.
  explicit ProcessPoolExecutor(int max_workers = 0);
  // shutdown(wait=true).
  ~ProcessPoolExecutor() override;
  ProcessPoolExecutor(const ProcessPoolExecutor&) = delete;
  ProcessPoolExecutor& operator=(const ProcessPoolExecutor&) = delete;

  // fn(args...) in a worker process. `fn` must be a plain function (not a
  // closure: the worker has its own memory); arguments and result are
  // trivially copyable or std::string. std::runtime_error after shutdown.
  template <class R, class... A>
  Future<R> submit(R (*fn)(A...), std::type_identity_t<A>... args) {
    static_assert((executors_internal::kWireType<std::remove_cvref_t<A>> && ...),
                  "process pool arguments must be trivially copyable or std::string");
    static_assert(std::is_void_v<R> || executors_internal::kWireType<R>,
                  "process pool results must be trivially copyable or std::string");
    Future<R> future;
    auto job = std::make_unique<executors_internal::TypedProcessJob<R>>(future);
    std::string& req = job->request;
    executors_internal::wire_put(
        req, reinterpret_cast<uintptr_t>(&executors_internal::invoke_wire<R, A...>));
    executors_internal::wire_put(req, reinterpret_cast<uintptr_t>(fn));
    (executors_internal::wire_put(req, static_cast<const std::remove_cvref_t<A>&>(args)), ...);
    enqueue(std::move(job));
    return future;
  }

  // Executor.map over a plain function of one argument; results in order.
  template <class R, class A, class Range>
  std::vector<R> map(R (*fn)(A), const Range& items,
                     std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    std::vector<Future<R>> futures;
    try {
      for (const auto& item : items) futures.push_back(submit(fn, item));
    } catch (...) {
      for (Future<R>& f : futures) f.cancel();
      throw;
    }
    return executors_internal::collect_in_order(futures, timeout);
  }

  // A process pool cannot run closures: throws std::invalid_argument. Use
  // submit(), or run_in_executor with a plain function pointer.
  void execute(absl::AnyInvocable<void()> work) override;

  // Stops accepting work; cancel_futures drops the queued jobs (their
  // futures are cancelled). The workers finish their jobs and exit; wait:
  // blocks until they and the fork server have exited and been reaped.
  void shutdown(bool wait = true, bool cancel_futures = false) override;

  int max_workers() const { return max_workers_; }
  // Process ids of the current workers (for tests and diagnostics).
  std::vector<pid_t> worker_pids() const;

 private:
  struct Worker;
  void enqueue(std::unique_ptr<executors_internal::ProcessJob> job);
  void manager_main();
  Worker spawn_worker();
  void wake();

  const int max_workers_;
  int server_fd_ = -1;  // control socket of the fork server
  pid_t server_pid_ = -1;
  int wake_fd_ = -1;             // eventfd: new jobs, shutdown
  std::vector<Worker> workers_;  // manager thread only (after construction)

  mutable std::mutex mu_;
  std::deque<std::unique_ptr<executors_internal::ProcessJob>> queue_;
  std::vector<pid_t> pids_;
  bool shutdown_ = false;
  bool broken_ = false;  // the fork server is gone and no worker is left

  std::mutex join_mu_;
  std::thread manager_;
};

}  // namespace asyncio::concurrent
