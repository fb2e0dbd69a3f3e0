// concurrent::ProcessPoolExecutor: work runs in forked worker processes.
//
// The constructor forks one "fork server" process from the caller's thread
// (the clean point): it closes every inherited descriptor and then only forks
// workers on request, so every worker — the first ones and the replacements
// of dead ones — starts as a copy of the program at the moment the pool was
// made, from a single-threaded process. A worker shares the program's code,
// so a plain function pointer means the same function there: the parent
// registers it in a table shared with the workers, and a call names it by
// index. The arguments and the result travel over a socketpair in frames
// with a 64-bit length (at most max_frame_size), serialized (trivially
// copyable types byte for byte, std::string with a length prefix).
//
// A manager thread in the parent hands jobs to idle workers and reads their
// answers. A worker that dies (EOF on its socket) fails the future of the job
// it was running with BrokenProcessPool, and the fork server makes a new one.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "executors/concurrent_future.h"
#include "executors/internal/process_protocol.h"
#include "executors/internal/work_item.h"
#include "loop/loop.h"

namespace asyncio::concurrent {

// A worker process died while running (or about to run) a job.
class BrokenProcessPool : public std::runtime_error {
 public:
  explicit BrokenProcessPool(const std::string& what) : std::runtime_error(what) {}
};

// A pool of worker processes, as concurrent.futures.ProcessPoolExecutor (see
// the top of this file for how work reaches them).
class ProcessPoolExecutor : public Executor {
 public:
  // max_workers == 0: the number of hardware threads. Forks the fork server
  // and the workers now. max_frame_size: the largest encoded call or result
  // (see kDefaultMaxFrameSize), at least kMinFrameSize. std::invalid_argument
  // if either is out of range, std::system_error if fork fails.
  explicit ProcessPoolExecutor(int max_workers = 0,
                               uint64_t max_frame_size = executors_internal::kDefaultMaxFrameSize);
  static constexpr uint64_t kMinFrameSize = 256;  // room for an error report
  // shutdown(wait=true).
  ~ProcessPoolExecutor() override;
  ProcessPoolExecutor(const ProcessPoolExecutor&) = delete;
  ProcessPoolExecutor& operator=(const ProcessPoolExecutor&) = delete;

  // fn(args...) in a worker process. `fn` must be a plain function (not a
  // closure: the worker has its own memory); arguments and result are
  // trivially copyable or std::string. std::runtime_error after shutdown;
  // std::invalid_argument if the encoded arguments are over max_frame_size
  // (nothing is sent); std::length_error once more than
  // FunctionTable::kCapacity distinct functions have been submitted. A
  // result over max_frame_size fails the future with std::length_error.
  template <class R, class... A>
  Future<R> submit(R (*fn)(A...), std::type_identity_t<A>... args) {
    static_assert((executors_internal::kWireType<std::remove_cvref_t<A>> && ...),
                  "process pool arguments must be trivially copyable or std::string");
    static_assert(std::is_void_v<R> || executors_internal::kWireType<R>,
                  "process pool results must be trivially copyable or std::string");
    uint32_t index =
        function_index(&executors_internal::invoke_wire<R, A...>, reinterpret_cast<uintptr_t>(fn));
    Future<R> future;
    auto job = std::make_unique<executors_internal::TypedProcessJob<R>>(future);
    std::string& req = job->request;
    executors_internal::wire_put(req, index);
    (executors_internal::wire_put(req, static_cast<const std::remove_cvref_t<A>&>(args)), ...);
    check_call_size(req.size());
    enqueue(std::move(job));
    return future;
  }

  // Executor.map over a plain function of one argument; results in order.
  template <class R, class A, class Range>
  std::vector<R> map(R (*fn)(A), const Range& items,
                     std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    return executors_internal::map_in_order<R>(
        // this->: see ThreadPoolExecutor::map.
        [this, fn](const auto& item) { return this->submit(fn, item); }, items, timeout);
  }

  // A process pool cannot run closures: throws std::invalid_argument. Use
  // submit(), or run_in_executor with a plain function pointer.
  void execute(absl::AnyInvocable<void()> work) override;

  // Stops accepting work; cancel_futures drops the queued jobs (their
  // futures are cancelled). The workers finish their jobs and exit; wait:
  // blocks until they and the fork server have exited and been reaped.
  void shutdown(bool wait = true, bool cancel_futures = false) override;

  int max_workers() const { return max_workers_; }
  uint64_t max_frame_size() const { return max_frame_size_; }
  // Process ids of the current workers (for tests and diagnostics).
  std::vector<pid_t> worker_pids() const;

 private:
  struct Worker;
  void enqueue(std::unique_ptr<executors_internal::ProcessJob> job);
  // The index of (invoker, fn) in the function table, added if new.
  uint32_t function_index(executors_internal::Invoker invoker, uintptr_t fn);
  // std::invalid_argument if an encoded call of `size` bytes is too large.
  void check_call_size(size_t size) const;
  void manager_main();
  Worker spawn_worker();
  void wake();

  const int max_workers_;
  const uint64_t max_frame_size_;
  executors_internal::FunctionTable* functions_ = nullptr;  // shared mapping
  int server_fd_ = -1;                                      // control socket of the fork server
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
