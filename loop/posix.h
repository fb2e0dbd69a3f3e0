// Small POSIX helpers shared by the packages of this repository: a
// descriptor owner, errno exceptions, readable exception descriptions, and
// the write-buffer watermarks every transport computes alike.
//
// Repo-internal: the target is visible to this repository's packages only,
// and nothing here is part of the public API. The namespace is asyncio::posix
// rather than loop_internal because these are not the loop's internals:
// transports, subprocess, executors and dns use them too.
#pragma once

#include <cerrno>
#include <cstddef>
#include <exception>
#include <optional>
#include <string>
#include <typeinfo>
#include <utility>

namespace asyncio::posix {

// Owns a file descriptor: closes it on destruction unless released.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  // Gives up ownership without closing.
  int release() { return std::exchange(fd_, -1); }
  // Closes the descriptor held, if any, and takes `fd`.
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// The std::system_error (generic category) for `err`; `what` says which call
// failed. All of the repository's errno exceptions come from here.
std::exception_ptr os_error(int err, const std::string& what);
// Throws that error; `err` defaults to errno at the call.
[[noreturn]] void throw_errno(const std::string& what, int err = errno);

// O_NONBLOCK on (socket.setblocking(False)): a caller's descriptor may come
// blocking, and one blocking call would stall the whole loop.
void set_nonblocking(int fd);

// A non-blocking call that would have blocked (EAGAIN, EWOULDBLOCK) or was
// interrupted (EINTR): retry after the next readiness event.
inline bool would_block(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == EINTR; }

// The demangled name of a type ("std::runtime_error"), or the raw name when
// it cannot be demangled.
std::string demangled_type_name(const std::type_info& type);

// "Type: what()" for a std::exception, "unknown exception" otherwise: what
// the error reports of the loop and the executors print.
std::string describe_exception(const std::exception_ptr& exc);

// A transport's high watermark before set_write_buffer_limits (low: 1/4).
inline constexpr size_t kDefaultWriteBufferHigh = 64 * 1024;

// The (low, high) write-buffer watermarks set_write_buffer_limits(high, low)
// means, as asyncio: high defaults to 4 * low, or 64 KiB without either;
// low defaults to high / 4. std::invalid_argument when low > high.
std::pair<size_t, size_t> write_buffer_limits(std::optional<size_t> high,
                                              std::optional<size_t> low);

}  // namespace asyncio::posix
