// The wire protocol of concurrent::ProcessPoolExecutor: serialization of
// arguments and results, frames, the shared function table, and the job as
// the manager thread sees it. Machinery of executors/process_pool.h; the
// framing functions are pure, so that tests and fuzzers can reach them
// without processes.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "executors/concurrent_future.h"

namespace asyncio::concurrent::executors_internal {

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

}  // namespace asyncio::concurrent::executors_internal
