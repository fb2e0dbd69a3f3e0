// concurrent::ProcessPoolExecutor: work runs in forked worker processes.
// Included by executors/executors.h.
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

#include <atomic>
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

// --- framing ------------------------------------------------------------------
// Calls and answers travel as frames: a 64-bit length, then the body. These
// are pure functions over bytes, so that they can be tested (and fuzzed)
// without processes.

// The largest frame body a pool sends or accepts unless told otherwise: an
// encoded call (its arguments plus a few bytes) or result. A call over the
// limit is refused by submit(), a result over it fails its job with
// std::length_error, and a frame that claims more is malformed.
inline constexpr uint64_t kDefaultMaxFrameSize = uint64_t{1} << 32;  // 4 GiB
inline constexpr size_t kFrameHeaderSize = sizeof(uint64_t);

// The body length a frame header announces. std::length_error if it is
// over `max_frame_size`; std::invalid_argument if `header` is not
// kFrameHeaderSize bytes.
uint64_t frame_length(std::string_view header, uint64_t max_frame_size);

// Takes the next complete frame off the front of `stream` and returns its
// body (a view into `stream`); nullopt (and `stream` untouched) if the frame
// is not complete yet. std::length_error as frame_length.
std::optional<std::string_view> next_frame(std::string_view& stream, uint64_t max_frame_size);

// A call names its function by an index into the pool's function table.
struct FunctionEntry {
  Invoker invoker;
  uintptr_t fn;
};

// The functions a pool has been asked to run, in memory shared with its
// processes (mapped before the fork server is forked, read-only there): the
// parent appends each new (invoker, function) pair before it sends a call
// naming it, and a worker runs only what it finds at an index below the
// count. Nothing read off a socket is ever used as a code address.
struct FunctionTable {
  static constexpr uint32_t kCapacity = 4096;
  std::atomic<uint32_t> count{0};
  FunctionEntry entries[kCapacity];
};

// A call's body: the function's index (u32), then the encoded arguments.
struct Call {
  FunctionEntry function;
  std::string_view args;
};
// Decodes a call against the first `function_count` entries of `functions`.
// std::runtime_error if the body is too short or names an unknown function.
Call parse_call(std::string_view body, const FunctionEntry* functions, uint32_t function_count);

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
