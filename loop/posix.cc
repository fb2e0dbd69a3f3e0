#include "loop/posix.h"

#include <cxxabi.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>
#include <system_error>

namespace asyncio::posix {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

std::exception_ptr os_error(int err, const std::string& what) {
  return std::make_exception_ptr(std::system_error(err, std::generic_category(), what));
}

void throw_errno(const std::string& what, int err) {
  throw std::system_error(err, std::generic_category(), what);
}

void set_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) throw_errno("fcntl(O_NONBLOCK)");
}

std::string demangled_type_name(const std::type_info& type) {
  int status = 0;
  char* name = abi::__cxa_demangle(type.name(), nullptr, nullptr, &status);
  std::string result = (status == 0 && name != nullptr) ? name : type.name();
  std::free(name);
  return result;
}

std::string describe_exception(const std::exception_ptr& exc) {
  try {
    std::rethrow_exception(exc);
  } catch (const std::exception& e) {
    return demangled_type_name(typeid(e)) + ": " + e.what();
  } catch (...) {
    return "unknown exception";
  }
}

std::pair<size_t, size_t> write_buffer_limits(std::optional<size_t> high,
                                              std::optional<size_t> low) {
  size_t h = high ? *high : (low ? 4 * *low : kDefaultWriteBufferHigh);
  size_t l = low ? *low : h / 4;
  if (l > h) {
    throw std::invalid_argument("high (" + std::to_string(h) + ") must be >= low (" +
                                std::to_string(l) + ")");
  }
  return {l, h};
}

}  // namespace asyncio::posix
