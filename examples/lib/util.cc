#include "examples/lib/util.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>

namespace asyncio_examples {
namespace {

std::tm local_now(long* microseconds) {
  const auto now = std::chrono::system_clock::now();
  const auto since_epoch = now.time_since_epoch();
  const std::time_t seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch).count();
  if (microseconds != nullptr) {
    *microseconds = static_cast<long>(
        std::chrono::duration_cast<std::chrono::microseconds>(since_epoch).count() % 1000000);
  }
  std::tm tm{};
  localtime_r(&seconds, &tm);
  return tm;
}

}  // namespace

std::string strftime_x() {
  std::tm tm = local_now(nullptr);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  return buf;
}

std::string datetime_now() {
  long micros = 0;
  std::tm tm = local_now(&micros);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", &tm);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%s.%06ld", date, micros);
  return buf;
}

}  // namespace asyncio_examples
